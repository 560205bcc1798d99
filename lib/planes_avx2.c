/* AVX2 plane splitting and merging: the layouts of formats/planes.md done
 * with shifts and masks on 32 bytes at a time, 32 or 64 values a step.
 * Built with -mavx2; planes.c calls in only on a CPU that has it, and
 * finishes each frame's tail with the scalar reference.
 *
 * Byte and word unpacks and packs work within each 128-bit lane, so each
 * kernel permutes qwords or dwords once, before an unpack or after a
 * pack, to keep the values in order.  A 16-bit shift moves bits between
 * the two bytes of a word; every such bit is masked off, or is zero in a
 * symbol that passes the range checks (and a merge that fails them may
 * leave garbage). */
#include <immintrin.h>
#include <stdint.h>

#include "error.h"
#include "planes.h"

static inline __m256i load(const uint8_t *p)
{
	return _mm256_loadu_si256((const __m256i *)p);
}

static inline void store(uint8_t *p, __m256i v)
{
	_mm256_storeu_si256((__m256i *)p, v);
}

static inline __m256i and8(__m256i a, int byte)
{
	return _mm256_and_si256(a, _mm256_set1_epi8((char)byte));
}

static inline __m256i or256(__m256i a, __m256i b)
{
	return _mm256_or_si256(a, b);
}

/* The low bytes of the 16 words of a, then of b; every word below 256. */
static inline __m256i pack_lo(__m256i a, __m256i b)
{
	return _mm256_permute4x64_epi64(_mm256_packus_epi16(a, b), 0xD8);
}

/* Qwords 0 2 1 3: unpacking two such vectors gives bytes 0..15 of both
 * interleaved, then bytes 16..31. */
static inline __m256i for_unpack(__m256i v)
{
	return _mm256_permute4x64_epi64(v, 0xD8);
}

/* Stores the bytes of lo and hi interleaved: 64 bytes at out. */
static inline void store_pairs(uint8_t *out, __m256i lo, __m256i hi)
{
	lo = for_unpack(lo);
	hi = for_unpack(hi);
	store(out, _mm256_unpacklo_epi8(lo, hi));
	store(out + 32, _mm256_unpackhi_epi8(lo, hi));
}

/* The exponent and sign/mantissa of 16 BF16 values, one per word. */
static inline __m256i bf16_exp(__m256i x)
{
	return _mm256_and_si256(_mm256_srli_epi16(x, 7),
				_mm256_set1_epi16(0xFF));
}

static inline __m256i bf16_sm(__m256i x)
{
	return or256(_mm256_and_si256(_mm256_srli_epi16(x, 8),
				    _mm256_set1_epi16(0x80)),
		   _mm256_and_si256(x, _mm256_set1_epi16(0x7F)));
}

static uint32_t split_bf16(const uint8_t *d, uint32_t count, uint8_t *e,
			   uint8_t *sm)
{
	uint32_t n = count & ~31u;

	for (uint32_t i = 0; i < n; i += 32) {
		__m256i x0 = load(d + 2 * (size_t)i);
		__m256i x1 = load(d + 2 * (size_t)i + 32);

		store(e + i, pack_lo(bf16_exp(x0), bf16_exp(x1)));
		store(sm + i, pack_lo(bf16_sm(x0), bf16_sm(x1)));
	}
	return n;
}

/* The two bytes of values whose top 9 bits are sign and exponent e, given
 * the byte sm = sign << 7 | the mantissa's top 7 bits. */
static inline __m256i top_lo(__m256i e, __m256i sm)
{
	return or256(and8(_mm256_slli_epi16(e, 7), 0x80), and8(sm, 0x7F));
}

static inline __m256i top_hi(__m256i e, __m256i sm)
{
	return or256(and8(sm, 0x80), and8(_mm256_srli_epi16(e, 1), 0x7F));
}

static uint32_t merge_bf16(const uint8_t *e, const uint8_t *sm,
			   uint32_t count, uint8_t *d)
{
	uint32_t n = count & ~31u;

	for (uint32_t i = 0; i < n; i += 32) {
		__m256i ev = load(e + i), smv = load(sm + i);

		store_pairs(d + 2 * (size_t)i, top_lo(ev, smv),
			    top_hi(ev, smv));
	}
	return n;
}

/* Planes 0 and 2 of 16 F16 values, one per word. */
static inline __m256i f16_exp(__m256i x)
{
	return _mm256_and_si256(_mm256_srli_epi16(x, 10),
				_mm256_set1_epi16(0x1F));
}

static inline __m256i f16_p2(__m256i x)
{
	return or256(_mm256_and_si256(_mm256_srli_epi16(x, 13),
				    _mm256_set1_epi16(4)),
		   _mm256_and_si256(_mm256_srli_epi16(x, 8),
				    _mm256_set1_epi16(3)));
}

static uint32_t split_f16(const uint8_t *d, uint32_t count,
			  uint8_t *const p[])
{
	const __m256i low = _mm256_set1_epi16(0xFF);
	uint32_t n = count & ~31u;

	for (uint32_t i = 0; i < n; i += 32) {
		__m256i x0 = load(d + 2 * (size_t)i);
		__m256i x1 = load(d + 2 * (size_t)i + 32);

		store(p[0] + i, pack_lo(f16_exp(x0), f16_exp(x1)));
		store(p[1] + i, pack_lo(_mm256_and_si256(x0, low),
					_mm256_and_si256(x1, low)));
		store(p[2] + i, pack_lo(f16_p2(x0), f16_p2(x1)));
	}
	return n;
}

static int merge_f16(const uint8_t *const p[], uint32_t count, uint8_t *d,
		     uint32_t *out_done)
{
	__m256i seen0 = _mm256_setzero_si256(), seen2 = seen0;
	uint32_t n = count & ~31u;

	for (uint32_t i = 0; i < n; i += 32) {
		__m256i p0 = load(p[0] + i), p2 = load(p[2] + i);
		__m256i hi = or256(or256(and8(_mm256_slli_epi16(p2, 5), 0x80),
				     and8(_mm256_slli_epi16(p0, 2), 0x7C)),
				 and8(p2, 3));

		seen0 = or256(seen0, p0);
		seen2 = or256(seen2, p2);
		store_pairs(d + 2 * (size_t)i, load(p[1] + i), hi);
	}
	*out_done = n;
	return _mm256_testz_si256(seen0, _mm256_set1_epi8((char)0xE0)) &&
	       _mm256_testz_si256(seen2, _mm256_set1_epi8((char)0xF8))
		       ? 0 : STP_EFRAME;
}

/* The bytes of 8 F32 values rearranged as p1, p2, p3, p0 (little-endian
 * dword p1 | p2 << 8 | p3 << 16 | p0 << 24), then grouped by byte within
 * each lane: four p1 bytes, four p2, four p3, four p0. */
static inline __m256i f32_grouped(__m256i x, __m256i group)
{
	__m256i y = or256(or256(_mm256_and_si256(x, _mm256_set1_epi32(0x7FFFFF)),
			    _mm256_and_si256(_mm256_srli_epi32(x, 8),
					     _mm256_set1_epi32(0x800000))),
			_mm256_and_si256(_mm256_slli_epi32(x, 1),
					 _mm256_set1_epi32((int)0xFF000000)));

	return _mm256_shuffle_epi8(y, group);
}

static uint32_t split_f32(const uint8_t *d, uint32_t count,
			  uint8_t *const p[])
{
	const __m256i group = _mm256_setr_epi8(
		0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
		0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
	/* Dword j of a transposed vector holds values 8 * (j % 4) + 4 * (j
	 * / 4) onwards; this puts them in order. */
	const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
	uint32_t n = count & ~31u;

	for (uint32_t i = 0; i < n; i += 32) {
		const uint8_t *v = d + 4 * (size_t)i;
		__m256i a = f32_grouped(load(v), group);
		__m256i b = f32_grouped(load(v + 32), group);
		__m256i c = f32_grouped(load(v + 64), group);
		__m256i e = f32_grouped(load(v + 96), group);
		__m256i ab_lo = _mm256_unpacklo_epi32(a, b);
		__m256i ab_hi = _mm256_unpackhi_epi32(a, b);
		__m256i ce_lo = _mm256_unpacklo_epi32(c, e);
		__m256i ce_hi = _mm256_unpackhi_epi32(c, e);

		store(p[1] + i, _mm256_permutevar8x32_epi32(
				_mm256_unpacklo_epi64(ab_lo, ce_lo), order));
		store(p[2] + i, _mm256_permutevar8x32_epi32(
				_mm256_unpackhi_epi64(ab_lo, ce_lo), order));
		store(p[3] + i, _mm256_permutevar8x32_epi32(
				_mm256_unpacklo_epi64(ab_hi, ce_hi), order));
		store(p[0] + i, _mm256_permutevar8x32_epi32(
				_mm256_unpackhi_epi64(ab_hi, ce_hi), order));
	}
	return n;
}

static uint32_t merge_f32(const uint8_t *const p[], uint32_t count,
			  uint8_t *d)
{
	/* Lane k, dword r takes dword 2r + k: after two unpacks, vector r
	 * then holds values 8r .. 8r + 7 in order. */
	const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
	uint32_t n = count & ~31u;

	for (uint32_t i = 0; i < n; i += 32) {
		__m256i p0 = load(p[0] + i), p3 = load(p[3] + i);
		__m256i b0 = _mm256_permutevar8x32_epi32(load(p[1] + i), order);
		__m256i b1 = _mm256_permutevar8x32_epi32(load(p[2] + i), order);
		__m256i b2 = _mm256_permutevar8x32_epi32(top_lo(p0, p3), order);
		__m256i b3 = _mm256_permutevar8x32_epi32(top_hi(p0, p3), order);
		__m256i lo01 = _mm256_unpacklo_epi8(b0, b1);
		__m256i hi01 = _mm256_unpackhi_epi8(b0, b1);
		__m256i lo23 = _mm256_unpacklo_epi8(b2, b3);
		__m256i hi23 = _mm256_unpackhi_epi8(b2, b3);
		uint8_t *v = d + 4 * (size_t)i;

		store(v, _mm256_unpacklo_epi16(lo01, lo23));
		store(v + 32, _mm256_unpackhi_epi16(lo01, lo23));
		store(v + 64, _mm256_unpacklo_epi16(hi01, hi23));
		store(v + 96, _mm256_unpackhi_epi16(hi01, hi23));
	}
	return n;
}

/* FP8 with mbits mantissa bits: the 4-bit sign/mantissa symbol of each of
 * 32 values, one per byte. */
static inline __m256i fp8_nibble(__m256i x, int mbits)
{
	return or256(and8(x, (1 << mbits) - 1),
		   and8(_mm256_srli_epi16(x, 7 - mbits), 1 << mbits));
}

static uint32_t split_fp8(const uint8_t *d, uint32_t count, int mbits,
			  uint8_t *e, uint8_t *nib)
{
	/* maddubs adds each even byte to 16 times the odd byte after it. */
	const __m256i pair = _mm256_set1_epi16(0x1001);
	int emask = 0x7F >> mbits;
	uint32_t n = count & ~63u;

	for (uint32_t i = 0; i < n; i += 64) {
		__m256i x0 = load(d + i), x1 = load(d + i + 32);

		store(e + i, and8(_mm256_srli_epi16(x0, mbits), emask));
		store(e + i + 32, and8(_mm256_srli_epi16(x1, mbits), emask));
		store(nib + i / 2,
		      pack_lo(_mm256_maddubs_epi16(fp8_nibble(x0, mbits), pair),
			      _mm256_maddubs_epi16(fp8_nibble(x1, mbits),
						   pair)));
	}
	return n;
}

static int merge_fp8(const uint8_t *e, const uint8_t *nib, uint32_t count,
		     int mbits, uint8_t *d, uint32_t *out_done)
{
	/* The sign and mantissa bits of a value from its symbol. */
	uint8_t t[16];
	__m256i table, seen_e = _mm256_setzero_si256(), seen_n = seen_e;
	int emask = 0x7F >> mbits, nmask = (2 << mbits) - 1;
	uint32_t n = count & ~63u;

	for (int s = 0; s < 16; s++)
		t[s] = (uint8_t)((s >> mbits & 1) << 7 | (s & ((1 << mbits) - 1)));
	table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t));
	for (uint32_t i = 0; i < n; i += 64) {
		__m256i nv = load(nib + i / 2), e0 = load(e + i);
		__m256i e1 = load(e + i + 32), np = for_unpack(nv);
		__m256i lo = _mm256_shuffle_epi8(table, and8(np, 0x0F));
		__m256i hi = _mm256_shuffle_epi8(
			table, and8(_mm256_srli_epi16(np, 4), 0x0F));

		seen_e = or256(seen_e, or256(e0, e1));
		seen_n = or256(seen_n, nv);
		store(d + i, or256(_mm256_unpacklo_epi8(lo, hi),
				 _mm256_slli_epi16(e0, mbits)));
		store(d + i + 32, or256(_mm256_unpackhi_epi8(lo, hi),
				      _mm256_slli_epi16(e1, mbits)));
	}
	*out_done = n;
	return _mm256_testz_si256(seen_e, _mm256_set1_epi8((char)~emask)) &&
	       _mm256_testz_si256(seen_n,
				  _mm256_set1_epi8((char)((~nmask & 0xF) * 0x11)))
		       ? 0 : STP_EFRAME;
}

uint32_t stp_planes_split_avx2(unsigned code, const uint8_t *data,
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

int stp_planes_merge_avx2(unsigned code, const uint8_t *const plane[],
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
