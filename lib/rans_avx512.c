/* AVX-512 rANS decoder: the 32 states as two vectors of 16.  Built with
 * -mavx512f -mavx512bw; rans.c calls in only on a CPU that has both.
 * Mask registers replace the AVX2 decoder's movemask and permutation
 * tables: vpexpandd hands the next words to the lanes that renormalise,
 * in lane order, which is the order the scalar reference reads them. */
#include <immintrin.h>
#include <stdint.h>

#include "rans.h"

/* Decodes one symbol in each of 16 states from their table entries e and
 * renormalises the states that fall below L. */
static inline __m512i dec_vec(__m512i x, __m512i e, __m512i pb,
			      __m512i low12, __m512i lbound,
			      const uint8_t **pp)
{
	const uint8_t *p = *pp;
	__m512i f = _mm512_srli_epi32(e, 20);
	__m512i b = _mm512_and_si512(_mm512_srli_epi32(e, 8), low12);
	__m512i w;
	__mmask16 c;

	x = _mm512_add_epi32(_mm512_mullo_epi32(f, _mm512_srlv_epi32(x, pb)),
			     b);
	c = _mm512_cmplt_epu32_mask(x, lbound);
	/* 16 words are loaded; the lanes in c take the first popcount(c). */
	w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
	*pp = p + 2 * __builtin_popcount(c);
	x = _mm512_mask_slli_epi32(x, c, x, 16);
	return _mm512_or_si512(x, _mm512_maskz_expand_epi32(c, w));
}

size_t stp_rans_dec_groups_avx512(struct stp_rans_dec_state *d,
				  uint8_t *out, size_t ngroups)
{
	const void *tab = d->tab;
	const __m512i mask = _mm512_set1_epi32((int)((1u << d->pb) - 1));
	const __m512i pb = _mm512_set1_epi32((int)d->pb);
	const __m512i low12 = _mm512_set1_epi32(0xfff);
	const __m512i lbound = _mm512_set1_epi32(STP_RANS_L);
	const uint8_t *p = d->p, *end = d->end;
	__m512i x0 = _mm512_loadu_si512(d->x + 0);
	__m512i x1 = _mm512_loadu_si512(d->x + 16);
	size_t g;

	/* The groups the words left cover (a group reads at most
	 * STP_RANS_STEP_BYTES) run without a check each. */
	for (g = 0; g < ngroups;) {
		size_t safe = (size_t)(end - p) / STP_RANS_STEP_BYTES, stop;

		if (!safe)
			break;
		for (stop = g + (safe < ngroups - g ? safe : ngroups - g);
		     g < stop; g++) {
			uint8_t *o = out + g * STP_RANS_LANES;
			__m512i e0 = _mm512_i32gather_epi32(
				_mm512_and_si512(x0, mask), tab, 4);
			__m512i e1 = _mm512_i32gather_epi32(
				_mm512_and_si512(x1, mask), tab, 4);

			x0 = dec_vec(x0, e0, pb, low12, lbound, &p);
			x1 = dec_vec(x1, e1, pb, low12, lbound, &p);
			/* Symbols are the low bytes of the entries. */
			_mm_storeu_si128((__m128i *)o,
					 _mm512_cvtepi32_epi8(e0));
			_mm_storeu_si128((__m128i *)(o + 16),
					 _mm512_cvtepi32_epi8(e1));
		}
	}
	_mm512_storeu_si512(d->x + 0, x0);
	_mm512_storeu_si512(d->x + 16, x1);
	d->p = p;
	return g;
}

/* NB segments side by side, each two vectors, for their common whole
 * groups while every one of them has a group's worth of words left. */
#define DEC_BATCH(NB)							\
static size_t dec_batch##NB(struct stp_rans_dec_state *d,		\
			    uint8_t *const *out, size_t ngroups)	\
{									\
	const void *tab = d[0].tab;					\
	const __m512i mask = _mm512_set1_epi32((int)((1u << d[0].pb) - 1)); \
	const __m512i pb = _mm512_set1_epi32((int)d[0].pb);		\
	const __m512i low12 = _mm512_set1_epi32(0xfff);			\
	const __m512i lbound = _mm512_set1_epi32(STP_RANS_L);		\
	__m512i x[NB][2];						\
	const uint8_t *p[NB], *end[NB];					\
	size_t g;							\
	int k;								\
									\
	for (k = 0; k < NB; k++) {					\
		x[k][0] = _mm512_loadu_si512(d[k].x + 0);		\
		x[k][1] = _mm512_loadu_si512(d[k].x + 16);		\
		p[k] = d[k].p;						\
		end[k] = d[k].end;					\
	}								\
	/* A group reads at most STP_RANS_STEP_BYTES a segment, so the	\
	 * groups that the words left in every segment cover run	\
	 * without a check each. */					\
	for (g = 0; g < ngroups;) {					\
		size_t safe = ngroups - g, stop;			\
		for (k = 0; k < NB; k++) {				\
			size_t r = (size_t)(end[k] - p[k]) /		\
				   STP_RANS_STEP_BYTES;			\
			safe = r < safe ? r : safe;			\
		}							\
		if (!safe)						\
			break;						\
		for (stop = g + safe; g < stop; g++) {			\
			for (k = 0; k < NB; k++) {			\
				uint8_t *o = out[k] + g * STP_RANS_LANES; \
				__m512i e0 = _mm512_i32gather_epi32(	\
					_mm512_and_si512(x[k][0], mask), \
					tab, 4);			\
				__m512i e1 = _mm512_i32gather_epi32(	\
					_mm512_and_si512(x[k][1], mask), \
					tab, 4);			\
				x[k][0] = dec_vec(x[k][0], e0, pb, low12, \
						  lbound, &p[k]);	\
				x[k][1] = dec_vec(x[k][1], e1, pb, low12, \
						  lbound, &p[k]);	\
				_mm_storeu_si128((__m128i *)o,		\
					_mm512_cvtepi32_epi8(e0));	\
				_mm_storeu_si128((__m128i *)(o + 16),	\
					_mm512_cvtepi32_epi8(e1));	\
			}						\
		}							\
	}								\
	for (k = 0; k < NB; k++) {					\
		_mm512_storeu_si512(d[k].x + 0, x[k][0]);		\
		_mm512_storeu_si512(d[k].x + 16, x[k][1]);		\
		d[k].p = p[k];						\
	}								\
	return g;							\
}
DEC_BATCH(2)
DEC_BATCH(3)
DEC_BATCH(4)

void stp_rans_dec_segs_avx512(struct stp_rans_dec_state *d, unsigned segs,
			      uint8_t *const *out, const size_t *ngroups,
			      size_t *out_done)
{
	unsigned k = 0;

	/* Four at a time (measured: four hide the latency, more do not
	 * help), then what is left of each on its own. */
	while (k < segs) {
		unsigned nb = segs - k < 4 ? segs - k : 4, i;
		size_t common = ngroups[k], g = 0;

		for (i = 1; i < nb; i++)
			if (ngroups[k + i] < common)
				common = ngroups[k + i];
		if (nb == 4)
			g = dec_batch4(d + k, out + k, common);
		else if (nb == 3)
			g = dec_batch3(d + k, out + k, common);
		else if (nb == 2)
			g = dec_batch2(d + k, out + k, common);
		for (i = 0; i < nb; i++)
			out_done[k + i] = g + stp_rans_dec_groups_avx512(
				&d[k + i], out[k + i] + g * STP_RANS_LANES,
				ngroups[k + i] - g);
		k += nb;
	}
}
