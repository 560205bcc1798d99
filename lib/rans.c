/* Static order-0 rANS for byte planes: the scalar reference coder, the
 * frequency tables, the body layout of formats/rans.md, and the dispatcher
 * that hands whole groups of 32 symbols to the fastest variant.  Bodies
 * with 4 states (small planes) are coded by the scalar code alone. */
#include "rans.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "deflate.h"
#include "error.h"

#define MAX_RUNS 128		/* 256 symbols, runs separated by gaps */
#define MAX_TABLE_BYTES (2 + 2 * MAX_RUNS + 2 * 256)
#define SCRATCH_GROUPS 16	/* groups order0_length32() codes per call */

/* ---- Dispatcher ---- */

struct impl {
	const char *name;
	int (*have)(void);
	size_t (*dec)(struct stp_rans_dec_state *, uint8_t *, size_t);
	int (*enc)(struct stp_rans_enc_state *, const uint8_t *, size_t);
	void (*dec_segs)(struct stp_rans_dec_state *, unsigned,
			 uint8_t *const *, const size_t *, size_t *);
};

static int have_scalar(void)
{
	return 1;
}

/* The compiler may use POPCNT (implied by GCC's -mavx2) and BMI2 (given
 * beside -mavx2 in the build) anywhere in those files: every CPU with
 * AVX2 has both, but check them all the same.  The avx512 variant runs
 * the AVX2 encoder too. */
static int have_avx2(void)
{
	return __builtin_cpu_supports("avx2") &&
	       __builtin_cpu_supports("bmi2") &&
	       __builtin_cpu_supports("popcnt");
}

static int have_avx512(void)
{
	return have_avx2() && __builtin_cpu_supports("avx512f") &&
	       __builtin_cpu_supports("avx512bw");
}

/* Best last.  The AVX-512 variant reuses the AVX2 encoder: decoding is
 * the speed that matters, and a wider encoder would have to be measured
 * on AVX-512 hardware to earn its place. */
static const struct impl impls[] = {
	{ "scalar", have_scalar, stp_rans_dec_groups_scalar,
	  stp_rans_enc_groups_scalar, stp_rans_dec_segs_scalar },
	{ "avx2", have_avx2, stp_rans_dec_groups_avx2,
	  stp_rans_enc_groups_avx2, stp_rans_dec_segs_avx2 },
	{ "avx512", have_avx512, stp_rans_dec_groups_avx512,
	  stp_rans_enc_groups_avx2, stp_rans_dec_segs_avx512 },
};
#define NIMPLS (sizeof impls / sizeof impls[0])

/* NULL while STP_IMPL forces a variant this CPU lacks: every call then
 * fails rather than quietly testing another variant. */
static const struct impl *impl_cur = &impls[0];

static const struct impl *impl_best(void)
{
	size_t i = NIMPLS;

	while (--i > 0)
		if (impls[i].have())
			return &impls[i];
	return &impls[0];
}

int stp_rans_force_impl(const char *name)
{
	size_t i;

	/* The GPU variant lives elsewhere; this CPU coder then runs its
	 * best, so STP_IMPL=cuda does not stop the CPU stages. */
	if (!name || !strcmp(name, "auto") || !strcmp(name, "cuda")) {
		impl_cur = impl_best();
		return 0;
	}
	for (i = 0; i < NIMPLS; i++) {
		if (strcmp(name, impls[i].name))
			continue;
		if (!impls[i].have())
			return STP_EUNSUPPORTED;
		impl_cur = &impls[i];
		return 0;
	}
	return STP_EUNSUPPORTED;
}

const char *stp_rans_impl_name(void)
{
	return impl_cur ? impl_cur->name : "none";
}

__attribute__((constructor)) static void rans_init(void)
{
	const char *env = getenv("STP_IMPL");

	/* Constructors may run before libgcc has probed the CPU. */
	__builtin_cpu_init();
	if (!env || !*env)
		env = NULL;
	if (stp_rans_force_impl(env) < 0)
		impl_cur = NULL;
}

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

/* ---- Statistics ---- */

static void histogram(const uint8_t *in, size_t n, uint32_t cnt[256])
{
	/* Four tables, so that runs of one symbol (the common case in an
	 * exponent plane) do not serialise on one counter in memory. */
	uint32_t h[4][256];
	size_t i;
	int s;

	memset(h, 0, sizeof h);
	for (i = 0; i + 4 <= n; i += 4) {
		h[0][in[i]]++;
		h[1][in[i + 1]]++;
		h[2][in[i + 2]]++;
		h[3][in[i + 3]]++;
	}
	for (; i < n; i++)
		h[0][in[i]]++;
	for (s = 0; s < 256; s++)
		cnt[s] = h[0][s] + h[1][s] + h[2][s] + h[3][s];
}

double stp_entropy0_bits(const uint8_t *in, size_t n)
{
	uint32_t cnt[256];
	double bits = 0;
	int s;

	if (n == 0)
		return 0;
	histogram(in, n, cnt);
	for (s = 0; s < 256; s++)
		if (cnt[s])
			bits += cnt[s] * log2((double)n / cnt[s]);
	return bits;
}

/* log2(v) in Q8.24 for 1 <= v < 2^31, by repeated squaring of the
 * mantissa.  Integer arithmetic, so the encoder's choices (and therefore
 * its output) cannot depend on the host's libm. */
static uint32_t log2_q24(uint32_t v)
{
	unsigned e = 31 - (unsigned)__builtin_clz(v);
	uint64_t m = (uint64_t)v << (30 - e);	/* Q30, in [1, 2) */
	uint32_t r = 0;
	int k;

	for (k = 23; k >= 0; k--) {
		m = (m * m) >> 30;
		if (m >= (uint64_t)1 << 31) {
			m >>= 1;
			r |= 1u << k;
		}
	}
	return e << 24 | r;
}

/* Frequencies summing to exactly 2^pb with every present symbol >= 1,
 * close to the minimum of sum cnt[s] * log2(2^pb / f[s]): proportional
 * rounding, then unit steps each taken where it costs (or gains) the
 * fewest bits.  The cost is convex in each f[s], so this greedy repair
 * is optimal from its start.  Needs 2 <= nsym <= 2^pb. */
static void normalise(const uint32_t cnt[256], const uint8_t *syms,
		      int nsym, uint64_t n, unsigned pb, uint32_t f[256])
{
	uint32_t total = 1u << pb, sum = 0;
	uint64_t delta[256];	/* bits * 2^24 for the next step of each */
	int i, s, best, grow;

	memset(f, 0, 256 * sizeof f[0]);
	for (i = 0; i < nsym; i++) {
		uint64_t q;

		s = syms[i];
		q = (((uint64_t)cnt[s] << pb) + n / 2) / n;
		f[s] = q ? (uint32_t)q : 1;
		sum += f[s];
	}
	if (sum == total)
		return;
	grow = sum < total;
	for (i = 0; i < nsym; i++) {
		s = syms[i];
		if (grow)
			delta[i] = (uint64_t)cnt[s] *
				   (log2_q24(f[s] + 1) - log2_q24(f[s]));
		else
			delta[i] = f[s] > 1 ? (uint64_t)cnt[s] *
				   (log2_q24(f[s]) - log2_q24(f[s] - 1))
				   : UINT64_MAX;
	}
	while (sum != total) {
		best = 0;
		for (i = 1; i < nsym; i++)
			if (grow ? delta[i] > delta[best]
				 : delta[i] < delta[best])
				best = i;
		s = syms[best];
		if (grow) {
			f[s]++;
			sum++;
			delta[best] = (uint64_t)cnt[s] *
				      (log2_q24(f[s] + 1) - log2_q24(f[s]));
		} else {
			f[s]--;
			sum--;
			delta[best] = f[s] > 1 ? (uint64_t)cnt[s] *
				      (log2_q24(f[s]) - log2_q24(f[s] - 1))
				      : UINT64_MAX;
		}
	}
}

/* ---- Frequency table: prob_bits, symbol runs, frequencies ---- */

/* Serialises the table of formats/rans.md into out (MAX_TABLE_BYTES);
 * returns its length. */
static size_t put_table(uint8_t *out, unsigned pb, const uint32_t f[256])
{
	size_t len = 2;
	int s = 0, prev_end = 0, runs = 0;

	out[0] = (uint8_t)pb;
	while (s < 256) {
		int start;

		if (!f[s]) {
			s++;
			continue;
		}
		start = s;
		while (s < 256 && f[s])
			s++;
		out[len++] = (uint8_t)(start - prev_end);
		out[len++] = (uint8_t)(s - start - 1);
		prev_end = s;
		runs++;
	}
	out[1] = (uint8_t)runs;
	for (s = 0; s < 256; s++) {
		if (!f[s])
			continue;
		if (f[s] < 0x80) {
			out[len++] = (uint8_t)f[s];
		} else {
			out[len++] = (uint8_t)(0x80 | (f[s] & 0x7f));
			out[len++] = (uint8_t)(f[s] >> 7);
		}
	}
	return len;
}

/* Parses and checks a table; on success sets *out_pb, f[] and *out_used.
 * The checks are what make the decode table safe to index: 1 <= pb <= 12,
 * canonical runs inside 0..255, canonical frequencies in 1..2^pb-1, at
 * least two symbols, and a sum of exactly 2^pb. */
static int get_table(const uint8_t *in, size_t len, unsigned *out_pb,
		     uint32_t f[256], size_t *out_used)
{
	unsigned pb, runs, r;
	uint32_t total, sum = 0;
	size_t pos;
	int s = 0, nsym = 0;
	uint8_t present[256];

	if (len < 2)
		return STP_ETRUNCATED;
	pb = in[0];
	runs = in[1];
	if (pb < 1 || pb > STP_RANS_MAX_PROB_BITS || runs < 1 ||
	    runs > MAX_RUNS)
		return STP_ECORRUPT;
	if (len - 2 < 2 * (size_t)runs)
		return STP_ETRUNCATED;
	memset(present, 0, sizeof present);
	for (r = 0; r < runs; r++) {
		int skip = in[2 + 2 * r], count = in[3 + 2 * r] + 1;

		/* A zero gap would split one run in two. */
		if ((r > 0 && skip == 0) || s + skip + count > 256)
			return STP_ECORRUPT;
		s += skip;
		memset(present + s, 1, (size_t)count);
		s += count;
		nsym += count;
	}
	if (nsym < 2)
		return STP_ECORRUPT;
	total = 1u << pb;
	pos = 2 + 2 * (size_t)runs;
	for (s = 0; s < 256; s++) {
		uint32_t v;

		f[s] = 0;
		if (!present[s])
			continue;
		if (pos >= len)
			return STP_ETRUNCATED;
		v = in[pos++];
		if (v & 0x80) {
			if (pos >= len)
				return STP_ETRUNCATED;
			if (in[pos] == 0)
				return STP_ECORRUPT;
			v = (v & 0x7f) | (uint32_t)in[pos++] << 7;
		}
		if (v == 0 || v >= total)
			return STP_ECORRUPT;
		sum += v;
		if (sum > total)
			return STP_ECORRUPT;
		f[s] = v;
	}
	if (sum != total)
		return STP_ECORRUPT;
	*out_pb = pb;
	*out_used = pos;
	return 0;
}

/* Initial encoder state of lanes 0..lanes-1 (and so the final decoder
 * state): in [2^15, 2^16), derived by FNV-1a from the table bytes and n
 * so that a damaged table that still parses, or the wrong n, fails the
 * final check instead of decoding to wrong bytes.  Lane j gets the same
 * value whatever the lane count. */
static void initial_states_at(const uint8_t *table, size_t tlen, size_t n,
			      unsigned first, unsigned lanes,
			      uint32_t x0[STP_RANS_LANES])
{
	uint32_t h = 2166136261u;
	size_t i;
	unsigned j;

	for (i = 0; i < tlen; i++)
		h = (h ^ table[i]) * 16777619u;
	for (j = 0; j < 4; j++)
		h = (h ^ (uint8_t)(n >> (8 * j))) * 16777619u;
	for (j = 0; j < lanes; j++)
		x0[j] = STP_RANS_L | (((h ^ (first + j)) * 16777619u) >> 17);
}

static void initial_states(const uint8_t *table, size_t tlen, size_t n,
			   unsigned lanes, uint32_t x0[STP_RANS_LANES])
{
	initial_states_at(table, tlen, n, 0, lanes, x0);
}

/* Symbols a segment of a striped body holds (all but the last hold
 * exactly this many): whole groups, the plane cut as evenly as that
 * allows. */
static size_t seg_len(size_t n, unsigned segs)
{
	size_t per = STP_RANS_LANES * (size_t)segs;

	return (n + per - 1) / per * STP_RANS_LANES;
}

/* ---- Scalar encoder ---- */

/* The state after coding one symbol into x, which the caller has already
 * renormalised (x <= s->x_max). */
static uint32_t enc_update(uint32_t x, const struct stp_rans_enc_sym *s)
{
	uint32_t q = (uint32_t)(((uint64_t)x * s->rcp) >> 32) >> s->shift;

	return x + s->bias + q * s->cmpl;
}

/* Encodes one symbol into state x, writing its renormalisation word
 * below *pp.  The word is stored whether or not it is taken (only the
 * pointer move depends on x, so no branch mispredicts): 2 bytes below
 * *pp must be writable. */
static uint32_t enc_put(uint32_t x, const struct stp_rans_enc_sym *s,
			uint8_t **pp)
{
	uint32_t c = x > s->x_max;
	uint8_t *p = *pp - 2;

	p[0] = (uint8_t)x;
	p[1] = (uint8_t)(x >> 8);
	*pp -= 2 * c;
	return enc_update(x >> (16 * c), s);
}

int stp_rans_enc_groups_scalar(struct stp_rans_enc_state *e,
			       const uint8_t *in, size_t ngroups)
{
	uint8_t *p = e->p;
	size_t g = ngroups;
	int j;

	while (g-- > 0) {
		const uint8_t *grp = in + g * STP_RANS_LANES;

		if (p - e->lo < STP_RANS_STEP_BYTES)
			return -1;
		for (j = STP_RANS_LANES - 1; j >= 0; j--)
			e->x[j] = enc_put(e->x[j], &e->sym[grp[j]], &p);
	}
	e->p = p;
	return 0;
}

/* Encodes in[from..to) backwards, symbol i into state i mod lanes, one
 * symbol at a time: all of a 4-state body, the last partial group of a
 * 32-state one.  Returns 0, or -1 as soon as fewer than 2 bytes remain
 * above e->lo before a symbol (e is then garbage). */
static int enc_range(struct stp_rans_enc_state *e, const uint8_t *in,
		     size_t from, size_t to, unsigned lanes)
{
	uint32_t x[STP_RANS_LANES];
	uint8_t *p = e->p;
	unsigned j = (unsigned)(to % lanes);
	size_t i;

	/* Local copies: the words stored through p may alias *e. */
	memcpy(x, e->x, sizeof x);
	for (i = to; i > from; i--) {
		j = (j ? j : lanes) - 1;
		if (p - e->lo < 2)
			return -1;
		x[j] = enc_put(x[j], &e->sym[in[i - 1]], &p);
	}
	memcpy(e->x, x, sizeof x);
	e->p = p;
	return 0;
}

/* Per-symbol constants for the update without division (Alverson's
 * reciprocal, as in ryg_rans): exact for every state below 2^31. */
static void enc_symbols(const uint32_t f[256], unsigned pb,
			struct stp_rans_enc_sym sym[256])
{
	uint32_t start = 0, total = 1u << pb;
	int s;

	memset(sym, 0, 256 * sizeof sym[0]);
	for (s = 0; s < 256; s++) {
		uint32_t fs = f[s];
		struct stp_rans_enc_sym *y = &sym[s];

		if (!fs)
			continue;
		y->x_max = (fs << (31 - pb)) - 1;
		y->cmpl = (uint16_t)(total - fs);
		if (fs == 1) {
			y->rcp = ~0u;
			y->shift = 0;
			y->bias = start + total - 1;
		} else {
			unsigned sh = 32 - (unsigned)__builtin_clz(fs - 1);

			y->rcp = (uint32_t)((((uint64_t)1 << (sh + 31)) +
					     fs - 1) / fs);
			y->shift = (uint16_t)(sh - 1);
			y->bias = start;
		}
		start += fs;
	}
}

/* The table and prob_bits the encoder uses: of every valid pb, the one
 * whose estimated body (table, states and words) is smallest, ties going
 * to the smaller pb and so the smaller decode table.  The states cost
 * the same for every pb, so the choice is the same for 4 states as for
 * 32.  Returns the estimate of everything but the states. */
static size_t choose_table(const uint32_t cnt[256], const uint8_t *syms,
			   int nsym, size_t n, uint32_t f[256],
			   unsigned *out_pb)
{
	uint32_t ftry[256];
	size_t best = SIZE_MAX;
	unsigned pb;
	uint8_t table[MAX_TABLE_BYTES];

	for (pb = 1; pb <= STP_RANS_MAX_PROB_BITS; pb++) {
		uint64_t bits = 0;
		size_t est;
		int i;

		if ((1u << pb) < (uint32_t)nsym)
			continue;
		normalise(cnt, syms, nsym, n, pb, ftry);
		for (i = 0; i < nsym; i++)
			bits += (uint64_t)cnt[syms[i]] *
				((pb << 24) - log2_q24(ftry[syms[i]]));
		est = 1 + put_table(table, pb, ftry) +
		      2 * (size_t)((bits + ((uint64_t)16 << 24) - 1) >> 28);
		if (est < best) {
			best = est;
			*out_pb = pb;
			memcpy(f, ftry, sizeof ftry);
		}
	}
	return best;
}

/* What an order-0 body of either state count is made from: the table,
 * the encoder's constants, the initial states (lane j's is the same for
 * 4 states as for 32), and the estimated body less its states. */
struct order0 {
	size_t tlen, est;
	uint8_t table[MAX_TABLE_BYTES];
	struct stp_rans_enc_sym sym[256];
	uint32_t x0[STP_RANS_LANES];
};

static void order0_plan(struct order0 *b, const uint32_t cnt[256],
			const uint8_t *syms, int nsym, size_t n)
{
	uint32_t f[256];
	unsigned pb = 0;

	b->est = choose_table(cnt, syms, nsym, n, f, &pb);
	b->tlen = put_table(b->table, pb, f);
	enc_symbols(f, pb, b->sym);
	initial_states(b->table, b->tlen, n, STP_RANS_LANES, b->x0);
}

/* Whether a body with lanes states is worth making: its estimate beats
 * the raw body (n + 1 bytes). */
static int order0_worth(const struct order0 *b, size_t n, unsigned lanes)
{
	return b->est + 4 * (size_t)lanes < n + 1;
}

/* Length of the body order0_write() would write with 32 states, or 0
 * where it would write none, without writing it: the same encoder run
 * over a small scratch buffer, a few groups at a time, counting the
 * words instead of keeping them. */
static size_t order0_length32(const struct order0 *b, const uint8_t *in,
			      size_t n)
{
	uint8_t scratch[SCRATCH_GROUPS * STP_RANS_STEP_BYTES];
	uint8_t *top = scratch + sizeof scratch;
	struct stp_rans_enc_state e;
	size_t g = n / STP_RANS_LANES, k;
	size_t len = 1 + b->tlen + 4 * (size_t)STP_RANS_LANES;

	memcpy(e.x, b->x0, sizeof e.x);
	e.p = top;
	e.lo = scratch;
	e.sym = b->sym;
	/* Neither call can run out of room: the partial group needs at
	 * most 62 bytes, and k groups at most k * STP_RANS_STEP_BYTES. */
	enc_range(&e, in, g * STP_RANS_LANES, n, STP_RANS_LANES);
	len += (size_t)(top - e.p);
	for (; g > 0; g -= k) {
		k = g < SCRATCH_GROUPS ? g : SCRATCH_GROUPS;
		e.p = top;
		impl_cur->enc(&e, in + (g - k) * STP_RANS_LANES, k);
		len += (size_t)(top - e.p);
	}
	return len < n + 1 ? len : 0;
}

/* Writes the order-0 body of b with lanes states into out[0..cap);
 * returns its length, or 0 if it would not be shorter than the raw body
 * (n + 1 bytes).  Whole groups of a 32-state body go to the current
 * variant; everything else is the scalar code, the same in every
 * variant. */
static size_t order0_write(const struct order0 *b, const uint8_t *in,
			   size_t n, unsigned lanes, uint8_t *out, size_t cap)
{
	struct stp_rans_enc_state e;
	size_t head = 1 + b->tlen, sbytes = 4 * (size_t)lanes;
	size_t full = 0, words;
	unsigned j;

	if (head + sbytes + STP_RANS_STEP_BYTES > cap)
		return 0;
	memcpy(e.x, b->x0, sizeof e.x);
	e.p = out + cap;
	e.lo = out + head + sbytes;
	e.sym = b->sym;
	if (lanes == STP_RANS_LANES)
		full = n / STP_RANS_LANES * STP_RANS_LANES;

	/* The encoder runs backwards: the last, partial group first. */
	if (enc_range(&e, in, full, n, lanes) < 0)
		return 0;
	if (full && impl_cur->enc(&e, in, full / STP_RANS_LANES) < 0)
		return 0;

	words = (size_t)(out + cap - e.p);
	if (head + sbytes + words >= n + 1)
		return 0;
	out[0] = lanes == STP_RANS_LANES ? STP_RANS_ORDER0
					 : STP_RANS_ORDER0_X4;
	memcpy(out + 1, b->table, b->tlen);
	memmove(out + head + sbytes, e.p, words);
	for (j = 0; j < lanes; j++)
		put32(out + head + 4 * j, e.x[j]);
	return head + sbytes + words;
}

/* Writes the striped (method 6) body of b with segs segments into
 * out[0..cap); returns its length, or 0 if it would not be shorter than
 * the raw body.  The segments are coded last first, each downwards below
 * the words of the one after it, so that their words come out in
 * segment order. */
static size_t order0_write_striped(const struct order0 *b, const uint8_t *in,
				   size_t n, unsigned segs, uint8_t *out,
				   size_t cap)
{
	struct stp_rans_enc_state e;
	size_t m = seg_len(n, segs), lens[STP_RANS_MAX_SEGS];
	size_t head = 1 + b->tlen + 1 + 4 * (size_t)(segs - 1);
	size_t sbytes = 4 * (size_t)STP_RANS_LANES * segs, words;
	uint32_t xs[STP_RANS_MAX_SEGS][STP_RANS_LANES];
	uint8_t *top = out + cap;

	if (head + sbytes + STP_RANS_STEP_BYTES > cap)
		return 0;
	e.p = top;
	e.lo = out + head + sbytes;
	e.sym = b->sym;
	for (unsigned k = segs; k-- > 0;) {
		size_t from = k * m, cnt = (k + 1 == segs ? n : from + m) - from;
		size_t full = cnt / STP_RANS_LANES * STP_RANS_LANES;
		uint8_t *end = e.p;

		initial_states_at(b->table, b->tlen, n, STP_RANS_LANES * k,
				  STP_RANS_LANES, e.x);
		if (enc_range(&e, in + from, full, cnt, STP_RANS_LANES) < 0 ||
		    (full && impl_cur->enc(&e, in + from,
					   full / STP_RANS_LANES) < 0))
			return 0;
		lens[k] = (size_t)(end - e.p);
		memcpy(xs[k], e.x, sizeof e.x);
	}
	words = (size_t)(top - e.p);
	if (head + sbytes + words >= n + 1)
		return 0;
	out[0] = STP_RANS_ORDER0_STRIPED;
	memcpy(out + 1, b->table, b->tlen);
	out[1 + b->tlen] = (uint8_t)segs;
	for (unsigned k = 0; k + 1 < segs; k++)
		put32(out + 2 + b->tlen + 4 * k, (uint32_t)lens[k]);
	memmove(out + head + sbytes, e.p, words);
	for (unsigned k = 0; k < segs; k++)
		for (unsigned j = 0; j < STP_RANS_LANES; j++)
			put32(out + head + 4 * (STP_RANS_LANES * k + j),
			      xs[k][j]);
	return head + sbytes + words;
}

/* Segments the encoder cuts a plane of n symbols into: each costs 132
 * bytes of states and length, so only planes large enough for that to be
 * under 0.05% of them are cut, into 4 above 2^20 symbols. */
static unsigned striped_segs(size_t n)
{
	return n >= ((size_t)1 << 20) ? 4 : n >= ((size_t)1 << 18) ? 2 : 1;
}

/* The shortest order-0 body for in[0..n), written to out; 0 (nothing
 * written) if none is shorter than the raw body.  A plane of at most
 * STP_RANS_X4_MAX_N symbols is written with 4 states, then replaced by
 * the 32-state body only where that is not longer: a tie goes to the 32
 * states, which decode faster. */
static size_t encode_order0(const uint8_t *in, size_t n,
			    const uint32_t cnt[256], const uint8_t *syms,
			    int nsym, uint8_t *out, size_t cap)
{
	struct order0 b;
	size_t len = 0, len32;

	order0_plan(&b, cnt, syms, nsym, n);
	if (striped_segs(n) > 1)
		return order0_write_striped(&b, in, n, striped_segs(n), out,
					    cap);
	if (n <= STP_RANS_X4_MAX_N && order0_worth(&b, n, STP_RANS_X4_LANES))
		len = order0_write(&b, in, n, STP_RANS_X4_LANES, out, cap);
	if (!order0_worth(&b, n, STP_RANS_LANES))
		return len;
	if (len) {
		len32 = order0_length32(&b, in, n);
		if (!len32 || len32 > len)
			return len;
	}
	return order0_write(&b, in, n, STP_RANS_LANES, out, cap);
}

size_t stp_rans_bound(size_t n)
{
	return n + 1 + STP_RANS_STEP_BYTES;
}

int stp_rans_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap,
		    size_t *out_len)
{
	uint32_t cnt[256];
	uint8_t syms[256];
	int s, nsym = 0;
	size_t len;

	if (n > STP_RANS_MAX_N || cap < stp_rans_bound(n))
		return STP_ETOOBIG;
	if (!impl_cur)
		return STP_EUNSUPPORTED;
	histogram(in, n, cnt);
	for (s = 0; s < 256; s++)
		if (cnt[s])
			syms[nsym++] = (uint8_t)s;
	if (nsym == 1) {
		out[0] = STP_RANS_RUN;
		out[1] = syms[0];
		*out_len = 2;
		return 0;
	}
	len = nsym ? encode_order0(in, n, cnt, syms, nsym, out, cap) : 0;
	if (!len) {
		out[0] = STP_RANS_RAW;
		if (n)
			memcpy(out + 1, in, n);
		len = n + 1;
	}
	*out_len = len;
	return 0;
}

/* ---- Scalar decoder ---- */

size_t stp_rans_dec_groups_scalar(struct stp_rans_dec_state *d,
				  uint8_t *out, size_t ngroups)
{
	const uint32_t *tab = d->tab;
	const uint8_t *p = d->p;
	uint32_t mask = (1u << d->pb) - 1, x[STP_RANS_LANES];
	unsigned pb = d->pb;
	size_t g;
	int j;

	/* A local copy: stores to out (bytes) may alias *d, and would make
	 * the compiler reload every state. */
	memcpy(x, d->x, sizeof x);
	for (g = 0; g < ngroups && d->end - p >= STP_RANS_STEP_BYTES; g++) {
		uint8_t *o = out + g * STP_RANS_LANES;

		for (j = 0; j < STP_RANS_LANES; j++) {
			uint32_t e = tab[x[j] & mask];
			uint32_t v = (e >> 20) * (x[j] >> pb) +
				     ((e >> 8) & 0xfff);
			uint32_t w = (uint32_t)p[0] | (uint32_t)p[1] << 8;
			/* Whether a lane renormalises is data, not a pattern a
			 * branch predictor learns: select arithmetically. */
			uint32_t c = v < STP_RANS_L;

			o[j] = (uint8_t)e;
			x[j] = v << (16 * c) | (w & (0u - c));
			p += 2 * c;
		}
	}
	memcpy(d->x, x, sizeof x);
	d->p = p;
	return g;
}

/* Symbols from..n-1, symbol i from state i mod lanes, checking every
 * read: all of a 4-state body, and the end of a 32-state one, where
 * fewer than a group's worth of words is left. */
static int dec_checked(struct stp_rans_dec_state *d, uint8_t *out,
		       size_t from, size_t n, unsigned lanes)
{
	const uint32_t *tab = d->tab;
	const uint8_t *p = d->p, *end = d->end;
	uint32_t mask = (1u << d->pb) - 1, x[STP_RANS_LANES];
	unsigned pb = d->pb, j = (unsigned)(from % lanes);
	size_t i;

	/* A local copy, as in the group decoder. */
	memcpy(x, d->x, sizeof x);
	for (i = from; i < n; i++) {
		uint32_t e = tab[x[j] & mask];
		uint32_t v = (e >> 20) * (x[j] >> pb) + ((e >> 8) & 0xfff);
		uint32_t c = v < STP_RANS_L, w = 0;

		/* The test that predicts well (are 2 bytes left?) is a
		 * branch; whether the state renormalises is selected
		 * arithmetically, as in the group decoder. */
		if (end - p >= 2)
			w = (uint32_t)p[0] | (uint32_t)p[1] << 8;
		else if (c)
			return STP_ETRUNCATED;
		out[i] = (uint8_t)e;
		x[j] = v << (16 * c) | (w & (0u - c));
		p += 2 * c;
		if (++j == lanes)
			j = 0;
	}
	memcpy(d->x, x, sizeof x);
	d->p = p;
	return 0;
}

/* The decode table of formats/rans.md's frequencies f: tab[slot] =
 * symbol | (slot - start) << 8 | freq << 20. */
static void build_tab(const uint32_t f[256], uint32_t *tab)
{
	uint32_t start = 0;

	for (int s = 0; s < 256; s++) {
		uint32_t y, e = (uint32_t)s | f[s] << 20;

		for (y = 0; y < f[s]; y++)
			tab[start + y] = e | y << 8;
		start += f[s];
	}
}

/* Reads lanes initial states at in and checks their range. */
static int get_states(const uint8_t *in, unsigned lanes, uint32_t *x)
{
	for (unsigned j = 0; j < lanes; j++) {
		x[j] = get32(in + 4 * j);
		/* Below 2^31 keeps every later state below 2^31, which the
		 * vector code's signed compares rely on. */
		if (x[j] < STP_RANS_L || x[j] >= (uint32_t)1 << 31)
			return STP_ECORRUPT;
	}
	return 0;
}

/* After the last symbol of a stream: every word read, and the states
 * back at their start values, lanes first .. first+lanes-1. */
static int check_end(const struct stp_rans_dec_state *d, const uint8_t *table,
		     size_t tlen, size_t n, unsigned first, unsigned lanes)
{
	uint32_t x0[STP_RANS_LANES];

	if (d->p != d->end)
		return STP_ECORRUPT;
	initial_states_at(table, tlen, n, first, lanes, x0);
	for (unsigned j = 0; j < lanes; j++)
		if (d->x[j] != x0[j])
			return STP_ECORRUPT;
	return 0;
}

/* Decodes an order-0 body with lanes states (method byte stripped). */
static int decode_order0(const uint8_t *in, size_t len, uint8_t *out,
			 size_t n, unsigned lanes)
{
	_Alignas(64) uint32_t tab[1u << STP_RANS_MAX_PROB_BITS];
	uint32_t f[256];
	struct stp_rans_dec_state d;
	size_t tlen, done = 0, sbytes = 4 * (size_t)lanes;
	unsigned pb;
	int err;

	if (n == 0)
		return STP_ECORRUPT;
	err = get_table(in, len, &pb, f, &tlen);
	if (err < 0)
		return err;
	if (len - tlen < sbytes)
		return STP_ETRUNCATED;
	build_tab(f, tab);
	if ((err = get_states(in + tlen, lanes, d.x)) < 0)
		return err;
	d.p = in + tlen + sbytes;
	d.end = in + len;
	d.tab = tab;
	d.pb = pb;
	if (lanes == STP_RANS_LANES)
		done = impl_cur->dec(&d, out, n / STP_RANS_LANES) *
		       STP_RANS_LANES;
	err = dec_checked(&d, out, done, n, lanes);
	if (err < 0)
		return err;
	return check_end(&d, in, tlen, n, 0, lanes);
}

/* Decodes a striped body (method 6, method byte stripped): the segments'
 * whole groups side by side through the variant, then each segment's
 * tail and checks. */
static int decode_striped(const uint8_t *in, size_t len, uint8_t *out,
			  size_t n)
{
	_Alignas(64) uint32_t tab[1u << STP_RANS_MAX_PROB_BITS];
	uint32_t f[256];
	struct stp_rans_dec_state d[STP_RANS_MAX_SEGS];
	uint8_t *outs[STP_RANS_MAX_SEGS];
	size_t groups[STP_RANS_MAX_SEGS], done[STP_RANS_MAX_SEGS];
	size_t tlen, at, m, lens;
	const uint8_t *w;
	unsigned pb, segs;
	int err;

	if (n == 0)
		return STP_ECORRUPT;
	if ((err = get_table(in, len, &pb, f, &tlen)) < 0)
		return err;
	if (len - tlen < 1)
		return STP_ETRUNCATED;
	segs = in[tlen];
	if (segs < 2 || segs > STP_RANS_MAX_SEGS)
		return STP_ECORRUPT;
	m = seg_len(n, segs);
	if ((segs - 1) * m >= n)
		return STP_ECORRUPT;	/* the last segment would be empty */
	at = tlen + 1;
	if (len - at < 4 * (size_t)(segs - 1) +
		       4 * (size_t)STP_RANS_LANES * segs)
		return STP_ETRUNCATED;
	build_tab(f, tab);
	w = in + at + 4 * (size_t)(segs - 1) + 4 * (size_t)STP_RANS_LANES * segs;
	for (unsigned k = 0; k < segs; k++) {
		size_t cnt = (k + 1 == segs ? n : (k + 1) * m) - k * m;

		err = get_states(in + at + 4 * (size_t)(segs - 1) +
				 4 * (size_t)STP_RANS_LANES * k,
				 STP_RANS_LANES, d[k].x);
		if (err < 0)
			return err;
		lens = k + 1 == segs ? (size_t)(in + len - w)
				     : get32(in + at + 4 * k);
		if (lens > (size_t)(in + len - w))
			return STP_ETRUNCATED;
		d[k].p = w;
		d[k].end = w + lens;
		d[k].tab = tab;
		d[k].pb = pb;
		w += lens;
		outs[k] = out + k * m;
		groups[k] = cnt / STP_RANS_LANES;
	}
	impl_cur->dec_segs(d, segs, outs, groups, done);
	for (unsigned k = 0; k < segs; k++) {
		size_t cnt = (k + 1 == segs ? n : (k + 1) * m) - k * m;

		err = dec_checked(&d[k], outs[k], done[k] * STP_RANS_LANES,
				  cnt, STP_RANS_LANES);
		if (err < 0)
			return err;
		err = check_end(&d[k], in, tlen, n, STP_RANS_LANES * k,
				STP_RANS_LANES);
		if (err < 0)
			return err;
	}
	return 0;
}

/* One segment after another: the variants whose single-stream decoder
 * already keeps the core busy. */
static void dec_segs_each(size_t (*dec)(struct stp_rans_dec_state *,
					uint8_t *, size_t),
			  struct stp_rans_dec_state *d, unsigned segs,
			  uint8_t *const *out, const size_t *ngroups,
			  size_t *out_done)
{
	for (unsigned k = 0; k < segs; k++)
		out_done[k] = dec(&d[k], out[k], ngroups[k]);
}

void stp_rans_dec_segs_scalar(struct stp_rans_dec_state *d, unsigned segs,
			      uint8_t *const *out, const size_t *ngroups,
			      size_t *out_done)
{
	dec_segs_each(stp_rans_dec_groups_scalar, d, segs, out, ngroups,
		      out_done);
}

void stp_rans_dec_segs_avx2(struct stp_rans_dec_state *d, unsigned segs,
			    uint8_t *const *out, const size_t *ngroups,
			    size_t *out_done)
{
	dec_segs_each(stp_rans_dec_groups_avx2, d, segs, out, ngroups,
		      out_done);
}

int stp_rans_decode(const uint8_t *in, size_t len, uint8_t *out, size_t n)
{
	if (n > STP_RANS_MAX_N)
		return STP_ETOOBIG;
	if (!impl_cur)
		return STP_EUNSUPPORTED;
	if (len < 1)
		return STP_ETRUNCATED;
	switch (in[0]) {
	case STP_RANS_RAW:
		if (len - 1 < n)
			return STP_ETRUNCATED;
		if (len - 1 > n)
			return STP_ECORRUPT;
		if (n)
			memcpy(out, in + 1, n);
		return 0;
	case STP_RANS_RUN:
		if (len < 2)
			return STP_ETRUNCATED;
		if (len > 2 || n == 0)
			return STP_ECORRUPT;
		memset(out, in[1], n);
		return 0;
	case STP_RANS_ORDER0:
		return decode_order0(in + 1, len - 1, out, n, STP_RANS_LANES);
	case STP_RANS_ORDER0_X4:
		if (n > STP_RANS_X4_MAX_N)
			return STP_ECORRUPT;
		return decode_order0(in + 1, len - 1, out, n,
				     STP_RANS_X4_LANES);
	case STP_RANS_DEFLATE:
		return stp_deflate_decode(in, len, out, n);
	case STP_RANS_ORDER0_STRIPED:
		return decode_striped(in + 1, len - 1, out, n);
	default:
		return STP_EUNSUPPORTED;
	}
}
