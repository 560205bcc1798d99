/* mkseeds: writes the seed corpora of the fuzz targets from streams and
 * input files.  Usage: mkseeds OUTDIR FILE...
 * A stream (it starts with the stream magic) seeds stream/, pipeline/,
 * scan/ and api/ whole, and its frames seed the targets of their payloads:
 * PLANES frames planes/, the bodies of CODED and CODED_DATA frames rans/,
 * or model/ with their MODEL frame when a model codes them.  A stream
 * of no PLANES, CODED, CODED_DATA or MODEL frame (st-split's, a lossy
 * filter's) also seeds lossy/, once for each of its stages.  A
 * safetensors file seeds safetensors/ (its header), split/ and
 * roundtrip/; any other file (an archive, a text file) split/ and
 * roundtrip/.  Frames are walked without checks, so
 * that damaged streams (t/vectors/bad-*) still give their parts.  Seeds
 * longer than a target's -max_len (the GNUmakefile's FUZZ_MAXLEN_*) are
 * left out; OUTDIR/TARGET/ must exist. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/model.h"
#include "../../lib/planes.h"
#include "../../lib/safetensors.h"
#include "../../lib/stream.h"

#define MAX_SEED (256u << 10)
#define MAX_MODELS 64

static const char *outdir;
static unsigned long nseeds;

static const uint8_t magic[8] = { 0x89, 'S', 'T', 'P', 0x0D, 0x0A, 0x1A,
				  0x0A };

/* Writes OUTDIR/TARGET/NAME-K from a prefix and a body, unless the whole
 * is longer than MAX_SEED. */
static void seed(const char *target, const char *name, unsigned k,
		 const uint8_t *pre, size_t npre, const uint8_t *body,
		 size_t n)
{
	char path[8192];
	FILE *f;

	if (npre + n > MAX_SEED)
		return;
	snprintf(path, sizeof path, "%s/%s/%s-%u", outdir, target, name, k);
	f = fopen(path, "wb");
	if (!f || fwrite(pre, 1, npre, f) != npre ||
	    fwrite(body, 1, n, f) != n || fclose(f) != 0) {
		fprintf(stderr, "mkseeds: %s: %s\n", path, strerror(errno));
		exit(111);
	}
	nseeds++;
}

struct model_ref {
	uint32_t id;
	const uint8_t *p;
	size_t len;
};

struct walk {
	const char *name;
	unsigned k;
	struct model_ref models[MAX_MODELS];
	unsigned nmodels;
};

/* One coded body of n symbols at body[0..len) with its geometry. */
static void body_seed(struct walk *w, const uint8_t *body, size_t len,
		      size_t n, uint64_t rowlen, uint64_t column, unsigned sel)
{
	uint8_t pre[16 + 2];
	uint32_t id;

	if (len == 0 || n >= (1u << 21))
		return;
	if (body[0] != STP_RANS_MODEL) {
		pre[0] = (uint8_t)sel;
		pre[1] = (uint8_t)n;
		pre[2] = (uint8_t)(n >> 8);
		pre[3] = (uint8_t)(n >> 16);
		seed("rans", w->name, w->k++, pre, 4, body, len);
		return;
	}
	if (stp_model_body_id(body, len, &id) < 0 || n >= (1u << 18) ||
	    rowlen > UINT32_MAX || column > UINT32_MAX)
		return;
	for (unsigned i = 0; i < w->nmodels; i++) {
		const struct model_ref *m = &w->models[i];
		uint8_t *buf;

		if (m->id != id || m->len > 0xFFFF)
			continue;
		pre[0] = (uint8_t)sel;
		pre[1] = (uint8_t)n;
		pre[2] = (uint8_t)(n >> 8);
		pre[3] = (uint8_t)(n >> 16);
		stp_put32(pre + 4, (uint32_t)rowlen);
		stp_put32(pre + 8, (uint32_t)column);
		stp_put16(pre + 12, (uint16_t)m->len);
		buf = malloc(m->len + len);
		if (!buf)
			exit(111);
		memcpy(buf, m->p, m->len);
		memcpy(buf + m->len, body, len);
		seed("model", w->name, w->k++, pre, 14, buf, m->len + len);
		free(buf);
		return;
	}
}

/* Model seeds whatever the encoder chose: the exponent plane of a PLANES
 * frame coded with a model of each kind, learnt from it or fixed as
 * rans-enc makes them. */
static void model_seeds(struct walk *w, const struct stp_planes_hdr *h,
			const uint8_t *plane)
{
	struct stp_model_plane pl = { plane, h->count, h->rowlen, h->column };
	unsigned alphabet = 1u << stp_float_expbits(h->dtype);
	uint8_t ctx[16];

	if (h->count >= (1u << 18) || h->rowlen > UINT32_MAX)
		return;
	stp_ctx_params_build(ctx, 2, 5, 5, 256, 1u << 16, 32);
	for (unsigned kind = STP_MODEL_ORDER0; kind <= STP_MODEL_CTX; kind++) {
		struct stp_model *m = NULL;
		uint8_t *body = malloc(stp_model_bound(h->count));
		size_t blen, mlen;
		int rc;

		if (!body)
			exit(111);
		rc = kind == STP_MODEL_CTX ?
			     stp_model_create(alphabet, kind, alphabet, 12, ctx,
					      sizeof ctx, &m) :
			     stp_model_fit(alphabet, kind, alphabet, 0, &pl, 1,
					   &m);
		if (rc == 0 &&
		    stp_model_encode(m, &pl, 0, body, stp_model_bound(h->count),
				     &blen) == 0) {
			const uint8_t *mp = stp_model_payload(m, &mlen);
			struct model_ref saved[MAX_MODELS];
			unsigned nsaved = w->nmodels;

			memcpy(saved, w->models, sizeof saved);
			w->models[0] = (struct model_ref){ m->id, mp, mlen };
			w->nmodels = 1;
			body_seed(w, body, blen, h->count, h->rowlen,
				  h->column, kind);
			memcpy(w->models, saved, sizeof saved);
			w->nmodels = nsaved;
		}
		stp_model_free(m);
		free(body);
	}
}

static void planes_frame(struct walk *w, unsigned type, const uint8_t *p,
			 size_t len)
{
	struct stp_planes_hdr h;
	int hs = stp_planes_hdr_parse(p, len, &h);
	size_t at;

	if (hs < 0)
		return;
	at = (size_t)hs;
	if (type == STP_F_PLANES) {
		uint8_t sel = (uint8_t)(4 * (h.dtype - 1));
		seed("planes", w->name, w->k++, &sel, 1, p + at, len - at);
		if (h.len[0] == h.count && h.count <= len - at)
			model_seeds(w, &h, p + at);
		return;
	}
	for (unsigned i = 0; i < h.nplanes; i++) {
		size_t n = h.layout == STP_LAYOUT_JOINT ?
				   (i == 0 ? h.count : 0) :
				   stp_plane_len(h.dtype, i, h.count);
		int rows = h.layout == STP_LAYOUT_PLANES &&
			   (i == 0 || stp_float_width(h.dtype) > 1);

		if (h.len[i] > len - at)
			return;
		if (n)
			body_seed(w, p + at, h.len[i], n, rows ? h.rowlen : 1,
				  rows ? h.column : 0, w->k);
		at += h.len[i];
	}
}

/* lossy/: each of the eight stages, with the default excludes and with
 * -p '*' (t/fuzz/lossy.c), the CRCs mended in half of them. */
static void lossy_seeds(const char *name, const uint8_t *p, size_t n)
{
	for (unsigned k = 0; k < 16; k++) {
		uint8_t flags = (uint8_t)((k & 7) << 1 | (k & 8) << 1 |
					  (k < 8));

		seed("lossy", name, k, &flags, 1, p, n);
	}
}

static void stream_file(const char *name, const uint8_t *p, size_t n)
{
	struct walk w = { .name = name };
	uint8_t flags[] = { 0x00, 0x10, 0x0a, 0x13 };
	size_t pos = 0;
	int coded = 0;

	for (unsigned i = 0; i < sizeof flags; i++) {
		seed("stream", name, w.k, &flags[i], 1, p, n);
		seed("pipeline", name, w.k, &flags[i], 1, p, n);
		seed("scan", name, w.k, &flags[i], 1, p, n);
		seed("api", name, w.k++, &flags[i], 1, p, n);
	}
	while (pos + 8 <= n) {
		uint64_t len;
		unsigned type;

		if (memcmp(p + pos, magic, 8) == 0) {
			w.nmodels = 0;
			pos += STP_HEADER_SIZE;
			continue;
		}
		type = p[pos];
		len = stp_get32(p + pos + 4);
		if (len > n - pos - 8)
			return;
		coded |= type == STP_F_MODEL || type == STP_F_PLANES ||
			 type == STP_F_CODED || type == STP_F_CODED_DATA;
		const uint8_t *pl = p + pos + 8;
		if (type == STP_F_MODEL && len >= 4 && w.nmodels < MAX_MODELS)
			w.models[w.nmodels++] = (struct model_ref){
				stp_get32(pl), pl, (size_t)len };
		else if (type == STP_F_PLANES || type == STP_F_CODED)
			planes_frame(&w, type, pl, (size_t)len);
		else if (type == STP_F_CODED_DATA && len >= 12)
			body_seed(&w, pl + 12, (size_t)len - 12,
				  stp_get32(pl + 8), 1, 0, w.k);
		pos += 8 + len + 4;
	}
	if (!coded)
		lossy_seeds(name, p, n);
}

static uint8_t *slurp(const char *path, size_t *out_n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p = NULL;
	size_t n = 0, cap = 0, got;

	if (!f)
		return NULL;
	do {
		if (n == cap) {
			cap = cap ? 2 * cap : 65536;
			if (!(p = realloc(p, cap)))
				exit(111);
		}
		got = fread(p + n, 1, cap - n, f);
		n += got;
	} while (got > 0);
	fclose(f);
	*out_n = n;
	return p;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs("usage: mkseeds OUTDIR FILE...\n", stderr);
		return 100;
	}
	outdir = argv[1];
	for (int i = 2; i < argc; i++) {
		char name[256];
		const char *base = strrchr(argv[i], '/');
		size_t n = 0;
		uint8_t *p = slurp(argv[i], &n);
		uint8_t mode;

		if (!p) {
			fprintf(stderr, "mkseeds: %s: %s\n", argv[i],
				strerror(errno));
			return 111;
		}
		/* names: the file's base name and its place in the list */
		snprintf(name, sizeof name, "%s.%d", base ? base + 1 : argv[i],
			 i);
		if (n >= 8 && memcmp(p, magic, 8) == 0) {
			stream_file(name, p, n);
		} else if (stp_st_sniff(p, n) && 8 + stp_get64(p) <= n) {
			seed("safetensors", name, 0, NULL, 0, p + 8,
			     (size_t)stp_get64(p));
			for (mode = 0; mode < 4; mode++)
				seed("split", name, mode, &mode, 1, p, n);
			/* static tables, adaptive0, ctx; ctx on two threads */
			for (mode = 0; mode < 3; mode++)
				seed("roundtrip", name, mode, &mode, 1, p, n);
			mode = 8 | 2;
			seed("roundtrip", name, mode, &mode, 1, p, n);
		} else {
			mode = 0;
			seed("split", name, 0, &mode, 1, p, n);
			mode = 4;
			seed("roundtrip", name, 0, &mode, 1, p, n);
		}
		free(p);
	}
	printf("mkseeds: %lu seeds in %s\n", nseeds, outdir);
	return 0;
}
