/* Unit test of lib/crc32: every variant against zlib's crc32 on random
 * buffers of every length 0..300 at every alignment 0..15, on longer ones
 * that run every folding loop, with chaining, the check value of
 * "123456789", stp_crc32_combine, and STP_IMPL.  Prints TAP; exits 1 if
 * any test failed.  Every buffer is a heap block of exactly its length, so
 * a run under valgrind or -fsanitize=address catches a read outside it. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "../../lib/crc32.h"
#include "../../lib/error.h"

#define NVAR 3
static const char *const variants[NVAR] = { "scalar", "avx2", "avx512" };
static int have[NVAR];

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

static void skip(const char *what)
{
	ntest++;
	printf("ok %d - %s # SKIP not supported by this CPU\n", ntest, what);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		printf("Bail out! out of memory\n");
		exit(1);
	}
	return p;
}

/* xorshift64*: reproducible runs. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1Dull;
}

static void fill(uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(rng() >> 56);
}

/* The reference: zlib, in pieces that fit its uInt. */
static uint32_t ref(uint32_t crc, const uint8_t *p, size_t n)
{
	while (n > 0) {
		uInt step = n > (1u << 30) ? (1u << 30) : (uInt)n;

		crc = (uint32_t)crc32(crc, p, step);
		p += step;
		n -= step;
	}
	return crc;
}

/* A copy of src[0..n) in a block of exactly align + n bytes, at offset
 * align from a 16-byte aligned address; free *out_block after. */
static uint8_t *place(const uint8_t *src, size_t n, size_t align,
		      uint8_t **out_block)
{
	uint8_t *b;

	if (posix_memalign((void **)&b, 64, align + n ? align + n : 1)) {
		printf("Bail out! out of memory\n");
		exit(1);
	}
	if (n)
		memcpy(b + align, src, n);
	*out_block = b;
	return b + align;
}

static void test_lengths(const char *v, size_t lo, size_t hi, int all_align)
{
	uint8_t *src = xmalloc(hi), *block, *p;
	size_t n, a, bad = 0, runs = 0;
	uint32_t crc0, got, want;

	fill(src, hi);
	for (n = lo; n <= hi; n++) {
		for (a = all_align ? 0 : n % 16; a < 16; a++) {
			p = place(src, n, a, &block);
			crc0 = runs % 3 == 0 ? 0 : (uint32_t)rng();
			want = ref(crc0, p, n);
			got = stp_crc32(crc0, p, n);
			if (got != want && bad++ == 0)
				printf("# %s: length %zu at alignment %zu from "
				       "%08x: %08x, zlib %08x\n", v, n, a,
				       (unsigned)crc0, (unsigned)got,
				       (unsigned)want);
			runs++;
			free(block);
			if (!all_align)
				break;
		}
	}
	ok(bad == 0, "%s: lengths %zu..%zu%s: %zu of %zu differ from zlib", v,
	   lo, hi, all_align ? " at every alignment 0..15" : "", bad, runs);
	free(src);
}

static void test_large(const char *v, size_t n)
{
	uint8_t *buf = xmalloc(n);
	uint32_t crc0 = (uint32_t)rng(), got, want;

	fill(buf, n);
	want = ref(crc0, buf, n);
	got = stp_crc32(crc0, buf, n);
	ok(got == want, "%s: %zu bytes: %08x, zlib %08x", v, n,
	   (unsigned)got, (unsigned)want);
	want = ref(0, buf + 1, n - 1);
	got = stp_crc32(0, buf + 1, n - 1);
	ok(got == want, "%s: %zu bytes at odd address: %08x, zlib %08x", v,
	   n - 1, (unsigned)got, (unsigned)want);
	free(buf);
}

static void test_chain(const char *v)
{
	const size_t n = 70000;
	uint8_t *buf = xmalloc(n);
	uint32_t whole, a, ab, comb;
	size_t i, bad_chain = 0, bad_comb = 0, cut;

	fill(buf, n);
	whole = ref(0, buf, n);
	for (i = 0; i < 200; i++) {
		/* Short pieces around the folding threshold, then anywhere. */
		cut = i < 100 ? i * 7 % 300 : (size_t)(rng() % (n + 1));
		a = stp_crc32(0, buf, cut);
		ab = stp_crc32(a, buf + cut, n - cut);
		comb = stp_crc32_combine(a, stp_crc32(0, buf + cut, n - cut),
					 n - cut);
		if (ab != whole && bad_chain++ == 0)
			printf("# %s: cut at %zu: %08x, want %08x\n", v, cut,
			       (unsigned)ab, (unsigned)whole);
		if (comb != whole && bad_comb++ == 0)
			printf("# %s: combine at %zu: %08x, want %08x\n", v,
			       cut, (unsigned)comb, (unsigned)whole);
	}
	ok(bad_chain == 0, "%s: CRC of A then B is the CRC of AB (%zu of 200 "
	   "cuts differ)", v, bad_chain);
	ok(bad_comb == 0, "%s: stp_crc32_combine agrees (%zu of 200 cuts "
	   "differ)", v, bad_comb);
	free(buf);
}

static void test_check_value(const char *v)
{
	const char *s = "123456789";
	char many[90];
	uint32_t got = stp_crc32(0, s, 9);
	int i;

	ok(got == 0xCBF43926u, "%s: CRC-32 of \"123456789\" is %08x", v,
	   (unsigned)got);
	for (i = 0; i < 10; i++)
		memcpy(many + 9 * i, s, 9);
	got = stp_crc32(0, many, 90);
	ok(got == ref(0, (const uint8_t *)many, 90),
	   "%s: \"123456789\" ten times is %08x", v, (unsigned)got);
	ok(stp_crc32(0x12345678u, NULL, 0) == 0x12345678u,
	   "%s: no bytes leave the CRC as it was", v);
}

static void test_variant(int v)
{
	const char *name = variants[v];
	int rc;

	if (!have[v]) {
		skip(name);
		return;
	}
	rc = stp_crc32_force_impl(name);
	ok(rc == 0 && !strcmp(stp_crc32_impl_name(), name),
	   "%s: forced (%d), reports %s", name, rc, stp_crc32_impl_name());
	test_check_value(name);
	test_lengths(name, 0, 300, 1);
	test_lengths(name, 301, 4200, 0);
	test_large(name, (size_t)1 << 20);
	test_large(name, ((size_t)8 << 20) + 13);
	test_chain(name);
}

static void test_force(void)
{
	const char *best = variants[have[2] ? 2 : have[1]];
	const char *before;

	ok(stp_crc32_force_impl(NULL) == 0 &&
	   !strcmp(stp_crc32_impl_name(), best), "NULL picks the best: %s",
	   stp_crc32_impl_name());
	ok(stp_crc32_force_impl("cuda") == 0 &&
	   !strcmp(stp_crc32_impl_name(), best), "\"cuda\" picks the best");
	stp_crc32_force_impl("scalar");
	before = stp_crc32_impl_name();
	ok(stp_crc32_force_impl("sse9") == STP_EUNSUPPORTED &&
	   stp_crc32_impl_name() == before, "an unknown name is refused and "
	   "changes nothing");
}

/* Printed by a child run with --impl, for test_env. */
static int report_impl(void)
{
	printf("%s %08x\n", stp_crc32_impl_name(),
	       (unsigned)stp_crc32(0, "123456789", 9));
	return 0;
}

static void test_env(void)
{
	static const char *const names[] = {
		"scalar", "avx2", "avx512", "", "auto", "cuda", "sse9"
	};
	const char *best = variants[have[2] ? 2 : have[1]];
	char self[4096], cmd[4200], got[64], want[64];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	size_t i;

	if (n <= 0) {
		ok(0, "STP_IMPL: cannot find this test's executable");
		return;
	}
	self[n] = 0;
	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		FILE *f;
		const char *w;

		snprintf(cmd, sizeof cmd, "STP_IMPL='%s' '%s' --impl",
			 names[i], self);
		if (i < NVAR)
			w = have[i] ? names[i] : "none";
		else
			w = i == 6 ? "none" : best;
		snprintf(want, sizeof want, "%s cbf43926\n", w);
		got[0] = 0;
		f = popen(cmd, "r");
		if (!f || !fgets(got, sizeof got, f))
			got[0] = 0;
		if (f)
			pclose(f);
		ok(!strcmp(got, want), "STP_IMPL='%s' at start-up: %.*s",
		   names[i], (int)strcspn(got, "\n"), got);
	}
}

int main(int argc, char **argv)
{
	int v;

	if (argc == 2 && !strcmp(argv[1], "--impl"))
		return report_impl();
	for (v = 0; v < NVAR; v++)
		have[v] = stp_crc32_force_impl(variants[v]) == 0;
	for (v = 0; v < NVAR; v++)
		test_variant(v);
	test_force();
	test_env();
	printf("1..%d\n", ntest);
	if (nfail)
		printf("# %d of %d failed\n", nfail, ntest);
	return nfail ? 1 : 0;
}
