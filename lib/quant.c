/* Float conversions and quantizers (lib/quant.h). Conversions work on
 * the bits, so they do not depend on the FPU's rounding of narrow types;
 * the quantizers' F32 divisions are exact IEEE operations. */
#include "quant.h"

#include <math.h>
#include <string.h>

#include "stream.h"

static const struct { const char *name; unsigned size; } qtypes[] = {
	[STP_Q_NONE] = { "", 0 },
	[STP_Q_BF16] = { "BF16", 2 },
	[STP_Q_F16] = { "F16", 2 },
	[STP_Q_F32] = { "F32", 4 },
	[STP_Q_F8_E4M3] = { "F8_E4M3", 1 },
	[STP_Q_I8] = { "I8", 1 },
	[STP_Q_F64] = { "F64", 8 },
};

enum stp_qtype stp_qtype_of(const char *dtype)
{
	for (unsigned t = STP_Q_BF16; t <= STP_Q_F64; t++)
		if (!strcmp(dtype, qtypes[t].name))
			return (enum stp_qtype)t;
	return STP_Q_NONE;
}

const char *stp_qtype_name(enum stp_qtype t)
{
	return qtypes[t].name;
}

unsigned stp_qtype_size(enum stp_qtype t)
{
	return qtypes[t].size;
}

static float bits_f32(uint32_t u)
{
	float f;

	memcpy(&f, &u, 4);
	return f;
}

static uint32_t f32_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return u;
}

static float f16_to_f32(uint16_t h)
{
	uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1F,
		 m = h & 0x3FF;

	if (e == 0x1F)
		return bits_f32(s | 0x7F800000u | m << 13);
	if (e == 0) {
		float v = (float)m * 0x1p-24f;
		return s ? -v : v;
	}
	return bits_f32(s | (e + 112) << 23 | m << 13);
}

/* Rounds the low `drop` bits of v away, to nearest even. */
static uint32_t round_bits(uint32_t v, unsigned drop)
{
	uint32_t half = 1u << (drop - 1), rest = v & ((1u << drop) - 1);
	uint32_t keep = v >> drop;

	if (rest > half || (rest == half && (keep & 1)))
		keep++;
	return keep;
}

static uint16_t f32_to_f16(float f)
{
	uint32_t u = f32_bits(f), s = (u >> 16) & 0x8000, a = u & 0x7FFFFFFF;
	int e = (int)(a >> 23) - 127 + 15;
	uint32_t code;

	if (a > 0x7F800000u)
		return (uint16_t)(s | 0x7E00);
	if (e >= 31)
		return (uint16_t)(s | 0x7C00);
	if (e <= 0) {
		/* subnormal: units of 2^-24, the carry into 0x400 is right */
		if (e < -10)
			return (uint16_t)s;
		return (uint16_t)(s | round_bits((a & 0x7FFFFF) | 0x800000,
						 (unsigned)(14 - e)));
	}
	/* the carry out of the mantissa bumps the exponent, as it should,
	 * up to infinity */
	code = round_bits((uint32_t)e << 23 | (a & 0x7FFFFF), 13);
	return (uint16_t)(s | (code > 0x7C00 ? 0x7C00 : code));
}

static uint16_t f32_to_bf16(float f)
{
	uint32_t u = f32_bits(f);

	if ((u & 0x7FFFFFFF) > 0x7F800000u)
		return (uint16_t)((u >> 16) | 0x40);
	return (uint16_t)(((u >> 31) << 15) | round_bits(u & 0x7FFFFFFF, 16));
}

static float e4m3_to_f32(uint8_t b)
{
	unsigned e = (b >> 3) & 0xF, m = b & 7;
	float v;

	if (e == 15 && m == 7)
		return bits_f32(0x7FC00000u);
	v = e ? bits_f32((e + 120) << 23 | m << 20) : (float)m * 0x1p-9f;
	return b & 0x80 ? -v : v;
}

static uint8_t f32_to_e4m3(float f)
{
	uint32_t u = f32_bits(f), a = u & 0x7FFFFFFF;
	uint8_t s = (uint8_t)(u >> 24 & 0x80);
	int e = (int)(a >> 23) - 127 + 7;
	uint32_t code;

	if (a > 0x7F800000u)
		return (uint8_t)(s | 0x7F);
	if (e < 1) {
		/* subnormal, in units of 2^-9; 8 units is the smallest normal */
		float q = rintf(bits_f32(a) * 512.0f);
		return (uint8_t)(s | (uint8_t)q);
	}
	code = round_bits((uint32_t)e << 23 | (a & 0x7FFFFF), 20);
	if (code > 0x7E)
		code = 0x7E;
	return (uint8_t)(s | code);
}

void stp_to_f32(enum stp_qtype t, const uint8_t *src, size_t n, float *dst)
{
	for (size_t i = 0; i < n; i++)
		switch (t) {
		case STP_Q_BF16:
			dst[i] = bits_f32((uint32_t)stp_get16(src + 2 * i)
					  << 16);
			break;
		case STP_Q_F16:
			dst[i] = f16_to_f32(stp_get16(src + 2 * i));
			break;
		case STP_Q_F32:
			dst[i] = bits_f32(stp_get32(src + 4 * i));
			break;
		case STP_Q_F8_E4M3:
			dst[i] = e4m3_to_f32(src[i]);
			break;
		case STP_Q_I8:
			dst[i] = (float)(int8_t)src[i];
			break;
		case STP_Q_F64: {
			uint64_t u = stp_get64(src + 8 * i);
			double d;

			memcpy(&d, &u, 8);
			dst[i] = (float)d;
			break;
		}
		case STP_Q_NONE:
			dst[i] = 0;
			break;
		}
}

void stp_from_f32(enum stp_qtype t, const float *src, size_t n, uint8_t *dst)
{
	for (size_t i = 0; i < n; i++)
		switch (t) {
		case STP_Q_BF16:
			stp_put16(dst + 2 * i, f32_to_bf16(src[i]));
			break;
		case STP_Q_F16:
			stp_put16(dst + 2 * i, f32_to_f16(src[i]));
			break;
		case STP_Q_F32:
			stp_put32(dst + 4 * i, f32_bits(src[i]));
			break;
		case STP_Q_F8_E4M3:
			dst[i] = f32_to_e4m3(src[i]);
			break;
		case STP_Q_I8:
			dst[i] = (uint8_t)(int8_t)src[i];
			break;
		case STP_Q_F64: {
			double d = src[i];
			uint64_t u;

			memcpy(&u, &d, 8);
			stp_put64(dst + 8 * i, u);
			break;
		}
		case STP_Q_NONE:
			break;
		}
}

int stp_all_finite(const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((f32_bits(x[i]) & 0x7F800000u) == 0x7F800000u)
			return 0;
	return 1;
}

void stp_int8_row(const float *x, size_t n, int8_t *q, float *out_scale)
{
	float amax = 0, scale;

	for (size_t i = 0; i < n; i++)
		if (fabsf(x[i]) > amax)
			amax = fabsf(x[i]);
	/* a subnormal amax can give a scale of 0: as an all-zero row */
	scale = amax / 127.0f > 0 ? amax / 127.0f : 1.0f;
	for (size_t i = 0; i < n; i++) {
		float v = rintf(x[i] / scale);
		q[i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
	}
	*out_scale = scale;
}

void stp_fp8_blocks(const float *x, uint64_t rows, uint64_t cols,
		    uint8_t *q, float *scale_inv)
{
	uint64_t bc = (cols + 127) / 128;

	for (uint64_t r0 = 0; r0 < rows; r0 += 128)
		for (uint64_t c0 = 0; c0 < cols; c0 += 128) {
			uint64_t r1 = r0 + 128 < rows ? r0 + 128 : rows;
			uint64_t c1 = c0 + 128 < cols ? c0 + 128 : cols;
			float amax = 0, s;

			for (uint64_t r = r0; r < r1; r++)
				for (uint64_t c = c0; c < c1; c++)
					if (fabsf(x[r * cols + c]) > amax)
						amax = fabsf(x[r * cols + c]);
			s = amax / 448.0f > 0 ? amax / 448.0f : 1.0f;
			scale_inv[r0 / 128 * bc + c0 / 128] = s;
			for (uint64_t r = r0; r < r1; r++)
				for (uint64_t c = c0; c < c1; c++)
					q[r * cols + c] = f32_to_e4m3(
						x[r * cols + c] / s);
		}
}

void stp_qerr(const float *a, const float *b, size_t n, struct stp_qerr *out)
{
	double maxd = 0, dd = 0, aa = 0, bb = 0, ab = 0;
	int nan = 0;

	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - b[i];

		if (isnan(d))
			nan = 1;
		else if (fabs(d) > maxd)
			maxd = fabs(d);
		dd += d * d;
		aa += (double)a[i] * a[i];
		bb += (double)b[i] * b[i];
		ab += (double)a[i] * b[i];
	}
	out->max_abs = nan ? NAN : maxd;
	out->rel_fro = aa > 0 ? sqrt(dd) / sqrt(aa) : dd > 0 ? INFINITY : 0;
	out->cosine = aa > 0 && bb > 0 ? ab / (sqrt(aa) * sqrt(bb)) :
		      aa == 0 && bb == 0 ? 1 : 0;
}
