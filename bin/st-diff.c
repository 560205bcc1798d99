/* st-diff: two models compared weight by weight. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/error.h"
#include "../lib/quant.h"
#include "../lib/weights.h"
#include "cli.h"

static const char usage[] =
	"Usage: st-diff [OPTION]... A B\n"
	"Compare two models (safetensors files or Hugging Face folders) on\n"
	"their logical weights, whatever each stores them as (plain, int8 with\n"
	"row scales, FP8 with block scales, low-rank factors): one line a\n"
	"weight with its dtypes, shape, whether it is bit-exact, the largest\n"
	"absolute error, the relative Frobenius error ||a-b||/||a|| and the\n"
	"cosine; then a summary line.\n"
	"\n"
	"  -e, --exact      exit 1 unless every weight is bit-exact and on both\n"
	"                   sides\n"
	"  -q, --quiet      no progress\n"
	"  -P, --progress   show progress even when stderr is not a terminal\n"
	"  -h, --help       show this help and exit\n"
	"  -V, --version    show the version and exit\n"
	"\n"
	"Exit status: 0 the comparison ran (with --exact: and found no\n"
	"difference), 1 bad input or (with --exact) a difference, 100 usage\n"
	"error, 111 system error.\n";

struct tally {
	unsigned long compared, exact, differ, shape, only_a, only_b;
	double worst;
	char worst_name[512];
};

/* Column widths: the name's and the shape's. */
struct cols {
	int name, shape;
};

static void emit(const struct cols *w, const char *name, const char *da,
		 const char *db, const char *shape, const char *exact,
		 const char *max_abs, const char *rel_fro, const char *cosine)
{
	printf("%-*s  %-12s  %-12s  %-*s  %-6s  %-12s  %-12s  %s\n", w->name,
	       name, da, db, w->shape, shape, exact, max_abs, rel_fro, cosine);
}

static void shape_str(const struct stp_weight_info *t, char *buf, size_t cap)
{
	size_t k = 0;

	buf[0] = '\0';
	if (t->ndim == 0)
		snprintf(buf, cap, "()");
	for (unsigned i = 0; i < t->ndim && k < cap; i++)
		k += (size_t)snprintf(buf + k, cap - k, "%s%llu", i ? "x" : "",
				      (unsigned long long)t->shape[i]);
}

static int same_shape(const struct stp_weight_info *a,
		      const struct stp_weight_info *b)
{
	return a->ndim == b->ndim &&
	       memcmp(a->shape, b->shape, a->ndim * sizeof a->shape[0]) == 0;
}

static int fail_at(int rc, const char *path, const char *where)
{
	char msg[1200];

	snprintf(msg, sizeof msg, "%s: %s", path, where);
	return cli_fail(rc, msg);
}

static int open_model(const char *path, stp_weights **out)
{
	char where[1024];
	int rc = stp_weights_open(out, path, where, sizeof where);

	if (rc < 0)
		return strcmp(where, path) ? fail_at(rc, path, where)
					   : cli_fail(rc, path);
	return 0;
}

/* One row for weight ia of a against its namesake ib of b. */
static int row(stp_weights *a, size_t ia, stp_weights *b, size_t ib,
	       const char *pa, const char *pb, const struct cols *w,
	       struct tally *t)
{
	const struct stp_weight_info *x = stp_weights_info(a, ia);
	const struct stp_weight_info *y = stp_weights_info(b, ib);
	struct stp_qerr d;
	float *va, *vb;
	char sa[256], sb[256], both[520], v[3][32];
	int exact, rc;

	shape_str(x, sa, sizeof sa);
	if (!same_shape(x, y)) {
		shape_str(y, sb, sizeof sb);
		snprintf(both, sizeof both, "%s|%s", sa, sb);
		emit(w, x->name, x->dtype, y->dtype, both, "shape", "-", "-",
		     "-");
		t->shape++;
		return 0;
	}
	if ((exact = stp_weights_bitexact(a, ia, b, ib)) < 0)
		return cli_fail(exact, x->name);
	t->compared++;
	if (exact)
		t->exact++;
	else
		t->differ++;
	if ((rc = stp_weights_load(a, ia, &va)) < 0) {
		if (rc != STP_EDTYPE)
			return fail_at(rc, pa, stp_weights_where(a));
		emit(w, x->name, x->dtype, y->dtype, sa, exact ? "yes" : "no",
		     "n/a", "n/a", "n/a");
		return 0;
	}
	if ((rc = stp_weights_load(b, ib, &vb)) < 0) {
		free(va);
		if (rc != STP_EDTYPE)
			return fail_at(rc, pb, stp_weights_where(b));
		emit(w, x->name, x->dtype, y->dtype, sa, exact ? "yes" : "no",
		     "n/a", "n/a", "n/a");
		return 0;
	}
	stp_qerr(va, vb, (size_t)x->count, &d);
	free(va);
	free(vb);
	snprintf(v[0], sizeof v[0], "%.6g", d.max_abs);
	snprintf(v[1], sizeof v[1], "%.6g", d.rel_fro);
	snprintf(v[2], sizeof v[2], "%.9g", d.cosine);
	emit(w, x->name, x->dtype, y->dtype, sa, exact ? "yes" : "no", v[0],
	     v[1], v[2]);
	if (!(d.rel_fro <= t->worst)) {
		t->worst = d.rel_fro;
		snprintf(t->worst_name, sizeof t->worst_name, "%s", x->name);
	}
	return 0;
}

static int compare(stp_weights *a, stp_weights *b, const char *pa,
		   const char *pb, struct tally *t)
{
	size_t na = stp_weights_count(a), nb = stp_weights_count(b);
	struct cols w = { 4, 5 };
	uint64_t done = 0, total = 0;
	char shape[256];
	int rc;

	for (size_t i = 0; i < na + nb; i++) {
		const struct stp_weight_info *x = i < na ? stp_weights_info(a, i)
							 : stp_weights_info(b, i - na);
		int n = (int)strlen(x->name);

		if (n > w.name)
			w.name = n;
		if (i < na)
			total += x->count * sizeof(float);
		shape_str(x, shape, sizeof shape);
		if ((n = (int)strlen(shape)) > w.shape)
			w.shape = n;
	}
	emit(&w, "name", "dtype_a", "dtype_b", "shape", "exact", "max_abs",
	     "rel_fro", "cosine");
	for (size_t i = 0; i < na; i++) {
		const struct stp_weight_info *x = stp_weights_info(a, i);
		long j = stp_weights_find(b, x->name);

		cli_progress("compared", done, total);
		done += x->count * sizeof(float);
		if (j >= 0) {
			if ((rc = row(a, i, b, (size_t)j, pa, pb, &w, t)))
				return rc;
			continue;
		}
		shape_str(x, shape, sizeof shape);
		emit(&w, x->name, x->dtype, "-", shape, "only-A", "-", "-", "-");
		t->only_a++;
	}
	for (size_t i = 0; i < nb; i++) {
		const struct stp_weight_info *y = stp_weights_info(b, i);

		if (stp_weights_find(a, y->name) >= 0)
			continue;
		shape_str(y, shape, sizeof shape);
		emit(&w, y->name, "-", y->dtype, shape, "only-B", "-", "-", "-");
		t->only_b++;
	}
	cli_progress_done();
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "exact", no_argument, NULL, 'e' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "progress", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	stp_weights *a, *b;
	struct tally t = { .worst = 0, .worst_name = "-" };
	int c, exact = 0, rc;

	cli_init("st-diff");
	while ((c = getopt_long(argc, argv, "eqPhV", longs, NULL)) != -1) {
		switch (c) {
		case 'e': exact = 1; break;
		case 'q': cli_progress_mode = -1; break;
		case 'P': cli_progress_mode = 1; break;
		case 'h': fputs(usage, stdout); return cli_close_stdout();
		case 'V': return cli_version();
		default: return cli_usage("invalid option");
		}
	}
	if (argc - optind < 2)
		return cli_usage("two models needed");
	if (argc - optind > 2)
		return cli_usage("unexpected argument '%s'", argv[optind + 2]);
	if ((rc = open_model(argv[optind], &a)))
		return rc;
	if ((rc = open_model(argv[optind + 1], &b))) {
		stp_weights_close(a);
		return rc;
	}
	rc = compare(a, b, argv[optind], argv[optind + 1], &t);
	stp_weights_close(a);
	stp_weights_close(b);
	if (rc)
		return rc;
	printf("summary: compared %lu, bit-exact %lu, differ %lu, "
	       "shape-mismatch %lu, only-A %lu, only-B %lu, worst-rel-fro "
	       "%.6g (%s)\n", t.compared, t.exact, t.differ, t.shape,
	       t.only_a, t.only_b, t.worst, t.worst_name);
	if ((rc = cli_close_stdout()))
		return rc;
	return exact && (t.differ || t.shape || t.only_a || t.only_b)
		       ? EXIT_BAD_INPUT : 0;
}
