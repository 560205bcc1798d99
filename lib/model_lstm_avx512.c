/* The lstm model's lane-batched step in AVX-512 (F and BW): the 32 lanes
 * of a group as two vectors of 16 32-bit values (products and states) or
 * one of 32 16-bit values (inputs).  Integer arithmetic throughout, so it
 * gives exactly the numbers of stp_lstm_layer_lanes_c and
 * stp_lstm_scores_lanes_c in lib/model_lstm.c. */
#include <immintrin.h>
#include <stdint.h>

#include "model_lstm.h"

/* Pairs of inputs j, j+1 interleaved into 32-bit lanes, lanes 0-15 in
 * lo, 16-31 in hi: what vpmaddwd multiplies with a pair of weights. */
static void pairs(int16_t in[][32], unsigned d, __m512i *lo, __m512i *hi)
{
	const __m512i idx_lo = _mm512_set_epi16(
		47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
		39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
	const __m512i idx_hi = _mm512_set_epi16(
		63, 31, 62, 30, 61, 29, 60, 28, 59, 27, 58, 26, 57, 25, 56, 24,
		55, 23, 54, 22, 53, 21, 52, 20, 51, 19, 50, 18, 49, 17, 48, 16);

	for (unsigned j = 0; j < d; j += 2) {
		__m512i a = _mm512_loadu_si512(in[j]);
		__m512i b = j + 1 < d ? _mm512_loadu_si512(in[j + 1])
				      : _mm512_setzero_si512();

		lo[j / 2] = _mm512_permutex2var_epi16(a, idx_lo, b);
		hi[j / 2] = _mm512_permutex2var_epi16(a, idx_hi, b);
	}
}

/* sum_j w[j] * x[j] for the 32 lanes, x given as pairs. */
static inline void dot(const int16_t *w, unsigned d, const __m512i *lo,
		       const __m512i *hi, __m512i *acc_lo, __m512i *acc_hi)
{
	for (unsigned j = 0; j < d; j += 2) {
		uint32_t pw = (uint16_t)w[j] |
			      (uint32_t)(uint16_t)(j + 1 < d ? w[j + 1] : 0) << 16;
		__m512i wv = _mm512_set1_epi32((int)pw);

		*acc_lo = _mm512_add_epi32(*acc_lo,
					   _mm512_madd_epi16(lo[j / 2], wv));
		*acc_hi = _mm512_add_epi32(*acc_hi,
					   _mm512_madd_epi16(hi[j / 2], wv));
	}
}

/* v clamped to int16's range. */
static inline __m512i clamp16(__m512i v)
{
	return _mm512_max_epi32(_mm512_set1_epi32(-32768),
				_mm512_min_epi32(v, _mm512_set1_epi32(32767)));
}

/* tanh in Q12 (stp_lstm_tanh) of 16 values. */
static inline __m512i vtanh(__m512i v)
{
	/* the table's values and slopes at k / 4, k = 0..31 */
	static const int32_t tv[32] = {
		0, 1003, 1893, 2602, 3119, 3475, 3707, 3856, 3949, 4006, 4041,
		4063, 4076, 4084, 4089, 4091, 4093, 4094, 4095, 4095, 4096,
		4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096,
		4096,
	};
	static const int32_t td[32] = {
		1003, 890, 709, 517, 356, 232, 149, 93, 57, 35, 22, 13, 8, 5,
		2, 2, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	};
	__m512i a = _mm512_abs_epi32(v);
	__m512i i = _mm512_min_epu32(_mm512_srli_epi32(a, 10),
				     _mm512_set1_epi32(31));
	__m512i fr = _mm512_and_si512(a, _mm512_set1_epi32(1023));
	__m512i t0 = _mm512_loadu_si512(tv), t1 = _mm512_loadu_si512(tv + 16);
	__m512i d0 = _mm512_loadu_si512(td), d1 = _mm512_loadu_si512(td + 16);
	__m512i y = _mm512_add_epi32(
		_mm512_permutex2var_epi32(t0, i, t1),
		_mm512_srli_epi32(_mm512_mullo_epi32(
			_mm512_permutex2var_epi32(d0, i, d1), fr), 10));
	__mmask16 big = _mm512_cmpge_epu32_mask(a, _mm512_set1_epi32(32 << 10));
	__mmask16 neg = _mm512_cmplt_epi32_mask(v, _mm512_setzero_si512());

	y = _mm512_mask_mov_epi32(y, big, _mm512_set1_epi32(4096));
	return _mm512_mask_sub_epi32(y, neg, _mm512_setzero_si512(), y);
}

static inline __m512i vsigmoid(__m512i v)
{
	return _mm512_srai_epi32(
		_mm512_add_epi32(_mm512_set1_epi32(4096),
				 vtanh(_mm512_srai_epi32(v, 1))), 1);
}

void stp_lstm_layer_lanes_avx512(const struct lstm_layer *L, unsigned H,
				 int16_t in[][32], int16_t h[][32],
				 int16_t c[][32], uint32_t mask)
{
	__m512i xl[(LSTM_MAX_IN + 1) / 2], xh[(LSTM_MAX_IN + 1) / 2];
	__m512i hl[LSTM_MAX_HIDDEN / 2], hh[LSTM_MAX_HIDDEN / 2];
	__m512i pre[4 * LSTM_MAX_HIDDEN][2];
	unsigned din = L->din;
	const __m128i sh = _mm_cvtsi32_si128((int)L->shift);

	pairs(in, din, xl, xh);
	pairs(h, H, hl, hh);
	for (unsigned r = 0; r < 4 * H; r++) {
		const int16_t *w = L->w + (size_t)r * (din + H);
		__m512i lo = _mm512_setzero_si512(), hi = lo;
		__m512i b = _mm512_set1_epi32(L->b[r]);

		dot(w, din, xl, xh, &lo, &hi);
		dot(w + din, H, hl, hh, &lo, &hi);
		pre[r][0] = clamp16(_mm512_add_epi32(_mm512_sra_epi32(lo, sh), b));
		pre[r][1] = clamp16(_mm512_add_epi32(_mm512_sra_epi32(hi, sh), b));
	}
	for (unsigned j = 0; j < H; j++) {
		__m256i cs[2], hs[2];

		for (unsigned half = 0; half < 2; half++) {
			__m512i i = vsigmoid(pre[j][half]);
			__m512i f = vsigmoid(pre[H + j][half]);
			__m512i g = vtanh(pre[2 * H + j][half]);
			__m512i o = vsigmoid(pre[3 * H + j][half]);
			__m512i cv = _mm512_cvtepi16_epi32(_mm256_loadu_si256(
				(const __m256i *)&c[j][16 * half]));
			__m512i cn = clamp16(_mm512_srai_epi32(_mm512_add_epi32(
				_mm512_mullo_epi32(f, cv),
				_mm512_mullo_epi32(i, g)), 12));

			cs[half] = _mm512_cvtepi32_epi16(cn);
			hs[half] = _mm512_cvtepi32_epi16(_mm512_srai_epi32(
				_mm512_mullo_epi32(o, vtanh(cn)), 12));
		}
		/* lanes outside mask keep their state */
		_mm512_storeu_si512(c[j], _mm512_mask_mov_epi16(
			_mm512_loadu_si512(c[j]), mask, _mm512_inserti64x4(
				_mm512_castsi256_si512(cs[0]), cs[1], 1)));
		_mm512_storeu_si512(h[j], _mm512_mask_mov_epi16(
			_mm512_loadu_si512(h[j]), mask, _mm512_inserti64x4(
				_mm512_castsi256_si512(hs[0]), hs[1], 1)));
	}
}

void stp_lstm_scores_lanes_avx512(const struct lstm *n, const int32_t *bo,
				  int16_t h[][32], int32_t z[][32])
{
	__m512i hl[LSTM_MAX_HIDDEN / 2], hh[LSTM_MAX_HIDDEN / 2];

	const __m128i sh = _mm_cvtsi32_si128((int)n->out_shift);

	pairs(h, n->hidden, hl, hh);
	for (unsigned j = 0; j < n->window; j++) {
		__m512i lo = _mm512_setzero_si512(), hi = lo;
		__m512i b = _mm512_set1_epi32(bo[j]);

		dot(n->wo + (size_t)j * n->hidden, n->hidden, hl, hh, &lo, &hi);
		_mm512_storeu_si512(z[j], _mm512_add_epi32(
			_mm512_sra_epi32(lo, sh), b));
		_mm512_storeu_si512(z[j] + 16, _mm512_add_epi32(
			_mm512_sra_epi32(hi, sh), b));
	}
}
