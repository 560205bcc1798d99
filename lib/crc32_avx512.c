/* CRC-32 folding with VPCLMULQDQ: four 128-bit lanes per 512-bit vector,
 * the same folds as crc32_avx2.c four lanes at a time (the derivation of
 * the constants is in crc32.c).  Built with -mavx512f -mavx512bw
 * -mvpclmulqdq -mpclmul; crc32.c calls in only on a CPU that has them.
 * The result, finished by zlib, is exactly zlib's CRC-32. */
#include <immintrin.h>
#include <stdint.h>

#include "crc32.h"

static __m512i load512(const uint8_t *p)
{
	return _mm512_loadu_si512((const void *)p);
}

static __m128i consts(const uint64_t k[2])
{
	return _mm_set_epi64x((long long)k[1], (long long)k[0]);
}

/* Each lane of a moved forward by the distance of k, onto b. */
static __m512i fold512(__m512i a, __m512i k, __m512i b)
{
	return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(a, k, 0x00),
					 _mm512_clmulepi64_epi128(a, k, 0x11),
					 b, 0x96);
}

static __m128i fold128(__m128i a, __m128i k, __m128i b)
{
	return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(a, k, 0x00),
					   _mm_clmulepi64_si128(a, k, 0x11)),
			     b);
}

size_t stp_crc32_fold_avx512(const struct stp_crc32_fold_k *k, uint32_t crc,
			     const uint8_t *p, size_t n, uint8_t out_f[16])
{
	const __m128i k16 = consts(k->by16);
	const __m512i k64 = _mm512_broadcast_i32x4(consts(k->by64));
	const uint8_t *end = p + (n & ~(size_t)15);
	const __m512i init = _mm512_zextsi128_si512(
		_mm_cvtsi32_si128((int)~crc));
	__m512i z;
	__m128i a;

	if (n >= 256) {
		/* Four vectors in flight hide VPCLMULQDQ's latency. */
		const __m512i k256 = _mm512_broadcast_i32x4(consts(k->by256));
		__m512i z0 = _mm512_xor_si512(load512(p), init);
		__m512i z1 = load512(p + 64);
		__m512i z2 = load512(p + 128);
		__m512i z3 = load512(p + 192);

		for (p += 256; end - p >= 256; p += 256) {
			z0 = fold512(z0, k256, load512(p));
			z1 = fold512(z1, k256, load512(p + 64));
			z2 = fold512(z2, k256, load512(p + 128));
			z3 = fold512(z3, k256, load512(p + 192));
		}
		z = fold512(z0, k64, z1);
		z = fold512(z, k64, z2);
		z = fold512(z, k64, z3);
	} else {
		z = _mm512_xor_si512(load512(p), init);
		p += 64;
	}
	for (; end - p >= 64; p += 64)
		z = fold512(z, k64, load512(p));
	a = _mm512_castsi512_si128(z);
	a = fold128(a, k16, _mm512_extracti32x4_epi32(z, 1));
	a = fold128(a, k16, _mm512_extracti32x4_epi32(z, 2));
	a = fold128(a, k16, _mm512_extracti32x4_epi32(z, 3));
	for (; p < end; p += 16)
		a = fold128(a, k16, _mm_loadu_si128((const __m128i *)p));
	_mm_storeu_si128((__m128i *)out_f, a);
	return n & ~(size_t)15;
}
