/* Prediction of integer tensors (formats/predict.md). Costs are integer
 * (log2 in 16.16 fixed point, computed bit by bit), so the predictor a
 * chunk gets, and so the output, is the same on every machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "planes.h"
#include "predict.h"
#include "rans.h"

unsigned stp_int_code(const char *dtype)
{
	if (strcmp(dtype, "I8") == 0)
		return STP_INT_I8;
	if (strcmp(dtype, "U8") == 0)
		return STP_INT_U8;
	return 0;
}

const char *stp_predictor_name(unsigned id)
{
	static const char *const names[STP_PRED_COUNT] = {
		"none", "left", "up", "avg", "grad", "med",
	};

	return id < STP_PRED_COUNT ? names[id] : NULL;
}

void stp_resid_hdr_build(const struct stp_resid_hdr *h, uint8_t *buf)
{
	stp_put64(buf, h->offset);
	stp_put32(buf + 8, h->count);
	buf[12] = (uint8_t)h->dtype;
	buf[13] = 0;
	stp_put16(buf + 14, 0);
	stp_put64(buf + 16, h->rowlen);
	stp_put64(buf + 24, h->column);
	stp_put32(buf + 32, h->chunk);
	stp_put32(buf + 36, h->nchunks);
}

int stp_resid_hdr_parse(const uint8_t *p, size_t len,
			struct stp_resid_hdr *out)
{
	struct stp_resid_hdr h;

	if (len < STP_RESID_FIXED)
		return STP_EFRAME;
	if (p[13] != 0 || stp_get16(p + 14) != 0)
		return STP_ERESERVED;
	h.offset = stp_get64(p);
	h.count = stp_get32(p + 8);
	h.dtype = p[12];
	h.rowlen = stp_get64(p + 16);
	h.column = stp_get64(p + 24);
	h.chunk = stp_get32(p + 32);
	h.nchunks = stp_get32(p + 36);
	if ((h.dtype != STP_INT_I8 && h.dtype != STP_INT_U8) || h.count == 0 ||
	    h.offset > UINT64_MAX - h.count || h.rowlen == 0 ||
	    h.column >= h.rowlen || h.chunk == 0 ||
	    h.nchunks != (h.count - 1) / h.chunk + 1 ||
	    h.nchunks > len - STP_RESID_FIXED)
		return STP_EFRAME;
	*out = h;
	return STP_RESID_FIXED;
}

/* log2(x) in 16.16 fixed point, x >= 1, truncated. */
static uint64_t log2_q16(uint64_t x)
{
	unsigned ip = 63 - (unsigned)__builtin_clzll(x);
	uint64_t y = ip >= 31 ? x >> (ip - 31) : x << (31 - ip);
	uint64_t r = (uint64_t)ip << 16;

	/* y is in [2^31, 2^32): 1.31 fixed point, squared bit by bit */
	for (int b = 15; b >= 0; b--) {
		y = (y * y) >> 31;
		if (y >= (uint64_t)1 << 32) {
			y >>= 1;
			r |= (uint64_t)1 << b;
		}
	}
	return r;
}

/* n * H0 of a histogram of n symbols, in 1/65536 bits. */
static uint64_t cost_q16(const uint32_t *hist, uint64_t n)
{
	uint64_t c = 0;

	if (n == 0)
		return 0;
	for (int s = 0; s < 256; s++)
		if (hist[s])
			c += hist[s] * log2_q16(hist[s]);
	return n * log2_q16(n) - c;
}

/* The value of byte x in [-128, 127]: two's complement for I8, x - 128
 * for U8. */
static int sval(uint8_t x, unsigned dtype)
{
	return dtype == STP_INT_I8 ? (int)(x ^ 0x80) - 128 : (int)x - 128;
}

/* Neighbours of value i at column col (formats/predict.md, "Neighbours"),
 * from the values v[0..i) of the frame. */
static void neighbours(const uint8_t *v, unsigned dtype, uint64_t i,
		       uint64_t col, uint64_t rowlen, int *a, int *b, int *c)
{
	int has_l = col > 0 && i >= 1;
	int has_u = i >= rowlen;
	int has_ul = has_l && i >= rowlen + 1;

	*a = has_l ? sval(v[i - 1], dtype) :
	     has_u ? sval(v[i - rowlen], dtype) : 0;
	*b = has_u ? sval(v[i - rowlen], dtype) : *a;
	*c = has_ul ? sval(v[i - rowlen - 1], dtype) : *b;
}

static int predict(unsigned id, int a, int b, int c)
{
	int lo = a < b ? a : b, hi = a < b ? b : a, g;

	switch (id) {
	case STP_PRED_LEFT: return a;
	case STP_PRED_UP: return b;
	case STP_PRED_AVG: return ((a + b + 256) >> 1) - 128;   /* floor */
	case STP_PRED_GRAD:
		g = a + b - c;
		return g < -128 ? -128 : g > 127 ? 127 : g;
	case STP_PRED_MED:
		if (c >= hi)
			return lo;
		if (c <= lo)
			return hi;
		return a + b - c;
	default: return 0;
	}
}

void stp_predict_forward(const struct stp_resid_hdr *h, const uint8_t *values,
			 uint8_t *ids, uint8_t *resid,
			 uint64_t *out_resid_cost, uint64_t *out_raw_cost)
{
	uint32_t hist[STP_PRED_COUNT][256], all[256] = { 0 }, raw[256] = { 0 };
	uint64_t col = h->column;

	for (uint32_t k = 0; k < h->nchunks; k++) {
		uint64_t s = (uint64_t)k * h->chunk, e = s + h->chunk;
		uint64_t col0 = col, best_cost = UINT64_MAX;
		unsigned best = 0;

		if (e > h->count)
			e = h->count;
		memset(hist, 0, sizeof hist);
		for (uint64_t i = s; i < e; i++) {
			int a, b, c, v = sval(values[i], h->dtype);

			neighbours(values, h->dtype, i, col, h->rowlen, &a, &b,
				   &c);
			for (unsigned p = 0; p < STP_PRED_COUNT; p++)
				hist[p][(uint8_t)(v - predict(p, a, b, c))]++;
			raw[values[i]]++;
			if (++col == h->rowlen)
				col = 0;
		}
		for (unsigned p = 0; p < STP_PRED_COUNT; p++) {
			uint64_t cost = cost_q16(hist[p], e - s);
			if (cost < best_cost) {
				best_cost = cost;
				best = p;
			}
		}
		ids[k] = (uint8_t)best;
		col = col0;
		for (uint64_t i = s; i < e; i++) {
			int a, b, c, v = sval(values[i], h->dtype);

			neighbours(values, h->dtype, i, col, h->rowlen, &a, &b,
				   &c);
			resid[i] = (uint8_t)(v - predict(best, a, b, c));
			all[resid[i]]++;
			if (++col == h->rowlen)
				col = 0;
		}
	}
	if (out_resid_cost)
		*out_resid_cost = cost_q16(all, h->count);
	if (out_raw_cost)
		*out_raw_cost = cost_q16(raw, h->count);
}

int stp_predict_inverse(const struct stp_resid_hdr *h, const uint8_t *ids,
			const uint8_t *resid, uint8_t *values)
{
	uint8_t flip = h->dtype == STP_INT_I8 ? 0x80 : 0;
	uint64_t col = h->column;

	for (uint32_t k = 0; k < h->nchunks; k++) {
		uint64_t s = (uint64_t)k * h->chunk, e = s + h->chunk;
		unsigned id = ids[k];

		if (id >= STP_PRED_COUNT)
			return STP_EFRAME;
		if (e > h->count)
			e = h->count;
		for (uint64_t i = s; i < e; i++) {
			int a, b, c;
			uint8_t v;

			neighbours(values, h->dtype, i, col, h->rowlen, &a, &b,
				   &c);
			/* v + 128 as a byte, then back to the dtype's byte */
			v = (uint8_t)(resid[i] + predict(id, a, b, c) + 128);
			values[i] = (uint8_t)(v ^ flip);
			if (++col == h->rowlen)
				col = 0;
		}
	}
	return 0;
}

/* Checks a whole RESIDUAL payload; returns the header size. */
static int check_resid(const uint8_t *p, size_t len, struct stp_resid_hdr *h)
{
	int rc = stp_resid_hdr_parse(p, len, h);

	if (rc < 0)
		return rc;
	if (len - STP_RESID_FIXED - h->nchunks != h->count)
		return STP_EFRAME;
	for (uint32_t k = 0; k < h->nchunks; k++)
		if (p[STP_RESID_FIXED + k] >= STP_PRED_COUNT)
			return STP_EFRAME;
	return rc;
}

int stp_resid_merge(const uint8_t *p, size_t len, uint8_t *out,
		    size_t *out_len)
{
	struct stp_resid_hdr h;
	int rc = check_resid(p, len, &h);

	if (rc < 0)
		return rc;
	stp_put64(out, h.offset);
	rc = stp_predict_inverse(&h, p + STP_RESID_FIXED,
				 p + STP_RESID_FIXED + h.nchunks, out + 8);
	if (rc < 0)
		return rc;
	*out_len = 8 + (size_t)h.count;
	return 0;
}

size_t stp_resid_code_bound(size_t len)
{
	return len + stp_rans_bound(len);
}

int stp_resid_code(const uint8_t *p, size_t len, uint8_t *out, size_t cap,
		   size_t *out_len)
{
	struct stp_resid_hdr h;
	size_t at, clen;
	int rc = check_resid(p, len, &h);

	if (rc < 0)
		return rc;
	at = STP_RESID_FIXED + h.nchunks;
	if (cap < at || cap - at < stp_rans_bound(h.count))
		return STP_ETOOBIG;
	memcpy(out, p, at);
	rc = stp_rans_encode(p + at, h.count, out + at, cap - at, &clen);
	if (rc < 0)
		return rc;
	if (at + clen > STP_MAX_PAYLOAD)
		return STP_ETOOBIG;
	*out_len = at + clen;
	return 0;
}

int stp_resid_decode(const uint8_t *p, size_t len, uint8_t *out,
		     size_t *out_len)
{
	struct stp_resid_hdr h;
	size_t at;
	int rc = stp_resid_hdr_parse(p, len, &h);

	if (rc < 0)
		return rc;
	at = STP_RESID_FIXED + h.nchunks;
	/* the RESIDUAL frame must itself fit a frame */
	if (len == at || h.count > STP_MAX_PAYLOAD - at)
		return STP_EFRAME;
	for (size_t k = STP_RESID_FIXED; k < at; k++)
		if (p[k] >= STP_PRED_COUNT)
			return STP_EFRAME;
	if ((rc = stp_rans_decode(p + at, len - at, out + at, h.count)) < 0)
		return rc;
	memcpy(out, p, at);
	*out_len = at + h.count;
	return 0;
}

/* ---- the stage ---- */

struct pred_stage {
	int decode, all;
	char file[STP_MAX_PATH + 1];
	char tensor[512];
	char where[STP_MAX_PATH + 600];
	uint64_t fault_pos;
	/* the tensor whose bytes are being read */
	uint64_t pending, start, nbytes, rowlen;
	unsigned code, ndim;
	uint8_t *buf;             /* output frames */
};

/* Bytes of the tensor a frame of another stage carries (PLANES, CODED,
 * CODED_DATA), so that the bytes after the tensor are known for what
 * they are; 0 for a frame that carries none or that this stage cannot
 * read (later stages reject it). */
static uint64_t other_bytes(const struct stp_frame *f)
{
	struct stp_planes_hdr h;

	switch (f->type) {
	case STP_F_PLANES:
	case STP_F_CODED:
		if (stp_planes_hdr_parse(f->payload, f->len, &h) < 0)
			return 0;
		return (uint64_t)h.count * stp_float_width(h.dtype);
	case STP_F_CODED_DATA:
		return f->len >= 12 ? stp_get32(f->payload + 8) : 0;
	default:
		return 0;
	}
}

static int consume(struct pred_stage *s, uint64_t n)
{
	if (n > s->pending)
		return STP_EFRAME;
	s->pending -= n;
	return 0;
}

/* Checks a RESIDUAL or CODED_RESIDUAL header against the tensor. */
static int check_tensor(struct pred_stage *s, const struct stp_frame *f,
			struct stp_resid_hdr *h)
{
	int rc = stp_resid_hdr_parse(f->payload, f->len, h);

	if (rc < 0)
		return rc;
	if (!s->pending || h->dtype != s->code || h->rowlen != s->rowlen ||
	    h->offset != s->start + s->nbytes - s->pending ||
	    h->column != (h->offset - s->start) % s->rowlen ||
	    h->count > s->pending)
		return STP_EFRAME;
	return 0;
}

static int emit(struct stp_out *out, unsigned type, const uint8_t *p,
		size_t len)
{
	struct iovec v = { (void *)p, len };

	return out->frame(out->ctx, type, &v, 1, NULL);
}

/* A DATA frame of the tensor -> RESIDUAL frames, where they pay. */
static int predict_data(struct pred_stage *s, const struct stp_frame *f,
			struct stp_out *out)
{
	uint64_t off = stp_get64(f->payload), n = f->len - 8;
	uint64_t rcost = 0, raw = 0, extra = 0;
	const uint8_t *data = f->payload + 8;
	size_t at = 0;
	struct {
		size_t at, len;
	} piece[4];
	int k = 0, rc;

	while (n > 0) {
		struct stp_resid_hdr h;
		uint64_t r, w;

		if (k == 4)
			return STP_ETOOBIG;
		h.offset = off;
		h.count = (uint32_t)(n < STP_RESID_MAX_VALUES ? n :
						STP_RESID_MAX_VALUES);
		h.dtype = s->code;
		h.rowlen = s->rowlen;
		h.column = (off - s->start) % s->rowlen;
		h.chunk = STP_RESID_CHUNK;
		h.nchunks = (h.count - 1) / h.chunk + 1;
		stp_resid_hdr_build(&h, s->buf + at);
		stp_predict_forward(&h, data, s->buf + at + STP_RESID_FIXED,
				    s->buf + at + STP_RESID_FIXED + h.nchunks,
				    &r, &w);
		rcost += r;
		raw += w;
		/* what a RESIDUAL frame costs beyond a DATA frame */
		extra += (uint64_t)(STP_RESID_FIXED - 8 + h.nchunks) * 8 << 16;
		piece[k].at = at;
		piece[k].len = STP_RESID_FIXED + h.nchunks + h.count;
		at += piece[k].len;
		k++;
		off += h.count;
		data += h.count;
		n -= h.count;
	}
	if (!s->all && rcost + extra >= raw)
		return stp_out_copy(out, f);
	for (int i = 0; i < k; i++)
		if ((rc = emit(out, STP_F_RESIDUAL, s->buf + piece[i].at,
			       piece[i].len)) < 0)
			return rc;
	return 0;
}

static int on_tensor(struct pred_stage *s, const struct stp_frame *f)
{
	struct stp_tensor_info t;
	int rc = stp_tensor_parse(f->payload, f->len, &t);

	if (rc < 0)
		return rc;
	snprintf(s->tensor, sizeof s->tensor, "%.*s",
		 (int)(t.namelen > 500 ? 500 : t.namelen), t.name);
	if (s->pending)
		return STP_EORDER;
	s->pending = s->nbytes = t.nbytes;
	s->start = t.offset;
	s->code = stp_int_code(t.dtype);
	s->ndim = t.ndim;
	s->rowlen = t.ndim ? t.shape[t.ndim - 1] : 1;
	return 0;
}

static int pred_frame(void *self, const struct stp_frame *f,
		      struct stp_out *out)
{
	struct pred_stage *s = self;
	struct stp_file_info fi;
	struct stp_resid_hdr h;
	size_t len;
	int rc = 0;

	s->fault_pos = f->pos;
	s->where[0] = '\0';
	switch (f->type) {
	case STP_F_FILE:
		if ((rc = stp_file_parse(f->payload, f->len, &fi)) < 0)
			return rc;
		memcpy(s->file, fi.path, fi.pathlen);
		s->file[fi.pathlen] = '\0';
		s->tensor[0] = '\0';
		s->pending = 0;
		break;
	case STP_F_TENSOR:
		rc = on_tensor(s, f);
		break;
	case STP_F_DATA:
		if (f->len < 9)
			return STP_EFRAME;
		if (!s->pending)
			break;
		if ((rc = consume(s, f->len - 8)) < 0)
			return rc;
		if (!s->decode && s->code && s->ndim >= 2 &&
		    f->len - 8 >= STP_RESID_MIN)
			return predict_data(s, f, out);
		break;
	case STP_F_RESIDUAL:
	case STP_F_CODED_RESIDUAL:
		if ((rc = check_tensor(s, f, &h)) < 0)
			return rc;
		s->pending -= h.count;
		if (s->decode && f->type == STP_F_RESIDUAL) {
			if ((rc = stp_resid_merge(f->payload, f->len, s->buf,
						  &len)) < 0)
				return rc;
			return emit(out, STP_F_DATA, s->buf, len);
		}
		break;
	case STP_F_FILE_END:
		if (s->pending)
			return STP_ETRUNCATED;
		s->tensor[0] = '\0';
		break;
	default:
		if (s->pending)
			rc = consume(s, other_bytes(f));
		break;
	}
	if (rc < 0)
		return rc;
	return stp_out_copy(out, f);
}

static const char *pred_where(void *self, uint64_t *pos)
{
	struct pred_stage *s = self;

	if (s->tensor[0])
		snprintf(s->where, sizeof s->where, "%s: tensor '%s'", s->file,
			 s->tensor);
	else
		snprintf(s->where, sizeof s->where, "%s", s->file);
	*pos = s->fault_pos;
	return s->where;
}

static void pred_free(void *self)
{
	struct pred_stage *s = self;

	if (!s)
		return;
	free(s->buf);
	free(s);
}

int stp_predict_open(struct stp_stage *out_st, int decode, int all)
{
	struct pred_stage *s = calloc(1, sizeof *s);

	if (!s)
		return STP_ENOMEM;
	/* the RESIDUAL frames of one DATA frame: values, ids and headers */
	s->buf = malloc(STP_MAX_PAYLOAD + 4 * (STP_RESID_FIXED +
					       STP_RESID_MAX_VALUES /
					       STP_RESID_CHUNK + 1));
	if (!s->buf) {
		free(s);
		return STP_ENOMEM;
	}
	s->decode = decode;
	s->all = all;
	out_st->frame = pred_frame;
	out_st->where = pred_where;
	out_st->free = pred_free;
	out_st->self = s;
	out_st->checks_crc = 0;
	return 0;
}
