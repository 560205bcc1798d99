/* The lstm model's lane-batched step in AVX2: the 32 lanes of a group as
 * four vectors of 8 32-bit values (products and states) or two of 16
 * 16-bit values (inputs).  Integer arithmetic throughout, so it gives
 * exactly the numbers of stp_lstm_layer_lanes_c and
 * stp_lstm_scores_lanes_c in lib/model_lstm.c, as the AVX-512 file
 * does. */
#include <immintrin.h>
#include <stdint.h>

#include "model_lstm.h"

/* Pairs of inputs j, j+1 interleaved into 32-bit lanes: v[j / 2][q]
 * holds lanes 8q .. 8q + 7, what vpmaddwd multiplies with a pair of
 * weights.  Reordering the quadwords first makes the in-lane unpacks
 * give lanes in order. */
static void pairs(int16_t in[][32], unsigned d, __m256i v[][4])
{
	for (unsigned j = 0; j < d; j += 2) {
		for (unsigned half = 0; half < 2; half++) {
			__m256i a = _mm256_permute4x64_epi64(_mm256_loadu_si256(
				(const __m256i *)&in[j][16 * half]), 0xd8);
			__m256i b = j + 1 < d
				? _mm256_permute4x64_epi64(_mm256_loadu_si256(
					(const __m256i *)&in[j + 1][16 * half]), 0xd8)
				: _mm256_setzero_si256();

			v[j / 2][2 * half] = _mm256_unpacklo_epi16(a, b);
			v[j / 2][2 * half + 1] = _mm256_unpackhi_epi16(a, b);
		}
	}
}

/* sum_j w[j] * x[j] for the 32 lanes, x given as pairs; the four
 * accumulators as locals, so that they stay in registers. */
static inline __attribute__((always_inline)) void
dot(const int16_t *w, unsigned d, __m256i x[][4], __m256i acc[4])
{
	__m256i a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];

	for (unsigned j = 0; j < d; j += 2) {
		uint32_t pw = (uint16_t)w[j] |
			      (uint32_t)(uint16_t)(j + 1 < d ? w[j + 1] : 0) << 16;
		__m256i wv = _mm256_set1_epi32((int)pw);
		const __m256i *xv = x[j / 2];

		a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(xv[0], wv));
		a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(xv[1], wv));
		a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(xv[2], wv));
		a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(xv[3], wv));
	}
	acc[0] = a0;
	acc[1] = a1;
	acc[2] = a2;
	acc[3] = a3;
}

/* v clamped to int16's range. */
static inline __m256i clamp16(__m256i v)
{
	return _mm256_max_epi32(_mm256_set1_epi32(-32768),
				_mm256_min_epi32(v, _mm256_set1_epi32(32767)));
}

/* t[i] for 8 indices i in 0..31, the 32-entry table t in four vectors:
 * vpermd within each eighth, then bits 3 and 4 of i pick (a gather is
 * far slower on some CPUs). */
static inline __m256i lookup32(const __m256i t[4], __m256i i)
{
	__m256 b3 = _mm256_castsi256_ps(_mm256_slli_epi32(i, 28));
	__m256 b4 = _mm256_castsi256_ps(_mm256_slli_epi32(i, 27));
	__m256 lo = _mm256_blendv_ps(
		_mm256_castsi256_ps(_mm256_permutevar8x32_epi32(t[0], i)),
		_mm256_castsi256_ps(_mm256_permutevar8x32_epi32(t[1], i)), b3);
	__m256 hi = _mm256_blendv_ps(
		_mm256_castsi256_ps(_mm256_permutevar8x32_epi32(t[2], i)),
		_mm256_castsi256_ps(_mm256_permutevar8x32_epi32(t[3], i)), b3);

	return _mm256_castps_si256(_mm256_blendv_ps(lo, hi, b4));
}

/* tanh in Q12 (stp_lstm_tanh) of 8 values.  From |v| = 32 << 10 on the
 * table's last point (4096, slope 0) is the saturated value itself. */
static inline __m256i vtanh(__m256i v)
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
	const __m256i T[4] = {
		_mm256_loadu_si256((const __m256i *)tv),
		_mm256_loadu_si256((const __m256i *)(tv + 8)),
		_mm256_loadu_si256((const __m256i *)(tv + 16)),
		_mm256_loadu_si256((const __m256i *)(tv + 24)),
	};
	const __m256i D[4] = {
		_mm256_loadu_si256((const __m256i *)td),
		_mm256_loadu_si256((const __m256i *)(td + 8)),
		_mm256_loadu_si256((const __m256i *)(td + 16)),
		_mm256_loadu_si256((const __m256i *)(td + 24)),
	};
	__m256i a = _mm256_abs_epi32(v);
	__m256i i = _mm256_min_epu32(_mm256_srli_epi32(a, 10),
				     _mm256_set1_epi32(31));
	__m256i fr = _mm256_and_si256(a, _mm256_set1_epi32(1023));
	__m256i y = _mm256_add_epi32(lookup32(T, i), _mm256_srli_epi32(
		_mm256_mullo_epi32(lookup32(D, i), fr), 10));

	return _mm256_sign_epi32(y, v);
}

static inline __m256i vsigmoid(__m256i v)
{
	return _mm256_srai_epi32(
		_mm256_add_epi32(_mm256_set1_epi32(4096),
				 vtanh(_mm256_srai_epi32(v, 1))), 1);
}

/* 16 32-bit values (lanes in order in lo, hi) as 16-bit ones; they fit. */
static inline __m256i narrow(__m256i lo, __m256i hi)
{
	return _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xd8);
}

/* All ones in the 16-bit lanes k of 16 whose bit m >> k is set. */
static inline __m256i lanes16(uint32_t m)
{
	const __m256i bit = _mm256_setr_epi16(
		1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
		16384, -32768);

	return _mm256_cmpeq_epi16(_mm256_and_si256(
		_mm256_set1_epi16((short)(m & 0xffff)), bit), bit);
}

void stp_lstm_layer_lanes_avx2(const struct lstm_layer *L, unsigned H,
			       int16_t in[][32], int16_t h[][32],
			       int16_t c[][32], uint32_t mask)
{
	__m256i x[(LSTM_MAX_IN + 1) / 2][4], hp[LSTM_MAX_HIDDEN / 2][4];
	__m256i pre[4 * LSTM_MAX_HIDDEN][4];
	unsigned din = L->din;
	const __m128i sh = _mm_cvtsi32_si128((int)L->shift);
	const __m256i keep[2] = { lanes16(mask), lanes16(mask >> 16) };

	pairs(in, din, x);
	pairs(h, H, hp);
	for (unsigned r = 0; r < 4 * H; r++) {
		const int16_t *w = L->w + (size_t)r * (din + H);
		__m256i acc[4] = { _mm256_setzero_si256(), _mm256_setzero_si256(),
				   _mm256_setzero_si256(), _mm256_setzero_si256() };
		__m256i b = _mm256_set1_epi32(L->b[r]);

		dot(w, din, x, acc);
		dot(w + din, H, hp, acc);
		for (unsigned q = 0; q < 4; q++)
			pre[r][q] = clamp16(_mm256_add_epi32(
				_mm256_sra_epi32(acc[q], sh), b));
	}
	for (unsigned j = 0; j < H; j++) {
		__m256i cs[4], hs[4];

		for (unsigned q = 0; q < 4; q++) {
			__m256i i = vsigmoid(pre[j][q]);
			__m256i f = vsigmoid(pre[H + j][q]);
			__m256i g = vtanh(pre[2 * H + j][q]);
			__m256i o = vsigmoid(pre[3 * H + j][q]);
			__m256i cv = _mm256_cvtepi16_epi32(_mm_loadu_si128(
				(const __m128i *)&c[j][8 * q]));
			__m256i cn = clamp16(_mm256_srai_epi32(_mm256_add_epi32(
				_mm256_mullo_epi32(f, cv),
				_mm256_mullo_epi32(i, g)), 12));

			cs[q] = cn;
			hs[q] = _mm256_srai_epi32(
				_mm256_mullo_epi32(o, vtanh(cn)), 12);
		}
		/* lanes outside mask keep their state */
		for (unsigned half = 0; half < 2; half++) {
			__m256i *cp = (__m256i *)&c[j][16 * half];
			__m256i *hq = (__m256i *)&h[j][16 * half];

			_mm256_storeu_si256(cp, _mm256_blendv_epi8(
				_mm256_loadu_si256(cp),
				narrow(cs[2 * half], cs[2 * half + 1]), keep[half]));
			_mm256_storeu_si256(hq, _mm256_blendv_epi8(
				_mm256_loadu_si256(hq),
				narrow(hs[2 * half], hs[2 * half + 1]), keep[half]));
		}
	}
}

void stp_lstm_scores_lanes_avx2(const struct lstm *n, const int32_t *bo,
				int16_t h[][32], int32_t z[][32])
{
	__m256i hp[LSTM_MAX_HIDDEN / 2][4];
	const __m128i sh = _mm_cvtsi32_si128((int)n->out_shift);

	pairs(h, n->hidden, hp);
	for (unsigned j = 0; j < n->window; j++) {
		__m256i acc[4] = { _mm256_setzero_si256(), _mm256_setzero_si256(),
				   _mm256_setzero_si256(), _mm256_setzero_si256() };
		__m256i b = _mm256_set1_epi32(bo[j]);

		dot(n->wo + (size_t)j * n->hidden, n->hidden, hp, acc);
		for (unsigned q = 0; q < 4; q++)
			_mm256_storeu_si256((__m256i *)&z[j][8 * q],
					    _mm256_add_epi32(_mm256_sra_epi32(acc[q], sh), b));
	}
}
