/* Unit test of lib/quant's conversions: F16 both ways against the
 * compiler's _Float16 (IEEE round to nearest even) on every F16 value and
 * a sweep of F32 patterns through the whole F16 range, subnormals
 * included; BF16 against the rounding rule written another way; every
 * E4M3 value, the midpoints between neighbours (ties to the even code)
 * and saturation; the INT8 row quantizer's edges.  Prints TAP. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../lib/quant.h"

static int ntest, nfail;

static void ok(int cond, const char *fmt, ...)
{
	va_list ap;

	ntest++;
	if (!cond)
		nfail++;
	printf("%sok %d - ", cond ? "" : "not ", ntest);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static float f32(uint32_t u)
{
	float f;

	memcpy(&f, &u, 4);
	return f;
}

static uint16_t to16(enum stp_qtype t, float x)
{
	uint8_t b[2];

	stp_from_f32(t, &x, 1, b);
	return (uint16_t)(b[0] | b[1] << 8);
}

static float from16(enum stp_qtype t, uint16_t h)
{
	uint8_t b[2] = { (uint8_t)h, (uint8_t)(h >> 8) };
	float x;

	stp_to_f32(t, b, 1, &x);
	return x;
}

static uint16_t ref_f16(float x)
{
	_Float16 h = (_Float16)x;
	uint16_t u;

	memcpy(&u, &h, 2);
	return u;
}

static void test_f16(void)
{
	unsigned bad = 0, n = 0;

	for (uint32_t h = 0; h < 0x10000; h++) {
		_Float16 r;
		float x = from16(STP_Q_F16, (uint16_t)h), y;
		uint16_t hh = (uint16_t)h;

		memcpy(&r, &hh, 2);
		y = (float)r;
		if (isnan(y) ? !isnan(x) : memcmp(&x, &y, 4) != 0)
			bad++;
	}
	ok(bad == 0, "F16 -> F32: all 65536 values as _Float16 (%u differ)",
	   bad);
	bad = 0;
	/* every 61st pattern from below the smallest subnormal half to above
	 * the largest finite F16, both signs */
	for (uint64_t u = 0x32000000u; u <= 0x47900000u; u += 61)
		for (int s = 0; s < 2; s++) {
			float x = f32((uint32_t)u | (uint32_t)s << 31);

			n++;
			if (to16(STP_Q_F16, x) != ref_f16(x))
				bad++;
		}
	ok(bad == 0, "F32 -> F16: %u values as _Float16 (%u differ)", n, bad);
	ok(to16(STP_Q_F16, INFINITY) == 0x7C00 &&
	   to16(STP_Q_F16, 1e6f) == 0x7C00 &&
	   (to16(STP_Q_F16, NAN) & 0x7C00) == 0x7C00 &&
	   (to16(STP_Q_F16, NAN) & 0x3FF) != 0,
	   "F16: overflow to infinity, NaN stays NaN");
}

static void test_bf16(void)
{
	unsigned bad = 0, n = 0;

	for (uint64_t u = 0; u < 0x100000000ull; u += 65521) {
		float x = f32((uint32_t)u);
		uint32_t lo = (uint32_t)u & 0xFFFF, hi = (uint32_t)u >> 16;
		uint16_t want;

		if (isnan(x))
			continue;
		/* the rule as a comparison: above half up, half to even */
		want = (uint16_t)(hi + (lo > 0x8000 ||
					(lo == 0x8000 && (hi & 1))));
		n++;
		if (to16(STP_Q_BF16, x) != want)
			bad++;
	}
	ok(bad == 0, "F32 -> BF16: %u values round to nearest even (%u differ)",
	   n, bad);
	ok(from16(STP_Q_BF16, 0x3F80) == 1.0f &&
	   from16(STP_Q_BF16, 0xC000) == -2.0f, "BF16 -> F32");
}

static float e4m3(uint8_t c)
{
	float x;

	stp_to_f32(STP_Q_F8_E4M3, &c, 1, &x);
	return x;
}

static uint8_t to_e4m3(float x)
{
	uint8_t c;

	stp_from_f32(STP_Q_F8_E4M3, &x, 1, &c);
	return c;
}

static void test_e4m3(void)
{
	unsigned bad = 0, tie = 0, mid = 0;

	for (unsigned c = 0; c < 256; c++) {
		unsigned e = (c >> 3) & 15, m = c & 7;
		float want = e ? ldexpf(1 + m / 8.0f, (int)e - 7) :
				 ldexpf((float)m, -9);

		if (c & 0x80)
			want = -want;
		if ((c & 0x7F) == 0x7F) {
			if (!isnan(e4m3((uint8_t)c)))
				bad++;
			continue;
		}
		if (e4m3((uint8_t)c) != want || to_e4m3(want) != c)
			bad++;
	}
	ok(bad == 0, "E4M3: every code decodes as the format says and "
	   "encodes back (%u differ)", bad);
	/* midpoints between neighbouring positive codes: ties to even;
	 * a hair above or below goes to the nearer one */
	for (unsigned c = 0; c < 126; c++) {
		float a = e4m3((uint8_t)c), b = e4m3((uint8_t)(c + 1));
		float h = (a + b) / 2;

		mid++;
		if (to_e4m3(h) != (c % 2 == 0 ? c : c + 1))
			tie++;
		if (to_e4m3(nextafterf(h, 0)) != c ||
		    to_e4m3(nextafterf(h, 1000)) != c + 1)
			tie++;
	}
	ok(tie == 0, "E4M3: %u midpoints tie to even, neighbours round to "
	   "nearest (%u wrong)", mid, tie);
	ok(to_e4m3(448) == 0x7E && to_e4m3(464) == 0x7E &&
	   to_e4m3(1e9f) == 0x7E && to_e4m3(-1e9f) == 0xFE &&
	   to_e4m3(INFINITY) == 0x7E, "E4M3 saturates at +-448");
	ok(to_e4m3(ldexpf(1, -10)) == 0 && to_e4m3(ldexpf(3, -10)) == 2 &&
	   to_e4m3(ldexpf(1, -9)) == 1, "E4M3 subnormals round to even");
}

static void test_int8(void)
{
	float x[5] = { 0.5f, -1.27f, 0.005f, 0.015f, 1.27f }, s, z[3] = { 0 };
	int8_t q[5];

	stp_int8_row(x, 5, q, &s);
	ok(s == 1.27f / 127.0f && q[0] == 50 && q[1] == -127 && q[4] == 127 &&
	   q[2] == (int8_t)rintf(0.005f / s) && q[3] == (int8_t)rintf(0.015f / s),
	   "INT8 row: scale amax/127, rint, symmetric");
	stp_int8_row(z, 3, q, &s);
	ok(s == 1.0f && q[0] == 0 && q[2] == 0, "INT8 row of zeros: scale 1");
}

static void test_err(void)
{
	float a[3] = { 1, 2, 2 }, b[3] = { 1, 2, 2 }, c[3] = { -1, -2, -2 };
	struct stp_qerr e;

	stp_qerr(a, b, 3, &e);
	ok(e.rel_fro == 0 && e.max_abs == 0 && fabs(e.cosine - 1) < 1e-12,
	   "error of an exact copy");
	stp_qerr(a, c, 3, &e);
	ok(fabs(e.rel_fro - 2) < 1e-12 && e.max_abs == 4 &&
	   fabs(e.cosine + 1) < 1e-12, "error of the negation: 2, 4, -1");
}

int main(void)
{
	test_f16();
	test_bf16();
	test_e4m3();
	test_int8();
	test_err();
	printf("1..%d\n", ntest);
	return nfail ? 1 : 0;
}
