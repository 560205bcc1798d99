/* CRC-32 folding with PCLMULQDQ on 128-bit lanes (the derivation of the
 * constants is in crc32.c).  Built with -mavx2 -mbmi2 -mpclmul; crc32.c
 * calls in only on a CPU that has them.  The result, finished by zlib, is
 * exactly zlib's CRC-32. */
#include <immintrin.h>
#include <stdint.h>

#include "crc32.h"

static __m128i load(const uint8_t *p)
{
	return _mm_loadu_si128((const __m128i *)p);
}

/* a moved forward by the distance of k, onto b. */
static __m128i fold(__m128i a, __m128i k, __m128i b)
{
	return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(a, k, 0x00),
					   _mm_clmulepi64_si128(a, k, 0x11)),
			     b);
}

static __m128i consts(const uint64_t k[2])
{
	return _mm_set_epi64x((long long)k[1], (long long)k[0]);
}

size_t stp_crc32_fold_avx2(const struct stp_crc32_fold_k *k, uint32_t crc,
			   const uint8_t *p, size_t n, uint8_t out_f[16])
{
	const __m128i k16 = consts(k->by16);
	const __m128i k64 = consts(k->by64);
	const uint8_t *end = p + (n & ~(size_t)15);
	__m128i a0, a1, a2, a3;

	/* Four lanes in flight hide PCLMULQDQ's latency. */
	a0 = _mm_xor_si128(load(p), _mm_cvtsi32_si128((int)~crc));
	a1 = load(p + 16);
	a2 = load(p + 32);
	a3 = load(p + 48);
	for (p += 64; end - p >= 64; p += 64) {
		a0 = fold(a0, k64, load(p));
		a1 = fold(a1, k64, load(p + 16));
		a2 = fold(a2, k64, load(p + 32));
		a3 = fold(a3, k64, load(p + 48));
	}
	a0 = fold(a0, k16, a1);
	a0 = fold(a0, k16, a2);
	a0 = fold(a0, k16, a3);
	for (; p < end; p += 16)
		a0 = fold(a0, k16, load(p));
	_mm_storeu_si128((__m128i *)out_f, a0);
	return n & ~(size_t)15;
}
