/* lowrank: truncated SVD factors in place of 2-D weights (lib/lowrank.h).
 *
 * The rewriting stage plans a file's new layout from its header, before
 * any tensor data, but a rank chosen by energy depends on the singular
 * values. So when some tensor's rule asks for energy, this stage holds
 * the file's frames until those tensors are in, takes their singular
 * values, and only then hands the held frames to the rewriting stage.
 * The SVD is LAPACK's dgesdd in double. */
#include "lowrank.h"

#include <fnmatch.h>
#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "quant.h"
#include "rewrite.h"

#define SUF_A "_lr_a"
#define SUF_B "_lr_b"
#define SUF_S "_scale"

/* --- the policy --- */

void stp_lr_policy_free(struct stp_lr_policy *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->rules[i].glob);
	free(p->rules);
	p->rules = NULL;
	p->n = 0;
}

static int parse_u64(const char *v, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long x;

	if (*v < '0' || *v > '9')
		return -1;
	x = strtoull(v, &end, 10);
	if (*end || x == 0 || x > max)
		return -1;
	*out = x;
	return 0;
}

/* One key of a line into r; NULL or the reason it is wrong. */
static const char *parse_key(char *key, struct stp_lr_rule *r)
{
	char *v = strchr(key, '=');
	uint64_t x;

	if (v)
		*v++ = '\0';
	if (!strcmp(key, "skip")) {
		if (v)
			return "skip takes no value";
		r->set |= STP_LR_SKIP;
		return NULL;
	}
	if (!v || !*v)
		return "key without a value (rank=N, energy=F, min-dim=N)";
	if (!strcmp(key, "rank")) {
		if (parse_u64(v, UINT32_MAX, &x) < 0)
			return "rank: not a positive integer";
		r->rank = (uint32_t)x;
		r->set |= STP_LR_RANK;
	} else if (!strcmp(key, "energy")) {
		char *end;
		double e = strtod(v, &end);

		if (*end || !(e > 0 && e <= 1))
			return "energy: not a number in (0, 1]";
		r->energy = e;
		r->set |= STP_LR_ENERGY;
	} else if (!strcmp(key, "min-dim")) {
		if (parse_u64(v, UINT64_MAX, &x) < 0)
			return "min-dim: not a positive integer";
		r->min_dim = x;
		r->set |= STP_LR_MIN_DIM;
	} else {
		return "unknown key (rank, energy, min-dim, skip)";
	}
	return NULL;
}

/* One line, comment removed, into r (r->glob allocated); NULL if it is
 * blank (r->glob stays NULL) or valid, else the reason. */
static const char *parse_line(char *s, int need_rank, struct stp_lr_rule *r)
{
	const char *why = NULL;
	char *tok, *save;

	if (!(tok = strtok_r(s, " \t\r", &save)))
		return NULL;
	if (strchr(tok, '='))
		return "a line starts with a name pattern";
	if (!(r->glob = strdup(tok)))
		return "";
	while (!why && (tok = strtok_r(NULL, " \t\r", &save)))
		why = parse_key(tok, r);
	if (!why && (r->set & STP_LR_SKIP) && (r->set & ~STP_LR_SKIP))
		why = "skip with other keys";
	if (!why && !r->set)
		why = "no keys (rank=N, energy=F, min-dim=N, skip)";
	if (!why && need_rank && !(r->set & STP_LR_SKIP) &&
	    !(r->set & (STP_LR_RANK | STP_LR_ENERGY)))
		why = "neither rank nor energy (nor --rank, --energy)";
	return why;
}

int stp_lr_policy_parse(const char *text, size_t n, int need_rank,
			struct stp_lr_policy *out, size_t *out_line,
			const char **out_why)
{
	struct stp_lr_policy p = { NULL, 0 };
	size_t line = 0, at = 0;
	char *s = NULL;

	*out_line = 0;
	*out_why = NULL;
	while (at < n) {
		size_t e = at;
		struct stp_lr_rule r = { 0 };
		const char *why;
		char *hash;

		while (e < n && text[e] != '\n')
			e++;
		line++;
		if (memchr(text + at, '\0', e - at)) {
			*out_line = line;
			*out_why = "NUL byte";
			stp_lr_policy_free(&p);
			return STP_EUNSUPPORTED;
		}
		if (!(s = malloc(e - at + 1)))
			goto nomem;
		memcpy(s, text + at, e - at);
		s[e - at] = '\0';
		if ((hash = strchr(s, '#')))
			*hash = '\0';
		r.line = line;
		why = parse_line(s, need_rank, &r);
		free(s);
		s = NULL;
		if (why && !*why)
			goto nomem;
		if (why) {
			free(r.glob);
			stp_lr_policy_free(&p);
			*out_line = line;
			*out_why = why;
			return STP_EUNSUPPORTED;
		}
		if (r.glob) {
			struct stp_lr_rule *g = realloc(p.rules, (p.n + 1) *
							sizeof *g);
			if (!g) {
				free(r.glob);
				goto nomem;
			}
			p.rules = g;
			p.rules[p.n++] = r;
		}
		at = e + 1;
	}
	*out = p;
	return 0;
nomem:
	stp_lr_policy_free(&p);
	return STP_ENOMEM;
}

uint32_t stp_lr_energy_rank(const double *s, size_t k, double energy)
{
	double total = 0, acc = 0;
	size_t r;

	for (size_t i = 0; i < k; i++)
		total += s[i] * s[i];
	if (!(total > 0))
		return 1;
	for (r = 0; r < k; r++) {
		acc += s[r] * s[r];
		if (acc >= energy * total)
			break;
	}
	r = r < k ? r + 1 : k;
	return r > UINT32_MAX ? UINT32_MAX : (uint32_t)r;
}

/* --- choosing tensors and ranks --- */

struct lr {
	struct stp_lowrank_opts o;
	enum stp_qtype mdtype;     /* merge: default dtype */
	/* ranks chosen by energy for the current file, by tensor index (0:
	 * none), from the held frames */
	uint32_t *eranks;
	size_t neranks;
};

static long find(const struct stp_st_header *h, const char *name)
{
	for (size_t i = 0; i < h->count; i++)
		if (!strcmp(h->tensors[i].name, name))
			return (long)i;
	return -1;
}

/* n things of size bytes; never malloc(0), whose NULL means nothing. */
static void *alloc(uint64_t n, size_t size)
{
	return malloc(n ? n * size : 1);
}

static int is_float(enum stp_qtype t)
{
	return t == STP_Q_BF16 || t == STP_Q_F16 || t == STP_Q_F32;
}

/* The rule for a tensor: the policy's first matching line over the
 * command line's. 0 when none applies or the line says skip. */
static int rule_for(const struct lr *l, const char *name,
		    struct stp_lr_rule *out)
{
	struct stp_lr_rule r = { .set = l->o.set, .rank = l->o.rank,
				 .energy = l->o.energy,
				 .min_dim = l->o.sel.min_dim };
	const struct stp_lr_policy *p = l->o.policy;

	for (size_t i = 0; p && i < p->n; i++) {
		const struct stp_lr_rule *m = &p->rules[i];

		if (fnmatch(m->glob, name, 0))
			continue;
		if (m->set & STP_LR_SKIP)
			return 0;
		if (m->set & (STP_LR_RANK | STP_LR_ENERGY)) {
			r.set = m->set & (STP_LR_RANK | STP_LR_ENERGY);
			r.rank = m->rank;
			r.energy = m->energy;
		}
		if (m->set & STP_LR_MIN_DIM)
			r.min_dim = m->min_dim;
		break;
	}
	if (!(r.set & (STP_LR_RANK | STP_LR_ENERGY)))
		return 0;
	*out = r;
	return 1;
}

/* 1 if tensor i is to be factorized, with its rule. */
static int candidate(const struct lr *l, const struct stp_st_header *h,
		     size_t i, struct stp_lr_rule *out_rule)
{
	const struct stp_st_tensor *t = &h->tensors[i];
	struct stp_select sel = l->o.sel;
	char name[1100];

	sel.min_dim = 1;
	if (!is_float(stp_qtype_of(t->dtype)) ||
	    !stp_select_match(&sel, t->name, t->ndim, t->shape) ||
	    t->shape[0] > INT_MAX || t->shape[1] > INT_MAX ||
	    strlen(t->name) + sizeof SUF_A SUF_S > 1024 ||
	    !rule_for(l, t->name, out_rule) ||
	    t->shape[0] < out_rule->min_dim || t->shape[1] < out_rule->min_dim)
		return 0;
	snprintf(name, sizeof name, "%s" SUF_A, t->name);
	if (find(h, name) >= 0)
		return 0;
	snprintf(name, sizeof name, "%s" SUF_B, t->name);
	return find(h, name) < 0;
}

/* The SVD of the rows x cols row-major matrix w (destroyed): the
 * min(rows, cols) singular values s, and where u and vt are not NULL
 * the left vectors u [rows, k] and right vt [k, cols], row-major.
 * Row-major w is column-major w^T = V S U^T: LAPACK's column-major
 * call on it gives u and vt in place, without the transposed copies
 * LAPACKE's row-major interface would make. */
static int svd(double *w, uint64_t rows, uint64_t cols, double *s,
	       double *u, double *vt)
{
	lapack_int m = (lapack_int)rows, n = (lapack_int)cols;
	lapack_int k = m < n ? m : n;
	lapack_int info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, u ? 'S' : 'N', n,
					 m, w, n, s, vt, n, u, k);

	if (info == LAPACK_WORK_MEMORY_ERROR)
		return STP_ENOMEM;
	return info ? STP_EUNSUPPORTED : 0;
}

/* Non-finite values become zero (NaN) or the largest float (Inf), as in
 * the quantizers: counted in the record, never undefined. */
static size_t tame(float *x, size_t n)
{
	size_t bad = 0;

	for (size_t i = 0; i < n; i++)
		if (!isfinite(x[i])) {
			bad++;
			x[i] = isnan(x[i]) ? 0 : x[i] > 0 ? 3.0e38f : -3.0e38f;
		}
	return bad;
}

/* The tensor's values as doubles (and as floats in x when not NULL). */
static double *load(enum stp_qtype t, const uint8_t *p, uint64_t n, float *x,
		    size_t *out_bad)
{
	double *w = malloc((n ? n : 1) * sizeof *w);
	float *f = x ? x : malloc((n ? n : 1) * sizeof *f);

	if (!w || !f) {
		free(w);
		if (!x)
			free(f);
		return NULL;
	}
	stp_to_f32(t, p, n, f);
	*out_bad = tame(f, n);
	for (uint64_t i = 0; i < n; i++)
		w[i] = f[i];
	if (!x)
		free(f);
	return w;
}

/* The rank by energy of tensor t's bytes p: its singular values only. */
static int energy_rank(const struct stp_st_tensor *t, const uint8_t *p,
		       double energy, uint32_t *out_rank)
{
	uint64_t m = t->shape[0], n = t->shape[1], k = m < n ? m : n;
	size_t bad;
	double *w = load(stp_qtype_of(t->dtype), p, m * n, NULL, &bad);
	double *s = malloc(k * sizeof *s);
	int rc = w && s ? svd(w, m, n, s, NULL, NULL) : STP_ENOMEM;

	if (rc >= 0)
		*out_rank = stp_lr_energy_rank(s, k, energy);
	free(w);
	free(s);
	return rc;
}

/* The rank of tensor i under rule r. */
static uint32_t rank_of(const struct lr *l, const struct stp_st_header *h,
			size_t i, const struct stp_lr_rule *r)
{
	const struct stp_st_tensor *t = &h->tensors[i];
	uint64_t k = t->shape[0] < t->shape[1] ? t->shape[0] : t->shape[1];
	uint64_t rank = r->rank;

	if (r->set & STP_LR_ENERGY) {
		if (i >= l->neranks || !l->eranks[i])
			return 0;
		rank = (r->set & STP_LR_RANK) && r->rank < l->eranks[i] ?
		       r->rank : l->eranks[i];
	}
	return (uint32_t)(rank < k ? rank : k);
}

static json_t *shape_json(uint64_t a, uint64_t b)
{
	json_t *s = json_array();

	json_array_append_new(s, json_integer((json_int_t)a));
	json_array_append_new(s, json_integer((json_int_t)b));
	return s;
}

static void out_set(struct stp_rw_out *o, const char *name, const char *suf,
		    const char *dtype, unsigned ndim, uint64_t d0, uint64_t d1)
{
	snprintf(o->name, sizeof o->name, "%s%s", name, suf);
	snprintf(o->dtype, sizeof o->dtype, "%s", dtype);
	o->ndim = ndim;
	o->shape[0] = d0;
	o->shape[1] = d1;
}

static int plan_factor(struct lr *l, struct stp_rw_plan *p,
		       const struct stp_st_header *h, json_t *tensors)
{
	for (size_t i = 0; i < h->count; i++) {
		const struct stp_st_tensor *t = &h->tensors[i];
		uint64_t m = t->shape[0], n = t->shape[1];
		struct stp_rw_group g = { .nin = 1, .in = { i } };
		struct stp_lr_rule r;
		uint32_t rank;
		json_t *o;
		int rc;

		if (!candidate(l, h, i, &r) || !(rank = rank_of(l, h, i, &r)) ||
		    (uint64_t)rank * (m + n) >= m * n)
			continue;
		if (l->o.int8) {
			g.nout = 4;
			out_set(&g.out[0], t->name, SUF_A, "I8", 2, m, rank);
			out_set(&g.out[1], t->name, SUF_A SUF_S, "F32", 1, m, 0);
			out_set(&g.out[2], t->name, SUF_B, "I8", 2, rank, n);
			out_set(&g.out[3], t->name, SUF_B SUF_S, "F32", 1, rank,
				0);
		} else {
			g.nout = 2;
			out_set(&g.out[0], t->name, SUF_A, t->dtype, 2, m, rank);
			out_set(&g.out[1], t->name, SUF_B, t->dtype, 2, rank, n);
		}
		g.arg = rank;
		if ((rc = stp_rw_add(p, &g)) < 0)
			return rc;
		o = json_object();
		json_object_set_new(o, "rank", json_integer(rank));
		json_object_set_new(o, "dtype", json_string(t->dtype));
		json_object_set_new(o, "shape", shape_json(m, n));
		json_object_set_new(tensors, t->name, o);
	}
	return 0;
}

/* The dtype the last factorizing step recorded for name. */
static enum stp_qtype recorded(json_t *rec, const char *name)
{
	const char *d = json_string_value(json_object_get(
		stp_lossy_find(rec, "lowrank", "factorize", name), "dtype"));

	return d ? stp_qtype_of(d) : STP_Q_NONE;
}

/* Tensor name+suffix of dtype (STP_Q_NONE: any float) and 2-D shape
 * d0 x d1 (d1 0: 1-D of d0), or -1. */
static long partner(const struct stp_st_header *h, const char *name,
		    const char *suf, enum stp_qtype dtype, uint64_t d0,
		    uint64_t d1)
{
	char full[1100];
	const struct stp_st_tensor *t;
	long j;

	snprintf(full, sizeof full, "%s%s", name, suf);
	if ((j = find(h, full)) < 0)
		return -1;
	t = &h->tensors[j];
	if (dtype ? stp_qtype_of(t->dtype) != dtype :
		    !is_float(stp_qtype_of(t->dtype)))
		return -1;
	if (t->ndim != (d1 ? 2u : 1u) || t->shape[0] != d0 ||
	    (d1 && t->shape[1] != d1))
		return -1;
	return j;
}

static int plan_merge(struct lr *l, struct stp_rw_plan *p,
		      const struct stp_st_header *h, json_t *metadata,
		      json_t *tensors)
{
	json_t *rec = stp_lossy_record(metadata);
	struct stp_select sel = l->o.sel;
	int rc = 0;

	if (!rec)
		return STP_EHEADER;
	sel.min_dim = 1;
	for (size_t i = 0; i < h->count && rc >= 0; i++) {
		const struct stp_st_tensor *a = &h->tensors[i];
		size_t len = strlen(a->name);
		enum stp_qtype at = stp_qtype_of(a->dtype), to;
		struct stp_rw_group g = { .nin = 2, .in = { i }, .nout = 1 };
		uint64_t m, r, shape[2];
		char name[1024], bname[1100];
		long j = -1;

		if (len <= strlen(SUF_A) || a->ndim != 2 ||
		    strcmp(a->name + len - strlen(SUF_A), SUF_A) ||
		    (at != STP_Q_I8 && !is_float(at)))
			continue;
		snprintf(name, sizeof name, "%.*s", (int)(len - strlen(SUF_A)),
			 a->name);
		m = a->shape[0];
		r = a->shape[1];
		snprintf(bname, sizeof bname, "%s" SUF_B, name);
		if ((j = find(h, bname)) < 0 || h->tensors[j].ndim != 2)
			continue;
		shape[0] = m;
		shape[1] = h->tensors[j].shape[1];
		if (find(h, name) >= 0 ||
		    !stp_select_match(&sel, name, 2, shape) ||
		    (j = partner(h, name, SUF_B, at == STP_Q_I8 ? STP_Q_I8 :
				 STP_Q_NONE, r, shape[1])) < 0)
			continue;
		g.in[1] = (size_t)j;
		if (at == STP_Q_I8) {
			long sa = partner(h, name, SUF_A SUF_S, STP_Q_F32, m, 0);
			long sb = partner(h, name, SUF_B SUF_S, STP_Q_F32, r, 0);

			if (sa < 0 || sb < 0)
				continue;
			g.nin = 4;
			g.in[2] = (size_t)sa;
			g.in[3] = (size_t)sb;
		}
		to = l->o.dtype ? l->mdtype : recorded(rec, name);
		if (to == STP_Q_NONE || !is_float(to))
			to = l->mdtype;
		out_set(&g.out[0], name, "", stp_qtype_name(to), 2, m, shape[1]);
		g.arg = to;
		if ((rc = stp_rw_add(p, &g)) >= 0)
			json_object_set_new(tensors, name,
					    json_string(stp_qtype_name(to)));
	}
	json_decref(rec);
	return rc;
}

static int plan(void *self, struct stp_rw_plan *p,
		const struct stp_st_header *h, json_t *metadata, json_t *note)
{
	struct lr *l = self;
	json_t *tensors = json_object();

	if (!tensors)
		return STP_ENOMEM;
	json_object_set_new(note, "op", json_string(l->o.merge ? "merge" :
						    "factorize"));
	if (l->o.options)
		json_object_set_new(note, "options", json_string(l->o.options));
	json_object_set_new(note, "tensors", tensors);
	return l->o.merge ? plan_merge(l, p, h, metadata, tensors) :
			    plan_factor(l, p, h, tensors);
}

/* --- making the factors --- */

/* y [m, n] = a [m, r] . b [r, n], each sum in double in the order of k;
 * acc holds n doubles. */
static void product(const float *a, const float *b, uint64_t m, uint64_t r,
		    uint64_t n, float *y, double *acc)
{
	for (uint64_t i = 0; i < m; i++) {
		memset(acc, 0, n * sizeof *acc);
		for (uint64_t k = 0; k < r; k++) {
			double aik = a[i * r + k];
			const float *bk = b + k * n;

			for (uint64_t c = 0; c < n; c++)
				acc[c] += aik * bk[c];
		}
		for (uint64_t c = 0; c < n; c++)
			y[i * n + c] = (float)acc[c];
	}
}

/* Writes the rows x cols factor f as outputs o (the factor, then with
 * int8 its scales, through scale: rows floats), and leaves in f the
 * values as written. */
static void write_factor(const struct lr *l, enum stp_qtype dtype, float *f,
			 uint64_t rows, uint64_t cols, struct stp_rw_out *o,
			 float *scale)
{
	if (!l->o.int8) {
		stp_from_f32(dtype, f, rows * cols, o[0].data);
		stp_to_f32(dtype, o[0].data, rows * cols, f);
		return;
	}
	for (uint64_t i = 0; i < rows; i++) {
		int8_t *q = (int8_t *)o[0].data + i * cols;

		stp_int8_row(f + i * cols, cols, q, &scale[i]);
		for (uint64_t c = 0; c < cols; c++)
			f[i * cols + c] = (float)q[c] * scale[i];
	}
	stp_from_f32(STP_Q_F32, scale, rows, o[1].data);
}

static int make_factor(struct lr *l, struct stp_rw_group *g,
		       const struct stp_st_header *h, uint8_t *const *in,
		       json_t *stats)
{
	const struct stp_st_tensor *t = &h->tensors[g->in[0]];
	enum stp_qtype dt = stp_qtype_of(t->dtype);
	uint64_t m = t->shape[0], n = t->shape[1], k = m < n ? m : n;
	uint64_t r = g->arg;
	float *x = malloc(m * n * sizeof *x);
	float *a = malloc(m * r * sizeof *a), *b = malloc(r * n * sizeof *b);
	float *scale = malloc((m > r ? m : r) * sizeof *scale);
	double *s = malloc(k * sizeof *s), *u = malloc(m * k * sizeof *u);
	double *vt = malloc(k * n * sizeof *vt), *acc = malloc(n * sizeof *acc);
	double *w = NULL, kept = 0, total = 0;
	struct stp_qerr e;
	size_t bad = 0;
	json_t *o;
	int rc = STP_ENOMEM;

	if (!x || !a || !b || !scale || !s || !u || !vt || !acc ||
	    !(w = load(dt, in[0], m * n, x, &bad)))
		goto out;
	if ((rc = svd(w, m, n, s, u, vt)) < 0)
		goto out;
	for (uint64_t j = 0; j < k; j++) {
		total += s[j] * s[j];
		if (j < r)
			kept += s[j] * s[j];
	}
	for (uint64_t j = 0; j < r; j++) {
		double q = sqrt(s[j]);

		for (uint64_t i = 0; i < m; i++)
			a[i * r + j] = (float)(u[i * k + j] * q);
		for (uint64_t c = 0; c < n; c++)
			b[j * n + c] = (float)(vt[j * n + c] * q);
	}
	write_factor(l, dt, a, m, r, &g->out[0], scale);
	write_factor(l, dt, b, r, n, &g->out[l->o.int8 ? 2 : 1], scale);
	product(a, b, m, r, n, (float *)w, acc);
	stp_qerr(x, (float *)w, m * n, &e);
	o = json_object();
	json_object_set_new(o, "name", json_string(t->name));
	json_object_set_new(o, "rank", json_integer((json_int_t)r));
	json_object_set_new(o, "energy", json_real(total > 0 ? kept / total :
						   1));
	json_object_set_new(o, "rel_err", json_real(e.rel_fro));
	json_object_set_new(o, "max_err", json_real(e.max_abs));
	if (bad)
		json_object_set_new(o, "nonfinite",
				    json_integer((json_int_t)bad));
	rc = json_array_append_new(stats, o) ? STP_ENOMEM : 0;
out:
	free(x);
	free(a);
	free(b);
	free(scale);
	free(s);
	free(u);
	free(vt);
	free(acc);
	free(w);
	return rc;
}

/* Factor i of a merge (rows x cols) as floats, its scales applied. */
static void load_factor(const struct stp_st_header *h, size_t i,
			const uint8_t *p, const uint8_t *sp, float *f)
{
	const struct stp_st_tensor *t = &h->tensors[i];
	uint64_t rows = t->shape[0], cols = t->shape[1];

	stp_to_f32(stp_qtype_of(t->dtype), p, rows * cols, f);
	tame(f, rows * cols);
	for (uint64_t r = 0; sp && r < rows; r++) {
		float sc;

		stp_to_f32(STP_Q_F32, sp + 4 * r, 1, &sc);
		for (uint64_t c = 0; c < cols; c++)
			f[r * cols + c] *= sc;
	}
}

static int make_merge(struct stp_rw_group *g, const struct stp_st_header *h,
		      uint8_t *const *in, json_t *stats)
{
	const struct stp_st_tensor *ta = &h->tensors[g->in[0]];
	uint64_t m = ta->shape[0], r = ta->shape[1];
	uint64_t n = h->tensors[g->in[1]].shape[1];
	float *a = alloc(m * r, sizeof *a), *b = alloc(r * n, sizeof *b);
	float *y = alloc(m * n, sizeof *y);
	double *acc = alloc(n, sizeof *acc);
	json_t *o;
	int rc = STP_ENOMEM;

	if (a && b && y && acc) {
		load_factor(h, g->in[0], in[0], g->nin > 2 ? in[2] : NULL, a);
		load_factor(h, g->in[1], in[1], g->nin > 2 ? in[3] : NULL, b);
		product(a, b, m, r, n, y, acc);
		stp_from_f32((enum stp_qtype)g->arg, y, m * n, g->out[0].data);
		o = json_object();
		json_object_set_new(o, "name", json_string(g->out[0].name));
		json_object_set_new(o, "rank", json_integer((json_int_t)r));
		json_object_set_new(o, "to", json_string(g->out[0].dtype));
		rc = json_array_append_new(stats, o) ? STP_ENOMEM : 0;
	}
	free(a);
	free(b);
	free(y);
	free(acc);
	return rc;
}

static int make(void *self, struct stp_rw_group *g,
		const struct stp_st_header *h, uint8_t *const *in,
		json_t *stats)
{
	struct lr *l = self;

	return l->o.merge ? make_merge(g, h, in, stats) :
			    make_factor(l, g, h, in, stats);
}

/* --- holding a file for its ranks by energy --- */

struct held {
	unsigned type;
	uint32_t len, body_crc, crc;
	uint64_t pos;
	uint8_t *p;
};

struct need {
	size_t i;                  /* tensor index */
	double energy;
	uint8_t *buf;
	uint64_t have;
};

struct lr_stage {
	struct stp_stage rw;
	struct lr l;
	int energy;                /* some rule asks for energy */
	int holding;
	struct held *f;
	size_t nf, fcap;
	uint8_t *hdr;
	uint64_t hdr_need, hdr_have;
	struct stp_st_header h;
	int have_h;
	struct need *need;
	size_t nneed, left;
	int failed;                /* the error is this stage's own */
	char path[STP_MAX_PATH + 1];
	char where[STP_MAX_PATH + 1100];
};

static void hold_reset(struct lr_stage *s)
{
	for (size_t i = 0; i < s->nf; i++)
		free(s->f[i].p);
	s->nf = 0;
	for (size_t i = 0; i < s->nneed; i++)
		free(s->need[i].buf);
	free(s->need);
	s->need = NULL;
	s->nneed = s->left = 0;
	if (s->have_h)
		stp_st_free(&s->h);
	s->have_h = 0;
	free(s->hdr);
	s->hdr = NULL;
	s->hdr_need = 8;
	s->hdr_have = 0;
	s->holding = 0;
}

static int hold(struct lr_stage *s, const struct stp_frame *f)
{
	struct held *h;

	if (s->nf == s->fcap) {
		size_t cap = s->fcap ? 2 * s->fcap : 64;
		if (!(h = realloc(s->f, cap * sizeof *h)))
			return STP_ENOMEM;
		s->f = h;
		s->fcap = cap;
	}
	h = &s->f[s->nf];
	if (!(h->p = malloc(f->len ? f->len : 1)))
		return STP_ENOMEM;
	memcpy(h->p, f->payload, f->len);
	h->type = f->type;
	h->len = f->len;
	h->pos = f->pos;
	h->body_crc = f->body_crc;
	h->crc = f->crc;
	s->nf++;
	return 0;
}

/* Hands the held frames to the rewriting stage and streams on. */
static int release(struct lr_stage *s, struct stp_out *out)
{
	int rc = 0;

	for (size_t i = 0; i < s->nf && rc >= 0; i++) {
		struct stp_frame f = {
			.type = s->f[i].type, .len = s->f[i].len,
			.payload = s->f[i].p, .pos = s->f[i].pos,
			.body_crc = s->f[i].body_crc, .crc = s->f[i].crc,
		};
		rc = s->rw.frame(s->rw.self, &f, out);
	}
	hold_reset(s);
	return rc;
}

/* The header is in: which tensors need their singular values. */
static int plan_needs(struct lr_stage *s)
{
	int rc = stp_st_parse(s->hdr + 8, s->hdr_need - 8, &s->h, NULL, 0);

	if (rc < 0)
		return 0;          /* the rewriting stage reports it */
	s->have_h = 1;
	free(s->l.eranks);
	s->l.eranks = calloc(s->h.count + 1, sizeof *s->l.eranks);
	s->need = calloc(s->h.count + 1, sizeof *s->need);
	if (!s->l.eranks || !s->need)
		return STP_ENOMEM;
	s->l.neranks = s->h.count;
	for (size_t i = 0; i < s->h.count; i++) {
		const struct stp_st_tensor *t = &s->h.tensors[i];
		struct stp_lr_rule r;
		struct need *nd;

		if (!candidate(&s->l, &s->h, i, &r) ||
		    !(r.set & STP_LR_ENERGY))
			continue;
		nd = &s->need[s->nneed++];
		nd->i = i;
		nd->energy = r.energy;
		if (!(nd->buf = malloc(t->end - t->begin ? t->end - t->begin :
				       1)))
			return STP_ENOMEM;
	}
	s->left = s->nneed;
	return 0;
}

static int take_data(struct lr_stage *s, const struct stp_frame *f)
{
	uint64_t off, n;
	const uint8_t *p = f->payload + 8;
	int rc;

	if (f->len < 8)
		return STP_EFRAME;
	off = stp_get64(f->payload);
	n = f->len - 8;
	while (s->hdr_have < s->hdr_need && off == s->hdr_have && n > 0) {
		uint64_t take = s->hdr_need - s->hdr_have < n ?
				s->hdr_need - s->hdr_have : n;
		uint8_t *q = realloc(s->hdr, s->hdr_have + take);

		if (!q)
			return STP_ENOMEM;
		s->hdr = q;
		memcpy(s->hdr + s->hdr_have, p, take);
		s->hdr_have += take;
		off += take;
		p += take;
		n -= take;
		if (s->hdr_need == 8 && s->hdr_have == 8) {
			s->hdr_need = 8 + stp_get64(s->hdr);
			if (s->hdr_need - 8 > STP_ST_MAX_HEADER)
				return 0;
		}
		if (s->hdr_have == s->hdr_need && (rc = plan_needs(s)) < 0)
			return rc;
	}
	for (size_t k = 0; k < s->nneed; k++) {
		struct need *nd = &s->need[k];
		const struct stp_st_tensor *t = &s->h.tensors[nd->i];
		uint64_t lo = off > t->begin ? off : t->begin;
		uint64_t hi = off + n < t->end ? off + n : t->end;

		if (!nd->buf || lo >= hi)
			continue;
		if (nd->have + (hi - lo) > t->end - t->begin)
			return STP_EFRAME;
		memcpy(nd->buf + (lo - t->begin), p + (lo - off), hi - lo);
		nd->have += hi - lo;
		if (nd->have < t->end - t->begin)
			continue;
		snprintf(s->where, sizeof s->where, "%s: tensor '%s'",
			 s->path, t->name);
		if ((rc = energy_rank(t, nd->buf, nd->energy,
				      &s->l.eranks[nd->i])) < 0)
			return rc;
		free(nd->buf);
		nd->buf = NULL;
		s->left--;
	}
	return 0;
}

static int held_frame(struct lr_stage *s, const struct stp_frame *f,
		      struct stp_out *out)
{
	int rc;

	if (f->type >= STP_F_PLANE_FIRST && f->type <= STP_F_CODED_LAST)
		return STP_EUNDECODED;
	if ((rc = hold(s, f)) < 0)
		return rc;
	if (f->type == STP_F_DATA && (rc = take_data(s, f)) < 0)
		return rc;
	if (f->type == STP_F_DATA && s->hdr_have < s->hdr_need &&
	    s->hdr_need - 8 <= STP_ST_MAX_HEADER)
		return 0;
	if (f->type == STP_F_DATA && s->left > 0)
		return 0;
	if (f->type == STP_F_TENSOR || (f->type >= STP_F_SKIP_FIRST &&
					f->type <= STP_F_SKIP_LAST))
		return 0;
	return release(s, out);
}

static int ls_frame(void *self, const struct stp_frame *f,
		    struct stp_out *out)
{
	struct lr_stage *s = self;
	struct stp_file_info fi;
	int rc;

	s->failed = 0;
	if (s->holding) {
		rc = held_frame(s, f, out);
		s->failed = rc < 0 && s->holding;
		return rc;
	}
	if (!s->energy || f->type != STP_F_FILE ||
	    stp_file_parse(f->payload, f->len, &fi) < 0 ||
	    fi.kind != STP_KIND_SAFETENSORS)
		return s->rw.frame(s->rw.self, f, out);
	hold_reset(s);
	memcpy(s->path, fi.path, fi.pathlen);
	s->path[fi.pathlen] = '\0';
	snprintf(s->where, sizeof s->where, "%s", s->path);
	s->holding = 1;
	free(s->l.eranks);
	s->l.eranks = NULL;
	s->l.neranks = 0;
	rc = hold(s, f);
	s->failed = rc < 0;
	return rc;
}

static const char *ls_where(void *self, uint64_t *pos)
{
	struct lr_stage *s = self;

	if (s->failed) {
		*pos = s->nf ? s->f[s->nf - 1].pos : 0;
		return s->where;
	}
	return s->rw.where(s->rw.self, pos);
}

static void ls_free(void *self)
{
	struct lr_stage *s = self;

	s->rw.free(s->rw.self);
	hold_reset(s);
	free(s->f);
	free(s->l.eranks);
	free(s);
}

int stp_lowrank_open(struct stp_stage *out_st,
		     const struct stp_lowrank_opts *o)
{
	struct stp_rw_ops ops = { "lowrank", plan, make, NULL };
	enum stp_qtype dt = stp_qtype_of(o->dtype ? o->dtype : "BF16");
	struct lr_stage *s;
	int rc;

	if (!is_float(dt))
		return STP_EDTYPE;
	if (!o->merge && !o->policy && !(o->set & (STP_LR_RANK |
						   STP_LR_ENERGY)))
		return STP_EUNSUPPORTED;
	if (!(s = calloc(1, sizeof *s)))
		return STP_ENOMEM;
	s->l.o = *o;
	s->l.mdtype = dt;
	s->energy = !o->merge && (o->set & STP_LR_ENERGY);
	for (size_t i = 0; !o->merge && o->policy && i < o->policy->n; i++)
		if (o->policy->rules[i].set & STP_LR_ENERGY)
			s->energy = 1;
	s->hdr_need = 8;
	ops.self = &s->l;
	if ((rc = stp_rewrite_open(&s->rw, &ops)) < 0) {
		free(s);
		return rc;
	}
	out_st->frame = ls_frame;
	out_st->where = ls_where;
	out_st->free = ls_free;
	out_st->self = s;
	out_st->checks_crc = 0;
	return 0;
}
