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
	const uint8_t *p = d->p;
	__m512i x0 = _mm512_loadu_si512(d->x + 0);
	__m512i x1 = _mm512_loadu_si512(d->x + 16);
	size_t g;

	for (g = 0; g < ngroups && d->end - p >= STP_RANS_STEP_BYTES; g++) {
		uint8_t *o = out + g * STP_RANS_LANES;
		__m512i e0 = _mm512_i32gather_epi32(
			_mm512_and_si512(x0, mask), tab, 4);
		__m512i e1 = _mm512_i32gather_epi32(
			_mm512_and_si512(x1, mask), tab, 4);

		x0 = dec_vec(x0, e0, pb, low12, lbound, &p);
		x1 = dec_vec(x1, e1, pb, low12, lbound, &p);
		/* Symbols are the low bytes of the entries. */
		_mm_storeu_si128((__m128i *)o, _mm512_cvtepi32_epi8(e0));
		_mm_storeu_si128((__m128i *)(o + 16), _mm512_cvtepi32_epi8(e1));
	}
	_mm512_storeu_si512(d->x + 0, x0);
	_mm512_storeu_si512(d->x + 16, x1);
	d->p = p;
	return g;
}
