/* The public API (stpipe.h): .stz files opened for random access, tensors
 * decoded into the caller's buffers, tensors compressed from them. Built
 * on the same stages as the programs: a TENSOR frame's offset (from the
 * index, or from one walk over the frames) and the MODEL frames before it
 * are all a load needs. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "codec.h"
#include "error.h"
#include "frontend.h"
#include "io.h"
#include "join.h"
#include "model.h"
#include "split.h"
#include "stage.h"
#include "stpipe.h"
#include "stream.h"
#include "version.h"

const char *stp_version(void)
{
	return STP_VERSION_STRING;
}

static unsigned resolve_threads(unsigned threads)
{
	long n;

	if (threads)
		return threads;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

/* ---- the handle ---- */

struct tensor {
	struct stp_tensor_desc d;
	uint64_t pos;             /* input offset of its TENSOR frame */
	uint64_t offset;          /* file offset of its first byte */
	size_t models;            /* MODEL frames of its segment before it: */
	size_t model0;            /* z->model[model0 .. models) */
};

struct mem_out;

struct file {
	struct stp_file_desc d;
	uint64_t pos;             /* input offset of its FILE frame */
	size_t models, model0;    /* as for a tensor */
};

struct stp_stz {
	int fd, own_fd;
	struct tensor *t;
	size_t n, cap;
	struct file *files;
	size_t nfiles, cap_files;
	uint64_t *model;          /* input offsets of MODEL frames */
	size_t nmodel, cap_model;
	size_t seg_model0;        /* first MODEL frame of the current segment */
	uint8_t *buf;             /* one frame: TENSOR and MODEL frames read
				   * at their offsets */
	/* What stp_stz_load keeps between calls, so that loading tensor by
	 * tensor touches no fresh memory: a reader, a decoding stage on
	 * dec_threads threads (reset by an END frame after each tensor)
	 * and the output. */
	struct stp_reader *r;
	struct stp_stage st;
	unsigned dec_threads;
	struct mem_out *m;
};

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
	size_t c = *cap ? *cap : 16;
	void *q;

	if (need <= *cap)
		return 0;
	while (c < need)
		c *= 2;
	if (!(q = realloc(*p, c * size)))
		return STP_ENOMEM;
	*p = q;
	*cap = c;
	return 0;
}

static char *strndup_or_null(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

/* Records the FILE frame payload p[0..len) found at input offset pos. */
static int add_file(stp_stz *z, const uint8_t *p, size_t len, uint64_t pos)
{
	struct stp_file_info fi;
	struct file *f;
	char *path;
	int rc;

	if ((rc = stp_file_parse(p, len, &fi)) < 0)
		return rc;
	if (grow((void **)&z->files, &z->cap_files, z->nfiles + 1,
		 sizeof *z->files) < 0 ||
	    !(path = strndup_or_null(fi.path, fi.pathlen)))
		return STP_ENOMEM;
	f = &z->files[z->nfiles++];
	f->d = (struct stp_file_desc){ path,
				       fi.kind == STP_KIND_SAFETENSORS,
				       fi.size };
	f->pos = pos;
	f->model0 = z->seg_model0;
	f->models = z->nmodel;
	return 0;
}

static int add_model(stp_stz *z, uint64_t off)
{
	if (grow((void **)&z->model, &z->cap_model, z->nmodel + 1,
		 sizeof *z->model) < 0)
		return STP_ENOMEM;
	z->model[z->nmodel++] = off;
	return 0;
}

/* Records the TENSOR frame payload p[0..len) found at input offset pos. */
static int add_tensor(stp_stz *z, const uint8_t *p, size_t len, uint64_t pos)
{
	struct stp_tensor_info ti;
	struct tensor *t;
	uint64_t *shape;
	int rc;

	if ((rc = stp_tensor_parse(p, len, &ti)) < 0)
		return rc;
	if (z->nfiles == 0)
		return STP_EORDER;
	if (grow((void **)&z->t, &z->cap, z->n + 1, sizeof *z->t) < 0)
		return STP_ENOMEM;
	t = &z->t[z->n];
	memset(t, 0, sizeof *t);
	shape = malloc((ti.ndim ? ti.ndim : 1) * sizeof *shape);
	t->d.name = strndup_or_null(ti.name, ti.namelen);
	t->d.dtype = strndup_or_null(ti.dtype, strlen(ti.dtype));
	if (!shape || !t->d.name || !t->d.dtype) {
		free(shape);
		free((char *)t->d.name);
		free((char *)t->d.dtype);
		return STP_ENOMEM;
	}
	memcpy(shape, ti.shape, ti.ndim * sizeof *shape);
	t->d.shape = shape;
	t->d.ndim = ti.ndim;
	t->d.nbytes = ti.nbytes;
	t->d.file = z->files[z->nfiles - 1].d.path;
	t->pos = pos;
	t->offset = ti.offset;
	t->model0 = z->seg_model0;
	t->models = z->nmodel;
	z->n++;
	return 0;
}

static void drop_decoder(stp_stz *z)
{
	if (z->st.free)
		z->st.free(z->st.self);
	memset(&z->st, 0, sizeof z->st);
	stp_reader_free(z->r);
	z->r = NULL;
	free(z->m);
	z->m = NULL;
}

static void forget(stp_stz *z)
{
	for (size_t i = 0; i < z->n; i++) {
		free((char *)z->t[i].d.name);
		free((char *)z->t[i].d.dtype);
		free((uint64_t *)z->t[i].d.shape);
	}
	for (size_t i = 0; i < z->nfiles; i++)
		free((char *)z->files[i].d.path);
	z->n = z->nfiles = z->nmodel = z->seg_model0 = 0;
}

void stp_stz_close(stp_stz *z)
{
	if (!z)
		return;
	forget(z);
	free(z->t);
	free(z->files);
	free(z->model);
	free(z->buf);
	drop_decoder(z);
	if (z->own_fd)
		close(z->fd);
	free(z);
}

/* From the index: FILE and MODEL entries as they are, each TENSOR frame
 * read where the entry says and checked to be the one it names. */
static int index_entry(void *ctx, unsigned kind, const char *name,
		       size_t namelen, uint64_t off)
{
	stp_stz *z = ctx;
	uint32_t len;
	int rc;

	if (kind == 3)
		return add_model(z, off);
	rc = stp_read_frame_at(z->fd, off, z->buf, STP_MAX_PAYLOAD + 4, &len);
	if (kind == 1) {
		const char *path;

		if (rc != STP_F_FILE)
			return STP_EUNSUPPORTED;
		if ((rc = add_file(z, z->buf, len, off)) < 0)
			return rc == STP_ENOMEM ? rc : STP_EUNSUPPORTED;
		path = z->files[z->nfiles - 1].d.path;
		return strlen(path) == namelen &&
		       memcmp(path, name, namelen) == 0 ? 0 : STP_EUNSUPPORTED;
	}
	if (rc != STP_F_TENSOR)
		return STP_EUNSUPPORTED;
	if ((rc = add_tensor(z, z->buf, len, off)) < 0)
		return rc == STP_ENOMEM ? rc : STP_EUNSUPPORTED;
	if (strlen(z->t[z->n - 1].d.name) != namelen ||
	    memcmp(z->t[z->n - 1].d.name, name, namelen) != 0)
		return STP_EUNSUPPORTED;
	return 0;
}

/* Without a usable index: every frame once, in order, checked. */
static int walk(stp_stz *z)
{
	struct stp_reader *r;
	struct stp_frame f;
	int rc;

	if (lseek(z->fd, 0, SEEK_SET) < 0)
		return STP_EIO;
	if ((rc = stp_reader_open(&r, z->fd)) < 0)
		return rc;
	while ((rc = stp_reader_next(r, &f)) > 0) {
		if (f.type == STP_F_FILE) {
			if ((rc = add_file(z, f.payload, f.len, f.pos)) < 0)
				break;
		} else if (f.type == STP_F_TENSOR) {
			if ((rc = add_tensor(z, f.payload, f.len, f.pos)) < 0)
				break;
		} else if (f.type == STP_F_MODEL) {
			if ((rc = add_model(z, f.pos)) < 0)
				break;
		} else if (f.type == STP_F_END) {
			z->seg_model0 = z->nmodel;   /* models are per segment */
		}
	}
	stp_reader_free(r);
	return rc;
}

int stp_stz_open_fd(stp_stz **out, int fd)
{
	struct stat st;
	stp_stz *z;
	int rc;

	if (fstat(fd, &st) < 0)
		return STP_EIO;
	if (!S_ISREG(st.st_mode))
		return STP_EUNSUPPORTED;
	if (!(z = calloc(1, sizeof *z)))
		return STP_ENOMEM;
	z->fd = fd;
	if (!(z->buf = malloc(STP_MAX_PAYLOAD + 4))) {
		stp_stz_close(z);
		return STP_ENOMEM;
	}
	rc = stp_index_walk(fd, index_entry, z);
	if (rc < 0 && rc != STP_ENOMEM) {
		/* no index, several segments, or one that is wrong */
		forget(z);
		rc = walk(z);
	}
	if (rc < 0) {
		stp_stz_close(z);
		return rc;
	}
	*out = z;
	return 0;
}

int stp_stz_open(stp_stz **out, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return STP_EIO;
	if ((rc = stp_stz_open_fd(out, fd)) < 0) {
		close(fd);
		return rc;
	}
	(*out)->own_fd = 1;
	return 0;
}

size_t stp_stz_count(const stp_stz *z)
{
	return z->n;
}

const struct stp_tensor_desc *stp_stz_tensor(const stp_stz *z, size_t i)
{
	return i < z->n ? &z->t[i].d : NULL;
}

size_t stp_stz_file_count(const stp_stz *z)
{
	return z->nfiles;
}

const struct stp_file_desc *stp_stz_file(const stp_stz *z, size_t i)
{
	return i < z->nfiles ? &z->files[i].d : NULL;
}

long stp_stz_find(const stp_stz *z, const char *file, const char *name)
{
	for (size_t i = 0; i < z->n; i++)
		if (strcmp(z->t[i].d.name, name) == 0 &&
		    (!file || strcmp(z->t[i].d.file, file) == 0))
			return (long)i;
	return STP_ERANGE;
}

/* ---- decoding into memory ---- */

/* Takes the decoded frames of a stream: FILE, TENSOR and DATA frames put
 * tensor bytes where the callbacks say; every frame then goes on to next
 * (a joiner that checks the files), if any. */
struct mem_out {
	const struct stp_load_cb *cb;
	struct stp_out next;
	int has_next;
	char file[STP_MAX_PATH + 1];
	char name[65536 + 1];
	char dtype[STP_MAX_DTYPE + 1];
	uint64_t shape[STP_MAX_NDIM];
	struct stp_tensor_desc d;
	uint64_t offset, left;    /* of the tensor being filled */
	uint8_t *buf;
	int active, in_tensor;
	long loaded;
	uint8_t small[STP_MAX_PATH + 64 + 65536 + 24 + 8 * STP_MAX_NDIM];
};

/* The payload of a small frame in one piece: in the first, or gathered. */
static const uint8_t *gather(struct mem_out *m, const struct iovec *v, int n,
			     size_t *len)
{
	size_t t = 0;

	if (n == 1) {
		*len = v[0].iov_len;
		return v[0].iov_base;
	}
	for (int i = 0; i < n; i++) {
		if (v[i].iov_len > sizeof m->small - t)
			return NULL;
		memcpy(m->small + t, v[i].iov_base, v[i].iov_len);
		t += v[i].iov_len;
	}
	*len = t;
	return m->small;
}

static int tensor_done(struct mem_out *m)
{
	int rc = 0;

	m->in_tensor = 0;
	if (m->active) {
		m->active = 0;
		m->loaded++;
		if (m->cb->end)
			rc = m->cb->end(m->cb->ctx, &m->d, m->buf);
	}
	return rc < 0 ? rc : 0;
}

static int begin_tensor(struct mem_out *m, const uint8_t *p, size_t len)
{
	struct stp_tensor_info ti;
	void *buf = NULL;
	int rc;

	if ((rc = stp_tensor_parse(p, len, &ti)) < 0)
		return rc;
	memcpy(m->name, ti.name, ti.namelen);
	m->name[ti.namelen] = '\0';
	memcpy(m->dtype, ti.dtype, sizeof m->dtype);
	memcpy(m->shape, ti.shape, sizeof m->shape);
	m->d = (struct stp_tensor_desc){ m->file, m->name, m->dtype, ti.ndim,
					 m->shape, ti.nbytes };
	m->offset = ti.offset;
	m->left = ti.nbytes;
	m->in_tensor = 1;
	if ((rc = m->cb->begin(m->cb->ctx, &m->d, &buf)) < 0)
		return rc;
	m->buf = buf;
	m->active = buf != NULL;
	return m->left == 0 ? tensor_done(m) : 0;
}

/* Calls fn(ctx, off, p, len) for each piece of a DATA frame's bytes, off
 * being the file offset of the piece's first byte. 0, fn's code, or
 * STP_EFRAME. */
typedef int data_fn(void *ctx, uint64_t off, const uint8_t *p, size_t len);

static int each_piece(const struct iovec *v, int n, data_fn *fn, void *ctx)
{
	uint64_t off;
	int rc;

	if (n < 1 || v[0].iov_len < 8)
		return STP_EFRAME;
	off = stp_get64(v[0].iov_base);
	for (int i = 0; i < n; i++) {
		const uint8_t *p = v[i].iov_base;
		size_t len = v[i].iov_len;

		if (i == 0) {
			p += 8;
			len -= 8;
		}
		if (len && (rc = fn(ctx, off, p, len)) < 0)
			return rc;
		off += len;
	}
	return 0;
}

static int tensor_piece(void *ctx, uint64_t off, const uint8_t *p,
			size_t len)
{
	struct mem_out *m = ctx;

	if (!m->in_tensor)
		return 0;
	/* a tensor's DATA frames hold its bytes, in order */
	if (off != m->offset + (m->d.nbytes - m->left) || len > m->left)
		return STP_EFRAME;
	if (m->active)
		memcpy(m->buf + (off - m->offset), p, len);
	m->left -= len;
	return 0;
}

static int data_frame(struct mem_out *m, const struct iovec *v, int n)
{
	int rc = each_piece(v, n, tensor_piece, m);

	if (rc < 0)
		return rc;
	return m->in_tensor && m->left == 0 ? tensor_done(m) : 0;
}

static int mem_frame(void *ctx, unsigned type, const struct iovec *v, int n,
		     const uint32_t *crc)
{
	struct mem_out *m = ctx;
	const uint8_t *p;
	size_t len;
	int rc = 0;

	if (type == STP_F_DATA) {
		rc = data_frame(m, v, n);
	} else if (type == STP_F_FILE || type == STP_F_TENSOR ||
		   type == STP_F_FILE_END) {
		if (m->in_tensor)
			return STP_EFRAME;   /* a tensor cut short */
		if (!(p = gather(m, v, n, &len)))
			return STP_EFRAME;
		if (type == STP_F_FILE) {
			struct stp_file_info fi;

			if ((rc = stp_file_parse(p, len, &fi)) < 0)
				return rc;
			memcpy(m->file, fi.path, fi.pathlen);
			m->file[fi.pathlen] = '\0';
		} else if (type == STP_F_TENSOR) {
			rc = begin_tensor(m, p, len);
		}
	}
	if (rc < 0)
		return rc;
	return m->has_next ? m->next.frame(m->next.ctx, type, v, n, crc) : 0;
}

/* Feeds the frames of r to a decoding stage on threads threads, from the
 * reader's position, into m, until the stream ends or m->stop says. */
static long load_run(struct stp_reader *r, struct mem_out *m, unsigned threads)
{
	struct stp_stage st = { 0 };
	struct stp_joiner *j = NULL;
	struct stp_sink *k = NULL;
	struct stp_out out = { mem_frame, m };
	uint64_t pos;
	int in_stage, rc;

	if ((rc = stp_sink_open_null(&k)) < 0 ||
	    (rc = stp_joiner_open(&j, k)) < 0 ||
	    (rc = stp_codec_open(&st, STP_OP_DECODE | STP_OP_MERGE,
				 resolve_threads(threads), 0)) < 0)
		goto out;
	m->next = stp_joiner_out(j);
	m->has_next = 1;
	rc = stp_run_stage(r, &st, &out, &pos, &in_stage);
	if (rc == 0 && m->in_tensor)
		rc = STP_ETRUNCATED;
out:
	if (st.free)
		st.free(st.self);
	stp_joiner_free(j);
	if (k) {
		if (rc == 0)
			rc = stp_sink_finish(k);
		else
			stp_sink_abort(k);
	}
	return rc < 0 ? rc : m->loaded;
}

long stp_stream_load(int fd, const struct stp_load_cb *cb, unsigned threads)
{
	struct stp_reader *r;
	struct mem_out *m;
	long rc;

	if (!cb || !cb->begin)
		return STP_EUNSUPPORTED;
	if (!(m = calloc(1, sizeof *m)))
		return STP_ENOMEM;
	m->cb = cb;
	if ((rc = stp_reader_open(&r, fd)) == 0) {
		rc = load_run(r, m, threads);
		stp_reader_free(r);
	}
	free(m);
	return rc;
}

long stp_stz_load_all(stp_stz *z, const struct stp_load_cb *cb,
		      unsigned threads)
{
	if (lseek(z->fd, 0, SEEK_SET) < 0)
		return STP_EIO;
	return stp_stream_load(z->fd, cb, threads);
}

/* One tensor: its callbacks take the one buffer and note the end. */
struct one {
	void *buf;
	int done;
};

static int one_begin(void *ctx, const struct stp_tensor_desc *t, void **buf)
{
	struct one *o = ctx;

	(void)t;
	*buf = o->buf;
	return 0;
}

static int one_end(void *ctx, const struct stp_tensor_desc *t, void *buf)
{
	struct one *o = ctx;

	(void)t;
	(void)buf;
	o->done = 1;
	return 0;
}

/* What the stage hands on after the tensor is complete is dropped. */
static int one_frame(void *ctx, unsigned type, const struct iovec *v, int n,
		     const uint32_t *crc)
{
	struct mem_out *m = ctx;
	struct one *o = m->cb->ctx;

	if (o->done)
		return 0;
	if (type == STP_F_TENSOR && m->loaded + m->in_tensor)
		return STP_ECORRUPT;
	return mem_frame(ctx, type, v, n, crc);
}

int stp_stz_load(stp_stz *z, size_t i, void *buf, size_t cap,
		 unsigned threads)
{
	struct tensor *t;
	struct one o = { buf, 0 };
	struct stp_load_cb cb = { one_begin, one_end, &o };
	struct stp_out out;
	struct stp_frame f, e = { .type = STP_F_END };
	struct mem_out *m;
	int rc = 0;

	if (i >= z->n)
		return STP_ERANGE;
	t = &z->t[i];
	if (cap < t->d.nbytes)
		return STP_ETOOBIG;
	if (t->d.nbytes == 0)
		return 0;
	threads = resolve_threads(threads);
	if (z->m && z->dec_threads != threads)
		drop_decoder(z);
	if (!z->m) {
		if (!(z->m = malloc(sizeof *z->m)) ||
		    (rc = stp_reader_open(&z->r, z->fd)) < 0 ||
		    (rc = stp_codec_open(&z->st, STP_OP_DECODE | STP_OP_MERGE,
					 threads, 0)) < 0) {
			drop_decoder(z);
			return rc < 0 ? rc : STP_ENOMEM;
		}
		z->dec_threads = threads;
	}
	m = z->m;
	m->cb = &cb;
	m->has_next = 0;
	m->active = m->in_tensor = 0;
	m->loaded = 0;
	m->name[0] = '\0';
	out = (struct stp_out){ one_frame, m };
	snprintf(m->file, sizeof m->file, "%s", t->d.file);
	if ((t->models > t->model0 &&
	     (rc = stp_feed_models(z->fd, z->model + t->model0,
				   t->models - t->model0, &z->st, &out,
				   z->buf)) < 0) ||
	    (rc = stp_reader_seek(z->r, t->pos)) < 0)
		goto out;
	/* The tensor's frames, up to the first frame after them (or until
	 * the stage has given all its bytes back); then END, which makes
	 * the stage hand back what its threads still hold and forget the
	 * models, ready for the next tensor. */
	for (int first = 1; rc == 0 && !o.done; first = 0) {
		int got = stp_reader_next(z->r, &f);

		if (got <= 0) {
			rc = got < 0 ? got : STP_ETRUNCATED;
			break;
		}
		if (first ? f.type != STP_F_TENSOR
			  : f.type == STP_F_TENSOR || f.type == STP_F_FILE ||
			    f.type == STP_F_FILE_END || f.type == STP_F_END)
			break;
		rc = z->st.frame(z->st.self, &f, &out);
	}
	if (rc == 0)
		rc = z->st.frame(z->st.self, &e, &out);
	if (rc == 0 && !o.done)
		rc = STP_ECORRUPT;
	if (rc == 0 && (strcmp(m->name, t->d.name) != 0 ||
			m->offset != t->offset))
		rc = STP_ECORRUPT;
out:
	if (rc < 0)
		drop_decoder(z);   /* the next load starts afresh */
	return rc < 0 ? rc : 0;
}

/* One whole file: its bytes where their offsets say, every frame on to a
 * joiner that checks its length and CRC-32; done after its FILE_END. */
struct file_out {
	uint8_t *buf;
	size_t cap;
	uint64_t got;
	struct stp_out next;
	int done, seen_file;
};

static int file_piece(void *ctx, uint64_t off, const uint8_t *p, size_t len)
{
	struct file_out *o = ctx;

	if (off > o->cap || len > o->cap - off)
		return STP_ETOOBIG;
	memcpy(o->buf + off, p, len);
	if (off + len > o->got)
		o->got = off + len;
	return 0;
}

static int file_frame(void *ctx, unsigned type, const struct iovec *v, int n,
		      const uint32_t *crc)
{
	struct file_out *o = ctx;
	int rc;

	if (o->done || type == STP_F_END)
		return 0;
	if (!o->seen_file && type != STP_F_FILE)
		return STP_ECORRUPT;
	o->seen_file = 1;
	if (type == STP_F_DATA && (rc = each_piece(v, n, file_piece, o)) < 0)
		return rc;
	if ((rc = o->next.frame(o->next.ctx, type, v, n, crc)) < 0)
		return rc;
	if (type == STP_F_FILE_END)
		o->done = 1;
	return 0;
}

int64_t stp_stz_read_file(stp_stz *z, size_t i, void *buf, size_t cap,
			  unsigned threads)
{
	struct file *fl;
	struct stp_reader *r = NULL;
	struct stp_stage st = { 0 };
	struct stp_joiner *j = NULL;
	struct stp_sink *k = NULL;
	struct file_out o = { buf, cap, 0, { 0 }, 0, 0 };
	struct stp_out out = { file_frame, &o };
	struct stp_frame f, e = { .type = STP_F_END };
	uint8_t *mbuf = NULL;
	int rc;

	if (i >= z->nfiles)
		return STP_ERANGE;
	fl = &z->files[i];
	if (fl->d.size != UINT64_MAX && cap < fl->d.size)
		return STP_ETOOBIG;
	if ((rc = stp_sink_open_null(&k)) < 0 ||
	    (rc = stp_joiner_open(&j, k)) < 0 ||
	    (rc = stp_reader_open(&r, z->fd)) < 0 ||
	    (rc = stp_codec_open(&st, STP_OP_DECODE | STP_OP_MERGE,
				 resolve_threads(threads), 0)) < 0)
		goto out;
	o.next = stp_joiner_out(j);
	if (fl->models > fl->model0) {
		if (!(mbuf = malloc(STP_MAX_PAYLOAD + 4))) {
			rc = STP_ENOMEM;
			goto out;
		}
		rc = stp_feed_models(z->fd, z->model + fl->model0,
				     fl->models - fl->model0, &st, &out, mbuf);
	}
	if (rc == 0)
		rc = stp_reader_seek_file(r, fl->pos);
	/* FILE to FILE_END, then END to have the stage hand back all */
	for (int first = 1; rc == 0 && !o.done; first = 0) {
		int got = stp_reader_next(r, &f);

		if (got <= 0) {
			rc = got < 0 ? got : STP_ETRUNCATED;
			break;
		}
		if ((first && f.type != STP_F_FILE) ||
		    (!first && (f.type == STP_F_FILE || f.type == STP_F_END))) {
			rc = STP_ECORRUPT;
			break;
		}
		rc = st.frame(st.self, &f, &out);
		if (f.type == STP_F_FILE_END)
			break;
	}
	if (rc == 0)
		rc = st.frame(st.self, &e, &out);
	if (rc == 0 && !o.done)
		rc = STP_ECORRUPT;
out:
	free(mbuf);
	if (st.free)
		st.free(st.self);
	stp_reader_free(r);
	stp_joiner_free(j);
	if (k)
		stp_sink_abort(k);
	return rc < 0 ? rc : (int64_t)o.got;
}

/* ---- compressing from memory ---- */

static int model_kind(const struct stp_compress_opts *o, unsigned *kind)
{
	const char *s = o ? o->model : NULL;

	if (!s || strcmp(s, "order0") == 0)
		*kind = 0;
	else if (strcmp(s, "ctx") == 0)
		*kind = STP_MODEL_CTX;
	else if (strcmp(s, "adaptive0") == 0)
		*kind = STP_MODEL_ADAPTIVE0;
	else if (strcmp(s, "lstm") == 0)
		*kind = STP_MODEL_LSTM;
	else if (strcmp(s, "auto") == 0)
		*kind = STP_MODEL_AUTO;
	else
		return STP_EUNSUPPORTED;
	return 0;
}

/* Bytes served from a list of pieces. */
struct pieces {
	const struct iovec *v;
	size_t n, i, off;
};

static long pieces_read(void *ctx, void *buf, size_t n)
{
	struct pieces *p = ctx;
	size_t got = 0;

	while (got < n && p->i < p->n) {
		size_t k = p->v[p->i].iov_len - p->off;

		if (k > n - got)
			k = n - got;
		memcpy((uint8_t *)buf + got,
		       (const uint8_t *)p->v[p->i].iov_base + p->off, k);
		got += k;
		p->off += k;
		if (p->off == p->v[p->i].iov_len) {
			p->i++;
			p->off = 0;
		}
	}
	return (long)got;
}

static int compress_pieces(int out_fd, const char *file_name, unsigned kind,
			   const struct iovec *v, size_t n,
			   const struct stp_compress_opts *opts)
{
	struct stp_cpipe *cp;
	struct pieces p = { v, n, 0, 0 };
	struct stp_source src = { pieces_read, &p };
	struct stp_file_info fi = { .kind = kind, .mode = 0644, .mtime = 0,
				    .path = file_name,
				    .pathlen = strlen(file_name) };
	unsigned mk;
	int rc;

	if ((rc = model_kind(opts, &mk)) < 0 ||
	    (rc = stp_path_check(fi.path, fi.pathlen)) < 0)
		return rc;
	fi.size = 0;
	for (size_t i = 0; i < n; i++)
		fi.size += v[i].iov_len;
	if ((rc = stp_cpipe_open(&cp, out_fd,
				 opts ? resolve_threads(opts->threads) : 1,
				 mk)) < 0)
		return rc;
	rc = stp_split_file(stp_cpipe_splitter(cp), stp_cpipe_out(cp), &fi,
			    &src);
	if (rc == 0)
		rc = stp_cpipe_end(cp);
	stp_cpipe_free(cp);
	return rc;
}

int stp_compress_buffer(int out_fd, const char *file_name, const void *buf,
			size_t len, const struct stp_compress_opts *opts)
{
	struct iovec v = { (void *)buf, len };
	size_t n = strlen(file_name);
	unsigned kind = n >= 12 && strcmp(file_name + n - 12, ".safetensors") == 0
			? STP_KIND_SAFETENSORS : STP_KIND_OTHER;

	return compress_pieces(out_fd, file_name, kind, &v, len ? 1 : 0, opts);
}

/* A growing string. */
struct str {
	char *p;
	size_t n, cap;
	int err;
};

static void put(struct str *s, const char *p, size_t n)
{
	if (s->err)
		return;
	if (grow((void **)&s->p, &s->cap, s->n + n + 1, 1) < 0) {
		s->err = STP_ENOMEM;
		return;
	}
	memcpy(s->p + s->n, p, n);
	s->n += n;
}

static void puts_(struct str *s, const char *p)
{
	put(s, p, strlen(p));
}

/* A JSON string: quotes, backslashes and control bytes escaped. */
static void put_json(struct str *s, const char *p)
{
	put(s, "\"", 1);
	for (; *p; p++) {
		unsigned char c = (unsigned char)*p;
		char e[8];

		if (c == '"' || c == '\\') {
			e[0] = '\\';
			e[1] = (char)c;
			put(s, e, 2);
		} else if (c < 0x20) {
			snprintf(e, sizeof e, "\\u%04x", c);
			put(s, e, 6);
		} else {
			put(s, p, 1);
		}
	}
	put(s, "\"", 1);
}

static void put_u64(struct str *s, uint64_t v)
{
	char b[24];

	puts_(s, (snprintf(b, sizeof b, "%llu", (unsigned long long)v), b));
}

int stp_compress_tensors(int out_fd, const char *file_name,
			 const struct stp_tensor_in *t, size_t n,
			 const char *metadata,
			 const struct stp_compress_opts *opts)
{
	struct str h = { 0 };
	struct iovec *v;
	uint64_t off = 0;
	uint8_t len8[8];
	size_t nv = 0;
	int rc = 0;

	puts_(&h, "{");
	if (metadata) {
		json_error_t err;
		json_t *j = json_loads(metadata, JSON_REJECT_DUPLICATES, &err);
		const char *k;
		json_t *val;
		char *dump;

		if (!j || !json_is_object(j)) {
			json_decref(j);
			free(h.p);
			return STP_EJSON;
		}
		json_object_foreach(j, k, val) {
			if (!json_is_string(val)) {
				json_decref(j);
				free(h.p);
				return STP_EJSON;
			}
		}
		dump = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		if (!dump) {
			free(h.p);
			return STP_ENOMEM;
		}
		puts_(&h, "\"__metadata__\":");
		puts_(&h, dump);
		free(dump);
	}
	for (size_t i = 0; i < n; i++) {
		if (!t[i].name || !t[i].dtype || (t[i].ndim && !t[i].shape) ||
		    (t[i].nbytes && !t[i].data)) {
			free(h.p);
			return STP_EHEADER;
		}
		if (i || metadata)
			puts_(&h, ",");
		put_json(&h, t[i].name);
		puts_(&h, ":{\"dtype\":");
		put_json(&h, t[i].dtype);
		puts_(&h, ",\"shape\":[");
		for (unsigned d = 0; d < t[i].ndim; d++) {
			if (d)
				puts_(&h, ",");
			put_u64(&h, t[i].shape[d]);
		}
		puts_(&h, "],\"data_offsets\":[");
		put_u64(&h, off);
		puts_(&h, ",");
		off += t[i].nbytes;
		put_u64(&h, off);
		puts_(&h, "]}");
	}
	puts_(&h, "}");
	while (!h.err && (h.n + 8) % 8)
		puts_(&h, " ");
	if (h.err) {
		free(h.p);
		return h.err;
	}
	if (!(v = calloc(n + 2, sizeof *v))) {
		free(h.p);
		return STP_ENOMEM;
	}
	stp_put64(len8, h.n);
	v[nv++] = (struct iovec){ len8, 8 };
	v[nv++] = (struct iovec){ h.p, h.n };
	for (size_t i = 0; i < n; i++)
		if (t[i].nbytes)
			v[nv++] = (struct iovec){ (void *)t[i].data,
						  t[i].nbytes };
	rc = compress_pieces(out_fd, file_name, STP_KIND_SAFETENSORS, v, nv,
			     opts);
	free(v);
	free(h.p);
	return rc;
}
