/* hts-bytegroup: the size byte-grouped order-0 rANS (htscodecs) gives a
 * safetensors file, the baseline stpipe's ratio is held against. Each
 * tensor's bytes are cut into 1 MiB pieces (as st-split cuts them); each
 * piece is split into one stream per byte position of its elements (byte
 * grouping, as ZipNN does), and each stream is coded with
 * rans_compress_to_4x16 order 0 | RANS_ORDER_X32. Bytes outside tensors
 * count as they are. A benchmark, not a test.
 * Usage: hts-bytegroup FILE...   (prints total input and output bytes) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <htscodecs/rANS_static4x16.h>

#include "../../lib/safetensors.h"

#define PIECE (1u << 20)

static uint64_t code_piece(const uint8_t *p, size_t n, unsigned esize,
			   uint8_t *group, uint8_t *out, unsigned cap)
{
	uint64_t total = 0;

	for (unsigned b = 0; b < esize; b++) {
		unsigned olen = cap;
		size_t m = n / esize;

		for (size_t i = 0; i < m; i++)
			group[i] = p[i * esize + b];
		if (!rans_compress_to_4x16(group, (unsigned)m, out, &olen,
					   RANS_ORDER_X32)) {
			fprintf(stderr, "hts-bytegroup: htscodecs failed\n");
			exit(1);
		}
		total += olen < m ? olen : m;
	}
	return total;
}

static int file(const char *path, uint64_t *in_total, uint64_t *out_total)
{
	FILE *f = fopen(path, "rb");
	struct stp_st_header h;
	char where[256];
	uint8_t *buf, *group, *out;
	unsigned cap = rans_compress_bound_4x16(PIECE, RANS_ORDER_X32);
	long size;
	uint64_t n, covered = 0;

	if (!f || fseek(f, 0, SEEK_END) || (size = ftell(f)) < 8) {
		fprintf(stderr, "hts-bytegroup: %s: cannot read\n", path);
		return 1;
	}
	buf = malloc((size_t)size);
	group = malloc(PIECE);
	out = malloc(cap);
	rewind(f);
	if (!buf || !group || !out || fread(buf, 1, (size_t)size, f) != (size_t)size)
		return 1;
	fclose(f);
	n = stp_get64(buf);
	if (stp_st_parse(buf + 8, (size_t)n, &h, where, sizeof where) < 0) {
		fprintf(stderr, "hts-bytegroup: %s: not safetensors\n", path);
		return 1;
	}
	for (size_t i = 0; i < h.count; i++) {
		const struct stp_st_tensor *t = &h.tensors[i];
		uint64_t before = *out_total;

		for (uint64_t at = t->begin; at < t->end; at += PIECE) {
			size_t m = t->end - at < PIECE ? t->end - at : PIECE;
			*out_total += code_piece(buf + at, m, t->esize, group,
						 out, cap);
		}
		covered += t->end - t->begin;
		if (getenv("HBG_VERBOSE"))
			fprintf(stderr, "%s %llu\n", t->name, (unsigned long long)(*out_total - before));
	}
	*out_total += (uint64_t)size - covered;
	*in_total += (uint64_t)size;
	stp_st_free(&h);
	free(buf);
	free(group);
	free(out);
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t in = 0, out = 0;

	for (int i = 1; i < argc; i++)
		if (file(argv[i], &in, &out))
			return 1;
	printf("%llu %llu\n", (unsigned long long)in, (unsigned long long)out);
	return 0;
}
