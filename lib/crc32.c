/* CRC-32: zlib as the reference, the folding constants, and the
 * dispatcher that hands the bulk of long inputs to a carry-less multiply
 * variant (crc32_avx2.c, crc32_avx512.c) and the rest to zlib. */
#include "crc32.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "error.h"

/* zlib's length is a uInt. */
static uint32_t zlib_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
	while (n > 0) {
		uInt step = n > (1u << 30) ? (1u << 30) : (uInt)n;

		crc = (uint32_t)crc32(crc, p, step);
		p += step;
		n -= step;
	}
	return crc;
}

uint32_t stp_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
	return (uint32_t)crc32_combine64(crc_a, crc_b, (z_off64_t)len_b);
}

/* ---- Folding constants ----
 *
 * zlib's reflected CRC gives the first bit of the message (bit 0 of byte
 * 0) the highest power of x.  Sixteen bytes loaded little-endian into a
 * 128-bit register so hold the polynomial
 *     A(x) = sum of a_i x^(127-i) over register bits i
 *          = H(x) x^64 + L(x),   H the low 64 bits, L the high 64 bits,
 * and a 64-bit half u holds U(x) = sum of u_i x^(63-i).
 *
 * PCLMULQDQ of halves u and v sets result bit k to the sum of u_i v_j over
 * i + j = k, the coefficient of x^(126-k) in U V; read as 128 bits, bit k
 * stands for x^(127-k), so the result reads as U(x) V(x) x: one x too many.
 *
 * Folding a lane forward by d bits, onto the lane that ends d bits later,
 * replaces A x^d by a polynomial congruent to it modulo P that fits in
 * that lane:
 *     A x^d = H x^(d+64) + L x^d  ==  H K(d+64) + L K(d)   (mod P),
 *     K(e) = x^(e-1) mod P, the -1 paying for PCLMULQDQ's extra x.
 * K(e) has degree < 32; as a 64-bit half its coefficient of x^j is bit
 * 63-j, so K(e) = xpow(e - 1) << 32 where xpow(t) is x^t mod P in zlib's
 * own reflected 32-bit form (bit i stands for x^(31-i)).  The products
 * have degree < 96, so clmul(H, K(d+64)) ^ clmul(L, K(d)) ^ next lane is
 * one 128-bit lane again.  For a fold by b bytes, d = 8b:
 *     by<b>[0] = xpow(8b + 63) << 32   (multiplies H, the low half)
 *     by<b>[1] = xpow(8b - 1) << 32    (multiplies L, the high half)
 *
 * The initial CRC: zlib keeps the state s = ~crc, and processing n >= 4
 * bytes from state s adds s x^(8n), exactly what xoring s into the first
 * four bytes and starting from state 0 adds.  A CRC depends only on the
 * message modulo P and on its length, so after folding p[0..m) down to 16
 * bytes F ending where p[0..m) ends, the state is what zlib reaches over F
 * from state 0, that is from crc32(0xFFFFFFFF, F, 16).
 *
 * The unit test checks every variant against zlib over lengths that use
 * each constant. */

static struct stp_crc32_fold_k fold_k;
static int fold_k_ready;

/* x^t mod P, reflected: multiplying by x shifts towards bit 0, and x^32
 * (bit -1) is replaced by P - x^32, which is 0xEDB88320 reflected. */
static uint32_t xpow(unsigned t)
{
	uint32_t r = 0x80000000u;	/* x^0 */

	while (t--)
		r = (r >> 1) ^ (r & 1 ? 0xEDB88320u : 0);
	return r;
}

static void fold_const(uint64_t out[2], unsigned bytes)
{
	out[0] = (uint64_t)xpow(8 * bytes + 63) << 32;
	out[1] = (uint64_t)xpow(8 * bytes - 1) << 32;
}

static void derive_fold_k(void)
{
	if (fold_k_ready)
		return;
	fold_const(fold_k.by16, 16);
	fold_const(fold_k.by64, 64);
	fold_const(fold_k.by256, 256);
	fold_k_ready = 1;
}

/* ---- Dispatcher ---- */

typedef size_t fold_fn(const struct stp_crc32_fold_k *, uint32_t,
		       const uint8_t *, size_t, uint8_t[16]);

struct impl {
	const char *name;
	int (*have)(void);
	fold_fn *fold;		/* NULL: zlib does it all */
};

static int have_scalar(void)
{
	return 1;
}

/* -mavx2 and -mbmi2 let the compiler use those (and POPCNT) anywhere in
 * crc32_avx2.c, so the CPU must have them besides PCLMULQDQ. */
static int have_avx2(void)
{
	return __builtin_cpu_supports("avx2") &&
	       __builtin_cpu_supports("bmi2") &&
	       __builtin_cpu_supports("popcnt") &&
	       __builtin_cpu_supports("pclmul");
}

static int have_avx512(void)
{
	return __builtin_cpu_supports("avx512f") &&
	       __builtin_cpu_supports("avx512bw") &&
	       __builtin_cpu_supports("popcnt") &&
	       __builtin_cpu_supports("pclmul") &&
	       __builtin_cpu_supports("vpclmulqdq");
}

/* Best last. */
static const struct impl impls[] = {
	{ "scalar", have_scalar, NULL },
	{ "avx2", have_avx2, stp_crc32_fold_avx2 },
	{ "avx512", have_avx512, stp_crc32_fold_avx512 },
};
#define NIMPLS (sizeof impls / sizeof impls[0])

/* zlib until the constructor has looked at the CPU and STP_IMPL. */
static const struct impl *impl_cur = &impls[0];
static int impl_none;	/* STP_IMPL named a variant this CPU lacks */

static const struct impl *impl_best(void)
{
	size_t i = NIMPLS;

	while (--i > 0)
		if (impls[i].have())
			return &impls[i];
	return &impls[0];
}

int stp_crc32_force_impl(const char *name)
{
	size_t i;

	derive_fold_k();
	/* The GPU variant lives elsewhere; the CPU then runs its best. */
	if (!name || !strcmp(name, "auto") || !strcmp(name, "cuda")) {
		impl_cur = impl_best();
		impl_none = 0;
		return 0;
	}
	for (i = 0; i < NIMPLS; i++) {
		if (strcmp(name, impls[i].name))
			continue;
		if (!impls[i].have())
			return STP_EUNSUPPORTED;
		impl_cur = &impls[i];
		impl_none = 0;
		return 0;
	}
	return STP_EUNSUPPORTED;
}

const char *stp_crc32_impl_name(void)
{
	return impl_none ? "none" : impl_cur->name;
}

__attribute__((constructor)) static void crc32_init(void)
{
	const char *env = getenv("STP_IMPL");

	/* Constructors may run before libgcc has probed the CPU. */
	__builtin_cpu_init();
	if (!env || !*env)
		env = NULL;
	if (stp_crc32_force_impl(env) < 0) {
		impl_cur = &impls[0];
		impl_none = 1;
	}
}

uint32_t stp_crc32(uint32_t crc, const void *p, size_t n)
{
	const struct impl *im = impl_cur;
	const uint8_t *b = p;

	if (im->fold && n >= STP_CRC32_FOLD_MIN) {
		uint8_t f[16];
		size_t m = im->fold(&fold_k, crc, b, n, f);

		crc = (uint32_t)crc32(0xFFFFFFFFu, f, 16);
		b += m;
		n -= m;
	}
	return zlib_crc32(crc, b, n);
}
