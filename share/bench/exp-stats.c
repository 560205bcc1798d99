/* exp-stats: the two bounds make bench holds exponent models against, on
 * the exponent planes of safetensors files (formats/planes.md): H0, the
 * order-0 entropy of each plane (what a static table per plane
 * approaches), and the row oracle, the sum over rows of each row's own
 * order-0 entropy (what a model that knew every row's histogram for free
 * would pay; not a hard limit, since a model may also use the columns).
 * Planes are cut as st-split and fp8-exp cut them: whole rows of at most
 * 1 MiB, tensors of at least 64 values.  A benchmark, not a test.
 * Usage: exp-stats FILE...   prints, per dtype: dtype n h0_bits oracle_bits */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/planes.h"
#include "../../lib/safetensors.h"

#define PIECE (1u << 20)

struct acc {
	double n, h0, oracle;
};

static double entropy(const uint8_t *e, size_t n)
{
	size_t cnt[256] = { 0 };
	double b = 0;

	for (size_t i = 0; i < n; i++)
		cnt[e[i]]++;
	for (int s = 0; s < 256; s++)
		if (cnt[s])
			b += (double)cnt[s] * log2((double)n / (double)cnt[s]);
	return b;
}

static unsigned exponent(unsigned code, const uint8_t *p)
{
	uint64_t x = 0;
	unsigned w = stp_float_width(code);

	for (unsigned k = 0; k < w; k++)
		x |= (uint64_t)p[k] << (8 * k);
	switch (code) {
	case STP_BF16: return (unsigned)(x >> 7) & 0xff;
	case STP_F16: return (unsigned)(x >> 10) & 0x1f;
	case STP_F32: return (unsigned)(x >> 23) & 0xff;
	case STP_F64: return (unsigned)(x >> 55) & 0xff;
	case STP_E4M3: return (unsigned)(x >> 3) & 0xf;
	default: return (unsigned)(x >> 2) & 0x1f;
	}
}

static int file(const char *path, struct acc acc[8])
{
	FILE *f = fopen(path, "rb");
	struct stp_st_header h;
	char where[256];
	uint8_t *buf, *e;
	long size;

	if (!f || fseek(f, 0, SEEK_END) || (size = ftell(f)) < 8) {
		fprintf(stderr, "exp-stats: %s: cannot read\n", path);
		return 1;
	}
	buf = malloc((size_t)size);
	rewind(f);
	if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size)
		return 1;
	fclose(f);
	if (stp_st_parse(buf + 8, (size_t)stp_get64(buf), &h, where,
			 sizeof where) < 0) {
		fprintf(stderr, "exp-stats: %s: not safetensors\n", path);
		return 1;
	}
	e = malloc(PIECE);
	for (size_t t = 0; t < h.count; t++) {
		const struct stp_st_tensor *ts = &h.tensors[t];
		unsigned code = stp_float_code(ts->dtype), w;
		uint64_t n, rowlen, rows_per;

		if (!code || !(w = stp_float_width(code)))
			continue;
		n = (ts->end - ts->begin) / w;
		if (n < 64)
			continue;
		rowlen = ts->ndim ? ts->shape[ts->ndim - 1] : 1;
		if (rowlen == 0)
			continue;
		rows_per = PIECE / (rowlen * w);
		for (uint64_t at = 0; at < n;) {
			uint64_t m = rows_per ? rows_per * rowlen : PIECE / w;
			uint64_t rl = rows_per ? rowlen : m;

			if (m > n - at)
				m = n - at;
			for (uint64_t i = 0; i < m; i++)
				e[i] = (uint8_t)exponent(code, buf + ts->begin +
							 (at + i) * w);
			acc[code].n += (double)m;
			acc[code].h0 += entropy(e, m);
			for (uint64_t r = 0; r < m; r += rl)
				acc[code].oracle += entropy(e + r, rl < m - r ? rl : m - r);
			at += m;
		}
	}
	free(e);
	stp_st_free(&h);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	static const char *const names[8] = {
		NULL, "BF16", "F16", "F32", "F64", "F8_E4M3", "F8_E5M2", NULL,
	};
	struct acc acc[8] = { { 0, 0, 0 } };

	for (int i = 1; i < argc; i++)
		if (file(argv[i], acc))
			return 1;
	for (int c = 1; c < 7; c++)
		if (acc[c].n > 0)
			printf("%s %.0f %.0f %.0f\n", names[c], acc[c].n,
			       acc[c].h0, acc[c].oracle);
	return 0;
}
