/* The ctx model kind (formats/model.md, "ctx"): adaptive order-0 counts
 * in contexts made from what the rows above say about a symbol's column
 * and what its row so far says about the row.  The predict and update
 * operations are the reference; ctx_forward and ctx_decode run a whole
 * plane in one loop with the same arithmetic (tests check that both give
 * the same bytes). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model.h"
#include "model_feat.h"
#include "model_walk.h"

#define CTX_PARAMS 16
#define CTX_MAX_PB 12		/* a context keeps a 2^pb lookup table */
#define CTX_MAX_SHIFT 12
#define CTX_MAX_QBITS 3
#define CTX_MAX_PERIOD ((uint32_t)1 << 20)
#define CTX_MAX_LIMIT ((uint32_t)1 << 24)

static uint32_t get16(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t get32(const uint8_t *p)
{
	return get16(p) | get16(p + 2) << 16;
}

struct ctx_params {
	unsigned qbits, row_shift, col_shift;
	uint32_t period, limit, inc;
};

int stp_ctx_params_build(uint8_t out[16], unsigned qbits, unsigned row_shift,
			 unsigned col_shift, uint32_t period, uint32_t limit,
			 uint32_t inc)
{
	memset(out, 0, CTX_PARAMS);
	out[0] = (uint8_t)qbits;
	out[1] = (uint8_t)row_shift;
	out[2] = (uint8_t)col_shift;
	for (int k = 0; k < 4; k++) {
		out[4 + k] = (uint8_t)(period >> (8 * k));
		out[8 + k] = (uint8_t)(limit >> (8 * k));
	}
	out[12] = (uint8_t)inc;
	out[13] = (uint8_t)(inc >> 8);
	return CTX_PARAMS;
}

static int ctx_parse(struct stp_model *m, const uint8_t *params, size_t len)
{
	struct ctx_params *c;

	if (len != CTX_PARAMS)
		return STP_EFRAME;
	if (params[3] || get16(params + 14))
		return STP_ERESERVED;
	if ((1u << m->prob_bits) < m->alphabet || m->prob_bits > CTX_MAX_PB ||
	    m->alphabet < 2)
		return STP_ECORRUPT;
	c = malloc(sizeof *c);
	if (!c)
		return STP_ENOMEM;
	c->qbits = params[0];
	c->row_shift = params[1];
	c->col_shift = params[2];
	c->period = get32(params + 4);
	c->limit = get32(params + 8);
	c->inc = get16(params + 12);
	if (c->qbits > CTX_MAX_QBITS || c->row_shift < 1 ||
	    c->row_shift > CTX_MAX_SHIFT || c->col_shift < 1 ||
	    c->col_shift > CTX_MAX_SHIFT || c->period < 1 ||
	    c->period > CTX_MAX_PERIOD || c->limit < m->alphabet ||
	    c->limit > CTX_MAX_LIMIT || c->inc < 1) {
		free(c);
		return STP_ECORRUPT;
	}
	m->priv = c;
	return 0;
}

/* One context: adaptive0's counts and table, with the slot lookup the
 * fast decoder reads: the symbol of the first slot of each bucket of
 * 2^LUT_SHIFT(pb) slots, a byte, from which the decoder steps up to the
 * slot's symbol (rarely more than one step).  At most 256 bytes, so that
 * the contexts in use stay in L1; a byte per slot (4 KiB at pb 12) was
 * measured slower where L1 holds fewer of them.  cnt, freq, cum and lut
 * follow the struct. */
struct cx {
	uint32_t total, since;
	uint32_t *cnt, *freq, *cum;
	uint8_t *lut;
};

struct ctx_state {
	struct ctx_params p;
	unsigned alphabet, pb, lanes, nq;
	struct feat f;
	struct cx **ctx;		/* nq contexts, made on first use */
	uint8_t *arena;
	size_t arena_used, cx_size;
};

#define LUT_SHIFT(pb) ((pb) > 8 ? (pb) - 8 : 0)

static size_t cx_size(unsigned alphabet, unsigned pb)
{
	size_t n = sizeof(struct cx) + 3 * sizeof(uint32_t) * alphabet +
		   sizeof(uint32_t) + ((size_t)1 << (pb - LUT_SHIFT(pb)));

	return (n + 63) & ~(size_t)63;
}

/* formats/model.md, adaptive0's build, then the starts and the lookup. */
static void cx_build(struct cx *c, unsigned alphabet, unsigned pb)
{
	uint32_t m = 1u << pb, spare = m - alphabet, sum = 0;
	uint64_t r = ((uint64_t)spare << 32) / c->total;
	const uint32_t *restrict cnt = c->cnt;
	uint32_t *restrict freq = c->freq, *restrict cum = c->cum;
	uint8_t *restrict lut = c->lut;
	const unsigned ls = LUT_SHIFT(pb);
	unsigned s, top = 0;
	uint32_t best = cnt[0], b = 0;

	for (s = 0; s < alphabet; s++) {
		freq[s] = 1 + (uint32_t)(cnt[s] * r >> 32);
		sum += freq[s];
	}
	for (s = 1; s < alphabet; s++)
		if (cnt[s] > best) {
			best = cnt[s];
			top = s;
		}
	freq[top] += m - sum;
	sum = 0;
	for (s = 0; s < alphabet; s++) {
		cum[s] = sum;
		sum += freq[s];
		/* the buckets whose first slot is s's */
		for (; b << ls < sum; b++)
			lut[b] = (uint8_t)s;
	}
	cum[alphabet] = sum;
}

static __attribute__((noinline)) struct cx *cx_make(struct ctx_state *st,
						    unsigned q)
{
	struct cx *c = (struct cx *)(st->arena + st->arena_used);
	unsigned s;

	st->arena_used += st->cx_size;
	c->cnt = (uint32_t *)(c + 1);
	c->freq = c->cnt + st->alphabet;
	c->cum = c->freq + st->alphabet;
	c->lut = (uint8_t *)(c->cum + st->alphabet + 1);
	for (s = 0; s < st->alphabet; s++)
		c->cnt[s] = 1;
	c->total = st->alphabet;
	c->since = 0;
	cx_build(c, st->alphabet, st->pb);
	st->ctx[q] = c;
	return c;
}

static inline struct cx *cx_get(struct ctx_state *st, unsigned q)
{
	struct cx *c = st->ctx[q];

	return c ? c : cx_make(st, q);
}

static void ctx_close(void *state)
{
	struct ctx_state *st = state;

	if (!st)
		return;
	feat_close(&st->f);
	free(st->ctx);
	free(st->arena);
	free(st);
}

static int ctx_open(const struct stp_model *m, const struct stp_model_geom *g,
		    void **out_state)
{
	struct ctx_state *st = calloc(1, sizeof *st);

	if (!st)
		return STP_ENOMEM;
	st->p = *(const struct ctx_params *)m->priv;
	st->alphabet = m->alphabet;
	st->pb = m->prob_bits;
	st->lanes = g->lanes;
	st->nq = (m->alphabet << st->p.qbits) + 1;
	st->cx_size = cx_size(m->alphabet, m->prob_bits);
	if (feat_open(&st->f, m->alphabet, st->p.row_shift, st->p.col_shift,
		      g) < 0) {
		free(st);
		return STP_ENOMEM;
	}
	/* The arena is only touched as contexts are made, so its untouched
	 * pages cost nothing. */
	st->ctx = calloc(st->nq, sizeof *st->ctx);
	st->arena = malloc(st->nq * st->cx_size);
	if (!st->ctx || !st->arena) {
		ctx_close(st);
		return STP_ENOMEM;
	}
	*out_state = st;
	return 0;
}

/* The context of a symbol whose column mean is cm, in lane k. */
static inline unsigned context(const struct ctx_state *st, int32_t cm,
			       unsigned k)
{
	int32_t mu = feat_mu(&st->f, cm, k);
	unsigned sh = 8 - st->p.qbits;
	uint32_t q;

	if (mu < 0)
		return 0;
	q = ((uint32_t)mu + (1u << (sh - 1))) >> sh;
	return q < st->nq ? q : st->nq - 1;
}

/* Halves a context's counts when their total passes the limit. */
static __attribute__((noinline)) void halve(struct ctx_state *st,
					    struct cx *c)
{
	c->total = 0;
	for (unsigned t = 0; t < st->alphabet; t++) {
		c->cnt[t] = (c->cnt[t] + 1) >> 1;
		c->total += c->cnt[t];
	}
}

/* Everything that follows coding symbol s in context c, lane k, column
 * col, with column mean cm. */
static inline __attribute__((always_inline)) void learn(
	struct ctx_state *st, struct cx *c, unsigned k, uint64_t col,
	int32_t cm, unsigned s)
{
	c->cnt[s] += st->p.inc;
	c->total += st->p.inc;
	if (c->total > st->p.limit)
		halve(st, c);
	if (++c->since == st->p.period) {
		c->since = 0;
		cx_build(c, st->alphabet, st->pb);
	}
	feat_learn(&st->f, k, col, cm, s);
}

/* ---- The reference: predict and update ---- */

static void ctx_start_row(void *state, const struct stp_model_ctx *ctx)
{
	struct ctx_state *st = state;

	feat_row(&st->f, ctx->lane);
}

static int ctx_predict(void *state, const struct stp_model_ctx *ctx,
		       const uint32_t **out_freq)
{
	struct ctx_state *st = state;
	uint64_t g = ctx->row / st->lanes;

	if (st->f.group != g + 1)
		feat_group(&st->f, g);
	*out_freq = cx_get(st, context(st, feat_col(&st->f, ctx->col),
				       ctx->lane))->freq;
	return 1;
}

static void ctx_update(void *state, const struct stp_model_ctx *ctx,
		       unsigned symbol)
{
	struct ctx_state *st = state;
	int32_t cm = feat_col(&st->f, ctx->col);

	learn(st, cx_get(st, context(st, cm, ctx->lane)), ctx->lane,
	      ctx->col, cm, symbol);
}

/* ---- The fast path: a whole plane in one loop ---- */

enum { RUN_COST, RUN_PAIRS, RUN_DECODE };

/* Runs the model over the plane in coding order, as the generic coder
 * does through predict and update, without asking per symbol: the cost
 * in *out_bits (RUN_COST), the encoder's pairs and lane_of (RUN_PAIRS),
 * or decoding into out (RUN_DECODE).  The arithmetic is feat_learn's
 * and learn's, with what a column step shares kept in locals: the
 * column mean told (the rows above change only between groups), the
 * live column mean and its count (every lane of the step updates the
 * same column, in lane order), the rows' offsets and the plane's sum. */
static inline __attribute__((always_inline)) int ctx_body(
	const struct stp_model *m, const struct walk *w, struct ctx_state *st,
	int mode, const uint8_t *plane, uint32_t *pairs, uint8_t *lane_of,
	uint64_t *out_bits, uint32_t x[], const uint8_t **pp,
	const uint8_t *end, uint8_t *out)
{
	struct feat *f = &st->f;
	const uint8_t *p = mode == RUN_DECODE ? *pp : NULL;
	const unsigned pb = m->prob_bits, alphabet = m->alphabet;
	const unsigned rsh = f->row_shift, csh = f->col_shift;
	const unsigned qsh = 8 - st->p.qbits, nq = st->nq;
	const uint32_t mask = (1u << pb) - 1, inc = st->p.inc;
	const unsigned ls = LUT_SHIFT(pb);
	const uint32_t limit = st->p.limit, period = st->p.period;
	const int columns = f->columns;
	uint64_t bits = 0, pbq = (uint64_t)pb << 24, g, c;
	struct cx **ctx = st->ctx;
	size_t tpos = 0;
	int32_t r[STP_MODEL_MAX_LANES];
	uint32_t rn[STP_MODEL_MAX_LANES];

	for (g = 0; g < ngroups(w); g++) {
		struct group gr;
		uint64_t sum = 0, count = 0;

		group_init(w, g, &gr);
		feat_group(f, g);
		for (unsigned sp = 0; sp < gr.nspans; sp++)
			for (c = gr.span[sp][0]; c <= gr.span[sp][1]; c++) {
				const int32_t cm = feat_col(f, c);
				int32_t cn = columns ? f->cn[c] : 0;
				uint32_t nn = columns ? f->nn[c] : 0;

				for (unsigned k = 0; k < gr.nl; k++) {
					size_t i;
					int32_t mu, d;
					uint32_t q;
					struct cx *cx;
					unsigned s;

					if (c < gr.lo[k] || c > gr.hi[k])
						continue;
					i = (size_t)(gr.base[k] + c);
					if (c == gr.lo[k]) {
						r[k] = 0;
						rn[k] = 0;
					}
					mu = cm + r[k];
					if (mu < 0) {
						q = 0;
					} else {
						q = ((uint32_t)mu +
						     (1u << (qsh - 1))) >> qsh;
						if (q >= nq)
							q = nq - 1;
					}
					cx = ctx[q];
					if (!cx)
						cx = cx_make(st, q);
					if (mode != RUN_DECODE) {
						s = plane[i];
						if (s >= alphabet)
							return STP_ERANGE;
						if (mode == RUN_PAIRS) {
							pairs[tpos] = cx->cum[s] |
								cx->freq[s] << 16;
							lane_of[tpos++] =
								(uint8_t)k;
						} else {
							bits += pbq -
								stp_model_log2_fast(
									cx->freq[s]);
						}
					} else {
						uint32_t slot = x[k] & mask, v;

						s = cx->lut[slot >> ls];
						while (slot >= cx->cum[s + 1])
							s++;
						v = cx->freq[s] * (x[k] >> pb) +
						    slot - cx->cum[s];
						if (v < 1u << 15) {
							if (end - p < 2)
								return STP_ETRUNCATED;
							v = v << 16 |
							    (uint32_t)p[0] |
							    (uint32_t)p[1] << 8;
							p += 2;
						}
						x[k] = v;
						out[i] = (uint8_t)s;
					}
					/* learn() */
					cx->cnt[s] += inc;
					cx->total += inc;
					if (cx->total > limit)
						halve(st, cx);
					if (++cx->since == period) {
						cx->since = 0;
						cx_build(cx, alphabet, pb);
					}
					/* feat_learn() */
					d = (int32_t)(s << 8) - cm - r[k];
					if (rn[k] < 1u << rsh)
						r[k] += d / (int32_t)++rn[k];
					else
						r[k] += floor_shift(d, rsh);
					if (columns) {
						d = (int32_t)(s << 8) - cn;
						if (nn < 1u << csh)
							cn += d / (int32_t)++nn;
						else
							cn += floor_shift(d, csh);
					}
					sum += s;
				}
				if (columns) {
					f->cn[c] = cn;
					f->nn[c] = (uint16_t)nn;
				}
			}
		/* Every lane's symbols of the group are counted once. */
		for (unsigned k = 0; k < gr.nl; k++)
			count += gr.hi[k] - gr.lo[k] + 1;
		f->sum += sum;
		f->count += count;
	}
	if (mode == RUN_COST)
		*out_bits = bits;
	if (mode == RUN_DECODE)
		*pp = p;
	return 0;
}

static int ctx_run(const struct stp_model *m, const struct walk *w,
		   const uint8_t *plane, uint32_t *pairs, uint8_t *lane_of,
		   uint64_t *out_bits, uint32_t x[], const uint8_t **pp,
		   const uint8_t *end, uint8_t *out)
{
	struct stp_model_geom geom = { w->n, w->rowlen, w->c0, w->rows,
				       w->lanes };
	struct ctx_state *st;
	int rc = ctx_open(m, &geom, (void **)&st);

	if (rc < 0)
		return rc;
	if (!plane)
		rc = ctx_body(m, w, st, RUN_DECODE, NULL, NULL, NULL, NULL,
			      x, pp, end, out);
	else if (pairs)
		rc = ctx_body(m, w, st, RUN_PAIRS, plane, pairs, lane_of,
			      NULL, NULL, NULL, NULL, NULL);
	else
		rc = ctx_body(m, w, st, RUN_COST, plane, NULL, NULL, out_bits,
			      NULL, NULL, NULL, NULL);
	ctx_close(st);
	return rc;
}

static int ctx_forward(const struct stp_model *m, const struct walk *w,
		       const uint8_t *plane, uint32_t *pairs,
		       uint8_t *lane_of, uint64_t *out_bits)
{
	return ctx_run(m, w, plane, pairs, lane_of, out_bits, NULL, NULL,
		       NULL, NULL);
}

static int ctx_decode(const struct stp_model *m, const struct walk *w,
		      uint32_t x[], const uint8_t **pp, const uint8_t *end,
		      uint8_t *out)
{
	return ctx_run(m, w, NULL, NULL, NULL, NULL, x, pp, end, out);
}

/* ---- Fitting: a small grid of shifts ---- */

#define CTX_FIT_SAMPLE ((size_t)1 << 20)	/* symbols a fit measures on */

/* Of row shifts 4..6 and column shifts 3..5 (period 256, limit 2^16,
 * increment 32, 4 contexts an exponent), the pair whose estimated bodies
 * over the first CTX_FIT_SAMPLE symbols of the planes are the shortest,
 * ties to the earlier (smaller shifts). */
static int ctx_fit(unsigned alphabet, unsigned pb,
		   const struct stp_model_plane *planes, size_t nplanes,
		   uint8_t **out_params, size_t *out_len)
{
	size_t best = SIZE_MAX;
	uint8_t cand[CTX_PARAMS], *p;
	int rc;

	if ((1u << pb) < alphabet || pb > CTX_MAX_PB)
		return STP_ERANGE;
	p = malloc(CTX_PARAMS);
	if (!p)
		return STP_ENOMEM;
	for (unsigned rs = 4; rs <= 6; rs++)
		for (unsigned cs = 3; cs <= 5; cs++) {
			struct stp_model *m;
			size_t total = 0;

			stp_ctx_params_build(cand, 2, rs, cs, 256, 1u << 16,
					     32);
			rc = stp_model_create_ops(&stp_model_ctx_ops, 0,
						  alphabet, pb, cand,
						  CTX_PARAMS, &m);
			if (rc < 0)
				goto fail;
			rc = stp_model_estimate_planes(m, planes, nplanes,
						       CTX_FIT_SAMPLE, &total);
			stp_model_free(m);
			if (rc < 0)
				goto fail;
			if (total < best) {
				best = total;
				memcpy(p, cand, CTX_PARAMS);
			}
		}
	*out_params = p;
	*out_len = CTX_PARAMS;
	return 0;
fail:
	free(p);
	return rc;
}

const struct stp_model_ops stp_model_ctx_ops = {
	.kind = STP_MODEL_CTX,
	.name = "ctx",
	.default_prob_bits = 12,
	.parse = ctx_parse,
	.free_priv = free,
	.fit = ctx_fit,
	.open = ctx_open,
	.close = ctx_close,
	.start_row = ctx_start_row,
	.predict = ctx_predict,
	.update = ctx_update,
	.forward = ctx_forward,
	.decode = ctx_decode,
};
