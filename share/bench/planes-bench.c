/* planes-bench: speed of stp_planes_split and stp_planes_merge for each
 * dtype and each variant (scalar, avx2, avx512) side by side, in MB/s of
 * output bytes (the planes for a split, the values for a merge).  A
 * benchmark, not a test: it times, it does not judge.
 *
 * Build (from the repository root, after make):
 *   cc -std=c11 -D_GNU_SOURCE -O2 share/bench/planes-bench.c \
 *      lib/libstpipe.a -o /tmp/planes-bench
 * Run:
 *   /tmp/planes-bench [FRAME_KIB]
 * FRAME_KIB is the size of the values of one frame in KiB (default 1024,
 * the 1 MiB frames stpipe cuts: 512K BF16 values).
 *
 * Single thread, warm: every buffer is allocated and written before the
 * clock starts, and each variant runs once untimed, its planes and values
 * checked against the scalar reference.  Then each of REPS rounds times
 * CALLS back-to-back calls of every variant in turn, and each variant's
 * best round is reported, with its speed relative to the scalar one.  A
 * variant this CPU lacks shows "-". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../lib/planes.h"

#define REPS 15
#define CALLS 8
#define NVAR 3

static const char *const variants[NVAR] = { "scalar", "avx2", "avx512" };

static const struct {
	unsigned code;
	const char *name;
} dtypes[] = {
	{ STP_BF16, "BF16" }, { STP_F16, "F16" }, { STP_F32, "F32" },
	{ STP_F64, "F64" }, { STP_E4M3, "F8_E4M3" }, { STP_E5M2, "F8_E5M2" },
};

struct frame {
	unsigned code;
	uint32_t count;
	size_t bytes, plane_bytes;
	uint8_t *data, *out;
	uint8_t *plane[STP_MAX_PLANES];
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
	fprintf(stderr, "planes-bench: %s\n", what);
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		die("out of memory");
	memset(p, 0, n);	/* touched: no page faults under the clock */
	return p;
}

static double time_split(struct frame *f)
{
	double t = now();

	for (int i = 0; i < CALLS; i++)
		if (stp_planes_split(f->code, f->data, f->count, f->plane) < 0)
			die("split failed");
	return now() - t;
}

static double time_merge(struct frame *f)
{
	const uint8_t *const *plane = (const uint8_t *const *)f->plane;
	double t = now();

	for (int i = 0; i < CALLS; i++)
		if (stp_planes_merge(f->code, plane, f->count, f->out) < 0)
			die("merge failed");
	return now() - t;
}

static void row(const char *dtype, const char *op, size_t bytes,
		const double best[NVAR])
{
	printf("%-8s %-6s", dtype, op);
	for (int v = 0; v < NVAR; v++)
		if (best[v] > 0)
			printf(" %9.0f", bytes * (double)CALLS / best[v] / 1e6);
		else
			printf(" %9s", "-");
	for (int v = 1; v < NVAR; v++)
		if (best[v] > 0)
			printf(" %9.2fx", best[0] / best[v]);
		else
			printf(" %10s", "-");
	putchar('\n');
}

static void bench(unsigned code, const char *name, size_t frame_bytes)
{
	struct frame f = { .code = code };
	uint8_t *ref;
	uint64_t x = 0x9E3779B97F4A7C15u;
	double split[NVAR] = { 0 }, merge[NVAR] = { 0 };
	int have[NVAR];
	size_t at = 0;

	f.count = (uint32_t)(frame_bytes / stp_float_width(code));
	f.bytes = (size_t)f.count * stp_float_width(code);
	for (unsigned i = 0; i < stp_float_nplanes(code); i++)
		f.plane_bytes += stp_plane_len(code, i, f.count);
	f.data = xmalloc(f.bytes);
	f.out = xmalloc(f.bytes);
	f.plane[0] = xmalloc(f.plane_bytes);
	ref = xmalloc(f.plane_bytes);
	for (unsigned i = 0; i < stp_float_nplanes(code); i++) {
		f.plane[i] = f.plane[0] + at;
		at += stp_plane_len(code, i, f.count);
	}
	for (size_t i = 0; i < f.bytes; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		f.data[i] = (uint8_t)(x >> 24);
	}
	if (stp_planes_force_impl("scalar") < 0 ||
	    stp_planes_split(code, f.data, f.count, f.plane) < 0)
		die("scalar split failed");
	memcpy(ref, f.plane[0], f.plane_bytes);
	for (int v = 0; v < NVAR; v++) {
		have[v] = stp_planes_force_impl(variants[v]) == 0;
		if (!have[v])
			continue;
		memset(f.plane[0], 0, f.plane_bytes);
		memset(f.out, 0, f.bytes);
		time_split(&f);
		if (memcmp(f.plane[0], ref, f.plane_bytes))
			die("split differs from the scalar reference");
		time_merge(&f);
		if (memcmp(f.out, f.data, f.bytes))
			die("merge does not give the values back");
	}
	for (int r = 0; r < REPS; r++)
		for (int v = 0; v < NVAR; v++) {
			double t;

			if (!have[v])
				continue;
			stp_planes_force_impl(variants[v]);
			t = time_split(&f);
			if (split[v] == 0 || t < split[v])
				split[v] = t;
			t = time_merge(&f);
			if (merge[v] == 0 || t < merge[v])
				merge[v] = t;
		}
	row(name, "split", f.plane_bytes, split);
	row(name, "merge", f.bytes, merge);
	free(f.data);
	free(f.out);
	free(f.plane[0]);
	free(ref);
}

int main(int argc, char **argv)
{
	size_t kib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;

	if (kib == 0 || kib > ((size_t)4 << 20))
		die("FRAME_KIB must be 1 .. 4194304");
	printf("planes-bench: %zu KiB frames, best of %d rounds of %d calls, "
	       "MB/s of output\n", kib, REPS, CALLS);
	printf("%-8s %-6s %9s %9s %9s %10s %10s\n", "dtype", "op", "scalar",
	       "avx2", "avx512", "avx2/sc", "avx512/sc");
	for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
		bench(dtypes[i].code, dtypes[i].name, kib << 10);
	return 0;
}
