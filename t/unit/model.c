/* Unit test of lib/model and lib/rans_model: the MODEL payload (parse,
 * create, fit, their round trips and hostile payloads), the generic rANS
 * coder driven by each model kind and by test models (a context model
 * reading the row above and the left neighbour, which checks every
 * context it is given, and models that give invalid tables), round trips
 * over planes with rows that start and end mid-row, the coding order of
 * formats/model.md, identical bytes on repeated runs, hostile bodies, the
 * test vectors of formats/model.md, and the size of an order0 plane
 * against stp_rans_encode's.  Prints TAP; exits 1 if any test failed.
 * Every buffer handed to a decoder is a heap block of exactly the right
 * size, so valgrind or -fsanitize=address catches any access outside
 * it. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/error.h"
#include "../../lib/model.h"
#include "../../lib/rans.h"

static int ntest, nfail;

static void ok(int cond, const char *fmt, ...)
{
	va_list ap;

	ntest++;
	if (!cond)
		nfail++;
	printf("%sok %d - ", cond ? "" : "not ", ntest);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		printf("Bail out! out of memory\n");
		exit(1);
	}
	return p;
}

static void put16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v);
	put16(p + 2, v >> 16);
}

/* ---- Inputs ---- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* Like the exponents of Gaussian weights: a peak at `top`, halving below
 * it, a sharp edge above it, and a few stray symbols. */
static uint8_t exponent_like(int top)
{
	uint64_t r = next();
	int lz = r ? __builtin_clzll(r) : 64;

	if ((r & 0x3ff) == 0)
		return 0;
	if ((r & 0xff) == 1)
		return (uint8_t)(top + 1 + (r >> 8 & 3));
	return (uint8_t)(top - (lz > 40 ? 40 : lz));
}

/* Exponent-like symbols whose peak drifts from block to block of 4096,
 * as from one tensor to the next: something for an adaptive model. */
static void make_drift(uint8_t *buf, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		buf[i] = exponent_like(112 + (int)(i >> 12) % 12);
}

/* Symbols below 16 where a column mostly repeats the row above:
 * something for a context model. */
static void make_columns(uint8_t *buf, size_t n, uint64_t rowlen)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint64_t r = next();

		if (i >= rowlen && (r & 7))
			buf[i] = buf[i - rowlen];
		else
			buf[i] = (uint8_t)(r >> 8 & 15);
	}
}

/* ---- Test models ---- */

/* Kind 0xfff0, alphabet 16: the symbol above gets most of the table,
 * else the symbol to the left, else the table is flat.  It checks every
 * context against the geometry (the index, the lane of the row, that
 * start_row comes exactly at a row's first symbol in the plane) and logs
 * the index of every symbol it is asked about, in order. */
struct ctx_state {
	struct stp_model_geom g;
	uint32_t freq[16];
	size_t calls, row_starts;
	int bad;
};

static size_t *ctx_log;		/* the indices, in coding order */
static size_t ctx_logged, ctx_bad, ctx_starts;

static int ctx_parse(struct stp_model *m, const uint8_t *params, size_t len)
{
	(void)params;
	if (len)
		return STP_EFRAME;
	if (m->alphabet != 16 || m->prob_bits != 12)
		return STP_ECORRUPT;
	m->priv = NULL;
	return 0;
}

static int ctx_open(const struct stp_model *m,
		    const struct stp_model_geom *g, void **out_state)
{
	struct ctx_state *st = calloc(1, sizeof *st);

	(void)m;
	if (!st)
		return STP_ENOMEM;
	st->g = *g;
	*out_state = st;
	return 0;
}

static void ctx_close(void *state)
{
	struct ctx_state *st = state;

	ctx_bad += st->bad != 0;
	ctx_starts = st->row_starts;
	free(st);
}

static uint64_t first_col(const struct stp_model_geom *g, uint64_t row)
{
	return row == 0 ? g->column : 0;
}

static void ctx_start_row(void *state, const struct stp_model_ctx *ctx)
{
	struct ctx_state *st = state;

	st->row_starts++;
	if (ctx->col != first_col(&st->g, ctx->row))
		st->bad = 1;
}

static int ctx_predict(void *state, const struct stp_model_ctx *ctx,
		       const uint32_t **out_freq)
{
	struct ctx_state *st = state;
	const struct stp_model_geom *g = &st->g;
	int ref = stp_model_up(ctx, 0);
	unsigned s;

	if (ctx->i != (size_t)(ctx->row * g->rowlen + ctx->col - g->column) ||
	    ctx->lane != ctx->row % g->lanes || ctx->i >= g->n ||
	    ctx->rowlen != g->rowlen)
		st->bad = 1;
	/* The neighbours exist exactly where the geometry says. */
	if ((stp_model_left(ctx, 1) >= 0) !=
	    (ctx->col > first_col(g, ctx->row)))
		st->bad = 1;
	if ((ref >= 0) != (ctx->row > 0 && ctx->col >= first_col(g,
							ctx->row - 1)))
		st->bad = 1;
	if (ctx_log && st->calls < g->n)
		ctx_log[st->calls] = ctx->i;
	st->calls++;
	ctx_logged = st->calls;
	if (ref < 0)
		ref = stp_model_left(ctx, 1);
	for (s = 0; s < 16; s++)
		st->freq[s] = ref < 0 ? 256 : (int)s == ref ? 4096 - 15 * 16
							     : 16;
	*out_freq = st->freq;
	return 1;
}

static const struct stp_model_ops ctx_ops = {
	.kind = 0xfff0,
	.name = "test-context",
	.parse = ctx_parse,
	.open = ctx_open,
	.close = ctx_close,
	.start_row = ctx_start_row,
	.predict = ctx_predict,
};

/* Kind 0xfff1, alphabet 4, prob_bits 4: a flat table, until `bad_after`
 * symbols have been predicted; then the table bad_mode says. */
enum bad_mode { BAD_SUM_LOW, BAD_SUM_HIGH, BAD_NULL, BAD_WRAP, BAD_ERROR,
		BAD_NONE };
static enum bad_mode bad_mode = BAD_NONE;
static size_t bad_after;

struct bad_state {
	uint32_t freq[4];
	size_t calls;
};

static int bad_parse(struct stp_model *m, const uint8_t *params, size_t len)
{
	(void)params;
	(void)len;
	m->priv = NULL;
	return 0;
}

static int bad_open(const struct stp_model *m,
		    const struct stp_model_geom *g, void **out_state)
{
	(void)m;
	(void)g;
	*out_state = calloc(1, sizeof(struct bad_state));
	return *out_state ? 0 : STP_ENOMEM;
}

static int bad_predict(void *state, const struct stp_model_ctx *ctx,
		       const uint32_t **out_freq)
{
	struct bad_state *st = state;
	unsigned s;

	(void)ctx;
	for (s = 0; s < 4; s++)
		st->freq[s] = 4;
	*out_freq = st->freq;
	if (st->calls++ < bad_after)
		return 1;
	switch (bad_mode) {
	case BAD_SUM_LOW: st->freq[3] = 3; break;
	case BAD_SUM_HIGH: st->freq[3] = 5; break;
	case BAD_NULL: *out_freq = NULL; break;
	/* Sums to 16 modulo 2^32, one entry over 2^pb. */
	case BAD_WRAP: st->freq[0] = 0xfffffffcu; st->freq[1] = 12; break;
	case BAD_ERROR: return STP_ENOMEM;
	case BAD_NONE: break;
	}
	return 1;
}

static const struct stp_model_ops bad_ops = {
	.kind = 0xfff1,
	.name = "test-bad",
	.parse = bad_parse,
	.open = bad_open,
	.close = free,
	.predict = bad_predict,
};

/* ---- Helpers ---- */

static struct stp_model *fit(unsigned kind, unsigned alphabet,
			     const uint8_t *in, size_t n, uint64_t rowlen,
			     uint64_t column)
{
	struct stp_model_plane p = { in, n, rowlen, column };
	struct stp_model *m = NULL;
	int rc = stp_model_fit(7, kind, alphabet, 0, &p, 1, &m);

	if (rc < 0) {
		printf("Bail out! fit %s: %s\n", stp_model_kind_name(kind),
		       stp_strerror(rc));
		exit(1);
	}
	return m;
}

static struct stp_model *test_model(const struct stp_model_ops *ops,
				    unsigned alphabet, unsigned pb)
{
	struct stp_model *m = NULL;

	if (stp_model_create_ops(ops, 9, alphabet, pb, NULL, 0, &m) < 0) {
		printf("Bail out! cannot make %s\n", ops->name);
		exit(1);
	}
	return m;
}

/* Encodes into a fresh heap block of stp_model_bound(n); returns it
 * (NULL on failure, the code in *out_rc). */
static uint8_t *encode(const struct stp_model *m, const uint8_t *in,
		       size_t n, uint64_t rowlen, uint64_t column,
		       unsigned lanes, size_t *out_len, int *out_rc)
{
	struct stp_model_plane p = { in, n, rowlen, column };
	size_t cap = stp_model_bound(n);
	uint8_t *body = xmalloc(cap);

	*out_rc = stp_model_encode(m, &p, lanes, body, cap, out_len);
	if (*out_rc < 0) {
		free(body);
		return NULL;
	}
	return body;
}

/* Decodes body[0..len) from and into heap blocks of exactly len and n
 * bytes, the output first filled with bytes no plane here holds; returns
 * the code, and the output through *out (to free) when wanted. */
static int decode_exact(const struct stp_model *m, const uint8_t *body,
			size_t len, size_t n, uint64_t rowlen,
			uint64_t column, uint8_t **out)
{
	uint8_t *in = xmalloc(len), *dst = xmalloc(n);
	int rc;

	memcpy(in, body, len);
	memset(dst, 0xee, n);
	rc = stp_model_decode(m, in, len, dst, n, rowlen, column);
	free(in);
	if (out)
		*out = dst;
	else
		free(dst);
	return rc;
}

/* Encodes in, twice (the bodies must be identical), and decodes it; 0 if
 * all went well, else a line saying what failed. */
static const char *roundtrip(const struct stp_model *m, const uint8_t *in,
			     size_t n, uint64_t rowlen, uint64_t column,
			     unsigned lanes, size_t *out_len)
{
	size_t len = 0, len2 = 0;
	uint8_t *body, *body2, *out = NULL;
	int rc;
	const char *why = NULL;

	body = encode(m, in, n, rowlen, column, lanes, &len, &rc);
	if (!body)
		return "encode failed";
	body2 = encode(m, in, n, rowlen, column, lanes, &len2, &rc);
	if (!body2 || len2 != len || memcmp(body, body2, len))
		why = "second encode differs";
	else if (decode_exact(m, body, len, n, rowlen, column, &out) < 0)
		why = "decode failed";
	else if (memcmp(out, in, n))
		why = "decoded symbols differ";
	else if (len > stp_model_bound(n))
		why = "body over the bound";
	free(out);
	free(body);
	free(body2);
	if (out_len)
		*out_len = len;
	return why;
}

/* ---- Payloads ---- */

static void test_registry(void)
{
	ok(stp_model_kind_by_name("order0") == STP_MODEL_ORDER0 &&
	   stp_model_kind_by_name("adaptive0") == STP_MODEL_ADAPTIVE0 &&
	   !strcmp(stp_model_kind_name(1), "order0") &&
	   !strcmp(stp_model_kind_name(2), "adaptive0"),
	   "registry: order0 is kind 1, adaptive0 kind 2");
	ok(stp_model_kind_by_name("ctx") == STP_MODEL_CTX &&
	   !strcmp(stp_model_kind_name(3), "ctx"), "registry: ctx is kind 3");
	ok(stp_model_kind_by_name("nosuch") == STP_EUNSUPPORTED &&
	   stp_model_kind_name(0) == NULL && stp_model_kind_name(99) == NULL,
	   "registry: unknown names and kinds are refused");
}

/* A payload: the 12-byte header and params. */
static size_t payload(uint8_t *p, uint32_t id, unsigned kind,
		      unsigned alphabet, unsigned pb, const uint8_t *params,
		      size_t plen)
{
	put32(p, id);
	put16(p + 4, kind);
	put16(p + 6, 0);
	put16(p + 8, alphabet);
	p[10] = (uint8_t)pb;
	p[11] = 0;
	memcpy(p + 12, params, plen);
	return 12 + plen;
}

static void parse_refused(const char *what, const uint8_t *p, size_t len,
			  int want)
{
	struct stp_model *m = NULL;
	uint8_t *copy = xmalloc(len);
	int rc;

	memcpy(copy, p, len);
	rc = stp_model_parse(copy, len, &m);
	ok(rc == want, "payload refused: %s (%s)", what,
	   rc < 0 ? stp_strerror(rc) : "accepted");
	if (rc >= 0)
		stp_model_free(m);
	free(copy);
}

static void test_payloads(void)
{
	uint8_t p[12 + 512], params[512], a0[12];
	struct stp_model *m = NULL, *m2 = NULL;
	const uint8_t *pl, *pl2;
	size_t len, len2, i;
	uint8_t *plane = xmalloc(50000);
	int rc;
	unsigned s;

	/* Fit, write, parse: the same payload, and the parsed model codes
	 * the same bytes as the fitted one. */
	make_drift(plane, 50000);
	for (s = 1; s <= 2; s++) {
		size_t l1, l2;
		uint8_t *b1, *b2;
		int r1, r2;

		m = fit(s, 256, plane, 50000, 320, 17);
		pl = stp_model_payload(m, &len);
		rc = stp_model_parse(pl, len, &m2);
		pl2 = rc == 0 ? stp_model_payload(m2, &len2) : NULL;
		ok(rc == 0 && len2 == len && !memcmp(pl, pl2, len) &&
		   m2->id == 7 && m2->kind == s && m2->alphabet == 256 &&
		   m2->prob_bits == (s == 1 ? 12u : 15u),
		   "%s: a fitted model's payload (%zu bytes) parses back to "
		   "the same model", stp_model_kind_name(s), len);
		b1 = encode(m, plane, 50000, 320, 17, 0, &l1, &r1);
		b2 = rc == 0 ? encode(m2, plane, 50000, 320, 17, 0, &l2, &r2)
			     : NULL;
		ok(b1 && b2 && l1 == l2 && !memcmp(b1, b2, l1),
		   "%s: the parsed model codes the same %zu bytes",
		   stp_model_kind_name(s), l1);
		free(b1);
		free(b2);
		stp_model_free(m);
		stp_model_free(m2);
		m2 = NULL;
	}

	/* order0 params: one u16 per symbol. */
	for (s = 0; s < 4; s++)
		put16(params + 2 * s, (uint32_t[]){ 4, 2, 1, 1 }[s]);
	len = payload(p, 1, 1, 4, 3, params, 8);
	rc = stp_model_parse(p, len, &m);
	ok(rc == 0 && m->alphabet == 4 && m->prob_bits == 3,
	   "order0: a hand-written payload parses");
	if (rc == 0)
		stp_model_free(m);
	for (i = 0; i < len; i++) {
		uint8_t cut[32];

		memcpy(cut, p, i);
		rc = stp_model_parse(cut, i, &m);
		if (rc >= 0)
			stp_model_free(m);
		if (rc >= 0)
			break;
	}
	ok(i == len, "order0: every proper prefix of a payload is refused");
	parse_refused("order0 params one byte long", p, len + 1, STP_EFRAME);
	p[6] = 1;
	parse_refused("reserved u16 set", p, len, STP_ERESERVED);
	p[6] = 0;
	p[11] = 0x80;
	parse_refused("reserved u8 set", p, len, STP_ERESERVED);
	p[11] = 0;
	put16(p + 4, 0);
	parse_refused("kind 0", p, len, STP_EUNSUPPORTED);
	put16(p + 4, 99);
	parse_refused("kind 99, not registered", p, len, STP_EUNSUPPORTED);
	put16(p + 4, 0xfff0);
	parse_refused("a test kind, not registered", p, len,
		      STP_EUNSUPPORTED);
	put16(p + 4, 1);
	put16(p + 8, 0);
	parse_refused("alphabet 0", p, 12, STP_EFRAME);
	put16(p + 8, 257);
	parse_refused("alphabet 257", p, len, STP_EFRAME);
	put16(p + 8, 4);
	p[10] = 0;
	parse_refused("prob_bits 0", p, len, STP_EFRAME);
	p[10] = 16;
	parse_refused("prob_bits 16", p, len, STP_EFRAME);
	p[10] = 4;
	parse_refused("order0 table summing to 2^3 with prob_bits 4", p, len,
		      STP_ECORRUPT);
	p[10] = 3;
	put16(p + 12 + 6, 2);
	parse_refused("order0 table summing to 9", p, len, STP_ECORRUPT);
	put16(p + 12 + 6, 0);
	parse_refused("order0 table summing to 7", p, len, STP_ECORRUPT);
	for (s = 0; s < 256; s++)
		put16(params + 2 * s, 0xffff);
	len = payload(p, 1, 1, 256, 15, params, 512);
	parse_refused("order0 table of 256 x 0xffff", p, len, STP_ECORRUPT);
	memset(params, 0, 512);
	put16(params + 2 * 3, 0x8000);
	len = payload(p, 1, 1, 256, 15, params, 512);
	rc = stp_model_parse(p, len, &m);
	ok(rc == 0, "order0: one symbol holding all 2^15 slots parses");
	if (rc == 0)
		stp_model_free(m);

	/* adaptive0 params: period u32, limit u32, increment u16, u16 0. */
	put32(a0, 256);
	put32(a0 + 4, 1u << 16);
	put16(a0 + 8, 32);
	put16(a0 + 10, 0);
	len = payload(p, 5, 2, 256, 15, a0, 12);
	rc = stp_model_parse(p, len, &m);
	ok(rc == 0, "adaptive0: a hand-written payload parses");
	if (rc == 0)
		stp_model_free(m);
	parse_refused("adaptive0 params one byte short", p, len - 1,
		      STP_EFRAME);
	p[22] = 1;
	parse_refused("adaptive0 reserved u16 set", p, len, STP_ERESERVED);
	p[22] = 0;
	p[10] = 7;
	parse_refused("adaptive0 alphabet 256 over 2^7 slots", p, len,
		      STP_ECORRUPT);
	p[10] = 15;
	put32(p + 12, 0);
	parse_refused("adaptive0 period 0", p, len, STP_ECORRUPT);
	put32(p + 12, (1u << 20) + 1);
	parse_refused("adaptive0 period 2^20 + 1", p, len, STP_ECORRUPT);
	put32(p + 12, 1u << 20);
	put32(p + 16, 255);
	parse_refused("adaptive0 limit below the alphabet", p, len,
		      STP_ECORRUPT);
	put32(p + 16, (1u << 24) + 1);
	parse_refused("adaptive0 limit 2^24 + 1", p, len, STP_ECORRUPT);
	put32(p + 16, 1u << 24);
	put16(p + 20, 0);
	parse_refused("adaptive0 increment 0", p, len, STP_ECORRUPT);
	put16(p + 20, 0xffff);
	rc = stp_model_parse(p, len, &m);
	ok(rc == 0, "adaptive0: the extreme valid params parse");
	if (rc == 0)
		stp_model_free(m);
	/* Counts grow to the most the spec allows, with tables built from
	 * them at every symbol or never. */
	make_drift(plane, 50000);
	for (i = 0; i < 2; i++) {
		const char *why = "parse failed";

		put32(p + 12, i ? 1u << 20 : 1);
		rc = stp_model_parse(p, len, &m);
		if (rc == 0) {
			why = roundtrip(m, plane, 50000, 64, 0, 0, NULL);
			stp_model_free(m);
		}
		ok(!why, "adaptive0 with period %s, limit 2^24, increment "
		   "65535: round trip%s%s", i ? "2^20" : "1", why ? ": " : "",
		   why ? why : "");
	}

	/* Fitting refuses what it cannot do. */
	{
		struct stp_model_plane q = { plane, 1000, 1, 0 };

		make_drift(plane, 1000);
		rc = stp_model_fit(1, 1, 100, 0, &q, 1, &m);
		ok(rc == STP_ERANGE, "fit: a symbol not below the alphabet "
		   "is refused");
		rc = stp_model_fit(1, 2, 256, 7, &q, 1, &m);
		ok(rc == STP_ERANGE, "fit: adaptive0 with 2^pb < alphabet "
		   "is refused");
		rc = stp_model_fit(1, 1, 256, 1, &q, 1, &m);
		ok(rc == STP_ERANGE, "fit: order0 with more symbols than "
		   "slots is refused");
		rc = stp_model_fit(1, 1, 256, 0, &q, 0, &m);
		ok(rc == STP_EEMPTY, "fit: order0 of no symbols is refused");
		rc = stp_model_fit(1, 9, 256, 0, &q, 1, &m);
		ok(rc == STP_EUNSUPPORTED, "fit: an unknown kind is refused");
	}

	/* One symbol: all slots, zero bits a symbol. */
	memset(plane, 3, 1000);
	m = fit(1, 4, plane, 1000, 10, 0);
	{
		size_t blen = 0;
		const char *why = roundtrip(m, plane, 1000, 10, 0, 0, &blen);

		ok(!why && blen == 6 + 4 * 32,
		   "order0 with one symbol: a %zu-byte body of states alone%s%s",
		   blen, why ? ": " : "", why ? why : "");
	}
	stp_model_free(m);

	free(plane);
}

/* Fits are integer arithmetic, the same on every machine: the payloads
 * fitted on a fixed plane are pinned. */
static void test_fit_pinned(void)
{
	static const uint32_t want[3] = { 0, 0x383d9925u, 0xa4a7faecu };
	size_t n = 100000, len, i;
	uint8_t *plane = xmalloc(n);
	const uint8_t *pl;
	unsigned kind;

	for (i = 0; i < n; i++) {
		unsigned v = (unsigned)(i * 37 % 1000);

		plane[i] = (uint8_t)(v < 500 ? 0 : v < 750 ? 1 : v < 900 ? 2
				     : v < 999 ? 3 + (i >> 14) : 20);
	}
	for (kind = 1; kind <= 2; kind++) {
		struct stp_model *m = fit(kind, 32, plane, n, 320, 5);
		uint32_t h = 2166136261u;

		pl = stp_model_payload(m, &len);
		for (i = 0; i < len; i++)
			h = (h ^ pl[i]) * 16777619u;
		ok(h == want[kind], "%s fit on a fixed plane: the pinned "
		   "payload (%zu bytes, FNV-1a %08x)",
		   stp_model_kind_name(kind), len, h);
		stp_model_free(m);
	}
	free(plane);
}

/* ---- Coding order ---- */

/* The coding order of formats/model.md, by brute force: groups of lanes
 * rows, every column, every lane. */
static size_t brute_order(size_t n, uint64_t rowlen, uint64_t column,
			  unsigned lanes, size_t *order)
{
	uint64_t rows = stp_model_rows(n, rowlen, column), g, c, k, t = 0;

	for (g = 0; g * lanes < rows; g++)
		for (c = 0; c < rowlen; c++)
			for (k = 0; k < lanes && g * lanes + k < rows; k++) {
				uint64_t r = g * lanes + k;
				uint64_t i = r * rowlen + c - column;

				if ((r == 0 && c < column) || i >= n)
					continue;
				order[t++] = (size_t)i;
			}
	return (size_t)t;
}

static void test_order(void)
{
	static const uint64_t rowlens[] = { 1, 2, 3, 7, 64, 320 };
	static const size_t ns[] = { 1, 2, 3, 5, 31, 32, 33, 100, 641, 2000 };
	size_t *want = xmalloc(2000 * sizeof *want);
	uint8_t *in = xmalloc(2000);
	struct stp_model *m = test_model(&ctx_ops, 16, 12);
	size_t cases = 0, fails = 0, a, b, c;
	unsigned lanes;

	ctx_log = xmalloc(2000 * sizeof *ctx_log);
	for (a = 0; a < sizeof rowlens / sizeof rowlens[0]; a++)
		for (b = 0; b < sizeof ns / sizeof ns[0]; b++)
			for (c = 0; c < 4; c++) {
				uint64_t rowlen = rowlens[a];
				uint64_t col = (uint64_t[]){ 0, 1, rowlen / 2,
						rowlen - 1 }[c] % rowlen;
				size_t n = ns[b], t, len;
				uint64_t rows = stp_model_rows(n, rowlen, col);
				unsigned deflanes =
					stp_model_default_lanes(n, rowlen, col);

				for (lanes = 1; lanes <= deflanes;
				     lanes = lanes < 4 ? lanes + 1 :
				     lanes * 3) {
					const char *why;

					make_columns(in, n, rowlen);
					ctx_bad = 0;
					why = roundtrip(m, in, n, rowlen, col,
							lanes, &len);
					t = brute_order(n, rowlen, col, lanes,
							want);
					cases++;
					/* The decoder's log is the last. */
					if (why || ctx_bad || t != n ||
					    ctx_logged != n ||
					    memcmp(ctx_log, want,
						   n * sizeof *want) ||
					    ctx_starts != rows) {
						if (!fails++)
							printf("# first failure: rowlen %llu column %llu n %zu lanes %u: %s\n",
							       (unsigned long long)rowlen,
							       (unsigned long long)col,
							       n, lanes, why ? why : "context");
					}
				}
				if (deflanes != (rows < 32 ? rows : 32))
					fails++;
			}
	ok(fails == 0, "coding order: %zu planes (rowlen 1..320, every "
	   "kind of first column, 1..32 lanes) visit symbols in the order "
	   "of formats/model.md, with the right context, one start_row a "
	   "row, and round trip (%zu failures)", cases, fails);
	free(ctx_log);
	ctx_log = NULL;
	stp_model_free(m);
	free(want);
	free(in);
}

/* Geometries where rows are huge or leave a gap of empty columns. */
static void test_geometry(void)
{
	static const struct {
		uint64_t rowlen, column;
		size_t n;
		uint64_t rows;
	} g[] = {
		{ 100, 90, 15, 2 },	/* columns 90..99, then 0..4 */
		{ 100, 90, 10, 1 },
		{ 100, 90, 11, 2 },
		{ (uint64_t)1 << 40, ((uint64_t)1 << 40) - 5, 10, 2 },
		{ UINT64_MAX, UINT64_MAX - 3, 9, 2 },
		{ UINT64_MAX, 0, 5000, 1 },
		{ 3, 2, 7, 3 },
		{ 1, 0, 100, 100 },
	};
	uint8_t in[5000];
	struct stp_model *m = test_model(&ctx_ops, 16, 12);
	size_t i;

	for (i = 0; i < sizeof g / sizeof g[0]; i++) {
		const char *why;

		make_columns(in, g[i].n, g[i].rowlen);
		ctx_bad = 0;
		why = roundtrip(m, in, g[i].n, g[i].rowlen, g[i].column, 0,
				NULL);
		ok(!why && !ctx_bad &&
		   stp_model_rows(g[i].n, g[i].rowlen, g[i].column) ==
			   g[i].rows,
		   "geometry rowlen %llu column %llu n %zu: %llu rows, round "
		   "trip%s%s", (unsigned long long)g[i].rowlen,
		   (unsigned long long)g[i].column, g[i].n,
		   (unsigned long long)g[i].rows, why ? ": " : "",
		   why ? why : "");
	}
	ok(stp_model_rows(0, 1, 0) == 0 && stp_model_rows(1, 0, 0) == 0 &&
	   stp_model_rows(1, 5, 5) == 0 && stp_model_default_lanes(1, 5, 5) ==
	   0, "geometry: n 0, rowlen 0 and column >= rowlen are invalid");
	stp_model_free(m);
}

/* ---- Round trips ---- */

static void test_roundtrips(void)
{
	static const uint64_t rowlens[] = { 1, 7, 64, 320 };
	static const size_t ns[] = { 1, 2, 31, 33, 1000, 4097, 100003,
				     300007 };
	uint8_t *in = xmalloc(300007);
	size_t a, b, c;
	unsigned kind;

	for (kind = 1; kind <= 3; kind++)
		for (a = 0; a < sizeof rowlens / sizeof rowlens[0]; a++) {
			uint64_t rowlen = rowlens[a];
			size_t cases = 0, fails = 0, big = 0;

			for (b = 0; b < sizeof ns / sizeof ns[0]; b++)
				for (c = 0; c < 3; c++) {
					uint64_t col = (uint64_t[]){ 0, 5,
						rowlen - 1 }[c] % rowlen;
					size_t n = ns[b], len = 0;
					struct stp_model *m;
					const char *why;
					unsigned lanes;

					if (kind == 3) {
						make_columns(in, n, rowlen);
						m = test_model(&ctx_ops, 16, 12);
					} else {
						make_drift(in, n);
						m = fit(kind, 256, in, n, rowlen,
							col);
					}
					for (lanes = 0; lanes <= 3; lanes += 3) {
						if (lanes > stp_model_default_lanes(
							    n, rowlen, col))
							continue;
						cases++;
						why = roundtrip(m, in, n, rowlen,
								col, lanes, &len);
						if (why && !fails++)
							printf("# first failure: n %zu column %llu lanes %u: %s\n",
							       n, (unsigned long long)col,
							       lanes, why);
						if (n == 300007 && !lanes && !c)
							big = len;
					}
					stp_model_free(m);
				}
			ok(fails == 0, "%s, rowlen %llu: %zu planes of 1 to "
			   "300007 symbols starting at columns 0, 5 and last, "
			   "default and 3 lanes, round trip with identical "
			   "bodies on repeated runs (300007 symbols: %zu "
			   "bytes)", kind == 3 ? "test context model"
			   : stp_model_kind_name(kind),
			   (unsigned long long)rowlen, cases, big);
		}
	free(in);
}

/* ---- Against stp_rans_encode ---- */

/* The frequencies of a method-1 body's table (formats/rans.md). */
static unsigned rans_table(const uint8_t *body, uint32_t f[256],
			   size_t *out_tlen)
{
	size_t runs = body[2], pos = 3 + 2 * runs, r;
	unsigned s = 0, k;

	memset(f, 0, 256 * sizeof f[0]);
	for (r = 0; r < runs; r++) {
		s += body[3 + 2 * r];
		for (k = 0; k <= body[4 + 2 * r]; k++) {
			uint32_t v = body[pos++];

			if (v & 0x80)
				v = (v & 0x7f) | (uint32_t)body[pos++] << 7;
			f[s++] = v;
		}
	}
	*out_tlen = pos - 1;
	return body[1];
}

static void test_vs_rans(void)
{
	size_t n = 200007, cap = stp_rans_bound(n), rlen = 0, tlen, glen;
	size_t est = 0;
	uint8_t *in = xmalloc(n), *rbody = xmalloc(cap), params[512];
	uint32_t f[256];
	struct stp_model *m = NULL, *fm;
	struct stp_model_plane p = { in, n, 1, 0 };
	const char *why;
	unsigned pb, s;
	long words_r, words_g;
	int rc;

	make_drift(in, n);
	rc = stp_rans_encode(in, n, rbody, cap, &rlen);
	ok(rc == 0 && rbody[0] == STP_RANS_ORDER0,
	   "stp_rans_encode: %zu symbols as a %zu-byte method-1 body", n,
	   rlen);
	pb = rans_table(rbody, f, &tlen);
	for (s = 0; s < 256; s++)
		put16(params + 2 * s, f[s]);
	rc = stp_model_create(1, STP_MODEL_ORDER0, 256, pb, params, 512, &m);
	ok(rc == 0, "order0 model with stp_rans_encode's table (pb %u)", pb);
	if (rc < 0)
		return;
	/* rowlen 1: 32 lanes, symbol i in lane i mod 32, as in method 1.
	 * Only the start states differ, so the words may differ by what
	 * the final states absorb: a few bytes a lane. */
	why = roundtrip(m, in, n, 1, 0, 0, &glen);
	words_r = (long)rlen - 1 - (long)tlen - 128;
	words_g = (long)glen - 6 - 128;
	ok(!why && labs(words_r - words_g) <= 2 * 32,
	   "the same table through the generic coder, rowlen 1: %zu bytes "
	   "(%ld of words, method 1: %ld)", glen, words_g, words_r);
	why = roundtrip(m, in, n, 320, 0, 0, &glen);
	words_g = (long)glen - 6 - 128;
	ok(!why && labs(words_r - words_g) <= 2 * 32,
	   "the same table, rows of 320: %zu bytes (%ld of words, method "
	   "1: %ld)", glen, words_g, words_r);
	rc = stp_model_estimate(m, &p, 0, &est);
	ok(rc == 0 && est + 64 >= glen && est <= glen + 64,
	   "estimate %zu bytes against %zu coded", est, glen);

	/* A fitted order0 model at pb 12 does as well as method 1. */
	fm = fit(STP_MODEL_ORDER0, 256, in, n, 1, 0);
	why = roundtrip(fm, in, n, 1, 0, 0, &glen);
	ok(!why && glen <= rlen + 64,
	   "fitted order0 (pb %u): %zu bytes against method 1's %zu",
	   fm->prob_bits, glen, rlen);
	stp_model_free(fm);
	fm = fit(STP_MODEL_ADAPTIVE0, 256, in, n, 1, 0);
	why = roundtrip(fm, in, n, 320, 0, 0, &glen);
	ok(!why && glen < rlen,
	   "fitted adaptive0 on drifting data: %zu bytes against method 1's "
	   "%zu", glen, rlen);
	stp_model_free(fm);
	stp_model_free(m);
	free(in);
	free(rbody);
}

/* ---- Hostile bodies and wrong models ---- */

static void refuse(const char *what, const struct stp_model *m,
		   const uint8_t *body, size_t len, size_t n, uint64_t rowlen,
		   uint64_t column, int want)
{
	int rc = decode_exact(m, body, len, n, rowlen, column, NULL);

	ok(rc < 0 && (!want || rc == want), "refused: %s (%s)", what,
	   rc < 0 ? stp_strerror(rc) : "accepted");
}

static void hostile(unsigned kind, size_t n, uint64_t rowlen,
		    uint64_t column)
{
	uint8_t *in = xmalloc(n), *body, *bad;
	struct stp_model *m, *other;
	const char *name = stp_model_kind_name(kind);
	size_t len = 0, i, lanes, accepted = 0, total = 0, trunc_ok = 0;
	int rc;

	make_drift(in, n);
	m = fit(kind, 256, in, n, rowlen, column);
	body = encode(m, in, n, rowlen, column, 0, &len, &rc);
	if (!body) {
		ok(0, "%s hostile base", name);
		return;
	}
	lanes = body[5];
	bad = xmalloc(len + 2);

	/* Every proper prefix (all of them for a small body, a sample of a
	 * big one). */
	for (i = 0; i < len; i += len < 3000 ? 1 : 1 + len / 100)
		if (decode_exact(m, body, i, n, rowlen, column, NULL) >= 0)
			trunc_ok++;
	ok(trunc_ok == 0, "%s n=%zu: every truncation refused", name, n);

	/* Flips of every byte (a body has no checksum; flips that
	 * resynchronise are what the frame's CRC-32 is for): the header
	 * and the states always refused, the rest nearly always. */
	{
		int head_refused = 1;

		for (i = 0; i < len; i += len < 3000 ? 1 : 1 + len / 400) {
			memcpy(bad, body, len);
			bad[i] ^= (uint8_t)(1u << (i % 8));
			rc = decode_exact(m, bad, len, n, rowlen, column, NULL);
			total++;
			if (rc >= 0) {
				accepted++;
				if (i < 6 + 4 * lanes)
					head_refused = 0;
			}
		}
		ok(head_refused, "%s n=%zu: every flip of the header and "
		   "states refused", name, n);
		ok(accepted * 100 < total, "%s n=%zu: flipped bodies "
		   "accepted: %zu of %zu (under 1%%)", name, n, accepted,
		   total);
	}

	memcpy(bad, body, len);
	bad[len] = 0;
	refuse("one trailing byte", m, bad, len + 1, n, rowlen, column,
	       STP_ECORRUPT);
	bad[len + 1] = 0;
	refuse("one trailing word", m, bad, len + 2, n, rowlen, column,
	       STP_ECORRUPT);
	refuse("n one too small", m, body, len, n - 1, rowlen, column, 0);
	refuse("n one too large", m, body, len, n + 1, rowlen, column, 0);
	refuse("n of 0", m, body, len, 0, rowlen, column, STP_ECORRUPT);
	refuse("n over the limit", m, body, len, STP_RANS_MAX_N + 1, rowlen,
	       column, STP_ETOOBIG);
	refuse("another rowlen", m, body, len, n, rowlen + 1, column, 0);
	refuse("another column", m, body, len, n, rowlen, column + 1, 0);
	refuse("rowlen 0", m, body, len, n, 0, 0, STP_ECORRUPT);
	refuse("column >= rowlen", m, body, len, n, rowlen, rowlen,
	       STP_ECORRUPT);
	memcpy(bad, body, len);
	bad[0] = STP_RANS_ORDER0;
	refuse("method 1", m, bad, len, n, rowlen, column, STP_EUNSUPPORTED);
	bad[0] = STP_RANS_MODEL;
	bad[5] = 0;
	refuse("0 lanes", m, bad, len, n, rowlen, column, STP_ECORRUPT);
	bad[5] = 33;
	refuse("33 lanes", m, bad, len, n, rowlen, column, STP_ECORRUPT);
	memcpy(bad, body, len);
	put32(bad + 6, 0x7fff);
	refuse("state below 2^15", m, bad, len, n, rowlen, column,
	       STP_ECORRUPT);
	put32(bad + 6, 0x80000000u);
	refuse("state at 2^31", m, bad, len, n, rowlen, column,
	       STP_ECORRUPT);

	/* The right id, another model. */
	other = fit(kind == 1 ? 2 : 1, 256, in, n, rowlen, column);
	refuse("a model of another kind with the same id", other, body, len,
	       n, rowlen, column, 0);
	stp_model_free(other);
	{
		uint8_t *p2;
		size_t plen;
		const uint8_t *pl = stp_model_payload(m, &plen);

		p2 = xmalloc(plen);
		memcpy(p2, pl, plen);
		put32(p2, 8);
		rc = stp_model_parse(p2, plen, &other);
		if (rc == 0) {
			refuse("the same model under another id", other, body,
			       len, n, rowlen, column, STP_ECORRUPT);
			stp_model_free(other);
		}
		/* A last byte one up: order0's table no longer sums right;
		 * adaptive0's reserved field is set. */
		memcpy(p2, pl, plen);
		p2[plen - 1]++;
		rc = stp_model_parse(p2, plen, &other);
		ok(rc < 0, "%s: the payload with its last byte changed is "
		   "refused (%s)", name, rc < 0 ? stp_strerror(rc) : "accepted");
		if (rc == 0)
			stp_model_free(other);
		free(p2);
	}
	free(in);
	free(body);
	free(bad);
	stp_model_free(m);
}

/* ---- ctx ---- */

/* Exponent-like symbols below 16 with row and column scales: each row
 * and each column has an offset, and a symbol is the sum of the two and
 * a noise of a few exponents, clamped, in rows of rowlen. */
static void make_scaled(uint8_t *buf, size_t n, uint64_t rowlen,
			unsigned alphabet)
{
	int col[1024], row = 0;
	size_t i;

	for (i = 0; i < 1024; i++)
		col[i] = (int)(next() % 5) - 2;
	for (i = 0; i < n; i++) {
		int v;

		if (i % rowlen == 0)
			row = (int)(next() % 5) - 2;
		v = (int)alphabet / 2 + row + col[i % rowlen % 1024] +
		    (int)(next() % 4) - (int)(next() % 4);
		buf[i] = (uint8_t)(v < 0 ? 0 : v >= (int)alphabet
						  ? (int)alphabet - 1 : v);
	}
}

static void ctx_params_refused(const char *what, unsigned alphabet,
			       unsigned pb, const uint8_t *params,
			       size_t plen, int want)
{
	uint8_t p[12 + 32];
	size_t len = payload(p, 1, STP_MODEL_CTX, alphabet, pb, params, plen);

	parse_refused(what, p, len, want);
}

/* Its params refused as formats/model.md says, and the fast path giving
 * the bytes of predict and update, both ways, on many geometries. */
static void test_ctx(void)
{
	static const uint64_t rowlens[] = { 1, 7, 64, 320, 1000, 70000 };
	static const size_t ns[] = { 1, 33, 1000, 50021, 300007 };
	static const unsigned alphabets[] = { 16, 32, 256 };
	uint8_t good[16], bad[16], *in = xmalloc(300007);
	size_t cases = 0, fails = 0;

	stp_ctx_params_build(good, 2, 5, 5, 256, 1u << 16, 32);
	{
		uint8_t p[12 + 16];
		struct stp_model *m = NULL;
		size_t len = payload(p, 1, STP_MODEL_CTX, 16, 12, good, 16);
		int rc = stp_model_parse(p, len, &m);

		ok(rc == 0, "ctx: the default params parse");
		stp_model_free(m);
	}
	ctx_params_refused("ctx: 15 bytes of params", 16, 12, good, 15,
			   STP_EFRAME);
	memcpy(bad, good, 16);
	bad[3] = 1;
	ctx_params_refused("ctx: reserved byte 3 set", 16, 12, bad, 16,
			   STP_ERESERVED);
	memcpy(bad, good, 16);
	bad[15] = 1;
	ctx_params_refused("ctx: reserved u16 set", 16, 12, bad, 16,
			   STP_ERESERVED);
	ctx_params_refused("ctx: pb 13", 16, 13, good, 16, STP_ECORRUPT);
	ctx_params_refused("ctx: 2^pb below the alphabet", 256, 7, good, 16,
			   STP_ECORRUPT);
	stp_ctx_params_build(bad, 4, 5, 5, 256, 1u << 16, 32);
	ctx_params_refused("ctx: qbits 4", 16, 12, bad, 16, STP_ECORRUPT);
	stp_ctx_params_build(bad, 2, 0, 5, 256, 1u << 16, 32);
	ctx_params_refused("ctx: row shift 0", 16, 12, bad, 16, STP_ECORRUPT);
	stp_ctx_params_build(bad, 2, 5, 13, 256, 1u << 16, 32);
	ctx_params_refused("ctx: column shift 13", 16, 12, bad, 16,
			   STP_ECORRUPT);
	stp_ctx_params_build(bad, 2, 5, 5, 0, 1u << 16, 32);
	ctx_params_refused("ctx: period 0", 16, 12, bad, 16, STP_ECORRUPT);
	stp_ctx_params_build(bad, 2, 5, 5, 256, 15, 32);
	ctx_params_refused("ctx: limit below the alphabet", 16, 12, bad, 16,
			   STP_ECORRUPT);
	stp_ctx_params_build(bad, 2, 5, 5, 256, 1u << 16, 0);
	ctx_params_refused("ctx: increment 0", 16, 12, bad, 16, STP_ECORRUPT);

	for (size_t a = 0; a < sizeof alphabets / sizeof alphabets[0]; a++)
		for (size_t r = 0; r < sizeof rowlens / sizeof rowlens[0]; r++)
			for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++) {
				uint64_t rowlen = rowlens[r];
				uint64_t col = (b * 7) % rowlen;
				size_t n = ns[b], len[2] = { 0, 0 };
				uint8_t *body[2], *out = NULL;
				struct stp_model *m = NULL;
				unsigned lanes = b % 2 ? 0 : 1 + (unsigned)(b % 5);
				int rc;

				if (lanes > stp_model_default_lanes(n, rowlen, col))
					lanes = 0;
				make_scaled(in, n, rowlen, alphabets[a]);
				rc = stp_model_create(1, STP_MODEL_CTX,
						      alphabets[a], 12, good, 16,
						      &m);
				cases++;
				for (int gen = 0; gen < 2; gen++) {
					stp_model_force_generic(gen);
					body[gen] = encode(m, in, n, rowlen, col,
							   lanes, &len[gen], &rc);
				}
				if (!body[0] || !body[1] || len[0] != len[1] ||
				    memcmp(body[0], body[1], len[0])) {
					if (!fails++)
						printf("# first failure: A %u rowlen %llu n %zu: bodies differ\n",
						       alphabets[a], (unsigned long long)rowlen, n);
				} else {
					for (int gen = 0; gen < 2; gen++) {
						stp_model_force_generic(gen);
						rc = decode_exact(m, body[0], len[0], n,
								  rowlen, col, &out);
						if (rc < 0 || memcmp(out, in, n)) {
							if (!fails++)
								printf("# first failure: A %u rowlen %llu n %zu: %s decode\n",
								       alphabets[a], (unsigned long long)rowlen, n,
								       gen ? "generic" : "fast");
						}
						free(out);
						out = NULL;
					}
				}
				free(body[0]);
				free(body[1]);
				stp_model_free(m);
			}
	stp_model_force_generic(0);
	ok(fails == 0, "ctx: %zu planes (alphabets 16, 32, 256; rows of 1 "
	   "to 70000; 1 to 300007 symbols; 1 to 5 lanes): the fast path "
	   "writes the bytes of predict and update, and each decodes the "
	   "other's", cases);

	/* It learns: rows and columns with offsets code well below their
	 * order-0 entropy. */
	{
		struct stp_model *m = NULL;
		size_t n = 300007, len = 0;
		uint8_t *body;
		int rc;
		double h0 = 0;
		size_t cnt[16] = { 0 };

		make_scaled(in, n, 320, 16);
		for (size_t i = 0; i < n; i++)
			cnt[in[i]]++;
		for (int s = 0; s < 16; s++)
			if (cnt[s])
				h0 += (double)cnt[s] *
				      log2((double)n / (double)cnt[s]);
		stp_model_create(1, STP_MODEL_CTX, 16, 12, good, 16, &m);
		body = encode(m, in, n, 320, 0, 0, &len, &rc);
		ok(body && 8.0 * (double)len < 0.9 * h0,
		   "ctx: scaled rows and columns in %.3f bits a symbol, "
		   "order-0 entropy %.3f", 8.0 * (double)len / (double)n,
		   h0 / (double)n);
		free(body);
		stp_model_free(m);
	}
	free(in);
}

static void test_hostile(void)
{
	hostile(STP_MODEL_CTX, 2000, 64, 10);
	hostile(STP_MODEL_CTX, 100000, 320, 300);
	hostile(STP_MODEL_ORDER0, 2000, 64, 10);
	hostile(STP_MODEL_ADAPTIVE0, 2000, 64, 10);
	hostile(STP_MODEL_ORDER0, 100000, 320, 0);
	hostile(STP_MODEL_ADAPTIVE0, 100000, 320, 300);
}

/* Models whose tables are invalid, and symbols a model cannot code. */
static void test_bad_models(void)
{
	static const struct {
		enum bad_mode mode;
		const char *what;
		int want;
	} modes[] = {
		{ BAD_SUM_LOW, "a table summing to 2^pb - 1", STP_ECORRUPT },
		{ BAD_SUM_HIGH, "a table summing to 2^pb + 1", STP_ECORRUPT },
		{ BAD_NULL, "no table", STP_ECORRUPT },
		{ BAD_WRAP, "a table summing to 2^pb modulo 2^32",
		  STP_ECORRUPT },
		{ BAD_ERROR, "an error from the model", STP_ENOMEM },
	};
	uint8_t in[1000], *body;
	struct stp_model *m = test_model(&bad_ops, 4, 4), *o0;
	size_t len = 0, i, k, cap = stp_model_bound(1000);
	int rc;

	for (i = 0; i < sizeof in; i++)
		in[i] = (uint8_t)(next() & 3);
	bad_mode = BAD_NONE;
	body = encode(m, in, sizeof in, 10, 0, 0, &len, &rc);
	ok(body != NULL, "test model: a good %zu-byte body", len);
	for (i = 0; i < sizeof modes / sizeof modes[0]; i++)
		for (k = 0; k < 2; k++) {
			struct stp_model_plane p = { in, sizeof in, 10, 0 };
			uint8_t *out = xmalloc(cap);
			size_t got;

			bad_mode = modes[i].mode;
			bad_after = k ? 500 : 0;
			rc = stp_model_encode(m, &p, 0, out, cap, &got);
			ok(rc == modes[i].want, "encoder refuses %s%s (%s)",
			   modes[i].what, k ? " at symbol 500" : "",
			   stp_strerror(rc));
			rc = decode_exact(m, body, len, sizeof in, 10, 0, NULL);
			ok(rc == modes[i].want, "decoder refuses %s%s (%s)",
			   modes[i].what, k ? " at symbol 500" : "",
			   stp_strerror(rc));
			free(out);
		}
	bad_mode = BAD_NONE;
	free(body);

	/* Symbols an order0 model gives no slot, or beyond its alphabet. */
	memset(in, 1, sizeof in);
	in[0] = 2;
	o0 = fit(STP_MODEL_ORDER0, 3, in, sizeof in, 1, 0);
	in[999] = 0;
	body = encode(o0, in, sizeof in, 1, 0, 0, &len, &rc);
	ok(!body && rc == STP_ERANGE,
	   "encoder refuses a symbol of frequency 0 (%s)", stp_strerror(rc));
	free(body);
	in[999] = 3;
	body = encode(o0, in, sizeof in, 1, 0, 0, &len, &rc);
	ok(!body && rc == STP_ERANGE,
	   "encoder refuses a symbol beyond the alphabet (%s)",
	   stp_strerror(rc));
	free(body);
	in[999] = 1;
	body = encode(o0, in, sizeof in, 1, 0, 33, &len, &rc);
	ok(!body && rc == STP_ERANGE, "encoder refuses 33 lanes");
	free(body);
	body = encode(o0, in, 0, 1, 0, 0, &len, &rc);
	ok(!body && rc == STP_EEMPTY, "encoder refuses an empty plane");
	free(body);
	{
		struct stp_model_plane p = { in, sizeof in, 1, 0 };
		uint8_t small[100];
		size_t got;

		rc = stp_model_encode(o0, &p, 0, small, sizeof small, &got);
		ok(rc == STP_ETOOBIG, "encoder refuses a buffer too small "
		   "(%s)", stp_strerror(rc));
	}
	stp_model_free(o0);
	stp_model_free(m);
}

/* ---- Test vectors of formats/model.md ---- */

static const uint8_t vec_order0_model[] = {
	0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x03,
	0x00, 0x04, 0x00, 0x02, 0x00, 0x01, 0x00, 0x01, 0x00
};

static const uint8_t vec_adaptive0_model[] = {
	0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x04, 0x00, 0x05,
	0x00, 0x04, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x08, 0x00,
	0x00, 0x00
};

static const uint8_t vec_order0_body[] = {
	0x04, 0x01, 0x00, 0x00, 0x00, 0x02, 0x30, 0xe6, 0x4f, 0x1a, 0x9a,
	0x7f, 0x69, 0x00, 0x68, 0xe2, 0x71, 0x84, 0xce, 0x91
};

static const uint8_t vec_adaptive0_body[] = {
	0x04, 0x02, 0x00, 0x00, 0x00, 0x02, 0xa2, 0xbd, 0x09, 0x00, 0x47,
	0xfc, 0x00, 0x17, 0xf0, 0xca, 0xab, 0x11, 0x6a, 0x05, 0x3a, 0x57
};

static void vector_input(uint8_t *in, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned v = (unsigned)(i * 37 % 100);

		in[i] = v < 50 ? 0 : v < 75 ? 1 : v < 90 ? 2 : 3;
	}
}

static void vector(const char *what, const uint8_t *model, size_t mlen,
		   const uint8_t *want, size_t wlen)
{
	uint8_t in[40], *body, *out = NULL;
	struct stp_model *m = NULL;
	size_t len = 0;
	int rc;

	vector_input(in, sizeof in);
	rc = stp_model_parse(model, mlen, &m);
	ok(rc == 0, "%s vector: the MODEL payload parses", what);
	if (rc < 0)
		return;
	body = encode(m, in, sizeof in, 7, 3, 2, &len, &rc);
	ok(body && len == wlen && !memcmp(body, want, wlen),
	   "%s vector: the encoder writes formats/model.md's bytes", what);
	if (body && (len != wlen || memcmp(body, want, wlen))) {
		size_t i;

		printf("#");
		for (i = 0; i < len; i++)
			printf(" %02x", body[i]);
		printf("\n");
	}
	rc = decode_exact(m, want, wlen, sizeof in, 7, 3, &out);
	ok(rc == 0 && !memcmp(out, in, sizeof in),
	   "%s vector: the decoder reads them", what);
	free(out);
	free(body);
	stp_model_free(m);
}

static void test_vectors(void)
{
	vector("order0", vec_order0_model, sizeof vec_order0_model,
	       vec_order0_body, sizeof vec_order0_body);
	vector("adaptive0", vec_adaptive0_model, sizeof vec_adaptive0_model,
	       vec_adaptive0_body, sizeof vec_adaptive0_body);
}

int main(void)
{
	test_registry();
	test_payloads();
	test_fit_pinned();
	test_vectors();
	test_order();
	test_geometry();
	test_bad_models();
	test_hostile();
	test_ctx();
	test_vs_rans();
	test_roundtrips();
	printf("1..%d\n", ntest);
	if (nfail)
		printf("# %d of %d failed\n", nfail, ntest);
	return nfail ? 1 : 0;
}
