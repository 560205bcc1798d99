/* Unit test of lib/rans: round trips, every encoder variant against every
 * decoder variant with byte-identical bodies, the test vectors of
 * formats/rans.md, hostile bodies that must all be refused (for both the
 * 32-state and the 4-state method), and STP_IMPL.  Prints TAP; exits 1
 * if any test failed.  Every buffer handed to the decoder is a heap block
 * of exactly the right size, so a run under valgrind or
 * -fsanitize=address catches any read or write outside it. */
#include <stdarg.h>
#include <stdint.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/deflate.h"
#include "../../lib/error.h"
#include "../../lib/rans.h"

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

static void skip(const char *fmt, ...)
{
	va_list ap;

	ntest++;
	printf("ok %d - ", ntest);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" # SKIP not supported by this CPU\n");
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

static void force(int v)
{
	if (stp_rans_force_impl(variants[v]) < 0) {
		printf("Bail out! cannot force %s\n", variants[v]);
		exit(1);
	}
}

/* Decodes body[0..len) as n symbols with variant v, from and into heap
 * blocks of exactly len and n bytes; returns the code, and the output
 * through *out (to free) when wanted. */
static int decode_exact(int v, const uint8_t *body, size_t len, size_t n,
			uint8_t **out)
{
	uint8_t *in = xmalloc(len), *dst = xmalloc(n);
	int rc;

	memcpy(in, body, len);
	force(v);
	rc = stp_rans_decode(in, len, dst, n);
	free(in);
	if (out)
		*out = dst;
	else
		free(dst);
	return rc;
}

/* ---- Inputs ---- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* Like the exponents of Gaussian weights: a peak, halving below it, a
 * sharp edge above it, and a few zeros. */
static uint8_t exponent_like(void)
{
	uint64_t r = next();
	int lz = r ? __builtin_clzll(r) : 64;

	if ((r & 0x3ff) == 0)
		return 0;
	if ((r & 0xff) == 1)
		return (uint8_t)(123 + (r >> 8 & 3));
	return (uint8_t)(122 - (lz > 40 ? 40 : lz));
}

enum kind { ZERO, SAME, UNIFORM, NIBBLE, EXPO, ALL256, SPARSE, TWO };

static void make(enum kind k, uint8_t *buf, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint64_t r = next();

		switch (k) {
		case ZERO: buf[i] = 0; break;
		case SAME: buf[i] = 0x7e; break;
		case UNIFORM: buf[i] = (uint8_t)r; break;
		case NIBBLE: buf[i] = (uint8_t)(r & 15); break;
		case EXPO: buf[i] = exponent_like(); break;
		/* Every byte value present, most of the mass in a few. */
		case ALL256:
			buf[i] = (r & 7) == 0 ? (uint8_t)(r >> 8)
					      : exponent_like();
			break;
		/* One symbol nearly always: a long tail of symbols decoded
		 * where few words remain. */
		case SPARSE: buf[i] = (r & 0xfff) == 0 ? (uint8_t)(r >> 12)
						       : 0x55; break;
		case TWO: buf[i] = (r & 3) == 0 ? 'b' : 'a'; break;
		}
	}
}

/* ---- Round trips ---- */

/* Encodes with every variant (the bodies must be identical to the scalar
 * one) and decodes each body with every variant. */
static void roundtrip(const char *what, const uint8_t *in, size_t n,
		      int method)
{
	size_t cap = stp_rans_bound(n), ref_len = 0, len;
	uint8_t *ref = xmalloc(cap), *body = xmalloc(cap);
	int e, d, rc;

	force(0);
	rc = stp_rans_encode(in, n, ref, cap, &ref_len);
	ok(rc == 0 && ref_len >= 1 && ref_len <= n + 1 &&
	   (method < 0 || ref[0] == method),
	   "%s n=%zu: scalar encode -> %zu bytes, method %d", what, n,
	   ref_len, ref_len ? ref[0] : -1);
	for (e = 0; e < NVAR; e++) {
		if (!have[e]) {
			skip("%s n=%zu: %s encode", what, n, variants[e]);
			continue;
		}
		force(e);
		len = 0;
		rc = stp_rans_encode(in, n, body, cap, &len);
		if (e > 0)
			ok(rc == 0 && len == ref_len &&
			   !memcmp(body, ref, len),
			   "%s n=%zu: %s body identical to scalar", what, n,
			   variants[e]);
		for (d = 0; d < NVAR; d++) {
			uint8_t *out = NULL;

			if (!have[d]) {
				skip("%s n=%zu: %s -> %s", what, n,
				     variants[e], variants[d]);
				continue;
			}
			rc = decode_exact(d, body, len, n, &out);
			ok(rc == 0 && (n == 0 || !memcmp(out, in, n)),
			   "%s n=%zu: %s -> %s round trip (rc %d)", what, n,
			   variants[e], variants[d], rc);
			free(out);
		}
	}
	free(ref);
	free(body);
}

static void test_roundtrips(void)
{
	static const size_t sizes[] = {
		1, 2, 31, 32, 33, 63, 64, 65, 100, 200, 1000, 4097,
		65536 + 7, (1 << 18) - 1, 1 << 18, (1 << 18) + 1,
		(1 << 20) - 33, (1 << 20) + 13, (5 << 20) + 3
	};
	static const struct {
		const char *name;
		enum kind k;
	} kinds[] = {
		{ "exponent-like", EXPO },
		{ "all 256 symbols", ALL256 },
		{ "sparse", SPARSE },
		{ "two symbols", TWO },
	};
	size_t big = (5 << 20) + 3, i, k;
	uint8_t *buf = xmalloc(STP_RANS_MAX_N);

	roundtrip("empty", NULL, 0, STP_RANS_RAW);
	for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
		for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
			make(kinds[k].k, buf, sizes[i]);
			/* Small planes may be stored raw, and a small sparse
			 * one may be a run. */
			roundtrip(kinds[k].name, buf, sizes[i],
				  sizes[i] >= (1u << 18) ? STP_RANS_ORDER0_STRIPED
				  : sizes[i] > STP_RANS_X4_MAX_N ? STP_RANS_ORDER0
				  : sizes[i] >= 4097 && kinds[k].k != SPARSE
				  ? STP_RANS_ORDER0_X4 : -1);
		}
	make(SAME, buf, 1);
	roundtrip("one symbol", buf, 1, STP_RANS_RUN);
	make(SAME, buf, 100000);
	roundtrip("all-same byte", buf, 100000, STP_RANS_RUN);
	make(UNIFORM, buf, big);
	roundtrip("uniform random bytes", buf, big, STP_RANS_RAW);
	make(NIBBLE, buf, 100003);
	roundtrip("uniform over 16 symbols", buf, 100003, STP_RANS_ORDER0);
	make(EXPO, buf, STP_RANS_MAX_N);
	roundtrip("exponent-like, largest plane", buf, STP_RANS_MAX_N,
		  STP_RANS_ORDER0_STRIPED);
	free(buf);
}

/* Encodes in[0..n) with every variant into body (the scalar one into
 * ref) and decodes each with every variant; returns the number of
 * failures, quietly, for tests that cover many sizes at once. */
static size_t failures(const uint8_t *in, size_t n, uint8_t *ref,
		       uint8_t *body, size_t cap)
{
	size_t fails = 0, ref_len = 0, len;
	int e, d;

	force(0);
	if (stp_rans_encode(in, n, ref, cap, &ref_len) < 0)
		return 1;
	for (e = 0; e < NVAR; e++) {
		if (!have[e])
			continue;
		force(e);
		if (stp_rans_encode(in, n, body, cap, &len) < 0 ||
		    len != ref_len || memcmp(body, ref, len))
			fails++;
		for (d = 0; d < NVAR; d++) {
			uint8_t *out = NULL;

			if (!have[d])
				continue;
			if (decode_exact(d, body, len, n, &out) < 0 ||
			    memcmp(out, in, n))
				fails++;
			free(out);
		}
	}
	return fails;
}

/* Method 3 at every size up to 1100 and at sizes up to its limit, each
 * encoded by every variant (identical bytes) and decoded by every
 * variant; one result per data kind for the sizes done in bulk. */
static void test_x4_roundtrips(void)
{
	static const size_t sizes[] = {
		1101, 1103, 2047, 2049, 4095, 4096, 4099, 8191, 10001,
		16381, 16382, 16383, 16384
	};
	static const struct {
		const char *name;
		enum kind k;
	} kinds[] = {
		{ "exponent-like", EXPO },
		{ "two symbols", TWO },
		{ "all 256 symbols", ALL256 },
	};
	size_t cap = stp_rans_bound(STP_RANS_X4_MAX_N + 1), n, i, k;
	uint8_t *buf = xmalloc(STP_RANS_X4_MAX_N + 1), *ref = xmalloc(cap);
	uint8_t *body = xmalloc(cap);

	for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
		size_t x4 = 0, bad = 0, first = 0;

		for (n = 1; n <= 1100; n++) {
			make(kinds[k].k, buf, n);
			bad += failures(buf, n, ref, body, cap);
			if (ref[0] == STP_RANS_ORDER0)
				bad++;
			if (ref[0] == STP_RANS_ORDER0_X4 && !x4++)
				first = n;
		}
		ok(bad == 0 && x4 > 900,
		   "%s, every n from 1 to 1100: %zu method-3 bodies (the first "
		   "at n=%zu), no method 1, every encoder and decoder agree "
		   "(%zu failures)", kinds[k].name, x4, first, bad);
		for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
			make(kinds[k].k, buf, sizes[i]);
			roundtrip(kinds[k].name, buf, sizes[i],
				  STP_RANS_ORDER0_X4);
		}
	}
	/* The limit: one symbol more and the plane takes 32 states. */
	make(EXPO, buf, STP_RANS_X4_MAX_N + 1);
	roundtrip("exponent-like, 4-state limit", buf, STP_RANS_X4_MAX_N,
		  STP_RANS_ORDER0_X4);
	roundtrip("exponent-like, one over the 4-state limit", buf,
		  STP_RANS_X4_MAX_N + 1, STP_RANS_ORDER0);
	free(buf);
	free(ref);
	free(body);
}

/* ---- Test vectors of formats/rans.md ---- */

static const uint8_t golden_body[] = {
	0x01, 0x03, 0x01, 0x41, 0x03, 0x04, 0x02, 0x01, 0x01, 0x4a, 0x23, 0xd6,
	0x14, 0x22, 0x85, 0x31, 0x05, 0x35, 0x9a, 0xb6, 0x14, 0xeb, 0x46, 0x4c,
	0x29, 0x42, 0xb2, 0xa8, 0x00, 0xa6, 0x91, 0x06, 0x15, 0xb3, 0x46, 0xf6,
	0x14, 0x8d, 0x26, 0x73, 0x0a, 0x37, 0x43, 0x56, 0x15, 0x22, 0xc5, 0xa8,
	0x02, 0x35, 0x92, 0x4d, 0x05, 0xeb, 0x46, 0x9b, 0x54, 0xa3, 0x69, 0x59,
	0x01, 0x66, 0x88, 0x61, 0x05, 0xb2, 0x46, 0xbb, 0x0a, 0x8d, 0xa6, 0x59,
	0x05, 0x77, 0xa3, 0xad, 0x2b, 0xd3, 0x84, 0x71, 0x05, 0x34, 0xd2, 0xb6,
	0x02, 0x5a, 0xa3, 0x4d, 0x2b, 0xa3, 0xc9, 0xc2, 0x02, 0x6e, 0x34, 0x03,
	0x0b, 0x6b, 0x0a, 0xf6, 0x15, 0x8c, 0xd4, 0xbc, 0x02, 0xae, 0xd1, 0xac,
	0x2c, 0xd3, 0x04, 0x23, 0x0b, 0x8d, 0xa6, 0x8d, 0x05, 0x37, 0x8d, 0x98,
	0x58, 0x22, 0x85, 0xa5, 0x05, 0x35, 0x1a, 0x43, 0x0b, 0xeb, 0x46, 0xec,
	0x2c, 0xa3, 0xc9, 0xcc, 0x02, 0x8c, 0x15, 0xc2, 0x0a, 0xa3, 0x0b, 0x8c,
	0x15, 0xa3, 0x2b, 0xb2, 0xc6, 0x8d, 0x2e, 0x34, 0x56, 0xa3, 0x0b, 0x92,
	0xc6, 0x8d, 0x15, 0x0c, 0x2b, 0xa3, 0x0b, 0x8c, 0x15, 0x8d, 0x2e, 0x35,
	0xba, 0xeb, 0xc6, 0xa3, 0x2b, 0xa6, 0xb1, 0x8d, 0x2e, 0x34, 0x56, 0x0c,
	0x2b, 0xae, 0xb1, 0x8d, 0x2e, 0x37, 0xc3, 0x35, 0xba, 0xeb, 0xc6, 0xa6,
	0xb1, 0x6e, 0x74, 0x8d, 0x2e, 0x35, 0x3a, 0x8d, 0x2e
};

/* The same input as a method-3 body: what the encoder writes now. */
static const uint8_t golden_x4_body[] = {
	0x03, 0x03, 0x01, 0x41, 0x03, 0x04, 0x02, 0x01, 0x01, 0x73, 0x15, 0x6b,
	0x0a, 0xaa, 0x2a, 0x63, 0x0a, 0x64, 0x4b, 0x01, 0x00, 0xc8, 0xa6, 0x14,
	0x00, 0x49, 0x92, 0xf9, 0xae, 0xaa, 0x8a, 0x25, 0x49, 0x7d, 0x57, 0xaa,
	0x8a, 0x25, 0x49, 0x73, 0x55, 0xaa, 0xc9, 0x49, 0x92, 0x5f, 0xd5, 0xaa,
	0xc9, 0x25, 0xc9, 0xdf, 0x55, 0x56, 0x24, 0x49, 0x32, 0xbb, 0xaa, 0x56,
	0x4d, 0x49, 0xe6, 0xab, 0xaa, 0x8a, 0x24, 0x49, 0x72, 0x8a, 0x24, 0xaa,
	0xaa, 0x49, 0xbe, 0xbb, 0xaa, 0x48, 0x92, 0xc9, 0x5c, 0xaa, 0x49, 0xab,
	0xaa, 0x99, 0xab, 0xaa, 0xaa, 0x49, 0x92, 0x49, 0xbe, 0x49, 0x92, 0xaa,
	0x9a, 0xc9, 0x77, 0xab, 0xaa, 0x48, 0x92, 0xcd, 0x55, 0x9a, 0x24, 0xaa,
	0x8a, 0xbb, 0xaa, 0x56, 0x4d, 0x49, 0x92, 0xc9, 0x77, 0xaa, 0x48, 0x49,
	0x32, 0xaa, 0xaa, 0x7d, 0x57, 0x49, 0x66, 0x49, 0x12, 0xaa, 0x49, 0xab,
	0x1a
};

static void golden_input(uint8_t *in, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		int s = i * 37 % 100;

		in[i] = s < 50 ? 'A' : s < 75 ? 'B' : s < 90 ? 'C' : 'D';
	}
}

/* Every encoder variant must write body for in[0..n) (unless read_only:
 * a body the encoder no longer writes), and every decoder variant read it
 * back. */
static void vector(const char *what, const uint8_t *in, size_t n,
		   const uint8_t *body, size_t len, int read_only)
{
	size_t cap = stp_rans_bound(n), got = 0;
	uint8_t *buf = xmalloc(cap);
	int v, rc;

	for (v = 0; v < NVAR; v++) {
		uint8_t *out = NULL;

		if (!have[v]) {
			skip("%s vector with %s", what, variants[v]);
			continue;
		}
		force(v);
		rc = stp_rans_encode(in, n, buf, cap, &got);
		if (!read_only)
			ok(rc == 0 && got == len && !memcmp(buf, body, len),
			   "%s vector: %s encoder writes formats/rans.md's "
			   "bytes", what, variants[v]);
		else
			ok(rc == 0 && got < len && buf[0] != body[0],
			   "%s vector: %s encoder now writes a shorter body "
			   "(%zu bytes, method %d)", what, variants[v], got,
			   buf[0]);
		rc = decode_exact(v, body, len, n, &out);
		ok(rc == 0 && !memcmp(out, in, n),
		   "%s vector: %s decoder reads them", what, variants[v]);
		free(out);
	}
	free(buf);
}

/* FNV-1a-32 of a body, to pin one too long to quote. */
static uint32_t fnv1a(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--)
		h = (h ^ *p++) * 16777619u;
	return h;
}

static void test_vectors(void)
{
	static const uint8_t raw_in[3] = { 0x00, 0xff, 0x10 };
	static const uint8_t raw_body[4] = { STP_RANS_RAW, 0x00, 0xff, 0x10 };
	static const uint8_t run_body[2] = { STP_RANS_RUN, 0x7e };
	uint8_t run_in[1000], in[20000], *body;
	size_t n = sizeof in, cap = stp_rans_bound(n), len;
	int v, rc;

	vector("raw", raw_in, sizeof raw_in, raw_body, sizeof raw_body, 0);
	memset(run_in, 0x7e, sizeof run_in);
	vector("run", run_in, sizeof run_in, run_body, sizeof run_body, 0);
	golden_input(in, 512);
	vector("order0", in, 512, golden_body, sizeof golden_body, 1);
	vector("order0x4", in, 512, golden_x4_body, sizeof golden_x4_body, 0);

	/* Where the 32 states still win, the body is the one written before
	 * method 3 existed: its length and hash, pinned then. */
	golden_input(in, n);
	body = xmalloc(cap);
	for (v = 0; v < NVAR; v++) {
		if (!have[v]) {
			skip("order0 n=%zu pinned with %s", n, variants[v]);
			continue;
		}
		force(v);
		rc = stp_rans_encode(in, n, body, cap, &len);
		ok(rc == 0 && len == 4473 && fnv1a(body, len) == 0x673ad6bfu,
		   "order0 n=%zu: %s encoder writes the body pinned before "
		   "method 3 (%zu bytes, FNV-1a %08x)", n, variants[v], len,
		   fnv1a(body, len));
	}
	free(body);
}

/* ---- Hostile bodies ---- */

/* Every available decoder must refuse the body with a negative code;
 * want, if nonzero, is the exact code expected. */
static void refuse(const char *what, const uint8_t *body, size_t len,
		   size_t n, int want)
{
	int v, rc, good = 1;
	char got[64] = "";

	for (v = 0; v < NVAR; v++) {
		if (!have[v])
			continue;
		rc = decode_exact(v, body, len, n, NULL);
		if (rc >= 0 || (want && rc != want)) {
			good = 0;
			snprintf(got, sizeof got, " (%s returned %d)",
				 variants[v], rc);
		}
	}
	ok(good, "refused: %s%s", what, got);
}

/* Offsets of the parts of an order-0 body, from its table. */
static size_t table_len(const uint8_t *body)
{
	size_t runs = body[2], pos = 3 + 2 * runs, nsym = 0, r;

	for (r = 0; r < runs; r++)
		nsym += (size_t)body[4 + 2 * r] + 1;
	while (nsym--)
		pos += body[pos] & 0x80 ? 2 : 1;
	return pos - 1;
}

/* The hostile bodies made from one good order-0 body of method (1 or 3,
 * K states) for n exponent-like symbols. */
static void hostile_order0(int method, size_t n)
{
	size_t k = method == STP_RANS_ORDER0 ? STP_RANS_LANES
					     : STP_RANS_X4_LANES;
	size_t cap = stp_rans_bound(n), len = 0, i, tl;
	uint8_t *in = xmalloc(n), *body = xmalloc(cap);
	uint8_t *bad = xmalloc(cap + 64);
	int rc, v, all;
	unsigned bit;

	make(EXPO, in, n);
	force(0);
	rc = stp_rans_encode(in, n, body, cap, &len);
	ok(rc == 0 && body[0] == method,
	   "hostile base: %zu symbols as a %zu-byte method-%d body", n, len,
	   method);
	tl = table_len(body);

	/* Every proper prefix. */
	all = 1;
	for (i = 0; i < len; i++)
		for (v = 0; v < NVAR; v++)
			if (have[v] && decode_exact(v, body, i, n, NULL) >= 0)
				all = 0;
	ok(all, "method %d refused: all %zu truncations, by every variant",
	   method, len);

	/* Every byte, each of three flips.  A body without a checksum cannot
	 * catch every change: where two symbols of frequency 1 sit side by
	 * side, a flip of the low bit of a slot swaps one for the other and
	 * the states resynchronise (frames carry a CRC-32 for that).  What
	 * must hold: no flip makes a decoder read or write out of bounds
	 * (valgrind, ASan), every flip of the method byte or the table is
	 * refused (the initial states hash the table), the decoders agree on
	 * every body, and accepted flips stay rare. */
	{
		static const uint8_t flips[3] = { 0x01, 0x80, 0xff };
		unsigned accepted = 0, total = 0, table_refused = 1, agree = 1;

		for (i = 0; i < len; i++)
			for (bit = 0; bit < 3; bit++) {
				uint8_t *first = NULL, *o = NULL;
				int rc0 = 0;

				memcpy(bad, body, len);
				bad[i] ^= flips[bit];
				total++;
				for (v = 0; v < NVAR; v++) {
					if (!have[v])
						continue;
					rc = decode_exact(v, bad, len, n, &o);
					if (!first) {
						first = o;
						rc0 = rc;
						continue;
					}
					if (rc != rc0 ||
					    (rc >= 0 && memcmp(o, first, n)))
						agree = 0;
					free(o);
				}
				free(first);
				if (rc0 < 0)
					continue;
				accepted++;
				if (i < 1 + tl)
					table_refused = 0;
			}
		ok(table_refused,
		   "method %d refused: every flip of the method byte and table",
		   method);
		ok(agree, "method %d: every decoder returns the same for "
		   "every flipped body", method);
		ok(accepted * 100 < total,
		   "method %d: flipped bodies accepted: %u of %u (must stay "
		   "under 1%%)", method, accepted, total);
	}

	/* The stored states are the encoder's final ones: any change to one
	 * leaves the decoder's final states off x0 (or reads a different
	 * number of words), whichever bit it is. */
	all = 1;
	for (i = 0; i < 4 * k * 8; i++) {
		memcpy(bad, body, len);
		bad[1 + tl + i / 8] ^= (uint8_t)(1u << (i % 8));
		for (v = 0; v < NVAR; v++)
			if (have[v] && decode_exact(v, bad, len, n, NULL) >= 0)
				all = 0;
	}
	ok(all, "method %d refused: each of the %zu one-bit changes to the "
	   "states", method, 4 * k * 8);

	/* Lengths that lie. */
	memcpy(bad, body, len);
	bad[len] = 0;
	refuse("one trailing byte", bad, len + 1, n, STP_ECORRUPT);
	memcpy(bad + len, "\x12\x34", 2);
	refuse("one trailing word", bad, len + 2, n, STP_ECORRUPT);
	refuse("n one too small", body, len, n - 1, 0);
	refuse("n one too large", body, len, n + 1, 0);
	refuse("n one group of states too small", body, len, n - k, 0);
	refuse("n one group of states too large", body, len, n + k, 0);
	refuse("n of 0", body, len, 0, STP_ECORRUPT);
	refuse("n over the limit", body, len, STP_RANS_MAX_N + 1, STP_ETOOBIG);

	/* States out of range: below 2^15, and at or above 2^31. */
	memcpy(bad, body, len);
	bad[1 + tl + 0] = 0xff;
	bad[1 + tl + 1] = 0x7f;
	bad[1 + tl + 2] = 0;
	bad[1 + tl + 3] = 0;
	refuse("initial state below 2^15", bad, len, n, STP_ECORRUPT);
	memcpy(bad, body, len);
	bad[1 + tl + 4 * (k - 1) + 3] |= 0x80;
	refuse("last initial state at or above 2^31", bad, len, n,
	       STP_ECORRUPT);

	free(in);
	free(body);
	free(bad);
}

/* A method-1 or method-3 body made here, not by the library, for n
 * symbols that are each 0 or 1, with the table pb = 1, f = {1, 1}: each
 * step then doubles a state and adds the symbol, simple enough to write
 * from formats/rans.md.  This is how a test gets a well-formed method-3
 * body for an n the encoder never gives method 3.  Returns its length;
 * body needs 1 + 6 + 4 * k + 2 * n bytes. */
static size_t handmade(int method, const uint8_t *bits, size_t n,
		       uint8_t *body)
{
	static const uint8_t table[6] = { 1, 1, 0, 1, 1, 1 };
	size_t k = method == STP_RANS_ORDER0 ? STP_RANS_LANES
					     : STP_RANS_X4_LANES;
	size_t head = 1 + sizeof table + 4 * k, nw = 0, i, j;
	uint32_t h = fnv1a(table, sizeof table), x[STP_RANS_LANES];
	uint16_t *w = xmalloc(2 * n + 2);

	for (i = 0; i < 4; i++)
		h = (h ^ (uint8_t)(n >> (8 * i))) * 16777619u;
	for (j = 0; j < k; j++)
		x[j] = 0x8000u | (((h ^ (uint32_t)j) * 16777619u) >> 17);
	for (i = n; i-- > 0;) {
		j = i % k;
		if (x[j] >= 1u << 30) {		/* x_max + 1 = 1 << (31 - pb) */
			w[nw++] = (uint16_t)x[j];
			x[j] >>= 16;
		}
		x[j] = 2 * x[j] + bits[i];
	}
	body[0] = (uint8_t)method;
	memcpy(body + 1, table, sizeof table);
	for (j = 0; j < k; j++)
		for (i = 0; i < 4; i++)
			body[1 + sizeof table + 4 * j + i] =
				(uint8_t)(x[j] >> (8 * i));
	for (i = 0; i < nw; i++) {	/* written last first */
		body[head + 2 * i] = (uint8_t)w[nw - 1 - i];
		body[head + 2 * i + 1] = (uint8_t)(w[nw - 1 - i] >> 8);
	}
	free(w);
	return head + 2 * nw;
}

static void test_hostile(void)
{
	size_t n = 5000, cap = stp_rans_bound(n), len = 0;
	uint8_t *in = xmalloc(n), *body = xmalloc(cap);
	uint8_t *bad = xmalloc(cap + 64);
	int rc;

	hostile_order0(STP_RANS_ORDER0, 20000);
	hostile_order0(STP_RANS_ORDER0_X4, n);
	make(EXPO, in, n);

	/* Tables, built by hand: method, pb, runs, {skip, count-1}, freqs,
	 * then valid states (2^15) and a few words, so that only the table
	 * check can refuse the body with STP_ECORRUPT. */
	{
		static const struct {
			const char *what;
			uint8_t t[12];
			size_t len;
		} tables[] = {
			{ "prob_bits 0", { 0, 1, 0, 1, 1, 1 }, 6 },
			{ "prob_bits 13",
			  { 13, 1, 0, 1, 0x80, 0x20, 0xff, 0x1f }, 8 },
			{ "no runs", { 4, 0 }, 2 },
			{ "129 runs", { 4, 129 }, 2 },
			{ "run past symbol 255", { 4, 1, 250, 6, 8, 8 }, 6 },
			{ "runs with a zero gap",
			  { 4, 2, 0, 0, 0, 0, 8, 8 }, 8 },
			{ "one symbol", { 4, 1, 7, 0, 16 }, 5 },
			{ "frequency sum one short", { 4, 1, 0, 1, 8, 7 }, 6 },
			{ "frequency sum one over", { 4, 1, 0, 1, 8, 9 }, 6 },
			{ "zero frequency", { 4, 1, 0, 2, 8, 8, 0 }, 7 },
			{ "frequency of 2^pb", { 4, 1, 0, 1, 16, 0 }, 6 },
			{ "non-canonical two-byte frequency",
			  { 8, 1, 0, 1, 0x80 | 5, 0, 0x80 | 123, 1 }, 8 },
		};
		static const int methods[2] = {
			STP_RANS_ORDER0, STP_RANS_ORDER0_X4
		};
		size_t ntables = sizeof tables / sizeof tables[0], m, i;

		for (m = 0; m < 2 * ntables; m++) {
			size_t t = m % ntables, tlen = tables[t].len;
			size_t k = m < ntables ? STP_RANS_LANES
					       : STP_RANS_X4_LANES;
			size_t blen = 1 + tlen + 4 * k + 8;
			char what[96];

			memset(bad, 0, blen);
			bad[0] = (uint8_t)methods[m / ntables];
			memcpy(bad + 1, tables[t].t, tlen);
			for (i = 0; i < k; i++)
				bad[1 + tlen + 4 * i + 1] = 0x80;
			snprintf(what, sizeof what, "method %d, %s",
				 bad[0], tables[t].what);
			refuse(what, bad, blen, 1000, STP_ECORRUPT);
		}
	}
	{
		static const uint8_t cut[6] = {
			STP_RANS_ORDER0, 8, 1, 0, 1, 0x80
		};

		refuse("table ending inside a two-byte frequency", cut,
		       sizeof cut, 1000, STP_ETRUNCATED);
	}

	/* Method 3 is limited to n <= STP_RANS_X4_MAX_N, and the limit is
	 * checked first: a body cut after its method byte is refused as
	 * truncated below the limit and as corrupt above it.  A well-formed
	 * body made by hand for one symbol more than the limit is refused;
	 * the same plane decodes as 32 states, and one symbol fewer decodes
	 * as 4. */
	{
		static const uint8_t just_method[1] = { STP_RANS_ORDER0_X4 };
		size_t big = STP_RANS_X4_MAX_N + 1, hlen, i;
		uint8_t *bits = xmalloc(big);
		uint8_t *hb = xmalloc(1 + 6 + 4 * STP_RANS_LANES + 2 * big);
		uint8_t *out = NULL;
		int v, good;

		refuse("method 3 cut after its method byte", just_method, 1,
		       STP_RANS_X4_MAX_N, STP_ETRUNCATED);
		refuse("method 3 cut after its method byte, n over its limit",
		       just_method, 1, big, STP_ECORRUPT);
		for (i = 0; i < big; i++)
			bits[i] = in[i % n] & 1;
		hlen = handmade(STP_RANS_ORDER0_X4, bits, big - 1, hb);
		good = 1;
		for (v = 0; v < NVAR; v++) {
			if (!have[v])
				continue;
			rc = decode_exact(v, hb, hlen, big - 1, &out);
			good &= rc == 0 && !memcmp(out, bits, big - 1);
			free(out);
		}
		ok(good, "handmade method-3 body for n=%zu (%zu bytes) decodes "
		   "with every variant", big - 1, hlen);
		hlen = handmade(STP_RANS_ORDER0, bits, big, hb);
		good = 1;
		for (v = 0; v < NVAR; v++) {
			if (!have[v])
				continue;
			rc = decode_exact(v, hb, hlen, big, &out);
			good &= rc == 0 && !memcmp(out, bits, big);
			free(out);
		}
		ok(good, "handmade method-1 body for n=%zu decodes with every "
		   "variant", big);
		hlen = handmade(STP_RANS_ORDER0_X4, bits, big, hb);
		refuse("well-formed method-3 body for n one over its limit", hb,
		       hlen, big, STP_ECORRUPT);
		free(bits);
		free(hb);
	}

	/* Other methods. */
	{
		static const uint8_t empty[1] = { 0 };
		static const uint8_t unknown[2] = { 4, 0 };
		static const uint8_t high[2] = { 0xff, 0 };
		static const uint8_t run[3] = { STP_RANS_RUN, 'x', 'x' };
		uint8_t raw[11] = { STP_RANS_RAW };

		refuse("empty body", empty, 0, 10, STP_ETRUNCATED);
		refuse("method 4", unknown, 2, 10, STP_EUNSUPPORTED);
		refuse("method 255", high, 2, 10, STP_EUNSUPPORTED);
		refuse("raw body one short", raw, 10, 10, STP_ETRUNCATED);
		refuse("raw body one long", raw, 11, 9, STP_ECORRUPT);
		refuse("run body without its byte", run, 1, 10, STP_ETRUNCATED);
		refuse("run body with a trailing byte", run, 3, 10,
		       STP_ECORRUPT);
		refuse("run body for n = 0", run, 2, 0, STP_ECORRUPT);
	}

	/* Encoder limits. */
	rc = stp_rans_encode(in, STP_RANS_MAX_N + 1, body, cap, &len);
	ok(rc == STP_ETOOBIG, "encode refuses n over the limit (rc %d)", rc);
	rc = stp_rans_encode(in, n, body, stp_rans_bound(n) - 1, &len);
	ok(rc == STP_ETOOBIG, "encode refuses a buffer below the bound (rc %d)",
	   rc);

	free(in);
	free(body);
	free(bad);
}

/* ---- Dispatcher and entropy ---- */

static void test_misc(void)
{
	uint8_t buf[1000];
	double h;
	int v;

	ok(stp_rans_force_impl("sse9") == STP_EUNSUPPORTED,
	   "forcing an unknown variant fails");
	for (v = 0; v < NVAR; v++) {
		int rc = stp_rans_force_impl(variants[v]);

		if (have[v])
			ok(rc == 0 &&
			   !strcmp(stp_rans_impl_name(), variants[v]),
			   "forcing %s makes it current", variants[v]);
		else
			ok(rc == STP_EUNSUPPORTED &&
			   strcmp(stp_rans_impl_name(), variants[v]),
			   "forcing %s, which this CPU lacks, fails",
			   variants[v]);
	}
	ok(stp_rans_force_impl(NULL) == 0 &&
	   !strcmp(stp_rans_impl_name(), variants[have[2] ? 2 : have[1]]),
	   "auto picks the best variant (%s)", stp_rans_impl_name());

	make(TWO, buf, sizeof buf);
	memset(buf, 'a', 500);
	memset(buf + 500, 'b', 500);
	h = stp_entropy0_bits(buf, sizeof buf);
	ok(h > 999.999 && h < 1000.001, "entropy of two equal halves: %g bits",
	   h);
	ok(stp_entropy0_bits(buf, 500) == 0, "entropy of one symbol is 0");
	ok(stp_entropy0_bits(NULL, 0) == 0, "entropy of nothing is 0");
}

/* The variant STP_IMPL selected at start-up, and what an encode then
 * returns: printed by a child run with --impl, for test_env. */
static int report_impl(void)
{
	uint8_t in[1] = { 1 }, out[2 + STP_RANS_STEP_BYTES];
	size_t len;

	printf("%s %d\n", stp_rans_impl_name(),
	       stp_rans_encode(in, 1, out, sizeof out, &len));
	return 0;
}

static void test_env(void)
{
	static const char *const names[] = {
		"scalar", "avx2", "avx512", "", "cuda", "sse9"
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

		snprintf(cmd, sizeof cmd, "STP_IMPL='%s' '%s' --impl",
			 names[i], self);
		if (i < NVAR && have[i])
			snprintf(want, sizeof want, "%s 0\n", names[i]);
		else if (i < NVAR || i == 5)
			snprintf(want, sizeof want, "none %d\n",
				 STP_EUNSUPPORTED);
		else
			snprintf(want, sizeof want, "%s 0\n", best);
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

/* Method 6: striped bodies that break one rule each, made from a good
 * two-segment body (formats/rans.md, "What decoding verifies"). */
static void test_striped_hostile(void)
{
	size_t n = (1 << 18) + 77, cap = stp_rans_bound(n), len, tl, at;
	uint8_t *in = xmalloc(n), *body = xmalloc(cap), *bad = xmalloc(cap);
	uint32_t len0;
	int rc;

	make(EXPO, in, n);
	force(0);
	rc = stp_rans_encode(in, n, body, cap, &len);
	tl = table_len(body);
	ok(rc == 0 && body[0] == STP_RANS_ORDER0_STRIPED && body[1 + tl] == 2,
	   "striped: n=%zu is coded in 2 segments", n);
	at = 2 + tl;		/* lens[0] */
	len0 = (uint32_t)body[at] | (uint32_t)body[at + 1] << 8 |
	       (uint32_t)body[at + 2] << 16 | (uint32_t)body[at + 3] << 24;

#define MUTATE(what, code, want)					\
	do {								\
		memcpy(bad, body, len);					\
		code;							\
		refuse("striped: " what, bad, len, n, want);		\
	} while (0)
	MUTATE("1 segment", bad[1 + tl] = 1, STP_ECORRUPT);
	MUTATE("17 segments", bad[1 + tl] = 17, STP_ECORRUPT);
	MUTATE("a segment's words past the body",
	       (bad[at] = 0xff, bad[at + 1] = 0xff, bad[at + 2] = 0xff,
		bad[at + 3] = 0x7f), STP_ETRUNCATED);
	MUTATE("segment 0 one word short", bad[at] = (uint8_t)(len0 - 2),
	       STP_ETRUNCATED);
	MUTATE("segment 1 state below 2^15",
	       (bad[at + 4 + 128] = 0, bad[at + 4 + 129] = 0,
		bad[at + 4 + 130] = 0, bad[at + 4 + 131] = 0), STP_ECORRUPT);
	MUTATE("segment 1 state 0 changed", bad[at + 4 + 128] ^= 1, 0);
	MUTATE("the last word changed", bad[len - 1] ^= 0x40, 0);
#undef MUTATE
	refuse("striped: the last byte cut", body, len - 1, n, 0);
	refuse("striped: cut in the lengths", body, at + 2, n,
	       STP_ETRUNCATED);
	refuse("striped: cut in the states", body, at + 4 + 200, n,
	       STP_ETRUNCATED);
	/* n such that 3 segments of whole groups leave the last empty */
	refuse("striped: for an n whose last segment is empty", body, len,
	       n - 76, 0);
	/* 3 segments, the last of them empty: n = 2 * seg_len(n, 3) */
	memcpy(bad, body, len);
	bad[1 + tl] = 3;
	refuse("striped: an empty last segment", bad, len, 64, STP_ECORRUPT);
	free(in);
	free(body);
	free(bad);
}

/* Method 5: deflate round trips of text, and bodies that must be
 * refused (formats/rans.md, "What decoding verifies"). */
static void test_deflate(void)
{
	char text[1024];
	size_t n = 0, cap, len, tlen;
	uint8_t *body, *out, *bad;

	for (int i = 0; i < 8; i++)
		n += (size_t)snprintf(text + n, sizeof text - n,
			"\"model.layers.%d.mlp.down_proj.weight\": {\"dtype\": "
			"\"BF16\", \"shape\": [320, 864]}, ", i);
	cap = stp_rans_bound(n);
	body = xmalloc(cap);
	out = xmalloc(n);
	int rc;

	rc = stp_deflate_encode((const uint8_t *)text, n, body, cap, &len);
	ok(rc == 0 && body[0] == STP_RANS_DEFLATE && len < n / 2,
	   "deflate: %zu bytes of JSON in a %zu-byte body", n, len);
	rc = stp_rans_decode(body, len, out, n);
	ok(rc == 0 && !memcmp(out, text, n), "deflate: decodes to the text");
	rc = stp_deflate_encode((const uint8_t *)text, n, body, 10, &tlen);
	ok(rc == 1, "deflate: a body that does not fit in cap is given up");
	rc = stp_deflate_encode((const uint8_t *)text, n, body, cap, &len);
	refuse("deflate: n one short", body, len, n - 1, STP_ECORRUPT);
	refuse("deflate: n one long", body, len, n + 1, STP_ECORRUPT);
	refuse("deflate: the last byte cut", body, len - 1, n, STP_ETRUNCATED);
	refuse("deflate: the method byte alone", body, 1, n, STP_ETRUNCATED);
	refuse("deflate: n = 0", body, len, 0, STP_ECORRUPT);
	bad = xmalloc(len + 1);
	memcpy(bad, body, len);
	bad[len] = 0;
	refuse("deflate: a byte after the final block", bad, len + 1, n,
	       STP_ECORRUPT);
	memset(bad + 1, 0xff, len - 1);
	refuse("deflate: invalid deflate data", bad, len, n, STP_ECORRUPT);
	free(bad);
	free(body);
	free(out);
}

int main(int argc, char **argv)
{
	int v;

	if (argc == 2 && !strcmp(argv[1], "--impl"))
		return report_impl();
	for (v = 0; v < NVAR; v++)
		have[v] = stp_rans_force_impl(variants[v]) == 0;
	test_misc();
	test_env();
	test_vectors();
	test_hostile();
	test_roundtrips();
	test_x4_roundtrips();
	test_deflate();
	test_striped_hostile();
	printf("1..%d\n", ntest);
	if (nfail)
		printf("# %d of %d failed\n", nfail, ntest);
	return nfail ? 1 : 0;
}
