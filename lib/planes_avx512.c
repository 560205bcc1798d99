/* AVX-512 plane splitting and merging: the AVX2 kernels of planes_avx2.c
 * on 64 bytes at a time, 64 or 128 values a step, with vpternlog picking
 * bits from two sources in one instruction.  Built with -mavx512f
 * -mavx512bw; planes.c calls in only on a CPU that has both, and
 * finishes each frame's tail with the scalar reference.
 *
 * Unpacks and packs still work within each 128-bit lane, so each kernel
 * permutes qwords or dwords once, before an unpack or after a pack.  A
 * 16-bit shift moves bits between the two bytes of a word; every such bit
 * is masked off, or is zero in a symbol that passes the range checks (and
 * a merge that fails them may leave garbage). */
#include <immintrin.h>
#include <stdint.h>

#include "error.h"
#include "planes.h"

static inline __m512i load(const uint8_t *p)
{
	return _mm512_loadu_si512((const void *)p);
}

static inline void store(uint8_t *p, __m512i v)
{
	_mm512_storeu_si512((void *)p, v);
}

static inline __m512i bytes(int b)
{
	return _mm512_set1_epi8((char)b);
}

static inline __m512i words(int w)
{
	return _mm512_set1_epi16((short)w);
}

/* The bits of a where m is set, of b elsewhere. */
static inline __m512i select_bits(__m512i m, __m512i a, __m512i b)
{
	return _mm512_ternarylogic_epi32(m, a, b, 0xCA);
}

/* The low bytes of the 32 words of a, then of b; every word below 256. */
static inline __m512i pack_lo(__m512i a, __m512i b)
{
	return _mm512_permutexvar_epi64(_mm512_set_epi64(7, 5, 3, 1, 6, 4, 2, 0),
					_mm512_packus_epi16(a, b));
}

/* Qwords 0 4 1 5 2 6 3 7: unpacking two such vectors gives bytes 0..31
 * of both interleaved, then bytes 32..63. */
static inline __m512i for_unpack(__m512i v)
{
	return _mm512_permutexvar_epi64(_mm512_set_epi64(7, 3, 6, 2, 5, 1, 4, 0),
					v);
}

/* Stores the bytes of lo and hi interleaved: 128 bytes at out. */
static inline void store_pairs(uint8_t *out, __m512i lo, __m512i hi)
{
	lo = for_unpack(lo);
	hi = for_unpack(hi);
	store(out, _mm512_unpacklo_epi8(lo, hi));
	store(out + 64, _mm512_unpackhi_epi8(lo, hi));
}

/* 4x4 transpose of dwords: dword 4k + r takes dword 4r + k. */
static inline __m512i transpose(__m512i v)
{
	return _mm512_permutexvar_epi32(
		_mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12,
				 8, 4, 0), v);
}

static inline __m512i bf16_exp(__m512i x)
{
	return _mm512_and_si512(_mm512_srli_epi16(x, 7), words(0xFF));
}

static inline __m512i bf16_sm(__m512i x)
{
	return select_bits(words(0x7F), x, _mm512_srli_epi16(x, 8));
}

static uint32_t split_bf16(const uint8_t *d, uint32_t count, uint8_t *e,
			   uint8_t *sm)
{
	uint32_t n = count & ~63u;

	for (uint32_t i = 0; i < n; i += 64) {
		__m512i x0 = load(d + 2 * (size_t)i);
		__m512i x1 = load(d + 2 * (size_t)i + 64);

		store(e + i, pack_lo(bf16_exp(x0), bf16_exp(x1)));
		store(sm + i, pack_lo(bf16_sm(x0), bf16_sm(x1)));
	}
	return n;
}

/* The two bytes of values whose top 9 bits are sign and exponent e, given
 * the byte sm = sign << 7 | the mantissa's top 7 bits. */
static inline __m512i top_lo(__m512i e, __m512i sm)
{
	return select_bits(bytes(0x7F), sm, _mm512_slli_epi16(e, 7));
}

static inline __m512i top_hi(__m512i e, __m512i sm)
{
	return select_bits(bytes(0x80), sm, _mm512_srli_epi16(e, 1));
}

static uint32_t merge_bf16(const uint8_t *e, const uint8_t *sm,
			   uint32_t count, uint8_t *d)
{
	uint32_t n = count & ~63u;

	for (uint32_t i = 0; i < n; i += 64) {
		__m512i ev = load(e + i), smv = load(sm + i);

		store_pairs(d + 2 * (size_t)i, top_lo(ev, smv),
			    top_hi(ev, smv));
	}
	return n;
}

static inline __m512i f16_exp(__m512i x)
{
	return _mm512_and_si512(_mm512_srli_epi16(x, 10), words(0x1F));
}

static inline __m512i f16_p2(__m512i x)
{
	return select_bits(words(3), _mm512_srli_epi16(x, 8),
			   _mm512_srli_epi16(x, 13));
}

static uint32_t split_f16(const uint8_t *d, uint32_t count,
			  uint8_t *const p[])
{
	uint32_t n = count & ~63u;

	for (uint32_t i = 0; i < n; i += 64) {
		__m512i x0 = load(d + 2 * (size_t)i);
		__m512i x1 = load(d + 2 * (size_t)i + 64);

		store(p[0] + i, pack_lo(f16_exp(x0), f16_exp(x1)));
		store(p[1] + i, pack_lo(_mm512_and_si512(x0, words(0xFF)),
					_mm512_and_si512(x1, words(0xFF))));
		store(p[2] + i, pack_lo(f16_p2(x0), f16_p2(x1)));
	}
	return n;
}

static int merge_f16(const uint8_t *const p[], uint32_t count, uint8_t *d,
		     uint32_t *out_done)
{
	__m512i seen0 = _mm512_setzero_si512(), seen2 = seen0;
	uint32_t n = count & ~63u;

	for (uint32_t i = 0; i < n; i += 64) {
		__m512i p0 = load(p[0] + i), p2 = load(p[2] + i);
		__m512i hi = select_bits(
			bytes(0x83),
			_mm512_or_si512(p2, _mm512_slli_epi16(p2, 5)),
			_mm512_slli_epi16(p0, 2));

		seen0 = _mm512_or_si512(seen0, p0);
		seen2 = _mm512_or_si512(seen2, p2);
		store_pairs(d + 2 * (size_t)i, load(p[1] + i), hi);
	}
	*out_done = n;
	return _mm512_test_epi8_mask(seen0, bytes(0xE0)) ||
	       _mm512_test_epi8_mask(seen2, bytes(0xF8)) ? STP_EFRAME : 0;
}

/* The bytes of 16 F32 values rearranged as p1, p2, p3, p0 (little-endian
 * dword p1 | p2 << 8 | p3 << 16 | p0 << 24), then grouped by byte within
 * each lane: four p1 bytes, four p2, four p3, four p0. */
static inline __m512i f32_grouped(__m512i x, __m512i group)
{
	__m512i top = select_bits(_mm512_set1_epi32((int)0xFF000000),
				  _mm512_slli_epi32(x, 1),
				  _mm512_srli_epi32(x, 8));

	return _mm512_shuffle_epi8(
		select_bits(_mm512_set1_epi32(0x7FFFFF), x, top), group);
}

static uint32_t split_f32(const uint8_t *d, uint32_t count,
			  uint8_t *const p[])
{
	const __m512i group = _mm512_broadcast_i32x4(_mm_setr_epi8(
		0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
	uint32_t n = count & ~63u;

	for (uint32_t i = 0; i < n; i += 64) {
		const uint8_t *v = d + 4 * (size_t)i;
		__m512i a = f32_grouped(load(v), group);
		__m512i b = f32_grouped(load(v + 64), group);
		__m512i c = f32_grouped(load(v + 128), group);
		__m512i e = f32_grouped(load(v + 192), group);
		__m512i ab_lo = _mm512_unpacklo_epi32(a, b);
		__m512i ab_hi = _mm512_unpackhi_epi32(a, b);
		__m512i ce_lo = _mm512_unpacklo_epi32(c, e);
		__m512i ce_hi = _mm512_unpackhi_epi32(c, e);

		/* Dword 4k + m now holds values 16m + 4k onwards. */
		store(p[1] + i,
		      transpose(_mm512_unpacklo_epi64(ab_lo, ce_lo)));
		store(p[2] + i,
		      transpose(_mm512_unpackhi_epi64(ab_lo, ce_lo)));
		store(p[3] + i,
		      transpose(_mm512_unpacklo_epi64(ab_hi, ce_hi)));
		store(p[0] + i,
		      transpose(_mm512_unpackhi_epi64(ab_hi, ce_hi)));
	}
	return n;
}

static uint32_t merge_f32(const uint8_t *const p[], uint32_t count,
			  uint8_t *d)
{
	uint32_t n = count & ~63u;

	for (uint32_t i = 0; i < n; i += 64) {
		/* Transposed, vector r after two unpacks holds values
		 * 16r .. 16r + 15 in order. */
		__m512i p0 = load(p[0] + i), p3 = load(p[3] + i);
		__m512i b0 = transpose(load(p[1] + i));
		__m512i b1 = transpose(load(p[2] + i));
		__m512i b2 = transpose(top_lo(p0, p3));
		__m512i b3 = transpose(top_hi(p0, p3));
		__m512i lo01 = _mm512_unpacklo_epi8(b0, b1);
		__m512i hi01 = _mm512_unpackhi_epi8(b0, b1);
		__m512i lo23 = _mm512_unpacklo_epi8(b2, b3);
		__m512i hi23 = _mm512_unpackhi_epi8(b2, b3);
		uint8_t *v = d + 4 * (size_t)i;

		store(v, _mm512_unpacklo_epi16(lo01, lo23));
		store(v + 64, _mm512_unpackhi_epi16(lo01, lo23));
		store(v + 128, _mm512_unpacklo_epi16(hi01, hi23));
		store(v + 192, _mm512_unpackhi_epi16(hi01, hi23));
	}
	return n;
}

/* FP8 with mbits mantissa bits: the 4-bit sign/mantissa symbol of each of
 * 64 values, one per byte. */
static inline __m512i fp8_nibble(__m512i x, int mbits)
{
	return _mm512_and_si512(
		select_bits(bytes((1 << mbits) - 1), x,
			    _mm512_srli_epi16(x, 7 - mbits)),
		bytes((2 << mbits) - 1));
}

static uint32_t split_fp8(const uint8_t *d, uint32_t count, int mbits,
			  uint8_t *e, uint8_t *nib)
{
	/* maddubs adds each even byte to 16 times the odd byte after it. */
	const __m512i pair = words(0x1001);
	const __m512i emask = bytes(0x7F >> mbits);
	uint32_t n = count & ~127u;

	for (uint32_t i = 0; i < n; i += 128) {
		__m512i x0 = load(d + i), x1 = load(d + i + 64);

		store(e + i, _mm512_and_si512(_mm512_srli_epi16(x0, mbits),
					      emask));
		store(e + i + 64, _mm512_and_si512(
					  _mm512_srli_epi16(x1, mbits), emask));
		store(nib + i / 2,
		      pack_lo(_mm512_maddubs_epi16(fp8_nibble(x0, mbits), pair),
			      _mm512_maddubs_epi16(fp8_nibble(x1, mbits),
						   pair)));
	}
	return n;
}

static int merge_fp8(const uint8_t *e, const uint8_t *nib, uint32_t count,
		     int mbits, uint8_t *d, uint32_t *out_done)
{
	/* The sign and mantissa bits of a value from its symbol. */
	uint8_t t[16];
	__m512i table, seen_e = _mm512_setzero_si512(), seen_n = seen_e;
	int emask = 0x7F >> mbits, nmask = (2 << mbits) - 1;
	uint32_t n = count & ~127u;

	for (int s = 0; s < 16; s++)
		t[s] = (uint8_t)((s >> mbits & 1) << 7 | (s & ((1 << mbits) - 1)));
	table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)t));
	for (uint32_t i = 0; i < n; i += 128) {
		__m512i nv = load(nib + i / 2), e0 = load(e + i);
		__m512i e1 = load(e + i + 64), np = for_unpack(nv);
		__m512i lo = _mm512_shuffle_epi8(
			table, _mm512_and_si512(np, bytes(0x0F)));
		__m512i hi = _mm512_shuffle_epi8(
			table, _mm512_and_si512(_mm512_srli_epi16(np, 4),
						bytes(0x0F)));

		seen_e = _mm512_ternarylogic_epi32(seen_e, e0, e1, 0xFE);
		seen_n = _mm512_or_si512(seen_n, nv);
		store(d + i, _mm512_or_si512(_mm512_unpacklo_epi8(lo, hi),
					     _mm512_slli_epi16(e0, mbits)));
		store(d + i + 64,
		      _mm512_or_si512(_mm512_unpackhi_epi8(lo, hi),
				      _mm512_slli_epi16(e1, mbits)));
	}
	*out_done = n;
	return _mm512_test_epi8_mask(seen_e, bytes(~emask)) ||
	       _mm512_test_epi8_mask(seen_n, bytes((~nmask & 0xF) * 0x11))
		       ? STP_EFRAME : 0;
}

uint32_t stp_planes_split_avx512(unsigned code, const uint8_t *data,
				 uint32_t count, uint8_t *const plane[])
{
	switch (code) {
	case STP_BF16: return split_bf16(data, count, plane[0], plane[1]);
	case STP_F16: return split_f16(data, count, plane);
	case STP_F32: return split_f32(data, count, plane);
	case STP_E4M3: return split_fp8(data, count, 3, plane[0], plane[1]);
	case STP_E5M2: return split_fp8(data, count, 2, plane[0], plane[1]);
	}
	return 0;
}

int stp_planes_merge_avx512(unsigned code, const uint8_t *const plane[],
			    uint32_t count, uint8_t *out, uint32_t *out_done)
{
	*out_done = 0;
	switch (code) {
	case STP_BF16:
		*out_done = merge_bf16(plane[0], plane[1], count, out);
		return 0;
	case STP_F16: return merge_f16(plane, count, out, out_done);
	case STP_F32:
		*out_done = merge_f32(plane, count, out);
		return 0;
	case STP_E4M3: return merge_fp8(plane[0], plane[1], count, 3, out,
					out_done);
	case STP_E5M2: return merge_fp8(plane[0], plane[1], count, 2, out,
					out_done);
	}
	return 0;
}
