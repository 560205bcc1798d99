/* The rewriting stage of the lossy filters (lib/rewrite.h). */
#include "rewrite.h"

#include <stdlib.h>
#include <string.h>

#include "crc32.h"
#include "error.h"

#define CHUNK (1u << 20)          /* DATA frames it writes, as st-split */
#define LOSSY_KEY "stpipe.lossy"

struct held {
	unsigned type;
	uint8_t *p;
	uint32_t len;
};

struct frames {
	struct held *f;
	size_t n, cap;
};

/* One tensor of the new layout: a tensor passed through (group -1) or
 * the outputs of a group. */
struct unit {
	size_t key;                /* index of its last input */
	long group;
	uint64_t start;            /* new offset, from the data start */
	uint32_t index;            /* new index of its first tensor */
};

struct stp_rw_plan {
	struct stp_rw_group *g;
	size_t ng, cap;
	long *of;                  /* tensor index -> group, -1: passes */
	size_t nt;
};

/* The tensors a rewritten file lost and gained, for its index. */
struct rename {
	char *path;
	json_t *gone, *added;      /* arrays of names */
	int64_t delta;             /* bytes of tensors gained */
};

enum { NONE, HEADER, PASS, REWRITE, INDEX };

/* Tensor buffers freed, kept for the next tensors: fresh memory is slow
 * to touch, and the tensors of a model come in few sizes. */
#define POOL 8
struct pooled {
	uint8_t *p;
	size_t cap;
};

struct rw {
	struct stp_rw_ops ops;
	struct pooled pool[POOL];
	int state;
	struct frames held;        /* FILE and header frames, or an index */
	struct frames index;       /* indexes held to the segment's end */
	size_t nindex_files;
	struct rename *ren;
	size_t nren;
	char path[STP_MAX_PATH + 1];
	struct stp_file_info fi;
	uint8_t *hdr;
	size_t hdr_len, hdr_cap;
	uint64_t hdr_need;
	struct stp_st_header h;
	int have_h;
	struct stp_rw_plan plan;
	struct unit *units;
	size_t nunits, next_unit;
	uint64_t data_start;       /* 8 + N of the new header */
	json_t *stats, *note;
	/* the tensor whose frames are coming */
	long cur;
	uint64_t cur_left;
	/* output totals of the file */
	uint64_t out_size;
	uint32_t out_crc, out_tensors;
	uint64_t pos;
	char where[STP_MAX_PATH + 1100];
	uint8_t tbuf[24 + 8 * STP_MAX_NDIM + STP_MAX_DTYPE + 0xFFFF];
};

int stp_rw_add(struct stp_rw_plan *p, const struct stp_rw_group *g)
{
	struct stp_rw_group *n;

	if (g->nin == 0 || g->nin > STP_RW_MAX_IN || g->nout > STP_RW_MAX_OUT)
		return STP_EUNSUPPORTED;
	for (size_t i = 0; i < g->nin; i++)
		if (g->in[i] >= p->nt || p->of[g->in[i]] >= 0)
			return STP_EUNSUPPORTED;
	if (p->ng == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 16;
		n = realloc(p->g, cap * sizeof *n);
		if (!n)
			return STP_ENOMEM;
		p->g = n;
		p->cap = cap;
	}
	n = &p->g[p->ng];
	*n = *g;
	n->done = 0;
	n->last = 0;
	for (size_t k = 0; k < n->nout; k++) {
		struct stp_rw_out *o = &n->out[k];
		uint64_t b = stp_dtype_size(o->dtype);

		if (!b)
			return STP_EDTYPE;
		for (unsigned d = 0; d < o->ndim; d++) {
			if (o->shape[d] && b > UINT64_MAX / o->shape[d])
				return STP_ESIZE;
			b *= o->shape[d];
		}
		o->nbytes = b;
		o->data = NULL;
	}
	for (size_t i = 0; i < n->nin; i++) {
		n->buf[i] = NULL;
		n->have[i] = 0;
		p->of[n->in[i]] = (long)p->ng;
		if (n->in[i] > n->last)
			n->last = n->in[i];
	}
	p->ng++;
	return 0;
}

json_t *stp_lossy_record(json_t *metadata)
{
	json_t *v = metadata ? json_object_get(metadata, LOSSY_KEY) : NULL;
	json_t *a;

	if (!v)
		return json_array();
	if (!json_is_string(v))
		return NULL;
	a = json_loads(json_string_value(v), 0, NULL);
	if (a && !json_is_array(a)) {
		json_decref(a);
		a = NULL;
	}
	return a;
}

json_t *stp_lossy_find(json_t *rec, const char *stage, const char *op,
		       const char *name)
{
	size_t n = json_array_size(rec);

	while (n-- > 0) {
		json_t *step = json_array_get(rec, n);
		const char *st = json_string_value(
			json_object_get(step, "stage"));
		const char *o = json_string_value(json_object_get(step, "op"));
		json_t *t = json_object_get(json_object_get(step, "tensors"),
					    name);

		if (st && o && t && !strcmp(st, stage) && !strcmp(o, op))
			return t;
	}
	return NULL;
}

/* --- tensor buffers --- */

/* n bytes: the smallest pooled buffer that holds them, else new. */
static uint8_t *buf_get(struct rw *s, size_t n)
{
	int best = -1;

	for (int i = 0; i < POOL; i++)
		if (s->pool[i].p && s->pool[i].cap >= n &&
		    (best < 0 || s->pool[i].cap < s->pool[best].cap))
			best = i;
	if (best >= 0) {
		uint8_t *p = s->pool[best].p;

		s->pool[best].p = NULL;
		return p;
	}
	return malloc(n ? n : 1);
}

/* Gives back p of cap bytes; the pool keeps the largest buffers. */
static void buf_put(struct rw *s, uint8_t *p, size_t cap)
{
	int slot = 0;

	if (!p)
		return;
	for (int i = 1; i < POOL && s->pool[slot].p; i++)
		if (!s->pool[i].p || s->pool[i].cap < s->pool[slot].cap)
			slot = i;
	if (s->pool[slot].p && s->pool[slot].cap >= cap) {
		free(p);
		return;
	}
	free(s->pool[slot].p);
	s->pool[slot] = (struct pooled){ p, cap };
}

/* --- frames kept for later --- */

static int hold(struct frames *fs, unsigned type, const uint8_t *p,
		uint32_t len)
{
	struct held *h;

	if (fs->n == fs->cap) {
		size_t cap = fs->cap ? 2 * fs->cap : 16;
		h = realloc(fs->f, cap * sizeof *h);
		if (!h)
			return STP_ENOMEM;
		fs->f = h;
		fs->cap = cap;
	}
	h = &fs->f[fs->n];
	h->p = malloc(len ? len : 1);
	if (!h->p)
		return STP_ENOMEM;
	memcpy(h->p, p, len);
	h->type = type;
	h->len = len;
	fs->n++;
	return 0;
}

static void frames_clear(struct frames *fs)
{
	for (size_t i = 0; i < fs->n; i++)
		free(fs->f[i].p);
	fs->n = 0;
}

static int send(struct stp_out *out, unsigned type, const void *p,
		size_t len)
{
	struct iovec v = { (void *)p, len };

	return out->frame(out->ctx, type, &v, 1, NULL);
}

static int flush(struct frames *fs, struct stp_out *out)
{
	int rc = 0;

	for (size_t i = 0; i < fs->n && rc >= 0; i++)
		rc = send(out, fs->f[i].type, fs->f[i].p, fs->f[i].len);
	frames_clear(fs);
	return rc;
}

/* --- the new file --- */

static void file_reset(struct rw *s)
{
	for (size_t i = 0; i < s->plan.ng; i++) {
		struct stp_rw_group *g = &s->plan.g[i];

		for (size_t k = 0; k < g->nin; k++)
			buf_put(s, g->buf[k], s->h.tensors[g->in[k]].end -
					      s->h.tensors[g->in[k]].begin);
		for (size_t k = 0; k < g->nout; k++)
			buf_put(s, g->out[k].data, g->out[k].nbytes);
	}
	if (s->have_h)
		stp_st_free(&s->h);
	s->have_h = 0;
	s->plan.ng = 0;
	free(s->plan.of);
	s->plan.of = NULL;
	s->plan.nt = 0;
	free(s->units);
	s->units = NULL;
	s->nunits = s->next_unit = 0;
	json_decref(s->stats);
	json_decref(s->note);
	s->stats = s->note = NULL;
	s->hdr_len = 0;
	s->cur = -1;
	s->cur_left = 0;
	s->state = NONE;
}

/* Data bytes sent into the file being written. */
static int send_data(struct rw *s, struct stp_out *out, const uint8_t *p,
		     size_t n, const uint32_t *crc_in)
{
	uint8_t off[8];
	struct iovec v[2] = { { off, 8 }, { (void *)p, n } };
	uint32_t crc = crc_in ? *crc_in : stp_crc32(0, p, n);
	int rc;

	stp_put64(off, s->out_size);
	if ((rc = out->frame(out->ctx, STP_F_DATA, v, 2, &crc)) < 0)
		return rc;
	s->out_crc = stp_crc32_combine(s->out_crc, crc, n);
	s->out_size += n;
	return 0;
}

static int send_tensor(struct rw *s, struct stp_out *out, const char *name,
		       const char *dtype, unsigned ndim,
		       const uint64_t *shape, uint64_t nbytes)
{
	uint8_t *buf = s->tbuf;
	struct stp_tensor_info ti = {
		.offset = s->out_size, .nbytes = nbytes,
		.index = s->out_tensors, .ndim = ndim, .name = name,
		.namelen = strlen(name),
	};
	int len;

	memcpy(ti.shape, shape, ndim * sizeof *shape);
	snprintf(ti.dtype, sizeof ti.dtype, "%s", dtype);
	if ((len = stp_tensor_build(&ti, buf, sizeof s->tbuf)) < 0)
		return len;
	s->out_tensors++;
	return send(out, STP_F_TENSOR, buf, (size_t)len);
}

static int send_output(struct rw *s, struct stp_out *out,
		       const struct stp_rw_out *o)
{
	uint64_t row = stp_dtype_size(o->dtype) *
		       (o->ndim ? o->shape[o->ndim - 1] : 1);
	size_t step = row > 0 && row <= CHUNK ? CHUNK / row * row :
		      CHUNK / stp_dtype_size(o->dtype) *
		      stp_dtype_size(o->dtype);
	int rc = send_tensor(s, out, o->name, o->dtype, o->ndim, o->shape,
			     o->nbytes);

	for (uint64_t at = 0; rc >= 0 && at < o->nbytes; at += step)
		rc = send_data(s, out, o->data + at,
			       o->nbytes - at < step ? o->nbytes - at : step,
			       NULL);
	return rc;
}

static int by_key(const void *a, const void *b)
{
	const struct unit *x = a, *y = b;

	return (x->key > y->key) - (x->key < y->key);
}

/* Orders the new tensors by the arrival of their last input, so that
 * each can be written the moment it is complete. */
static int lay_out(struct rw *s)
{
	size_t n = 0;
	uint64_t at = 0;
	uint32_t index = 0;

	s->units = calloc(s->h.count + 1, sizeof *s->units);
	if (!s->units)
		return STP_ENOMEM;
	for (size_t i = 0; i < s->h.count; i++)
		if (s->plan.of[i] < 0)
			s->units[n++] = (struct unit){ i, -1, 0, 0 };
	for (size_t g = 0; g < s->plan.ng; g++)
		s->units[n++] = (struct unit){ s->plan.g[g].last, (long)g, 0,
					       0 };
	qsort(s->units, n, sizeof *s->units, by_key);
	for (size_t u = 0; u < n; u++) {
		s->units[u].start = at;
		s->units[u].index = index;
		if (s->units[u].group < 0) {
			const struct stp_st_tensor *t =
				&s->h.tensors[s->units[u].key];
			at += t->end - t->begin;
			index++;
		} else {
			const struct stp_rw_group *g =
				&s->plan.g[s->units[u].group];
			for (size_t k = 0; k < g->nout; k++)
				at += g->out[k].nbytes;
			index += (uint32_t)g->nout;
		}
	}
	s->nunits = n;
	return 0;
}

static json_t *shape_json(unsigned ndim, const uint64_t *shape)
{
	json_t *a = json_array();

	for (unsigned d = 0; a && d < ndim; d++)
		json_array_append_new(a, json_integer((json_int_t)shape[d]));
	return a;
}

static json_t *entry(const char *dtype, unsigned ndim, const uint64_t *shape,
		     uint64_t begin, uint64_t end)
{
	json_t *o = json_object(), *off = json_array();

	json_object_set_new(o, "dtype", json_string(dtype));
	json_object_set_new(o, "shape", shape_json(ndim, shape));
	json_array_append_new(off, json_integer((json_int_t)begin));
	json_array_append_new(off, json_integer((json_int_t)end));
	json_object_set_new(o, "data_offsets", off);
	return o;
}

/* The new header: __metadata__ with this step appended to its record,
 * then the tensors in their new order, padded with spaces to 8 bytes. */
static int new_header(struct rw *s, json_t *meta, char **out_json,
		      size_t *out_len)
{
	json_t *top = json_object(), *m = meta ? json_deep_copy(meta) :
			json_object();
	json_t *rec = stp_lossy_record(meta);
	char *txt, *j;
	size_t n, pad;

	if (!rec) {
		json_decref(top);
		json_decref(m);
		return STP_EHEADER;
	}
	json_array_append(rec, s->note);
	txt = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(rec);
	json_object_set_new(m, LOSSY_KEY, json_string(txt));
	free(txt);
	json_object_set_new(top, "__metadata__", m);
	for (size_t u = 0; u < s->nunits; u++) {
		const struct unit *un = &s->units[u];
		uint64_t at = un->start;

		if (un->group < 0) {
			const struct stp_st_tensor *t = &s->h.tensors[un->key];
			uint64_t nb = t->end - t->begin;

			json_object_set_new(top, t->name,
					    entry(t->dtype, t->ndim, t->shape,
						  at, at + nb));
			continue;
		}
		for (size_t k = 0; k < s->plan.g[un->group].nout; k++) {
			const struct stp_rw_out *o =
				&s->plan.g[un->group].out[k];

			json_object_set_new(top, o->name,
					    entry(o->dtype, o->ndim, o->shape,
						  at, at + o->nbytes));
			at += o->nbytes;
		}
	}
	j = json_dumps(top, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(top);
	if (!j)
		return STP_ENOMEM;
	n = strlen(j);
	pad = (8 - (8 + n) % 8) % 8;
	txt = realloc(j, n + pad + 1);
	if (!txt) {
		free(j);
		return STP_ENOMEM;
	}
	memset(txt + n, ' ', pad);
	txt[n + pad] = '\0';
	*out_json = txt;
	*out_len = n + pad;
	return 0;
}

static int note_rename(struct rw *s)
{
	struct rename *r = realloc(s->ren, (s->nren + 1) * sizeof *r);

	if (!r)
		return STP_ENOMEM;
	s->ren = r;
	r = &s->ren[s->nren];
	r->path = strdup(s->path);
	r->gone = json_array();
	r->added = json_array();
	if (!r->path || !r->gone || !r->added) {
		free(r->path);
		json_decref(r->gone);
		json_decref(r->added);
		return STP_ENOMEM;
	}
	r->delta = 0;
	s->nren++;
	for (size_t g = 0; g < s->plan.ng; g++) {
		for (size_t i = 0; i < s->plan.g[g].nin; i++) {
			const struct stp_st_tensor *t =
				&s->h.tensors[s->plan.g[g].in[i]];

			json_array_append_new(r->gone, json_string(t->name));
			r->delta -= (int64_t)(t->end - t->begin);
		}
		for (size_t k = 0; k < s->plan.g[g].nout; k++) {
			json_array_append_new(r->added,
				json_string(s->plan.g[g].out[k].name));
			r->delta += (int64_t)s->plan.g[g].out[k].nbytes;
		}
	}
	return 0;
}

/* The header is complete: plan, then pass the file or start the new one. */
static int begin_file(struct rw *s, struct stp_out *out)
{
	json_t *top, *meta;
	char *json = NULL;
	size_t jn = 0;
	uint8_t fb[24 + STP_MAX_PATH];
	int rc;

	rc = stp_st_parse(s->hdr + 8, s->hdr_need - 8, &s->h, NULL, 0);
	if (rc < 0)
		return rc;
	s->have_h = 1;
	top = json_loadb((const char *)s->hdr + 8, s->hdr_need - 8, 0, NULL);
	if (!top)
		return STP_EJSON;
	meta = json_object_get(top, "__metadata__");
	if (meta && !json_is_object(meta))
		meta = NULL;
	s->plan.nt = s->h.count;
	s->plan.of = malloc((s->h.count + 1) * sizeof *s->plan.of);
	s->note = json_object();
	s->stats = json_array();
	if (!s->plan.of || !s->note || !s->stats) {
		json_decref(top);
		return STP_ENOMEM;
	}
	for (size_t i = 0; i < s->h.count; i++)
		s->plan.of[i] = -1;
	json_object_set_new(s->note, "stage", json_string(s->ops.stage));
	json_object_set_new(s->note, "version", json_integer(1));
	rc = s->ops.plan(s->ops.self, &s->plan, &s->h, meta, s->note);
	if (rc >= 0 && s->plan.ng == 0) {
		json_decref(top);
		s->state = PASS;
		return flush(&s->held, out);
	}
	if (rc >= 0)
		rc = lay_out(s);
	if (rc >= 0)
		rc = new_header(s, meta, &json, &jn);
	json_decref(top);
	if (rc < 0)
		return rc;
	frames_clear(&s->held);
	s->data_start = 8 + jn;
	s->fi.size = s->data_start;
	for (size_t u = 0; u < s->nunits; u++)
		if (s->units[u].group < 0)
			s->fi.size += s->h.tensors[s->units[u].key].end -
				      s->h.tensors[s->units[u].key].begin;
		else
			for (size_t k = 0;
			     k < s->plan.g[s->units[u].group].nout; k++)
				s->fi.size +=
				    s->plan.g[s->units[u].group].out[k].nbytes;
	s->fi.path = s->path;
	s->fi.pathlen = strlen(s->path);
	rc = stp_file_build(&s->fi, fb, sizeof fb);
	if (rc >= 0)
		rc = send(out, STP_F_FILE, fb, (size_t)rc);
	s->out_size = 0;
	s->out_crc = 0;
	s->out_tensors = 0;
	if (rc >= 0) {
		uint8_t len[8];

		stp_put64(len, jn);
		rc = send_data(s, out, len, 8, NULL);
	}
	for (size_t at = 0; rc >= 0 && at < jn; at += CHUNK)
		rc = send_data(s, out, (const uint8_t *)json + at,
			       jn - at < CHUNK ? jn - at : CHUNK, NULL);
	free(json);
	if (rc >= 0)
		rc = note_rename(s);
	s->state = REWRITE;
	return rc;
}

/* Writes every unit whose inputs are all in, in the planned order. */
static int drain(struct rw *s, struct stp_out *out)
{
	while (s->next_unit < s->nunits) {
		struct unit *u = &s->units[s->next_unit];
		struct stp_rw_group *g;
		int rc;

		if (u->group < 0)
			return 0;
		g = &s->plan.g[u->group];
		if (g->done < g->nin)
			return 0;
		for (size_t k = 0; k < g->nout; k++) {
			g->out[k].data = buf_get(s, g->out[k].nbytes);
			if (!g->out[k].data)
				return STP_ENOMEM;
		}
		snprintf(s->where, sizeof s->where, "%s: tensor '%s'",
			 s->path, s->h.tensors[g->in[0]].name);
		rc = s->ops.make(s->ops.self, g, &s->h, g->buf, s->stats);
		for (size_t k = 0; rc >= 0 && k < g->nout; k++)
			rc = send_output(s, out, &g->out[k]);
		for (size_t k = 0; k < g->nout; k++) {
			buf_put(s, g->out[k].data, g->out[k].nbytes);
			g->out[k].data = NULL;
		}
		for (size_t i = 0; i < g->nin; i++) {
			buf_put(s, g->buf[i], s->h.tensors[g->in[i]].end -
					      s->h.tensors[g->in[i]].begin);
			g->buf[i] = NULL;
		}
		if (rc < 0)
			return rc;
		s->next_unit++;
	}
	return 0;
}

/* One input tensor's bytes are all in. */
static int tensor_done(struct rw *s, struct stp_out *out)
{
	long gi = s->plan.of[s->cur];

	if (gi >= 0)
		s->plan.g[gi].done++;
	else
		s->next_unit++;
	s->cur = -1;
	return drain(s, out);
}

static int rewrite_tensor(struct rw *s, const struct stp_frame *f,
			  struct stp_out *out)
{
	struct stp_tensor_info ti;
	const struct stp_st_tensor *t;
	long gi;
	int rc = stp_tensor_parse(f->payload, f->len, &ti);

	if (rc < 0)
		return rc;
	if (ti.index >= s->h.count)
		return STP_EHEADER;
	t = &s->h.tensors[ti.index];
	snprintf(s->where, sizeof s->where, "%s: tensor '%s'", s->path,
		 t->name);
	if (ti.offset != t->begin || ti.nbytes != t->end - t->begin ||
	    ti.namelen != strlen(t->name) ||
	    memcmp(ti.name, t->name, ti.namelen) || strcmp(ti.dtype, t->dtype))
		return STP_EHEADER;
	s->cur = (long)ti.index;
	s->cur_left = ti.nbytes;
	gi = s->plan.of[ti.index];
	if (gi < 0) {
		if (s->next_unit >= s->nunits ||
		    s->units[s->next_unit].key != ti.index)
			return STP_EORDER;
		rc = send_tensor(s, out, t->name, t->dtype, t->ndim, t->shape,
				 ti.nbytes);
	} else {
		struct stp_rw_group *g = &s->plan.g[gi];

		for (size_t i = 0; i < g->nin; i++) {
			if (g->in[i] != ti.index)
				continue;
			/* a second TENSOR frame would overrun its buffer */
			if (g->buf[i] || g->done >= g->nin)
				return STP_EORDER;
			g->buf[i] = buf_get(s, ti.nbytes);
			if (!g->buf[i])
				return STP_ENOMEM;
		}
	}
	if (rc >= 0 && s->cur_left == 0)
		rc = tensor_done(s, out);
	return rc;
}

static int rewrite_data(struct rw *s, const struct stp_frame *f,
			struct stp_out *out)
{
	uint64_t off, n;
	long gi;

	if (f->len < 8)
		return STP_EFRAME;
	off = stp_get64(f->payload);
	n = f->len - 8;
	if (s->cur < 0)
		return 0;          /* padding or gaps: the new layout has none */
	if (n > s->cur_left)
		return STP_EFRAME;
	gi = s->plan.of[s->cur];
	if (gi < 0) {
		const uint32_t *crc = f->crc_pending ? NULL : &f->body_crc;
		int rc = send_data(s, out, f->payload + 8, (size_t)n, crc);

		if (rc < 0)
			return rc;
	} else {
		struct stp_rw_group *g = &s->plan.g[gi];
		const struct stp_st_tensor *t = &s->h.tensors[s->cur];

		for (size_t i = 0; i < g->nin; i++)
			if (g->in[i] == (size_t)s->cur) {
				if (off != t->begin + g->have[i])
					return STP_EORDER;
				memcpy(g->buf[i] + g->have[i], f->payload + 8,
				       (size_t)n);
				g->have[i] += n;
			}
	}
	s->cur_left -= n;
	return s->cur_left == 0 ? tensor_done(s, out) : 0;
}

static int end_file(struct rw *s, struct stp_out *out)
{
	struct stp_file_end e = { 0 };
	json_t *rec;
	char *txt;
	uint8_t end[16];
	int rc;

	if (s->next_unit != s->nunits || s->cur >= 0)
		return STP_ETRUNCATED;
	rec = json_deep_copy(s->note);
	json_object_set_new(rec, "file", json_string(s->path));
	json_object_set(rec, "tensors", s->stats);
	txt = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(rec);
	if (!txt)
		return STP_ENOMEM;
	if (strlen(txt) > STP_MAX_PAYLOAD) {
		free(txt);
		return STP_ETOOBIG;
	}
	rc = send(out, STP_F_LOSSY, txt, strlen(txt));
	free(txt);
	e.size = s->out_size;
	e.crc = s->out_crc;
	e.tensors = s->out_tensors;
	stp_file_end_build(&e, end);
	if (rc >= 0)
		rc = send(out, STP_F_FILE_END, end, sizeof end);
	file_reset(s);
	return rc;
}

/* --- indexes --- */

static int is_index(const char *p, size_t n)
{
	static const char suf[] = ".safetensors.index.json";

	return n >= sizeof suf - 1 && !memcmp(p + n - (sizeof suf - 1), suf,
					      sizeof suf - 1);
}

static size_t dir_len(const char *p)
{
	const char *sl = strrchr(p, '/');

	return sl ? (size_t)(sl - p + 1) : 0;
}

/* The held index file starting at frame *i, with the segment's renames
 * applied to its weight_map, or unchanged when none applies. */
static int send_index(struct rw *s, size_t *i, struct stp_out *out)
{
	struct held *fh = &s->index.f[*i];
	struct stp_file_info fi;
	char path[STP_MAX_PATH + 1];
	size_t first = *i, last = *i, n = 0, dl;
	uint8_t *txt;
	json_t *top, *map;
	int changed = 0, rc;

	while (s->index.f[last].type != STP_F_FILE_END)
		last++;
	*i = last + 1;
	if ((rc = stp_file_parse(fh->p, fh->len, &fi)) < 0)
		return rc;
	memcpy(path, fi.path, fi.pathlen);
	path[fi.pathlen] = '\0';
	for (size_t k = first + 1; k < last; k++)
		n += s->index.f[k].len - 8;
	txt = malloc(n + 1);
	if (!txt)
		return STP_ENOMEM;
	n = 0;
	for (size_t k = first + 1; k < last; k++) {
		memcpy(txt + n, s->index.f[k].p + 8, s->index.f[k].len - 8);
		n += s->index.f[k].len - 8;
	}
	top = json_loadb((const char *)txt, n, 0, NULL);
	free(txt);
	map = top ? json_object_get(top, "weight_map") : NULL;
	dl = dir_len(path);
	for (size_t r = 0; map && json_is_object(map) && r < s->nren; r++) {
		const char *rp = s->ren[r].path, *base;
		size_t j;
		json_t *v, *meta, *tot;

		if (dir_len(rp) != dl || strncmp(rp, path, dl))
			continue;
		base = rp + dl;
		json_array_foreach(s->ren[r].gone, j, v) {
			json_object_del(map, json_string_value(v));
			changed = 1;
		}
		json_array_foreach(s->ren[r].added, j, v)
			json_object_set_new(map, json_string_value(v),
					    json_string(base));
		meta = json_object_get(top, "metadata");
		tot = meta ? json_object_get(meta, "total_size") : NULL;
		if (json_is_integer(tot))
			json_integer_set(tot, json_integer_value(tot) +
					 s->ren[r].delta);
	}
	if (!changed) {
		json_decref(top);
		for (size_t k = first; k <= last && rc >= 0; k++)
			rc = send(out, s->index.f[k].type, s->index.f[k].p,
				  s->index.f[k].len);
		return rc;
	}
	txt = (uint8_t *)json_dumps(top, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(top);
	if (!txt)
		return STP_ENOMEM;
	n = strlen((char *)txt);
	{
		uint8_t fb[24 + STP_MAX_PATH], end[16];
		struct stp_file_end e = { 0 };

		fi.size = n;
		rc = stp_file_build(&fi, fb, sizeof fb);
		if (rc >= 0)
			rc = send(out, STP_F_FILE, fb, (size_t)rc);
		s->out_size = 0;
		s->out_crc = 0;
		for (size_t at = 0; rc >= 0 && at < n; at += CHUNK)
			rc = send_data(s, out, txt + at,
				       n - at < CHUNK ? n - at : CHUNK, NULL);
		e.size = s->out_size;
		e.crc = s->out_crc;
		stp_file_end_build(&e, end);
		if (rc >= 0)
			rc = send(out, STP_F_FILE_END, end, sizeof end);
	}
	free(txt);
	return rc;
}

static int end_segment(struct rw *s, const struct stp_frame *f,
		       struct stp_out *out)
{
	int rc = 0;

	for (size_t i = 0; i < s->index.n && rc >= 0;)
		rc = send_index(s, &i, out);
	frames_clear(&s->index);
	for (size_t r = 0; r < s->nren; r++) {
		free(s->ren[r].path);
		json_decref(s->ren[r].gone);
		json_decref(s->ren[r].added);
	}
	s->nren = 0;
	if (rc >= 0)
		rc = stp_out_copy(out, f);
	return rc;
}

/* --- the stage --- */

static int header_data(struct rw *s, const struct stp_frame *f,
		       struct stp_out *out)
{
	const uint8_t *p = f->payload + 8;
	size_t n = f->len - 8;
	int rc;

	if (f->len < 8)
		return STP_EFRAME;
	if ((rc = hold(&s->held, f->type, f->payload, f->len)) < 0)
		return rc;
	while (n > 0 && s->hdr_len < s->hdr_need) {
		size_t take = n < s->hdr_need - s->hdr_len ? n :
			      (size_t)(s->hdr_need - s->hdr_len);

		if (s->hdr_len + take > s->hdr_cap) {
			uint8_t *q = realloc(s->hdr, s->hdr_len + take);
			if (!q)
				return STP_ENOMEM;
			s->hdr = q;
			s->hdr_cap = s->hdr_len + take;
		}
		memcpy(s->hdr + s->hdr_len, p, take);
		s->hdr_len += take;
		p += take;
		n -= take;
		if (s->hdr_need == 8 && s->hdr_len == 8) {
			uint64_t len = stp_get64(s->hdr);

			if (len > STP_ST_MAX_HEADER)
				return STP_EHEADER;
			s->hdr_need = 8 + len;
		}
	}
	if (s->hdr_len < s->hdr_need)
		return 0;
	return begin_file(s, out);
}

static int stage_frame(void *self, const struct stp_frame *f,
		       struct stp_out *out)
{
	struct rw *s = self;
	int rc;

	s->pos = f->pos;
	if (f->type == STP_F_END) {
		if (s->state != NONE)
			return STP_EORDER;
		return end_segment(s, f, out);
	}
	switch (s->state) {
	case NONE:
		if (f->type != STP_F_FILE)
			return stp_out_copy(out, f);
		if ((rc = stp_file_parse(f->payload, f->len, &s->fi)) < 0)
			return rc;
		memcpy(s->path, s->fi.path, s->fi.pathlen);
		s->path[s->fi.pathlen] = '\0';
		snprintf(s->where, sizeof s->where, "%s", s->path);
		if (s->fi.kind == STP_KIND_OTHER &&
		    is_index(s->path, s->fi.pathlen)) {
			s->state = INDEX;
			return hold(&s->index, f->type, f->payload, f->len);
		}
		if (s->fi.kind != STP_KIND_SAFETENSORS) {
			s->state = PASS;
			return stp_out_copy(out, f);
		}
		s->state = HEADER;
		s->hdr_len = 0;
		s->hdr_need = 8;
		return hold(&s->held, f->type, f->payload, f->len);
	case INDEX:
		if (f->type == STP_F_FILE_END)
			s->state = NONE;
		else if (f->type != STP_F_DATA)
			return STP_EUNDECODED;
		else if (f->len < 8)
			return STP_EFRAME;
		return hold(&s->index, f->type, f->payload, f->len);
	case PASS:
		if (f->type == STP_F_FILE_END)
			file_reset(s);
		return stp_out_copy(out, f);
	case HEADER:
		if (f->type == STP_F_DATA)
			return header_data(s, f, out);
		if (f->type == STP_F_FILE_END || f->type == STP_F_TENSOR)
			return STP_EHEADER;
		if (f->type >= STP_F_SKIP_FIRST && f->type <= STP_F_SKIP_LAST)
			return hold(&s->held, f->type, f->payload, f->len);
		return STP_EUNDECODED;
	case REWRITE:
		switch (f->type) {
		case STP_F_TENSOR:
			if (s->cur >= 0)
				return STP_EORDER;
			return rewrite_tensor(s, f, out);
		case STP_F_DATA:
			return rewrite_data(s, f, out);
		case STP_F_FILE_END:
			return end_file(s, out);
		}
		if (f->type >= STP_F_SKIP_FIRST && f->type <= STP_F_SKIP_LAST)
			return stp_out_copy(out, f);
		return STP_EUNDECODED;
	}
	return STP_EORDER;
}

static const char *stage_where(void *self, uint64_t *pos)
{
	struct rw *s = self;

	*pos = s->pos;
	return s->where;
}

static void stage_free(void *self)
{
	struct rw *s = self;

	if (!s)
		return;
	file_reset(s);
	frames_clear(&s->held);
	frames_clear(&s->index);
	free(s->held.f);
	free(s->index.f);
	for (size_t r = 0; r < s->nren; r++) {
		free(s->ren[r].path);
		json_decref(s->ren[r].gone);
		json_decref(s->ren[r].added);
	}
	free(s->ren);
	free(s->plan.g);
	free(s->hdr);
	for (int i = 0; i < POOL; i++)
		free(s->pool[i].p);
	free(s);
}

int stp_rewrite_open(struct stp_stage *out_st, const struct stp_rw_ops *ops)
{
	struct rw *s = calloc(1, sizeof *s);

	if (!s)
		return STP_ENOMEM;
	s->ops = *ops;
	s->cur = -1;
	out_st->frame = stage_frame;
	out_st->where = stage_where;
	out_st->free = stage_free;
	out_st->self = s;
	out_st->checks_crc = 0;
	return 0;
}

int stp_lossy_header_notes(const uint8_t *json, size_t n, const char *path,
			   stp_note_send_fn *send, void *ctx)
{
	json_t *top, *rec, *step;
	size_t i;
	int rc = 0;

	if (!memmem(json, n, LOSSY_KEY, sizeof LOSSY_KEY - 1))
		return 0;
	if (!(top = json_loadb((const char *)json, n, 0, NULL)))
		return STP_EJSON;
	rec = stp_lossy_record(json_object_get(top, "__metadata__"));
	json_array_foreach(rec, i, step) {
		json_t *o = json_deep_copy(step), *t = json_array(), *v;
		const char *k;
		char *txt;

		if (!json_is_object(o)) {
			json_decref(o);
			json_decref(t);
			continue;
		}
		json_object_foreach(json_object_get(step, "tensors"), k, v) {
			json_t *e = json_object();

			json_object_set_new(e, "name", json_string(k));
			if (json_is_string(v))
				json_object_set(e, "from", v);
			json_array_append_new(t, e);
		}
		json_object_set_new(o, "tensors", t);
		json_object_set_new(o, "file", json_string(path));
		json_object_set_new(o, "recorded", json_string("header"));
		txt = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(o);
		if (!txt) {
			rc = STP_ENOMEM;
			break;
		}
		rc = strlen(txt) <= STP_MAX_PAYLOAD ?
		     send(ctx, txt, strlen(txt)) : 0;
		free(txt);
		if (rc < 0)
			break;
	}
	json_decref(rec);
	json_decref(top);
	return rc;
}
