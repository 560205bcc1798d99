/* crc-bench: GB/s of stp_crc32 in each variant (scalar is zlib's crc32)
 * on a 1 MiB buffer, and each variant's speed over scalar.  A benchmark,
 * not a test: it times, it does not judge (t/unit/crc32.c checks).
 *
 * Build (from the repository root, after `make`):
 *   cc -std=c11 -D_GNU_SOURCE -O2 -o /tmp/crc-bench share/bench/crc-bench.c \
 *      lib/libstpipe.a -lz
 * Run:
 *   /tmp/crc-bench [MIB]
 * MIB (default 1) sets the buffer size.
 *
 * Single thread, warm: the buffer is written before the clock starts and
 * every variant runs once untimed, checked against scalar; then REPS
 * rounds time every variant once each (CALLS calls over the buffer), and
 * each variant's best round is reported.  A variant this CPU lacks is
 * listed as such. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../../lib/crc32.h"

#define NVAR 3
#define REPS 7
#define CALLS 64

static const char *const variants[NVAR] = { "scalar", "avx2", "avx512" };

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	size_t n = (size_t)(argc > 1 ? atoi(argv[1]) : 1) << 20, i;
	uint8_t *buf = malloc(n ? n : 1);
	double best[NVAR];
	int have[NVAR], v, r, c;
	uint32_t want = 0;
	volatile uint32_t sink = 0;	/* keeps the calls */

	if (!n || !buf) {
		fprintf(stderr, "crc-bench: usage: crc-bench [MIB >= 1]\n");
		return 100;
	}
	for (i = 0; i < n; i++)
		buf[i] = (uint8_t)(i * 2654435761u >> 13);
	for (v = 0; v < NVAR; v++) {
		uint32_t got;

		best[v] = 1e30;
		have[v] = stp_crc32_force_impl(variants[v]) == 0;
		if (!have[v])
			continue;
		got = stp_crc32(0, buf, n);
		if (v == 0)
			want = got;
		else if (got != want) {
			fprintf(stderr, "crc-bench: %s gives %08x, scalar "
				"%08x\n", variants[v], (unsigned)got,
				(unsigned)want);
			return 1;
		}
	}
	for (r = 0; r < REPS; r++) {
		for (v = 0; v < NVAR; v++) {
			double t;

			if (!have[v])
				continue;
			stp_crc32_force_impl(variants[v]);
			t = now();
			for (c = 0; c < CALLS; c++)
				sink = stp_crc32(sink, buf, n);
			t = now() - t;
			if (t < best[v])
				best[v] = t;
		}
	}
	printf("CRC-32 of %zu MiB, best of %d rounds of %d calls\n", n >> 20,
	       REPS, CALLS);
	printf("%-8s %10s %10s\n", "variant", "GB/s", "x scalar");
	for (v = 0; v < NVAR; v++) {
		if (!have[v]) {
			printf("%-8s %10s\n", variants[v], "(no CPU)");
			continue;
		}
		printf("%-8s %10.2f %10.2f\n", variants[v],
		       (double)n * CALLS / best[v] / 1e9, best[0] / best[v]);
	}
	return 0;
}
