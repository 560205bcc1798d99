/* int8-quant and fp8-quant (lib/lossy.h). */
#include "lossy.h"

#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "quant.h"
#include "rewrite.h"

struct quant {
	struct stp_quant_opts o;
	enum stp_qtype dtype;      /* -d default */
	float *f;                  /* working floats, reused */
	size_t fcap;
};

int stp_select_match(const struct stp_select *sel, const char *name,
		     unsigned ndim, const uint64_t *shape)
{
	int in = sel->ninclude == 0;

	if (ndim != 2 || shape[0] < sel->min_dim || shape[1] < sel->min_dim ||
	    shape[0] == 0 || shape[1] == 0)
		return 0;
	for (size_t i = 0; !in && i < sel->ninclude; i++)
		in = fnmatch(sel->include[i], name, 0) == 0;
	for (size_t i = 0; in && i < sel->nexclude; i++)
		in = fnmatch(sel->exclude[i], name, 0) != 0;
	return in;
}

static const char *suffix(const struct quant *q)
{
	return q->o.kind == STP_QUANT_INT8 ? "_scale" : "_scale_inv";
}

static enum stp_qtype coded_type(const struct quant *q)
{
	return q->o.kind == STP_QUANT_INT8 ? STP_Q_I8 : STP_Q_F8_E4M3;
}

static const char *stage_name(enum stp_quant_kind k)
{
	return k == STP_QUANT_INT8 ? "int8-quant" : "fp8-quant";
}

static long find(const struct stp_st_header *h, const char *name)
{
	for (size_t i = 0; i < h->count; i++)
		if (!strcmp(h->tensors[i].name, name))
			return (long)i;
	return -1;
}

static int ends_with(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);

	return n >= m && !strcmp(s + n - m, suf);
}

static float *floats(struct quant *q, size_t n)
{
	if (n > q->fcap) {
		float *f = realloc(q->f, n * sizeof *f);
		if (!f)
			return NULL;
		q->f = f;
		q->fcap = n;
	}
	return q->f;
}

/* The shape of the scales beside a rows x cols weight. */
static unsigned scale_shape(const struct quant *q, const uint64_t *shape,
			    uint64_t *out)
{
	if (q->o.kind == STP_QUANT_INT8) {
		out[0] = shape[0];
		return 1;
	}
	out[0] = (shape[0] + 127) / 128;
	out[1] = (shape[1] + 127) / 128;
	return 2;
}

static int plan_quant(struct quant *q, struct stp_rw_plan *p,
		      const struct stp_st_header *h, json_t *tensors)
{
	for (size_t i = 0; i < h->count; i++) {
		const struct stp_st_tensor *t = &h->tensors[i];
		enum stp_qtype from = stp_qtype_of(t->dtype);
		struct stp_rw_group g = { .nin = 1, .in = { i }, .nout = 2 };
		int rc;

		if ((from != STP_Q_BF16 && from != STP_Q_F16 &&
		     from != STP_Q_F32) ||
		    !stp_select_match(&q->o.sel, t->name, t->ndim, t->shape) ||
		    ends_with(t->name, "_scale") ||
		    ends_with(t->name, "_scale_inv"))
			continue;
		if (snprintf(g.out[1].name, sizeof g.out[1].name, "%s%s",
			     t->name, suffix(q)) >= (int)sizeof g.out[1].name ||
		    find(h, g.out[1].name) >= 0)
			continue;
		snprintf(g.out[0].name, sizeof g.out[0].name, "%s", t->name);
		snprintf(g.out[0].dtype, sizeof g.out[0].dtype, "%s",
			 stp_qtype_name(coded_type(q)));
		g.out[0].ndim = 2;
		memcpy(g.out[0].shape, t->shape, 2 * sizeof *t->shape);
		snprintf(g.out[1].dtype, sizeof g.out[1].dtype, "F32");
		g.out[1].ndim = scale_shape(q, t->shape, g.out[1].shape);
		g.arg = from;
		if ((rc = stp_rw_add(p, &g)) < 0)
			return rc;
		json_object_set_new(tensors, t->name, json_string(t->dtype));
	}
	return 0;
}

/* The dtype a tensor had before the last quantizing step that names it. */
static enum stp_qtype recorded(const struct quant *q, json_t *rec,
			       const char *name)
{
	json_t *d = stp_lossy_find(rec, stage_name(q->o.kind), "quantize",
				   name);

	return json_is_string(d) ? stp_qtype_of(json_string_value(d)) :
				   STP_Q_NONE;
}

static int plan_dequant(struct quant *q, struct stp_rw_plan *p,
			const struct stp_st_header *h, json_t *metadata,
			json_t *tensors)
{
	json_t *rec = stp_lossy_record(metadata);
	int rc = 0;

	if (!rec)
		return STP_EHEADER;
	for (size_t i = 0; i < h->count && rc >= 0; i++) {
		const struct stp_st_tensor *t = &h->tensors[i];
		struct stp_rw_group g = { .nin = 2, .in = { i }, .nout = 1 };
		uint64_t ss[2];
		unsigned sn;
		enum stp_qtype to;
		char sname[1100];
		long j;

		if (stp_qtype_of(t->dtype) != coded_type(q) ||
		    strlen(t->name) >= sizeof g.out[0].name ||
		    !stp_select_match(&q->o.sel, t->name, t->ndim, t->shape))
			continue;
		snprintf(sname, sizeof sname, "%s%s", t->name, suffix(q));
		if ((j = find(h, sname)) < 0)
			continue;
		sn = scale_shape(q, t->shape, ss);
		if (strcmp(h->tensors[j].dtype, "F32") ||
		    h->tensors[j].ndim != sn ||
		    memcmp(h->tensors[j].shape, ss, sn * sizeof *ss))
			continue;
		to = recorded(q, rec, t->name);
		if (to == STP_Q_NONE)
			to = q->dtype;
		g.in[1] = (size_t)j;
		g.arg = to;
		snprintf(g.out[0].name, sizeof g.out[0].name, "%s", t->name);
		snprintf(g.out[0].dtype, sizeof g.out[0].dtype, "%s",
			 stp_qtype_name(to));
		g.out[0].ndim = 2;
		memcpy(g.out[0].shape, t->shape, 2 * sizeof *t->shape);
		if ((rc = stp_rw_add(p, &g)) >= 0)
			json_object_set_new(tensors, t->name,
					    json_string(stp_qtype_name(to)));
	}
	json_decref(rec);
	return rc;
}

static int plan(void *self, struct stp_rw_plan *p,
		const struct stp_st_header *h, json_t *metadata, json_t *note)
{
	struct quant *q = self;
	json_t *tensors = json_object();
	int rc;

	if (!tensors)
		return STP_ENOMEM;
	json_object_set_new(note, "op", json_string(q->o.decode ?
						    "dequantize" : "quantize"));
	if (q->o.options)
		json_object_set_new(note, "options", json_string(q->o.options));
	json_object_set_new(note, "tensors", tensors);
	rc = q->o.decode ? plan_dequant(q, p, h, metadata, tensors) :
			   plan_quant(q, p, h, tensors);
	return rc;
}

static json_t *stat(const char *name, enum stp_qtype from, enum stp_qtype to)
{
	json_t *o = json_object();

	json_object_set_new(o, "name", json_string(name));
	json_object_set_new(o, "from", json_string(stp_qtype_name(from)));
	json_object_set_new(o, "to", json_string(stp_qtype_name(to)));
	return o;
}

/* Non-finite values quantize as zero (NaN) or the largest value (Inf):
 * counted in the record, never undefined. */
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

/* Scales of a rows x cols weight: one a row, or one a 128 x 128 block. */
static uint64_t nscales(const struct quant *q, uint64_t rows, uint64_t cols)
{
	return q->o.kind == STP_QUANT_INT8 ? rows :
	       (rows + 127) / 128 * ((cols + 127) / 128);
}

static int make_quant(struct quant *q, struct stp_rw_group *g,
		      const struct stp_st_header *h, uint8_t *const *in,
		      json_t *stats)
{
	const struct stp_st_tensor *t = &h->tensors[g->in[0]];
	uint64_t rows = t->shape[0], cols = t->shape[1], n = rows * cols;
	uint64_t bc = (cols + 127) / 128, ns = nscales(q, rows, cols);
	float *x = floats(q, 2 * n + ns), *y, *sc;
	struct stp_qerr e;
	size_t bad;
	json_t *o;

	if (!x)
		return STP_ENOMEM;
	y = x + n;
	sc = y + n;
	stp_to_f32((enum stp_qtype)g->arg, in[0], n, x);
	bad = tame(x, n);
	if (q->o.kind == STP_QUANT_INT8) {
		for (uint64_t r = 0; r < rows; r++) {
			int8_t *qr = (int8_t *)g->out[0].data + r * cols;

			stp_int8_row(x + r * cols, cols, qr, &sc[r]);
			for (uint64_t c = 0; c < cols; c++)
				y[r * cols + c] = (float)qr[c] * sc[r];
		}
	} else {
		stp_fp8_blocks(x, rows, cols, g->out[0].data, sc);
		stp_to_f32(STP_Q_F8_E4M3, g->out[0].data, n, y);
		for (uint64_t r = 0; r < rows; r++)
			for (uint64_t c = 0; c < cols; c++)
				y[r * cols + c] *= sc[r / 128 * bc + c / 128];
	}
	stp_from_f32(STP_Q_F32, sc, ns, g->out[1].data);
	stp_qerr(x, y, n, &e);
	o = stat(t->name, (enum stp_qtype)g->arg, coded_type(q));
	json_object_set_new(o, "rel_err", json_real(e.rel_fro));
	json_object_set_new(o, "max_err", json_real(e.max_abs));
	json_object_set_new(o, "cosine", json_real(e.cosine));
	if (bad)
		json_object_set_new(o, "nonfinite",
				    json_integer((json_int_t)bad));
	return json_array_append_new(stats, o) ? STP_ENOMEM : 0;
}

static int make_dequant(struct quant *q, struct stp_rw_group *g,
			const struct stp_st_header *h, uint8_t *const *in,
			json_t *stats)
{
	const struct stp_st_tensor *t = &h->tensors[g->in[0]];
	uint64_t rows = t->shape[0], cols = t->shape[1], n = rows * cols;
	uint64_t bc = (cols + 127) / 128, ns = nscales(q, rows, cols);
	float *x = floats(q, n + ns), *sc;

	if (!x)
		return STP_ENOMEM;
	sc = x + n;
	stp_to_f32(coded_type(q), in[0], n, x);
	stp_to_f32(STP_Q_F32, in[1], ns, sc);
	for (uint64_t r = 0; r < rows; r++) {
		float *xr = x + r * cols;

		if (q->o.kind == STP_QUANT_INT8)
			for (uint64_t c = 0; c < cols; c++)
				xr[c] *= sc[r];
		else
			for (uint64_t c = 0; c < cols; c++)
				xr[c] *= sc[r / 128 * bc + c / 128];
	}
	stp_from_f32((enum stp_qtype)g->arg, x, n, g->out[0].data);
	return json_array_append_new(stats, stat(t->name, coded_type(q),
						 (enum stp_qtype)g->arg)) ?
		       STP_ENOMEM : 0;
}

static int make(void *self, struct stp_rw_group *g,
		const struct stp_st_header *h, uint8_t *const *in,
		json_t *stats)
{
	struct quant *q = self;

	return q->o.decode ? make_dequant(q, g, h, in, stats) :
			     make_quant(q, g, h, in, stats);
}

struct quant_stage {
	struct stp_stage rw;
	struct quant q;
};

static int qs_frame(void *self, const struct stp_frame *f,
		    struct stp_out *out)
{
	struct quant_stage *s = self;

	return s->rw.frame(s->rw.self, f, out);
}

static const char *qs_where(void *self, uint64_t *pos)
{
	struct quant_stage *s = self;

	return s->rw.where(s->rw.self, pos);
}

static void qs_free(void *self)
{
	struct quant_stage *s = self;

	s->rw.free(s->rw.self);
	free(s->q.f);
	free(s);
}

int stp_quant_open(struct stp_stage *out_st, const struct stp_quant_opts *o)
{
	struct quant_stage *s;
	struct stp_rw_ops ops = { stage_name(o->kind), plan, make, NULL };
	enum stp_qtype dt = stp_qtype_of(o->dtype ? o->dtype : "BF16");
	int rc;

	if (dt != STP_Q_BF16 && dt != STP_Q_F16 && dt != STP_Q_F32)
		return STP_EDTYPE;
	if (!(s = calloc(1, sizeof *s)))
		return STP_ENOMEM;
	s->q.o = *o;
	s->q.dtype = dt;
	ops.self = &s->q;
	if ((rc = stp_rewrite_open(&s->rw, &ops)) < 0) {
		free(s);
		return rc;
	}
	out_st->frame = qs_frame;
	out_st->where = qs_where;
	out_st->free = qs_free;
	out_st->self = s;
	out_st->checks_crc = 0;
	return 0;
}

int stp_lossy_describe(const uint8_t *json, size_t len, char *out, size_t cap)
{
	json_t *o = json_loadb((const char *)json, len, 0, NULL), *t, *v;
	const char *stage, *op, *opts, *from = NULL, *to = NULL;
	double sum = 0, max = 0;
	size_t i, n, nerr = 0;
	int mixed = 0;

	if (!o || !json_is_object(o)) {
		json_decref(o);
		return STP_EJSON;
	}
	stage = json_string_value(json_object_get(o, "stage"));
	op = json_string_value(json_object_get(o, "op"));
	opts = json_string_value(json_object_get(o, "options"));
	t = json_object_get(o, "tensors");
	n = json_array_size(t);
	json_array_foreach(t, i, v) {
		const char *f = json_string_value(json_object_get(v, "from"));
		const char *d = json_string_value(json_object_get(v, "to"));
		json_t *e = json_object_get(v, "rel_err");

		if (f && d && !from) {
			from = f;
			to = d;
		} else if (f && d && (strcmp(f, from) || strcmp(d, to))) {
			mixed = 1;
		}
		if (json_is_number(e)) {
			double x = json_number_value(e);
			sum += x;
			max = x > max ? x : max;
			nerr++;
		}
	}
	n = (size_t)snprintf(out, cap, "%s %s%s%s%s: %zu tensors%s%s%s%s",
			     stage ? stage : "?", op ? op : "?",
			     opts && *opts ? " (" : "", opts ? opts : "",
			     opts && *opts ? ")" : "", n,
			     from && !mixed ? " " : "",
			     from && !mixed ? from : "",
			     from && !mixed ? " -> " : "",
			     from && !mixed ? to : "");
	if (nerr && n < cap)
		n += (size_t)snprintf(out + n, cap - n,
				      ", relative error mean %.3g max %.3g",
				      sum / (double)nerr, max);
	if (json_is_string(json_object_get(o, "recorded")) && n < cap)
		snprintf(out + n, cap - n, " (recorded in the file's header)");
	json_decref(o);
	return 0;
}
