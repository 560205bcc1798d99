#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "io.h"
#include "stream.h"

static const uint8_t stream_magic[8] = {
	0x89, 'S', 'T', 'P', 0x0D, 0x0A, 0x1A, 0x0A
};

#define FRAME_HEADER 8
#define END_PAYLOAD 24
/* Room for two maximal frames, so that refilling moves at most a partial
 * frame to the front and does so rarely. */
#define READ_BUFFER (2 * (STP_MAX_PAYLOAD + STP_FRAME_OVERHEAD))
/* Frames with smaller payloads are copied into the write buffer; larger
 * ones go out with writev() straight from the caller's memory. */
#define WRITE_BUFFER (1u << 20)
#define READ_CHUNK (64u << 10)
#define COPY_LIMIT (64u << 10)
#define PIPE_SIZE (1u << 20)

struct totals {
	uint64_t frames;
	uint64_t bytes;
	uint32_t files;
};

struct stp_reader {
	int fd;
	uint8_t *buf;
	size_t start, end;      /* unread bytes are buf[start..end) */
	int eof;
	uint64_t pos;           /* input offset of buf[start] */
	uint64_t fault_pos;
	int in_segment;
	int in_file;
	unsigned segments;
	int seeked;             /* totals unknown until the next segment */
	int defer_crc;
	struct totals t;
};

struct stp_writer {
	int fd;
	uint8_t *buf;
	size_t used;
	int in_segment;
	struct totals t;
};

/* Larger pipe buffers let the stages of a pipeline run in parallel with
 * fewer switches; a failure only costs speed. */
static void widen_pipe(int fd)
{
	(void)fcntl(fd, F_SETPIPE_SZ, (int)PIPE_SIZE);
}

int stp_reader_open(struct stp_reader **out_r, int fd)
{
	struct stp_reader *r = calloc(1, sizeof *r);

	if (!r)
		return STP_ENOMEM;
	r->buf = malloc(READ_BUFFER);
	if (!r->buf) {
		free(r);
		return STP_ENOMEM;
	}
	r->fd = fd;
	widen_pipe(fd);
	*out_r = r;
	return 0;
}

void stp_reader_free(struct stp_reader *r)
{
	if (!r)
		return;
	free(r->buf);
	free(r);
}

uint64_t stp_reader_pos(const struct stp_reader *r)
{
	return r->fault_pos;
}

/* Makes at least n unread bytes available unless the input ends first.
 * Returns the number available (less than n only at end of input) or
 * STP_EIO. */
static long fill(struct stp_reader *r, size_t n)
{
	if (r->end - r->start >= n || r->eof)
		return (long)(r->end - r->start);
	/* The unread bytes (less than a frame) go to the front before each
	 * read, and reads ask for READ_CHUNK more than is needed: the part
	 * of the buffer ever touched stays near the largest frame, since on
	 * these machines memory touched for the first time is slow. */
	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	while (r->end < n) {
		size_t want = n - r->end + READ_CHUNK;
		ssize_t got;

		if (want > READ_BUFFER - r->end)
			want = READ_BUFFER - r->end;
		got = read(r->fd, r->buf + r->end, want);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return STP_EIO;
		}
		if (got == 0) {
			r->eof = 1;
			break;
		}
		r->end += (size_t)got;
	}
	return (long)r->end;
}

static void consume(struct stp_reader *r, size_t n)
{
	r->start += n;
	r->pos += n;
}

static int fault(struct stp_reader *r, int code)
{
	r->fault_pos = r->pos;
	return code;
}

static int read_stream_header(struct stp_reader *r)
{
	long have = fill(r, STP_HEADER_SIZE);
	const uint8_t *h = r->buf + r->start;

	if (have < 0)
		return fault(r, (int)have);
	if (have == 0)
		return r->segments ? 0 : fault(r, STP_EEMPTY);
	if (memcmp(h, stream_magic, (size_t)have < 8 ? (size_t)have : 8) != 0)
		return fault(r, r->segments ? STP_ETRAILING : STP_EMAGIC);
	if (have < STP_HEADER_SIZE)
		return fault(r, STP_ETRUNCATED);
	if (stp_crc32(0, h, 12) != stp_get32(h + 12))
		return fault(r, STP_ECRC);
	if (stp_get16(h + 8) != STP_STREAM_VERSION)
		return fault(r, STP_EVERSION);
	if (stp_get16(h + 10) != 0)
		return fault(r, STP_ERESERVED);
	consume(r, STP_HEADER_SIZE);
	r->seeked = 0;
	r->in_segment = 1;
	r->in_file = 0;
	memset(&r->t, 0, sizeof r->t);
	r->t.bytes = STP_HEADER_SIZE;
	return 1;
}

/* The nesting rules of formats/stream.md, "Files". */
static int check_grammar(struct stp_reader *r, unsigned type)
{
	switch (type) {
	case STP_F_FILE:
		if (r->in_file)
			return STP_EORDER;
		r->in_file = 1;
		r->t.files++;
		return 0;
	case STP_F_TENSOR:
	case STP_F_DATA:
		return r->in_file ? 0 : STP_EORDER;
	case STP_F_FILE_END:
		if (!r->in_file)
			return STP_EORDER;
		r->in_file = 0;
		return 0;
	case STP_F_END:
		return r->in_file ? STP_EORDER : 0;
	default:
		return 0;
	}
}

static int check_end(struct stp_reader *r, const uint8_t *p, uint32_t len)
{
	if (len != END_PAYLOAD)
		return STP_EFRAME;
	if (stp_get32(p + 20) != 0)
		return STP_ERESERVED;
	if (stp_get64(p) != r->t.frames || stp_get64(p + 8) != r->t.bytes ||
	    stp_get32(p + 16) != r->t.files)
		return STP_ETOTALS;
	return 0;
}

int stp_reader_next(struct stp_reader *r, struct stp_frame *out)
{
	const uint8_t *h;
	uint32_t len;
	unsigned type;
	long have;
	int rc;

	if (!r->in_segment) {
		rc = read_stream_header(r);
		if (rc <= 0)
			return rc;
	}
	have = fill(r, FRAME_HEADER);
	if (have < 0)
		return fault(r, (int)have);
	if (have < FRAME_HEADER)
		return fault(r, STP_ETRUNCATED);
	h = r->buf + r->start;
	type = h[0];
	len = stp_get32(h + 4);
	if (type == 0)
		return fault(r, STP_EFRAME);
	if (h[1] != 0 || stp_get16(h + 2) != 0)
		return fault(r, STP_ERESERVED);
	if (len > STP_MAX_PAYLOAD)
		return fault(r, STP_ETOOBIG);
	have = fill(r, FRAME_HEADER + (size_t)len + 4);
	if (have < 0)
		return fault(r, (int)have);
	if ((size_t)have < FRAME_HEADER + (size_t)len + 4)
		return fault(r, STP_ETRUNCATED);
	h = r->buf + r->start;
	out->crc = stp_get32(h + FRAME_HEADER + len);
	out->crc_pending = r->defer_crc && type >= STP_F_PLANE_FIRST &&
			   type <= STP_F_CODED_LAST;
	if (out->crc_pending) {
		out->body_crc = 0;
	} else if (stp_frame_verify(type, h + FRAME_HEADER, len, out->crc,
				    &out->body_crc) < 0) {
		return fault(r, STP_ECRC);
	}
	rc = check_grammar(r, type);
	if (rc == 0 && type == STP_F_END)
		rc = r->seeked ? 0 : check_end(r, h + FRAME_HEADER, len);
	if (rc < 0)
		return fault(r, rc);

	out->type = type;
	out->len = len;
	out->payload = h + FRAME_HEADER;
	out->pos = r->pos;
	consume(r, FRAME_HEADER + (size_t)len + 4);
	if (type == STP_F_END) {
		r->in_segment = 0;
		r->segments++;
	} else {
		r->t.frames++;
		r->t.bytes += FRAME_HEADER + (uint64_t)len + 4;
	}
	return 1;
}

void stp_reader_defer_crc(struct stp_reader *r, int on)
{
	r->defer_crc = on;
}

int stp_frame_verify(unsigned type, const uint8_t *payload, uint32_t len,
		     uint32_t crc, uint32_t *out_body_crc)
{
	uint8_t h[FRAME_HEADER];
	uint32_t c;

	h[0] = (uint8_t)type;
	h[1] = 0;
	stp_put16(h + 2, 0);
	stp_put32(h + 4, len);
	c = stp_crc32(0, h, FRAME_HEADER);
	if (len >= 8) {
		c = stp_crc32(c, payload, 8);
		*out_body_crc = stp_crc32(0, payload + 8, len - 8);
		c = stp_crc32_combine(c, *out_body_crc, len - 8);
	} else {
		*out_body_crc = 0;
		c = stp_crc32(c, payload, len);
	}
	return c == crc ? 0 : STP_ECRC;
}

int stp_reader_seek(struct stp_reader *r, uint64_t off)
{
	if (lseek(r->fd, (off_t)off, SEEK_SET) < 0)
		return STP_EIO;
	r->start = r->end = 0;
	r->eof = 0;
	r->pos = off;
	r->in_segment = 1;
	r->in_file = 1;
	r->seeked = 1;
	return 0;
}

int stp_reader_seek_file(struct stp_reader *r, uint64_t off)
{
	int rc = stp_reader_seek(r, off);

	r->in_file = 0;
	return rc;
}

int stp_writer_open(struct stp_writer **out_w, int fd)
{
	struct stp_writer *w = calloc(1, sizeof *w);

	if (!w)
		return STP_ENOMEM;
	w->buf = malloc(WRITE_BUFFER);
	if (!w->buf) {
		free(w);
		return STP_ENOMEM;
	}
	w->fd = fd;
	widen_pipe(fd);
	*out_w = w;
	return 0;
}

void stp_writer_free(struct stp_writer *w)
{
	if (!w)
		return;
	free(w->buf);
	free(w);
}

int stp_writer_flush(struct stp_writer *w)
{
	int rc = stp_write_all(w->fd, w->buf, w->used);

	w->used = 0;
	return rc;
}

int stp_writer_in_segment(const struct stp_writer *w)
{
	return w->in_segment;
}

static int begin_segment(struct stp_writer *w)
{
	uint8_t *h = w->buf + w->used;

	if (w->used + STP_HEADER_SIZE > WRITE_BUFFER) {
		int rc = stp_writer_flush(w);
		if (rc < 0)
			return rc;
		h = w->buf;
	}
	memcpy(h, stream_magic, 8);
	stp_put16(h + 8, STP_STREAM_VERSION);
	stp_put16(h + 10, 0);
	stp_put32(h + 12, stp_crc32(0, h, 12));
	w->used += STP_HEADER_SIZE;
	w->in_segment = 1;
	memset(&w->t, 0, sizeof w->t);
	w->t.bytes = STP_HEADER_SIZE;
	return 0;
}

static int write_frame(struct stp_writer *w, unsigned type,
		       const struct iovec *iov, int n, const uint32_t *last_crc)
{
	uint8_t head[FRAME_HEADER], tail[4];
	size_t len = 0;
	uint32_t crc;
	int rc;

	if (type == 0 || type > 0xFF)
		return STP_EFRAME;
	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	if (len > STP_MAX_PAYLOAD)
		return STP_ETOOBIG;
	if (!w->in_segment && (rc = begin_segment(w)) < 0)
		return rc;

	head[0] = (uint8_t)type;
	head[1] = 0;
	stp_put16(head + 2, 0);
	stp_put32(head + 4, (uint32_t)len);
	crc = stp_crc32(0, head, FRAME_HEADER);
	for (int i = 0; i < n; i++) {
		if (i == n - 1 && last_crc)
			crc = stp_crc32_combine(crc, *last_crc, iov[i].iov_len);
		else
			crc = stp_crc32(crc, iov[i].iov_base, iov[i].iov_len);
	}
	stp_put32(tail, crc);

	if (len <= COPY_LIMIT) {
		if (w->used + len + STP_FRAME_OVERHEAD > WRITE_BUFFER &&
		    (rc = stp_writer_flush(w)) < 0)
			return rc;
		memcpy(w->buf + w->used, head, FRAME_HEADER);
		w->used += FRAME_HEADER;
		for (int i = 0; i < n; i++) {
			memcpy(w->buf + w->used, iov[i].iov_base,
			       iov[i].iov_len);
			w->used += iov[i].iov_len;
		}
		memcpy(w->buf + w->used, tail, 4);
		w->used += 4;
	} else {
		struct iovec v[2 + 16 + 1];
		int k = 0;

		if (n > 16)
			return STP_EFRAME;
		if (w->used) {
			v[k].iov_base = w->buf;
			v[k++].iov_len = w->used;
		}
		v[k].iov_base = head;
		v[k++].iov_len = FRAME_HEADER;
		for (int i = 0; i < n; i++)
			v[k++] = iov[i];
		v[k].iov_base = tail;
		v[k++].iov_len = 4;
		rc = stp_writev_all(w->fd, v, k);
		w->used = 0;
		if (rc < 0)
			return rc;
	}
	w->t.frames++;
	w->t.bytes += len + STP_FRAME_OVERHEAD;
	if (type == STP_F_FILE)
		w->t.files++;
	return 0;
}

int stp_writev(struct stp_writer *w, unsigned type, const struct iovec *iov,
	       int n)
{
	return write_frame(w, type, iov, n, NULL);
}

int stp_writev_crc(struct stp_writer *w, unsigned type,
		   const struct iovec *iov, int n, uint32_t last_crc)
{
	return write_frame(w, type, iov, n, &last_crc);
}

int stp_write(struct stp_writer *w, unsigned type, const void *payload,
	      size_t len)
{
	struct iovec v = { (void *)payload, len };

	return stp_writev(w, type, &v, 1);
}

int stp_writer_end(struct stp_writer *w)
{
	uint8_t p[END_PAYLOAD];
	struct totals t;
	int rc;

	if (!w->in_segment && (rc = begin_segment(w)) < 0)
		return rc;
	t = w->t;
	stp_put64(p, t.frames);
	stp_put64(p + 8, t.bytes);
	stp_put32(p + 16, t.files);
	stp_put32(p + 20, 0);
	rc = stp_write(w, STP_F_END, p, sizeof p);
	w->in_segment = 0;
	if (rc < 0)
		return rc;
	return stp_writer_flush(w);
}

static int writer_frame(void *ctx, unsigned type, const struct iovec *iov,
			int n, const uint32_t *last_crc)
{
	struct stp_writer *w = ctx;

	if (type == STP_F_END)
		return stp_writer_end(w);
	return write_frame(w, type, iov, n, last_crc);
}

struct stp_out stp_writer_out(struct stp_writer *w)
{
	struct stp_out out = { writer_frame, w };

	return out;
}

int stp_out_copy(struct stp_out *out, const struct stp_frame *f)
{
	struct iovec v[2] = {
		{ (void *)f->payload, f->len < 8 ? f->len : 8 },
		{ (void *)(f->payload + 8), f->len < 8 ? 0 : f->len - 8 },
	};

	if (f->type == STP_F_END)
		return out->frame(out->ctx, STP_F_END, NULL, 0, NULL);
	/* The reader has the CRC of payload[8..] already. */
	return out->frame(out->ctx, f->type, v, f->len < 8 ? 1 : 2,
			  f->len < 8 ? NULL : &f->body_crc);
}

/* --- payloads --- */

static const struct {
	const char *name;
	unsigned size;
} dtypes[] = {
	{ "F64", 8 }, { "F32", 4 }, { "F16", 2 }, { "BF16", 2 },
	{ "F8_E4M3", 1 }, { "F8_E5M2", 1 }, { "F8_E8M0", 1 },
	{ "I64", 8 }, { "I32", 4 }, { "I16", 2 }, { "I8", 1 },
	{ "U64", 8 }, { "U32", 4 }, { "U16", 2 }, { "U8", 1 },
	{ "BOOL", 1 },
};

unsigned stp_dtype_size(const char *dtype)
{
	for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
		if (strcmp(dtype, dtypes[i].name) == 0)
			return dtypes[i].size;
	return 0;
}

/* Whether a is a folder on the way to b. */
static int is_parent(const char *a, const char *b)
{
	size_t n = strlen(a);

	return strncmp(a, b, n) == 0 && b[n] == '/';
}

int stp_paths_add(struct stp_paths *s, const char *path, size_t len)
{
	char *copy = malloc(len + 1);

	if (!copy)
		return STP_ENOMEM;
	memcpy(copy, path, len);
	copy[len] = '\0';
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->p[i], copy) == 0 || is_parent(s->p[i], copy) ||
		    is_parent(copy, s->p[i])) {
			free(copy);
			return STP_EPATH;
		}
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 16;
		char **p = realloc(s->p, cap * sizeof *p);

		if (!p) {
			free(copy);
			return STP_ENOMEM;
		}
		s->p = p;
		s->cap = cap;
	}
	s->p[s->n++] = copy;
	return 0;
}

void stp_paths_clear(struct stp_paths *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->p[i]);
	s->n = 0;
}

void stp_paths_free(struct stp_paths *s)
{
	stp_paths_clear(s);
	free(s->p);
	s->p = NULL;
	s->cap = 0;
}

int stp_path_check(const char *path, size_t len)
{
	size_t comp = 0;

	if (len == 0 || len > STP_MAX_PATH || path[0] == '/')
		return STP_EPATH;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || path[i] == '/') {
			size_t n = i - comp;
			const char *c = path + comp;

			if (n == 0 || (n == 1 && c[0] == '.') ||
			    (n == 2 && c[0] == '.' && c[1] == '.'))
				return STP_EPATH;
			comp = i + 1;
		} else if (path[i] == '\0' || path[i] == '\\') {
			return STP_EPATH;
		}
	}
	return 0;
}

int stp_file_build(const struct stp_file_info *f, uint8_t *buf, size_t cap)
{
	if (stp_path_check(f->path, f->pathlen) < 0)
		return STP_EPATH;
	if (cap < 24 + f->pathlen)
		return STP_ETOOBIG;
	buf[0] = (uint8_t)f->kind;
	buf[1] = 0;
	stp_put16(buf + 2, (uint16_t)f->pathlen);
	stp_put32(buf + 4, f->mode & 07777);
	stp_put64(buf + 8, (uint64_t)f->mtime);
	stp_put64(buf + 16, f->size);
	memcpy(buf + 24, f->path, f->pathlen);
	return (int)(24 + f->pathlen);
}

int stp_file_parse(const uint8_t *p, size_t len, struct stp_file_info *out)
{
	size_t plen;

	if (len < 24)
		return STP_EFRAME;
	plen = stp_get16(p + 2);
	if (len != 24 + plen)
		return STP_EFRAME;
	if (p[1] != 0)
		return STP_ERESERVED;
	if (p[0] != STP_KIND_SAFETENSORS && p[0] != STP_KIND_OTHER)
		return STP_EFRAME;
	out->kind = p[0];
	out->mode = stp_get32(p + 4);
	if (out->mode & ~07777u)
		return STP_EFRAME;
	out->mtime = (int64_t)stp_get64(p + 8);
	out->size = stp_get64(p + 16);
	out->path = (const char *)p + 24;
	out->pathlen = plen;
	return stp_path_check(out->path, plen);
}

int stp_tensor_build(const struct stp_tensor_info *t, uint8_t *buf, size_t cap)
{
	size_t dlen = strlen(t->dtype);
	size_t need = 24 + 8 * (size_t)t->ndim + dlen + t->namelen;
	uint8_t *q;

	if (t->ndim > STP_MAX_NDIM || dlen == 0 || dlen > STP_MAX_DTYPE ||
	    t->namelen > 0xFFFF)
		return STP_EFRAME;
	if (need > cap)
		return STP_ETOOBIG;
	stp_put64(buf, t->offset);
	stp_put64(buf + 8, t->nbytes);
	stp_put32(buf + 16, t->index);
	buf[20] = (uint8_t)dlen;
	buf[21] = (uint8_t)t->ndim;
	stp_put16(buf + 22, (uint16_t)t->namelen);
	q = buf + 24;
	for (unsigned i = 0; i < t->ndim; i++, q += 8)
		stp_put64(q, t->shape[i]);
	memcpy(q, t->dtype, dlen);
	memcpy(q + dlen, t->name, t->namelen);
	return (int)need;
}

int stp_tensor_parse(const uint8_t *p, size_t len, struct stp_tensor_info *out)
{
	unsigned dlen, ndim, esize;
	size_t nlen, need;
	uint64_t count = 1;
	const uint8_t *q;

	if (len < 24)
		return STP_EFRAME;
	dlen = p[20];
	ndim = p[21];
	nlen = stp_get16(p + 22);
	if (dlen == 0 || dlen > STP_MAX_DTYPE || ndim > STP_MAX_NDIM)
		return STP_EFRAME;
	need = 24 + 8 * (size_t)ndim + dlen + nlen;
	if (len != need)
		return STP_EFRAME;
	out->offset = stp_get64(p);
	out->nbytes = stp_get64(p + 8);
	out->index = stp_get32(p + 16);
	out->ndim = ndim;
	q = p + 24;
	for (unsigned i = 0; i < ndim; i++, q += 8) {
		out->shape[i] = stp_get64(q);
		if (out->shape[i] && count > UINT64_MAX / out->shape[i])
			return STP_ESIZE;
		count *= out->shape[i];
	}
	memcpy(out->dtype, q, dlen);
	out->dtype[dlen] = '\0';
	if (memchr(out->dtype, '\0', dlen))
		return STP_EFRAME;
	out->name = (const char *)q + dlen;
	out->namelen = nlen;
	esize = stp_dtype_size(out->dtype);
	if (esize == 0)
		return STP_EDTYPE;
	if (count > UINT64_MAX / esize || count * esize != out->nbytes)
		return STP_ESIZE;
	if (out->offset > UINT64_MAX - out->nbytes)
		return STP_ERANGE;
	return 0;
}

void stp_file_end_build(const struct stp_file_end *e, uint8_t buf[16])
{
	stp_put64(buf, e->size);
	stp_put32(buf + 8, e->crc);
	stp_put32(buf + 12, e->tensors);
}

int stp_file_end_parse(const uint8_t *p, size_t len, struct stp_file_end *out)
{
	if (len != 16)
		return STP_EFRAME;
	out->size = stp_get64(p);
	out->crc = stp_get32(p + 8);
	out->tensors = stp_get32(p + 12);
	return 0;
}
