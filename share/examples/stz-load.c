/* stz-load: lists the tensors of a .stz file and loads them through
 * libstpipe, as a model loader would. An example of the library's API;
 * build it against the installed library with
 *
 *   cc -O2 -o stz-load stz-load.c $(pkg-config --cflags --libs stpipe)
 *
 * Usage: stz-load [-a] [-r] [-q] [-T N] FILE.stz [TENSOR...]
 *   lists every tensor (file, name, dtype, shape, bytes) and loads it, or
 *   only the TENSORs named;
 *   -a  loads everything in one pass (stp_stz_load_all) instead of
 *       tensor by tensor (stp_stz_load)
 *   -r  writes the loaded bytes to standard output, in list order, and
 *       the list to standard error
 *   -q  no list
 *   -T  threads (0: one per CPU; default 1)
 * Exit status: 0, or that of the library's error code (1 bad input, 111
 * system error); 100 for a usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <stpipe.h>

static int raw, quiet;
static FILE *list;

static void describe(const struct stp_tensor_desc *t)
{
	if (quiet)
		return;
	fprintf(list, "%s\t%s\t%s\t[", t->file, t->name, t->dtype);
	for (unsigned k = 0; k < t->ndim; k++)
		fprintf(list, "%s%llu", k ? "," : "",
			(unsigned long long)t->shape[k]);
	fprintf(list, "]\t%llu\n", (unsigned long long)t->nbytes);
}

static int emit(const void *buf, uint64_t n)
{
	if (raw && n && fwrite(buf, 1, n, stdout) != n)
		return STP_EIO;
	return 0;
}

/* stp_stz_load_all hands each tensor to these: a buffer, then the end. */
static int on_begin(void *ctx, const struct stp_tensor_desc *t, void **buf)
{
	(void)ctx;
	describe(t);
	*buf = malloc(t->nbytes ? t->nbytes : 1);
	return *buf ? 0 : STP_ENOMEM;
}

static int on_end(void *ctx, const struct stp_tensor_desc *t, void *buf)
{
	uint64_t *total = ctx;
	int rc = emit(buf, t->nbytes);

	*total += t->nbytes;
	free(buf);
	return rc;
}

static int load_one(stp_stz *z, size_t i, unsigned threads, uint64_t *total)
{
	const struct stp_tensor_desc *t = stp_stz_tensor(z, i);
	void *buf = malloc(t->nbytes ? t->nbytes : 1);
	int rc;

	if (!buf)
		return STP_ENOMEM;
	describe(t);
	rc = stp_stz_load(z, i, buf, t->nbytes, threads);
	if (rc == 0)
		rc = emit(buf, t->nbytes);
	*total += t->nbytes;
	free(buf);
	return rc;
}

int main(int argc, char **argv)
{
	unsigned threads = 1;
	int all = 0, c, rc = 0;
	uint64_t total = 0;
	struct timespec t0, t1;
	stp_stz *z;

	while ((c = getopt(argc, argv, "arqT:")) != -1) {
		switch (c) {
		case 'a': all = 1; break;
		case 'r': raw = 1; break;
		case 'q': quiet = 1; break;
		case 'T': threads = (unsigned)atoi(optarg); break;
		default:
			fprintf(stderr, "usage: stz-load [-a] [-r] [-q] [-T N] "
				"FILE.stz [TENSOR...]\n");
			return 100;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "stz-load: no file (stz-load -h for help)\n");
		return 100;
	}
	list = raw ? stderr : stdout;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if ((rc = stp_stz_open(&z, argv[optind])) < 0) {
		fprintf(stderr, "stz-load: %s: %s\n", argv[optind],
			stp_strerror(rc));
		return stp_error_exit(rc);
	}
	if (all && optind + 1 == argc) {
		struct stp_load_cb cb = { on_begin, on_end, &total };
		long n = stp_stz_load_all(z, &cb, threads);
		rc = n < 0 ? (int)n : 0;
	} else if (optind + 1 == argc) {
		for (size_t i = 0; rc == 0 && i < stp_stz_count(z); i++)
			rc = load_one(z, i, threads, &total);
	} else {
		for (int a = optind + 1; rc == 0 && a < argc; a++) {
			long i = stp_stz_find(z, NULL, argv[a]);
			rc = i < 0 ? (int)i : load_one(z, (size_t)i, threads,
							&total);
			if (i < 0)
				fprintf(stderr, "stz-load: %s: no tensor '%s'\n",
					argv[optind], argv[a]);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (rc < 0) {
		fprintf(stderr, "stz-load: %s: %s\n", argv[optind],
			stp_strerror(rc));
	} else if (!quiet) {
		double s = (double)(t1.tv_sec - t0.tv_sec) +
			   (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
		fprintf(list, "%zu tensors, %llu bytes, %.1f MB/s\n",
			stp_stz_count(z), (unsigned long long)total,
			s > 0 ? (double)total / s / 1e6 : 0.0);
	}
	stp_stz_close(z);
	return stp_error_exit(rc);
}
