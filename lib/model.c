/* Models for the generic rANS coder (formats/model.md): the MODEL frame
 * payload, the registry of kinds, and the first two kinds: order0 (a
 * static table) and adaptive0 (order-0 counts that adapt as the plane is
 * coded). */
#include "model.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

/* ---- Little-endian fields ---- */

static uint32_t get16(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t get32(const uint8_t *p)
{
	return get16(p) | get16(p + 2) << 16;
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

/* ---- Arithmetic shared with the coder ---- */

uint32_t stp_model_log2_q24(uint32_t v)
{
	unsigned e = 31 - (unsigned)__builtin_clz(v);
	uint64_t m = (uint64_t)v << (30 - e);	/* Q30, in [1, 2) */
	uint32_t r = 0;
	int k;

	/* Repeated squaring of the mantissa: each square that reaches 2
	 * is one more bit of the fraction. */
	for (k = 23; k >= 0; k--) {
		m = (m * m) >> 30;
		if (m >= (uint64_t)1 << 31) {
			m >>= 1;
			r |= 1u << k;
		}
	}
	return e << 24 | r;
}

static uint32_t fnv1a(const uint8_t *p, size_t len)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

/* ---- Registry ---- */

static const struct stp_model_ops order0_ops, adaptive0_ops;

/* Every registered kind: a new kind adds its ops here. */
static const struct stp_model_ops *const kinds[] = {
	&order0_ops,
	&adaptive0_ops,
	&stp_model_ctx_ops,
	&stp_model_lstm_ops,
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

static const struct stp_model_ops *kind_ops(unsigned kind)
{
	size_t i;

	for (i = 0; i < NKINDS; i++)
		if (kinds[i]->kind == kind)
			return kinds[i];
	return NULL;
}

const char *stp_model_kind_name(unsigned kind)
{
	const struct stp_model_ops *ops = kind_ops(kind);

	return ops ? ops->name : NULL;
}

int stp_model_kind_by_name(const char *name)
{
	size_t i;

	for (i = 0; i < NKINDS; i++)
		if (!strcmp(kinds[i]->name, name))
			return (int)kinds[i]->kind;
	return STP_EUNSUPPORTED;
}

/* ---- Models from payloads ---- */

/* Makes a model from payload[0..len), which it takes over (freed on
 * failure), parsed with ops (or the registry's ops for its kind when ops
 * is NULL). */
static int make(const struct stp_model_ops *ops, uint8_t *payload,
		size_t len, struct stp_model **out_model)
{
	struct stp_model *m;
	int rc = STP_EFRAME;

	if (len < STP_MODEL_HDR_SIZE)
		goto fail;
	rc = STP_ERESERVED;
	if (get16(payload + 6) || payload[11])
		goto fail;
	if (!ops)
		ops = kind_ops(get16(payload + 4));
	rc = STP_EUNSUPPORTED;
	if (!ops || ops->kind != get16(payload + 4))
		goto fail;
	rc = STP_EFRAME;
	if (get16(payload + 8) < 1 ||
	    get16(payload + 8) > STP_MODEL_MAX_ALPHABET ||
	    payload[10] < 1 || payload[10] > STP_MODEL_MAX_PROB_BITS)
		goto fail;
	rc = STP_ENOMEM;
	m = calloc(1, sizeof *m);
	if (!m)
		goto fail;
	m->ops = ops;
	m->id = get32(payload);
	m->kind = ops->kind;
	m->alphabet = get16(payload + 8);
	m->prob_bits = payload[10];
	m->payload = payload;
	m->len = len;
	m->hash = fnv1a(payload, len);
	rc = ops->parse(m, payload + STP_MODEL_HDR_SIZE,
			len - STP_MODEL_HDR_SIZE);
	if (rc < 0) {
		free(m);
		goto fail;
	}
	*out_model = m;
	return 0;
fail:
	free(payload);
	return rc;
}

int stp_model_parse(const uint8_t *p, size_t len,
		    struct stp_model **out_model)
{
	uint8_t *copy;

	if (len < STP_MODEL_HDR_SIZE)
		return STP_EFRAME;
	copy = malloc(len);
	if (!copy)
		return STP_ENOMEM;
	memcpy(copy, p, len);
	return make(NULL, copy, len, out_model);
}

int stp_model_create_ops(const struct stp_model_ops *ops, uint32_t id,
			 unsigned alphabet, unsigned prob_bits,
			 const uint8_t *params, size_t plen,
			 struct stp_model **out_model)
{
	uint8_t *p;

	if (alphabet < 1 || alphabet > STP_MODEL_MAX_ALPHABET ||
	    prob_bits < 1 || prob_bits > STP_MODEL_MAX_PROB_BITS ||
	    ops->kind > 0xffff)
		return STP_EFRAME;
	p = malloc(STP_MODEL_HDR_SIZE + plen);
	if (!p)
		return STP_ENOMEM;
	put32(p, id);
	put16(p + 4, ops->kind);
	put16(p + 6, 0);
	put16(p + 8, alphabet);
	p[10] = (uint8_t)prob_bits;
	p[11] = 0;
	if (plen)
		memcpy(p + STP_MODEL_HDR_SIZE, params, plen);
	return make(ops, p, STP_MODEL_HDR_SIZE + plen, out_model);
}

int stp_model_create(uint32_t id, unsigned kind, unsigned alphabet,
		     unsigned prob_bits, const uint8_t *params, size_t plen,
		     struct stp_model **out_model)
{
	const struct stp_model_ops *ops = kind_ops(kind);

	if (!ops)
		return STP_EUNSUPPORTED;
	return stp_model_create_ops(ops, id, alphabet, prob_bits, params,
				    plen, out_model);
}

int stp_model_fit(uint32_t id, unsigned kind, unsigned alphabet,
		  unsigned prob_bits, const struct stp_model_plane *planes,
		  size_t nplanes, struct stp_model **out_model)
{
	const struct stp_model_ops *ops = kind_ops(kind);
	uint8_t *params = NULL;
	size_t plen = 0, i, j;
	int rc;

	if (!ops || !ops->fit)
		return STP_EUNSUPPORTED;
	if (!prob_bits)
		prob_bits = ops->default_prob_bits;
	if (alphabet < 1 || alphabet > STP_MODEL_MAX_ALPHABET ||
	    prob_bits < 1 || prob_bits > STP_MODEL_MAX_PROB_BITS)
		return STP_ERANGE;
	for (i = 0; i < nplanes; i++)
		for (j = 0; j < planes[i].n; j++)
			if (planes[i].sym[j] >= alphabet)
				return STP_ERANGE;
	rc = ops->fit(alphabet, prob_bits, planes, nplanes, &params, &plen);
	if (rc < 0)
		return rc;
	rc = stp_model_create_ops(ops, id, alphabet, prob_bits, params, plen,
				  out_model);
	free(params);
	return rc;
}

void stp_model_free(struct stp_model *m)
{
	if (!m)
		return;
	if (m->ops->free_priv)
		m->ops->free_priv(m->priv);
	free(m->payload);
	free(m);
}

const uint8_t *stp_model_payload(const struct stp_model *m, size_t *out_len)
{
	*out_len = m->len;
	return m->payload;
}

/* ---- order0: one static table ---- */

/* Frequencies summing to exactly 2^pb, every symbol with a count getting
 * at least 1 and every other 0, close to the minimum of sum cnt[s] *
 * log2(2^pb / f[s]): proportional rounding, then unit steps each taken
 * where it costs (or gains) the fewest bits; the cost is convex in each
 * f[s], so the greedy repair is optimal from its start.  Integer
 * arithmetic throughout (formats/rans.md's encoder does the same).
 * Needs 1 <= symbols with a count <= 2^pb and counts below 2^32. */
static void normalise(const uint64_t cnt[256], unsigned alphabet,
		      unsigned pb, uint32_t f[256])
{
	uint32_t total = 1u << pb, sum = 0;
	uint64_t n = 0, delta[256];
	unsigned s, best;
	int grow;

	for (s = 0; s < alphabet; s++)
		n += cnt[s];
	for (s = 0; s < alphabet; s++) {
		uint64_t q = ((cnt[s] << pb) + n / 2) / n;

		f[s] = cnt[s] ? (q ? (uint32_t)q : 1) : 0;
		sum += f[s];
	}
	grow = sum < total;
	for (s = 0; s < alphabet; s++) {
		if (!cnt[s])
			delta[s] = 0;
		else if (grow)
			delta[s] = cnt[s] * (stp_model_log2_q24(f[s] + 1) -
					     stp_model_log2_q24(f[s]));
		else
			delta[s] = f[s] > 1 ? cnt[s] *
				   (stp_model_log2_q24(f[s]) -
				    stp_model_log2_q24(f[s] - 1)) : UINT64_MAX;
	}
	while (sum != total) {
		best = alphabet;
		for (s = 0; s < alphabet; s++) {
			if (!cnt[s])
				continue;
			if (best == alphabet ||
			    (grow ? delta[s] > delta[best]
				  : delta[s] < delta[best]))
				best = s;
		}
		s = best;
		if (grow) {
			f[s]++;
			sum++;
			delta[s] = cnt[s] * (stp_model_log2_q24(f[s] + 1) -
					     stp_model_log2_q24(f[s]));
		} else {
			f[s]--;
			sum--;
			delta[s] = f[s] > 1 ? cnt[s] *
				   (stp_model_log2_q24(f[s]) -
				    stp_model_log2_q24(f[s] - 1)) : UINT64_MAX;
		}
	}
}

struct order0 {
	uint32_t freq[256];
};

static int order0_parse(struct stp_model *m, const uint8_t *params,
			size_t len)
{
	uint32_t total = 1u << m->prob_bits, sum = 0;
	struct order0 *o;
	unsigned s;

	if (len != 2 * (size_t)m->alphabet)
		return STP_EFRAME;
	o = calloc(1, sizeof *o);
	if (!o)
		return STP_ENOMEM;
	for (s = 0; s < m->alphabet; s++) {
		o->freq[s] = get16(params + 2 * s);
		sum += o->freq[s];
	}
	/* Each is below 2^16, so 256 of them cannot wrap the sum. */
	if (sum != total) {
		free(o);
		return STP_ECORRUPT;
	}
	m->priv = o;
	return 0;
}

static int order0_fit(unsigned alphabet, unsigned pb,
		      const struct stp_model_plane *planes, size_t nplanes,
		      uint8_t **out_params, size_t *out_len)
{
	uint64_t cnt[256] = { 0 }, n = 0;
	uint32_t f[256];
	unsigned s, nsym = 0, shift = 0;
	size_t i, j;
	uint8_t *p;

	for (i = 0; i < nplanes; i++)
		for (j = 0; j < planes[i].n; j++)
			cnt[planes[i].sym[j]]++;
	for (s = 0; s < alphabet; s++) {
		nsym += cnt[s] != 0;
		n += cnt[s];
	}
	if (!nsym)
		return STP_EEMPTY;
	if (nsym > 1u << pb)
		return STP_ERANGE;
	/* Keeps the normaliser's products in 64 bits; a count never
	 * falls to zero. */
	while (n >> shift >= (uint64_t)1 << 32)
		shift++;
	for (s = 0; shift && s < alphabet; s++)
		if (cnt[s] >> shift)
			cnt[s] >>= shift;
		else if (cnt[s])
			cnt[s] = 1;
	normalise(cnt, alphabet, pb, f);
	p = malloc(2 * (size_t)alphabet);
	if (!p)
		return STP_ENOMEM;
	for (s = 0; s < alphabet; s++)
		put16(p + 2 * s, f[s]);
	*out_params = p;
	*out_len = 2 * (size_t)alphabet;
	return 0;
}

struct order0_state {
	const uint32_t *freq;
	int fresh;
};

static int order0_open(const struct stp_model *m,
		       const struct stp_model_geom *g, void **out_state)
{
	struct order0_state *st = malloc(sizeof *st);

	(void)g;
	if (!st)
		return STP_ENOMEM;
	st->freq = ((const struct order0 *)m->priv)->freq;
	st->fresh = 1;
	*out_state = st;
	return 0;
}

static int order0_predict(void *state, const struct stp_model_ctx *ctx,
			  const uint32_t **out_freq)
{
	struct order0_state *st = state;
	int fresh = st->fresh;

	(void)ctx;
	st->fresh = 0;
	*out_freq = st->freq;
	return fresh;
}

static const struct stp_model_ops order0_ops = {
	.kind = STP_MODEL_ORDER0,
	.name = "order0",
	.default_prob_bits = 12,
	.parse = order0_parse,
	.free_priv = free,
	.fit = order0_fit,
	.open = order0_open,
	.close = free,
	.predict = order0_predict,
};

/* ---- adaptive0: counts that follow the plane ---- */

#define A0_PARAMS 12
#define A0_MAX_PERIOD ((uint32_t)1 << 20)
#define A0_MAX_LIMIT ((uint32_t)1 << 24)
#define A0_FIT_SAMPLE ((size_t)1 << 20)	/* symbols a fit measures on */

struct adaptive0 {
	uint32_t period, limit, inc;
};

static int adaptive0_parse(struct stp_model *m, const uint8_t *params,
			   size_t len)
{
	struct adaptive0 *a;

	if (len != A0_PARAMS)
		return STP_EFRAME;
	if (get16(params + 10))
		return STP_ERESERVED;
	/* Every symbol keeps a slot: the table needs 2^pb >= alphabet. */
	if ((1u << m->prob_bits) < m->alphabet)
		return STP_ECORRUPT;
	a = malloc(sizeof *a);
	if (!a)
		return STP_ENOMEM;
	a->period = get32(params);
	a->limit = get32(params + 4);
	a->inc = get16(params + 8);
	if (a->period < 1 || a->period > A0_MAX_PERIOD ||
	    a->limit < m->alphabet || a->limit > A0_MAX_LIMIT ||
	    a->inc < 1) {
		free(a);
		return STP_ECORRUPT;
	}
	m->priv = a;
	return 0;
}

struct adaptive0_state {
	struct adaptive0 p;
	unsigned alphabet, pb;
	uint32_t since;		/* updates since the table was built */
	uint64_t total;		/* sum of cnt */
	uint32_t cnt[256];
	uint32_t freq[256];
	int fresh;
};

/* The table of formats/model.md: 1 + cnt * r / 2^32 each, with r =
 * (M - A) * 2^32 / total (one division a table, not one a symbol; cnt <=
 * total keeps the product below 2^47), the remainder to the most
 * frequent symbol (the lowest of equals). */
static void adaptive0_build(struct adaptive0_state *st)
{
	uint32_t m = 1u << st->pb, spare = m - st->alphabet, sum = 0;
	uint64_t r = ((uint64_t)spare << 32) / st->total;
	unsigned s, top = 0;

	for (s = 0; s < st->alphabet; s++) {
		st->freq[s] = 1 + (uint32_t)(st->cnt[s] * r >> 32);
		sum += st->freq[s];
		if (st->cnt[s] > st->cnt[top])
			top = s;
	}
	st->freq[top] += m - sum;
	st->fresh = 1;
}

static int adaptive0_open(const struct stp_model *m,
			  const struct stp_model_geom *g, void **out_state)
{
	struct adaptive0_state *st = malloc(sizeof *st);
	unsigned s;

	(void)g;
	if (!st)
		return STP_ENOMEM;
	st->p = *(const struct adaptive0 *)m->priv;
	st->alphabet = m->alphabet;
	st->pb = m->prob_bits;
	st->since = 0;
	st->total = m->alphabet;
	for (s = 0; s < m->alphabet; s++)
		st->cnt[s] = 1;
	adaptive0_build(st);
	*out_state = st;
	return 0;
}

static int adaptive0_predict(void *state, const struct stp_model_ctx *ctx,
			     const uint32_t **out_freq)
{
	struct adaptive0_state *st = state;
	int fresh = st->fresh;

	(void)ctx;
	st->fresh = 0;
	*out_freq = st->freq;
	return fresh;
}

static void adaptive0_update(void *state, const struct stp_model_ctx *ctx,
			     unsigned symbol)
{
	struct adaptive0_state *st = state;
	unsigned s;

	(void)ctx;
	st->cnt[symbol] += st->p.inc;
	st->total += st->p.inc;
	if (st->total > st->p.limit) {
		st->total = 0;
		for (s = 0; s < st->alphabet; s++) {
			st->cnt[s] = (st->cnt[s] + 1) >> 1;
			st->total += st->cnt[s];
		}
	}
	if (++st->since == st->p.period) {
		st->since = 0;
		adaptive0_build(st);
	}
}

static void put_a0(uint8_t p[A0_PARAMS], uint32_t period, uint32_t limit,
		   uint32_t inc)
{
	put32(p, period);
	put32(p + 4, limit);
	put16(p + 8, inc);
	put16(p + 10, 0);
}

/* Of a small grid of parameters, the one whose estimated bodies over the
 * first A0_FIT_SAMPLE symbols of the planes are the shortest, ties going
 * to the earlier in the grid. */
static int adaptive0_fit(unsigned alphabet, unsigned pb,
			 const struct stp_model_plane *planes, size_t nplanes,
			 uint8_t **out_params, size_t *out_len)
{
	/* Shorter periods gain under 0.02% on exponent planes, and cost
	 * the decoder a table every few symbols. */
	static const uint32_t periods[] = { 256, 1024, 4096 };
	static const uint32_t limits[] = { 1u << 12, 1u << 14, 1u << 16,
					   1u << 18 };
	const uint32_t inc = 32;
	size_t best = SIZE_MAX, a, b;
	uint8_t cand[A0_PARAMS], *p;
	int rc;

	if ((1u << pb) < alphabet)
		return STP_ERANGE;
	p = malloc(A0_PARAMS);
	if (!p)
		return STP_ENOMEM;
	for (a = 0; a < sizeof periods / sizeof periods[0]; a++)
		for (b = 0; b < sizeof limits / sizeof limits[0]; b++) {
			struct stp_model *m;
			size_t total = 0;

			put_a0(cand, periods[a], limits[b], inc);
			rc = stp_model_create_ops(&adaptive0_ops, 0, alphabet,
						  pb, cand, A0_PARAMS, &m);
			if (rc < 0)
				goto fail;
			rc = stp_model_estimate_planes(m, planes, nplanes,
						       A0_FIT_SAMPLE, &total);
			stp_model_free(m);
			if (rc < 0)
				goto fail;
			if (total < best) {
				best = total;
				memcpy(p, cand, A0_PARAMS);
			}
		}
	*out_params = p;
	*out_len = A0_PARAMS;
	return 0;
fail:
	free(p);
	return rc;
}

static const struct stp_model_ops adaptive0_ops = {
	.kind = STP_MODEL_ADAPTIVE0,
	.name = "adaptive0",
	.default_prob_bits = 15,
	.parse = adaptive0_parse,
	.free_priv = free,
	.fit = adaptive0_fit,
	.open = adaptive0_open,
	.close = free,
	.predict = adaptive0_predict,
	.update = adaptive0_update,
};
