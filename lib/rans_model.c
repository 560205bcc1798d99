/* The generic rANS coder of formats/model.md: one plane, its symbols in
 * lockstep over up to 32 rows at a time (lane k codes rows k, k+L, ...),
 * every symbol coded with the table a model gives for it.  The scalar
 * reference: state range and renormalisation are formats/rans.md's. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "impl.h"
#include "model.h"
#include "model_walk.h"
#include "rans.h"

#define LOWER (1u << 15)		/* normalised states: [2^15, 2^31) */
#define LUT_FRACTION 4			/* see struct tables */

/* ---- Little-endian fields ---- */

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* ---- Geometry and coding order: lib/model_walk.h ---- */

uint64_t stp_model_rows(size_t n, uint64_t rowlen, uint64_t column)
{
	struct walk w;

	return walk_init(&w, n, rowlen, column) < 0 ? 0 : w.rows;
}

unsigned stp_model_default_lanes(size_t n, uint64_t rowlen, uint64_t column)
{
	struct walk w;

	return walk_init(&w, n, rowlen, column) < 0 ? 0 : w.lanes;
}

/* Initial encoder states (the decoder's final ones), in [2^15, 2^16):
 * FNV-1a-32 over the MODEL payload, n, rowlen, column and the lane
 * count, so that a body decoded with another model or geometry fails the
 * final check instead of decoding to wrong symbols. */
static void initial_states(const struct stp_model *m, const struct walk *w,
			   uint32_t x0[STP_MODEL_MAX_LANES])
{
	uint8_t tail[21];
	uint32_t h = m->hash;
	unsigned j;

	put32(tail, (uint32_t)w->n);
	put32(tail + 4, (uint32_t)w->rowlen);
	put32(tail + 8, (uint32_t)(w->rowlen >> 32));
	put32(tail + 12, (uint32_t)w->c0);
	put32(tail + 16, (uint32_t)(w->c0 >> 32));
	tail[20] = (uint8_t)w->lanes;
	for (j = 0; j < sizeof tail; j++)
		h = (h ^ tail[j]) * 16777619u;
	for (j = 0; j < w->lanes; j++)
		x0[j] = LOWER | (((h ^ j) * 16777619u) >> 17);
}

/* ---- Tables ---- */

/* What the coder derives from the model's current table.  cum[s] is the
 * first slot of symbol s, 2^pb for s >= alphabet (so that no search picks
 * those).  How the decoder finds the symbol owning a slot depends on how
 * long a table has served, so that a table that changes every symbol (a
 * learnt model's) costs only a binary search, and a static one gets a
 * full lookup: a binary search at first, then, after BUCKETS_AFTER
 * symbols, a bucket of 2^(pb-8) slots gives the first candidate, and
 * after 2^pb / LUT_FRACTION symbols, lut gives the symbol. */
#define BUCKETS_AFTER 16

enum { BY_SEARCH, BY_BUCKET, BY_LUT };

struct tables {
	const uint32_t *freq;
	uint32_t cum[257];
	unsigned last;		/* the last entry of cum a search reads */
	uint32_t uses;
	int by;
	uint8_t bucket[256];
	uint8_t lut[1u << STP_MODEL_MAX_PROB_BITS];
};

/* Readies t for a plane coded with m: no table yet.  The binary search
 * reads cum up to the next power of two of the alphabet, less one; the
 * bucket scan up to cum[alphabet]. */
static void tables_init(struct tables *t, const struct stp_model *m)
{
	unsigned p = 1;

	while (p < m->alphabet)
		p *= 2;
	t->freq = NULL;
	t->last = p - 1 > m->alphabet ? p - 1 : m->alphabet;
}

/* Checks freq (the sum is exactly 2^pb, so each entry is at most 2^pb)
 * and derives cum. */
static int take_table(struct tables *t, const struct stp_model *m,
		      const uint32_t *freq)
{
	uint32_t total = 1u << m->prob_bits, sum = 0;
	unsigned s;

	if (!freq)
		return STP_ECORRUPT;
	for (s = 0; s < m->alphabet; s++) {
		if (freq[s] > total)
			return STP_ECORRUPT;
		t->cum[s] = sum;
		sum += freq[s];
	}
	if (sum != total)
		return STP_ECORRUPT;
	for (; s <= t->last; s++)
		t->cum[s] = total;
	t->freq = freq;
	t->uses = 0;
	t->by = BY_SEARCH;
	return 0;
}

/* bucket[b] is the symbol owning slot b << bsh. */
static void build_buckets(struct tables *t, unsigned pb, unsigned bsh)
{
	uint32_t b, s = 0;

	for (b = 0; b < 1u << (pb - bsh); b++) {
		while (t->cum[s + 1] <= b << bsh)
			s++;
		t->bucket[b] = (uint8_t)s;
	}
	t->by = BY_BUCKET;
}

static void build_lut(struct tables *t, unsigned alphabet)
{
	unsigned s;

	for (s = 0; s < alphabet; s++)
		memset(t->lut + t->cum[s], (int)s, t->freq[s]);
	t->by = BY_LUT;
}

/* ---- log2 for estimates ---- */

/* log2(1024 + j) - 10 in Q24, j = 0..1023: a log2 of any frequency to
 * within 0.0015 bits (exact below 2^11). */
static uint32_t log2_frac[1024];
static pthread_once_t log2_once = PTHREAD_ONCE_INIT;

static void log2_init(void)
{
	uint32_t j;

	for (j = 0; j < 1024; j++)
		log2_frac[j] = stp_model_log2_q24(1024 + j) - (10u << 24);
}

uint32_t stp_model_log2_fast(uint32_t f)
{
	unsigned e = 31 - (unsigned)__builtin_clz(f);
	uint32_t m = e >= 10 ? f >> (e - 10) : f << (10 - e);

	return (e << 24) + log2_frac[m - 1024];
}

/* ---- Fast paths ---- */

/* -1 until the first plane: then STP_IMPL decides. */
static int generic_only = -1;

void stp_model_force_generic(int on)
{
	generic_only = on != 0;
}

static int use_generic(void)
{
	if (generic_only < 0) {
		const char *e = stp_impl_env();

		generic_only = e && !strcmp(e, "scalar");
	}
	return generic_only;
}

/* ---- Encoder ---- */

/* The model run forward over the plane in coding order: for symbol t of
 * that order, pairs[t] = start | freq << 16 and lane_of[t] its lane; or,
 * with pairs NULL, the cost of the plane in Q24 bits in *out_bits. */
static int forward(const struct stp_model *m, const struct walk *w,
		   const uint8_t *plane, uint32_t *pairs, uint8_t *lane_of,
		   struct tables *t, uint64_t *out_bits)
{
	const struct stp_model_ops *ops = m->ops;
	struct stp_model_geom geom = { w->n, w->rowlen, w->c0, w->rows,
				       w->lanes };
	struct stp_model_ctx ctx = { plane, 0, 0, 0, w->rowlen, 0 };
	uint64_t g, c, bits = 0, pbq = (uint64_t)m->prob_bits << 24;
	size_t tpos = 0;
	void *st;
	int rc;

	if (ops->forward && !use_generic())
		return ops->forward(m, w, plane, pairs, lane_of, out_bits);
	rc = ops->open(m, &geom, &st);
	if (rc < 0)
		return rc;
	tables_init(t, m);
	for (g = 0; g < ngroups(w); g++) {
		struct group gr;
		unsigned sp, k;

		group_init(w, g, &gr);
		for (sp = 0; sp < gr.nspans; sp++)
			for (c = gr.span[sp][0]; c <= gr.span[sp][1]; c++)
				for (k = 0; k < gr.nl; k++) {
					const uint32_t *freq;
					unsigned s;

					if (c < gr.lo[k] || c > gr.hi[k])
						continue;
					ctx.i = (size_t)(gr.base[k] + c);
					ctx.row = gr.r0 + k;
					ctx.col = c;
					ctx.lane = k;
					if (c == gr.lo[k] && ops->start_row)
						ops->start_row(st, &ctx);
					rc = ops->predict(st, &ctx, &freq);
					if (rc < 0)
						goto out;
					if (rc || freq != t->freq) {
						rc = take_table(t, m, freq);
						if (rc < 0)
							goto out;
					}
					s = plane[ctx.i];
					rc = STP_ERANGE;
					if (s >= m->alphabet || !freq[s])
						goto out;
					if (pairs) {
						pairs[tpos] = t->cum[s] |
							      freq[s] << 16;
						lane_of[tpos++] = (uint8_t)k;
					} else {
						bits += pbq -
							stp_model_log2_fast(freq[s]);
					}
					if (ops->update)
						ops->update(st, &ctx, s);
				}
	}
	rc = 0;
	if (out_bits)
		*out_bits = bits;
out:
	ops->close(st);
	return rc;
}

/* Checks the arguments of encode and estimate, and sets up w. */
static int enc_args(const struct stp_model_plane *p, unsigned lanes,
		    struct walk *w)
{
	if (p->n == 0)
		return STP_EEMPTY;
	if (p->n > STP_RANS_MAX_N)
		return STP_ETOOBIG;
	if (walk_init(w, p->n, p->rowlen, p->column) < 0 ||
	    lanes > w->lanes)
		return STP_ERANGE;
	if (lanes)
		w->lanes = lanes;
	return 0;
}

size_t stp_model_bound(size_t n)
{
	return STP_MODEL_BODY_HDR + 4 * STP_MODEL_MAX_LANES + 2 * n;
}

int stp_model_estimate(const struct stp_model *m,
		       const struct stp_model_plane *p, unsigned lanes,
		       size_t *out_len)
{
	struct tables *t;
	struct walk w;
	uint64_t bits = 0;
	int rc = enc_args(p, lanes, &w);

	if (rc < 0)
		return rc;
	pthread_once(&log2_once, log2_init);
	t = malloc(sizeof *t);
	if (!t)
		return STP_ENOMEM;
	rc = forward(m, &w, p->sym, NULL, NULL, t, &bits);
	free(t);
	if (rc < 0)
		return rc;
	*out_len = STP_MODEL_BODY_HDR + 4 * (size_t)w.lanes +
		   2 * (size_t)((bits + ((uint64_t)16 << 24) - 1) >> 28);
	return 0;
}

int stp_model_estimate_planes(const struct stp_model *m,
			      const struct stp_model_plane *planes,
			      size_t nplanes, size_t budget,
			      size_t *out_len)
{
	size_t total = 0, est;

	for (size_t i = 0; i < nplanes && budget; i++) {
		struct stp_model_plane q = planes[i];
		int rc;

		if (!q.n)
			continue;
		if (q.n > budget)
			q.n = budget;
		budget -= q.n;
		if ((rc = stp_model_estimate(m, &q, 0, &est)) < 0)
			return rc;
		total += est;
	}
	*out_len = total;
	return 0;
}

int stp_model_encode(const struct stp_model *m,
		     const struct stp_model_plane *p, unsigned lanes,
		     uint8_t *out, size_t cap, size_t *out_len)
{
	uint32_t x[STP_MODEL_MAX_LANES], *pairs = NULL;
	uint8_t *lane_of = NULL, *wp;
	struct tables *t = NULL;
	struct walk w;
	size_t head, tpos, words;
	unsigned pb = m->prob_bits, j;
	int rc = enc_args(p, lanes, &w);

	if (rc < 0)
		return rc;
	head = STP_MODEL_BODY_HDR + 4 * (size_t)w.lanes;
	if (cap < head)
		return STP_ETOOBIG;
	rc = STP_ENOMEM;
	t = malloc(sizeof *t);
	pairs = malloc(p->n * sizeof *pairs);
	lane_of = malloc(p->n);
	if (!t || !pairs || !lane_of)
		goto out;
	rc = forward(m, &w, p->sym, pairs, lane_of, t, NULL);
	if (rc < 0)
		goto out;

	/* Backwards, words written downwards from the end of out. */
	initial_states(m, &w, x);
	wp = out + cap;
	rc = STP_ETOOBIG;
	for (tpos = p->n; tpos-- > 0;) {
		uint32_t xs = x[lane_of[tpos]];
		uint32_t start = pairs[tpos] & 0xffff, f = pairs[tpos] >> 16;

		if (xs >= f << (31 - pb)) {
			if (wp - out < (ptrdiff_t)head + 2)
				goto out;
			wp -= 2;
			wp[0] = (uint8_t)xs;
			wp[1] = (uint8_t)(xs >> 8);
			xs >>= 16;
		}
		x[lane_of[tpos]] = ((xs / f) << pb) + xs % f + start;
	}
	words = (size_t)(out + cap - wp);
	out[0] = STP_RANS_MODEL;
	put32(out + 1, m->id);
	out[5] = (uint8_t)w.lanes;
	for (j = 0; j < w.lanes; j++)
		put32(out + STP_MODEL_BODY_HDR + 4 * j, x[j]);
	memmove(out + head, wp, words);
	*out_len = head + words;
	rc = 0;
out:
	free(t);
	free(pairs);
	free(lane_of);
	return rc;
}

/* ---- Decoder ---- */

int stp_model_body_id(const uint8_t *in, size_t len, uint32_t *out_id)
{
	if (len < 1)
		return STP_ETRUNCATED;
	if (in[0] != STP_RANS_MODEL)
		return STP_EUNSUPPORTED;
	if (len < 5)
		return STP_ETRUNCATED;
	*out_id = get32(in + 1);
	return 0;
}

/* Decodes the symbols of the plane in coding order; x holds the initial
 * states and gets the final ones, *pp the first word and gets the end of
 * the last.  Every read is checked against end. */
static int dec_run(const struct stp_model *m, const struct walk *w,
		   void *st, struct tables *t, uint32_t x[], const uint8_t **pp,
		   const uint8_t *end, uint8_t *out)
{
	const struct stp_model_ops *ops = m->ops;
	struct stp_model_ctx ctx = { out, 0, 0, 0, w->rowlen, 0 };
	const uint8_t *p = *pp;
	unsigned pb = m->prob_bits, half, k, sp;
	unsigned bsh = pb > 8 ? pb - 8 : 0;
	uint32_t mask = (1u << pb) - 1;
	uint32_t lut_after = (1u << pb) / LUT_FRACTION;
	uint64_t g, c;
	int rc;

	/* half: 2^(ceil(log2 alphabet) - 1), 0 for one symbol; the search
	 * below looks at cum[0 .. 2*half), never past cum[255]. */
	for (half = 1; half < m->alphabet; half *= 2)
		;
	half /= 2;
	tables_init(t, m);
	for (g = 0; g < ngroups(w); g++) {
		struct group gr;

		group_init(w, g, &gr);
		for (sp = 0; sp < gr.nspans; sp++)
			for (c = gr.span[sp][0]; c <= gr.span[sp][1]; c++)
				for (k = 0; k < gr.nl; k++) {
					const uint32_t *freq;
					uint32_t slot, v, s, step;

					if (c < gr.lo[k] || c > gr.hi[k])
						continue;
					ctx.i = (size_t)(gr.base[k] + c);
					ctx.row = gr.r0 + k;
					ctx.col = c;
					ctx.lane = k;
					if (c == gr.lo[k] && ops->start_row)
						ops->start_row(st, &ctx);
					rc = ops->predict(st, &ctx, &freq);
					if (rc < 0)
						return rc;
					if (rc || freq != t->freq) {
						rc = take_table(t, m, freq);
						if (rc < 0)
							return rc;
					} else if (t->by != BY_LUT) {
						if (++t->uses >= lut_after)
							build_lut(t,
								  m->alphabet);
						else if (t->uses ==
							 BUCKETS_AFTER)
							build_buckets(t, pb,
								      bsh);
					}
					slot = x[k] & mask;
					if (t->by == BY_LUT) {
						s = t->lut[slot];
					} else if (t->by == BY_BUCKET) {
						s = t->bucket[slot >> bsh];
						while (t->cum[s + 1] <= slot)
							s++;
					} else {
						s = 0;
						for (step = half; step;
						     step >>= 1)
							if (t->cum[s + step] <=
							    slot)
								s += step;
					}
					v = freq[s] * (x[k] >> pb) + slot -
					    t->cum[s];
					if (v < LOWER) {
						if (end - p < 2)
							return STP_ETRUNCATED;
						v = v << 16 | (uint32_t)p[0] |
						    (uint32_t)p[1] << 8;
						p += 2;
					}
					x[k] = v;
					out[ctx.i] = (uint8_t)s;
					if (ops->update)
						ops->update(st, &ctx, s);
				}
	}
	*pp = p;
	return 0;
}

int stp_model_decode(const struct stp_model *m, const uint8_t *in,
		     size_t len, uint8_t *out, size_t n, uint64_t rowlen,
		     uint64_t column)
{
	uint32_t x[STP_MODEL_MAX_LANES], x0[STP_MODEL_MAX_LANES];
	struct stp_model_geom geom;
	const uint8_t *p;
	struct tables *t;
	struct walk w;
	unsigned lanes, j;
	uint32_t id;
	void *st;
	int rc;

	if (n > STP_RANS_MAX_N)
		return STP_ETOOBIG;
	rc = stp_model_body_id(in, len, &id);
	if (rc < 0)
		return rc;
	if (len < STP_MODEL_BODY_HDR)
		return STP_ETRUNCATED;
	if (id != m->id || walk_init(&w, n, rowlen, column) < 0)
		return STP_ECORRUPT;
	lanes = in[5];
	if (lanes < 1 || lanes > w.lanes)
		return STP_ECORRUPT;
	w.lanes = lanes;
	if (len - STP_MODEL_BODY_HDR < 4 * (size_t)lanes)
		return STP_ETRUNCATED;
	for (j = 0; j < lanes; j++) {
		x[j] = get32(in + STP_MODEL_BODY_HDR + 4 * j);
		if (x[j] < LOWER || x[j] >= (uint32_t)1 << 31)
			return STP_ECORRUPT;
	}
	p = in + STP_MODEL_BODY_HDR + 4 * (size_t)lanes;
	if (m->ops->decode && !use_generic()) {
		rc = m->ops->decode(m, &w, x, &p, in + len, out);
		if (rc < 0)
			return rc;
		goto end;
	}
	t = malloc(sizeof *t);
	if (!t)
		return STP_ENOMEM;
	geom = (struct stp_model_geom){ n, rowlen, column, w.rows, lanes };
	rc = m->ops->open(m, &geom, &st);
	if (rc < 0) {
		free(t);
		return rc;
	}
	rc = dec_run(m, &w, st, t, x, &p, in + len, out);
	m->ops->close(st);
	free(t);
	if (rc < 0)
		return rc;
end:
	if (p != in + len)
		return STP_ECORRUPT;
	initial_states(m, &w, x0);
	for (j = 0; j < lanes; j++)
		if (x[j] != x0[j])
			return STP_ECORRUPT;
	return 0;
}
