/* rans-bench: our order-0 rANS against htscodecs' on the same byte plane.
 * A benchmark, not a test: it times, it does not judge.
 *
 * Build (from the repository root; needs libhtscodecs-dev):
 *   cc -std=c11 -D_GNU_SOURCE -O2 -c lib/rans_avx2.c -mavx2 -o /tmp/rans_avx2.o
 *   cc -std=c11 -D_GNU_SOURCE -O2 -c lib/rans_avx512.c -mavx512f -mavx512bw \
 *      -o /tmp/rans_avx512.o
 *   cc -std=c11 -D_GNU_SOURCE -O2 share/bench/rans-bench.c lib/rans.c \
 *      lib/error.c /tmp/rans_avx2.o /tmp/rans_avx512.o -lhtscodecs -lm \
 *      -o /tmp/rans-bench
 * Run:
 *   /tmp/rans-bench [PLANE]
 * PLANE is a file of raw plane bytes (say, the exponent byte of every BF16
 * weight of a model); without it a synthetic exponent-like plane of 8 MiB
 * is used.  A plane over 8 MiB is cut into 8 MiB planes, coded one by one
 * by both coders.
 *
 * Single thread, warm: every buffer is allocated once and written before
 * the clock starts, each coder runs once untimed (checking its round
 * trip), then REPS rounds time every coder once each, and each coder's
 * best round is reported.  htscodecs is called as rans_compress_to_4x16 /
 * rans_uncompress_to_4x16 with order 0 | RANS_ORDER_X32 (32 states, 16-bit
 * words: the same shape as ours), and picks its own fastest SIMD code. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <htscodecs/rANS_static4x16.h>

#include "../../lib/error.h"
#include "../../lib/rans.h"

#define REPS 40

struct plane {
	const uint8_t *in;
	size_t n;
	uint8_t *coded;		/* ours */
	size_t coded_len, cap;
	uint8_t *hts;		/* htscodecs' */
	unsigned hts_len, hts_cap;
};

static struct plane *planes;
static size_t nplanes, total_n;
static uint8_t *out;		/* decoded plane, 8 MiB */
static int checking;		/* compare decoded planes (untimed runs) */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
	fprintf(stderr, "rans-bench: %s\n", what);
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p)
		die("out of memory");
	memset(p, 0, n);	/* touched: no page faults under the clock */
	return p;
}

/* The run time of one pass over every plane. */
static double timed(int (*pass)(void))
{
	double t = now();

	if (pass() < 0)
		return -1;
	return now() - t;
}

static int ours_encode(void)
{
	size_t i;

	for (i = 0; i < nplanes; i++) {
		struct plane *p = &planes[i];

		if (stp_rans_encode(p->in, p->n, p->coded, p->cap,
				    &p->coded_len) < 0)
			return -1;
	}
	return 0;
}

static int ours_decode(void)
{
	size_t i;

	for (i = 0; i < nplanes; i++) {
		struct plane *p = &planes[i];

		if (stp_rans_decode(p->coded, p->coded_len, out, p->n) < 0 ||
		    (checking && memcmp(out, p->in, p->n)))
			return -1;
	}
	return 0;
}

static int hts_encode(void)
{
	size_t i;

	for (i = 0; i < nplanes; i++) {
		struct plane *p = &planes[i];

		p->hts_len = p->hts_cap;
		if (!rans_compress_to_4x16((uint8_t *)p->in, (unsigned)p->n,
					   p->hts, &p->hts_len,
					   0 | RANS_ORDER_X32))
			return -1;
	}
	return 0;
}

static int hts_decode(void)
{
	size_t i;

	for (i = 0; i < nplanes; i++) {
		struct plane *p = &planes[i];
		unsigned n = (unsigned)p->n;

		if (!rans_uncompress_to_4x16(p->hts, p->hts_len, out, &n) ||
		    n != p->n || (checking && memcmp(out, p->in, p->n)))
			return -1;
	}
	return 0;
}

/* A synthetic plane like the exponents of Gaussian weights. */
static uint8_t *synthetic(size_t n)
{
	uint8_t *b = xmalloc(n);
	uint64_t s = 0x9e3779b97f4a7c15u;
	size_t i;

	for (i = 0; i < n; i++) {
		uint64_t z = (s += 0x9e3779b97f4a7c15u);
		int lz;

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
		z ^= z >> 31;
		lz = z ? __builtin_clzll(z) : 64;
		b[i] = (z & 0x3ff) == 0 ? 0
		     : (z & 0xff) == 1 ? (uint8_t)(123 + (z >> 8 & 3))
		     : (uint8_t)(122 - (lz > 40 ? 40 : lz));
	}
	return b;
}

static uint8_t *slurp(const char *path, size_t *out_n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *b;
	long len;

	if (!f || fseek(f, 0, SEEK_END) || (len = ftell(f)) <= 0 ||
	    fseek(f, 0, SEEK_SET))
		die("cannot read the plane file");
	b = xmalloc((size_t)len);
	if (fread(b, 1, (size_t)len, f) != (size_t)len)
		die("cannot read the plane file");
	fclose(f);
	*out_n = (size_t)len;
	return b;
}

int main(int argc, char **argv)
{
	static const char *const variants[] = { "scalar", "avx2", "avx512" };
	double dec[4], enc[4], h0 = 0;	/* [3]: htscodecs */
	int have[4] = { 0 }, v, r;
	uint8_t *data;
	size_t i, ours_len = 0, hts_len = 0;

	if (argc > 2) {
		fprintf(stderr, "usage: rans-bench [PLANE]\n");
		return 100;
	}
	if (argc == 2) {
		data = slurp(argv[1], &total_n);
	} else {
		total_n = STP_RANS_MAX_N;
		data = synthetic(total_n);
	}
	nplanes = (total_n + STP_RANS_MAX_N - 1) / STP_RANS_MAX_N;
	planes = xmalloc(nplanes * sizeof *planes);
	out = xmalloc(STP_RANS_MAX_N);
	for (i = 0; i < nplanes; i++) {
		struct plane *p = &planes[i];

		p->in = data + i * STP_RANS_MAX_N;
		p->n = total_n - i * STP_RANS_MAX_N;
		if (p->n > STP_RANS_MAX_N)
			p->n = STP_RANS_MAX_N;
		p->cap = stp_rans_bound(p->n);
		p->coded = xmalloc(p->cap);
		p->hts_cap = rans_compress_bound_4x16((unsigned)p->n,
						      0 | RANS_ORDER_X32);
		p->hts = xmalloc(p->hts_cap);
		h0 += stp_entropy0_bits(p->in, p->n);
	}
	printf("plane: %s, %zu bytes in %zu plane(s), H0 %.4f bits/byte "
	       "(%.0f bytes)\n", argc == 2 ? argv[1] : "synthetic exponents",
	       total_n, nplanes, h0 / total_n, h0 / 8);
	printf("%-26s %11s %7s %9s %9s %9s\n", "coder", "coded", "ratio",
	       "over H0", "dec MB/s", "enc MB/s");

	/* Warm-up and correctness check of every coder, then REPS rounds
	 * in which each coder runs once: on a shared machine, interleaving
	 * keeps a slow spell from landing on one coder only. */
	checking = 1;
	for (v = 0; v < 4; v++) {
		int e, d;

		if (v < 3 && stp_rans_force_impl(variants[v]) < 0)
			continue;
		e = v < 3 ? ours_encode() : hts_encode();
		d = v < 3 ? ours_decode() : hts_decode();
		if (e < 0 || d < 0)
			die(v < 3 ? "our round trip failed"
				  : "htscodecs round trip failed");
		have[v] = 1;
		enc[v] = dec[v] = 1e30;
	}
	checking = 0;
	for (r = 0; r < REPS; r++)
		for (v = 0; v < 4; v++) {
			double te, td;

			if (!have[v])
				continue;
			if (v < 3)
				stp_rans_force_impl(variants[v]);
			te = timed(v < 3 ? ours_encode : hts_encode);
			td = timed(v < 3 ? ours_decode : hts_decode);
			if (te < 0 || td < 0)
				die("a timed round trip failed");
			if (te < enc[v])
				enc[v] = te;
			if (td < dec[v])
				dec[v] = td;
		}
	for (i = 0; i < nplanes; i++) {
		ours_len += planes[i].coded_len;
		hts_len += planes[i].hts_len;
	}
	for (v = 0; v < 4; v++) {
		size_t len = v < 3 ? ours_len : hts_len;
		char name[32];

		snprintf(name, sizeof name, v < 3 ? "stpipe %s"
			 : "htscodecs O0 X32 (auto)", v < 3 ? variants[v] : "");
		if (!have[v]) {
			printf("%-26s (not supported by this CPU)\n", name);
			continue;
		}
		printf("%-26s %11zu %7.3f %8.2f%% %9.0f %9.0f\n", name, len,
		       (double)total_n / len, 100.0 * (8.0 * len / h0 - 1.0),
		       total_n / dec[v] / 1e6, total_n / enc[v] / 1e6);
	}

	printf("decode speed, ours / htscodecs:");
	for (v = 0; v < 3; v++)
		if (have[v])
			printf(" %s %.2fx", variants[v], dec[3] / dec[v]);
	printf("\ncoded size, ours / htscodecs: %.4f\n",
	       (double)ours_len / hts_len);
	return 0;
}
