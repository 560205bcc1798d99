/* The codec engine. The caller's thread reads frames, keeps track of files
 * and tensors, and queues every frame in order; a batch of queued frames
 * is transformed by the worker threads, each frame on its own, and then
 * sent on in the order it arrived. So the output does not depend on the
 * thread count. Workers also checksum what they produce, so the caller's
 * thread only combines CRCs. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "deflate.h"
#include "error.h"
#include "model.h"
#include "lstm_stage.h"
#include "planes.h"
#include "predict.h"
#include "rans.h"

#define MAX_OUT_FRAMES 4          /* PLANES frames one DATA frame may give */
/* Fewer values than this stay DATA: planes would cost more in headers and
 * tables than they could save (formats/planes.md). */
#define STP_MIN_SPLIT 64
/* A sign/mantissa plane of more than SM_SMALL bytes is coded only if that
 * saves 1/32 of it: decoding it would cost as much time as the exponent
 * plane for a gain that small. Small planes take any gain. */
#define SM_MIN_GAIN 32
#define SM_SMALL 65536
#define MAX_THREADS 64
#define MAX_MODELS 4096           /* MODEL frames per segment */
#define WHERE_MAX (STP_MAX_PATH + 700)

struct piece {
	unsigned type;
	size_t hdr_off, hdr_len;      /* in job->out */
	size_t body_off, body_len;
	uint32_t body_crc;
	struct stp_model *used;       /* the model its exponents use */
};

/* A model of the segment, and whether its MODEL frame has gone out: a
 * model's frame goes out right before the first frame that uses it, so
 * one that never pays costs nothing. */
struct seg_model {
	struct stp_model *m;
	int sent;
};

struct job {
	unsigned type;
	unsigned op;                  /* 0: pass the frame on unchanged */
	const uint8_t *src;           /* the payload: in, or the reader's */
	uint8_t *in;                  /* owned copy when frames are queued */
	size_t in_cap;
	uint32_t in_len, in_crc;
	int crc_pending;              /* the worker checks the frame's CRC */
	uint32_t crc;
	uint64_t pos;
	/* the tensor, for SPLIT */
	unsigned code;
	uint64_t start, rowlen;
	int text;                     /* DATA outside tensors: try deflate */
	/* the models to code exponents with (CODE: the -m kind's and the
	 * one lstm-model asked for), the segment's (DECODE); read-only while
	 * jobs run */
	struct stp_model *cand[2];
	const struct seg_model *models;
	unsigned nmodels;
	uint8_t *out;
	size_t out_cap;
	struct piece piece[MAX_OUT_FRAMES];
	int npieces;
	int rc;
	int done;                     /* under the lock: worker finished */
	char where[WHERE_MAX];
};

struct worker_arg {
	struct codec *c;
	unsigned id;
};

struct index_entry {
	uint8_t kind;                 /* 1 file, 2 tensor */
	uint64_t offset;
	char *name;
	size_t namelen;
};

struct codec {
	unsigned ops;
	unsigned threads;
	unsigned model_kind;
	/* models of the segment: parsed from MODEL frames (DECODE), made or
	 * taken from MODEL_FIT frames (CODE); freed when the segment ends and
	 * every job is done */
	struct seg_model *models;	/* MAX_MODELS, once allocated */
	unsigned nmodels;
	uint32_t hint;                /* MODEL_USE: for the next tensor, +1 */
	struct stp_model *tensor_model;	/* the tensor's, from its hint */
	/* A ring of frames in arrival order: [head, next) are handed to the
	 * workers or done, [next, tail) wait for one, all are emitted from
	 * head in order. */
	struct job *jobs;
	unsigned cap_jobs;
	unsigned long head, next, tail;
	pthread_mutex_t lock;
	pthread_cond_t work_cv, done_cv;
	pthread_t tid[MAX_THREADS];
	struct worker_arg args[MAX_THREADS];
	unsigned nworkers;
	int stop;
	uint8_t *scratch[MAX_THREADS];
	/* file and tensor being read */
	char file[STP_MAX_PATH + 1];
	char tensor[512];
	uint64_t pending;
	uint64_t start, rowlen;
	unsigned code;
	unsigned icode;               /* I8, U8: residual frames */
	int in_file;                  /* between FILE and FILE_END */
	int text;                     /* the frame being queued is DATA
				       * outside every tensor */
	/* the index of the segment being written (CODE) */
	uint64_t seg_bytes;
	int in_segment;
	struct index_entry *index;
	size_t nindex, cap_index;
	size_t index_bytes;
	char where[WHERE_MAX];
	uint64_t fault_pos;
};

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
	uint8_t *p;

	if (need <= *cap)
		return 0;
	p = realloc(*buf, need);
	if (!p)
		return STP_ENOMEM;
	*buf = p;
	*cap = need;
	return 0;
}

/* ---- work done on the worker threads, one frame at a time ---- */

static uint64_t max_values(unsigned code)
{
	return (STP_MAX_PAYLOAD / 2) / stp_float_width(code);
}

/* DATA -> PLANES frames in dst (room for STP_MAX_PAYLOAD per 4 MiB of
 * values). Each piece is one PLANES frame: header, then planes as body. */
static int split_data(struct job *j, const uint8_t *payload, uint32_t len,
		      uint8_t *dst, struct piece *piece, int *npieces)
{
	unsigned width = stp_float_width(j->code);
	uint64_t off = stp_get64(payload), n = len - 8;
	const uint8_t *data = payload + 8;
	size_t at = 0;
	int k = 0, rc;

	while (n > 0) {
		uint64_t count = n / width;
		struct stp_planes_hdr h;
		uint8_t *plane[STP_MAX_PLANES];
		size_t body;

		if (count > max_values(j->code))
			count = max_values(j->code);
		if (k == MAX_OUT_FRAMES)
			return STP_ETOOBIG;
		h.offset = off;
		h.count = (uint32_t)count;
		h.dtype = j->code;
		h.rowlen = j->rowlen;
		h.column = (off - j->start) / width % j->rowlen;
		h.layout = STP_LAYOUT_PLANES;
		stp_planes_lengths(&h);
		piece[k].type = STP_F_PLANES;
		piece[k].hdr_off = at;
		piece[k].hdr_len = stp_planes_hdr_size(&h);
		stp_planes_hdr_build(&h, dst + at);
		at += piece[k].hdr_len;
		body = at;
		for (unsigned i = 0; i < h.nplanes; i++) {
			plane[i] = dst + at;
			at += h.len[i];
		}
		if ((rc = stp_planes_split(j->code, data, h.count, plane)) < 0)
			return rc;
		piece[k].body_off = body;
		piece[k].body_len = at - body;
		k++;
		off += count * width;
		data += count * width;
		n -= count * width;
	}
	*npieces = k;
	return 0;
}

/* Room the CODED frame of a PLANES frame needs, header included, with
 * space for a model-coded exponent body beside the static one. */
static size_t coded_bound(const struct stp_planes_hdr *h, int model)
{
	size_t n = stp_planes_hdr_size(h);

	for (unsigned i = 0; i < h->nplanes; i++)
		n += stp_rans_bound(h->len[i]);
	if (model && stp_float_width(h->dtype) == 1)
		n += stp_rans_bound(h->count);	/* the joint body beside */
	return n + (model ? stp_model_bound(h->len[0]) : 0);
}

static int has_cand(struct stp_model *const cand[2])
{
	return cand[0] || cand[1];
}

/* Checks a PLANES payload: header, layout and plane lengths. Returns the
 * header size or a negative code. */
static int check_planes(const uint8_t *p, size_t len, struct stp_planes_hdr *h)
{
	int rc = stp_planes_hdr_parse(p, len, h);
	size_t at;

	if (rc < 0)
		return rc;
	if (h->layout != STP_LAYOUT_PLANES)
		return STP_ERESERVED;
	at = (size_t)rc;
	for (unsigned i = 0; i < h->nplanes; i++) {
		if (h->len[i] != stp_plane_len(h->dtype, i, h->count) ||
		    h->len[i] > len - at)
			return STP_EFRAME;
		at += h->len[i];
	}
	return at == len ? rc : STP_EFRAME;
}

/* Estimated bits of n symbols coded order-0 (their entropy). */
static double cost0(const uint8_t *p, size_t n)
{
	return stp_entropy0_bits(p, n);
}

/* Bits a sign/mantissa plane of n bytes with order-0 entropy h costs as
 * code_planes stores it: coded, or raw when coding saves too little. */
static double sm_cost(double h, size_t n)
{
	double raw = 8.0 * (double)n;

	if (n > SM_SMALL && h > raw - raw / SM_MIN_GAIN)
		return raw;
	return h < raw ? h : raw;
}

/* For 1-byte dtypes the whole value can be coded as one symbol, which
 * catches what the exponent says about the mantissa; chosen when its
 * entropy beats what the planes cost (their entropy, or the raw bytes
 * of a sign/mantissa plane that would be stored) by more than the
 * larger table. */
static int joint_pays(const struct stp_planes_hdr *h, const uint8_t *planes,
		      const uint8_t *values)
{
	if (stp_float_width(h->dtype) != 1)
		return 0;
	return cost0(values, h->count) + 8 * 64 <
	       cost0(planes, h->len[0]) +
	       sm_cost(cost0(planes + h->len[0], h->len[1]), h->len[1]);
}

/* Codes the exponent plane with each candidate model too, after the
 * static body of *clen bytes at out (which has room for one more); keeps
 * the smallest body, the model it used in *used (NULL: the static one),
 * ties to the earlier. */
static int code_with_models(struct stp_model *const cand[2],
			    const struct stp_planes_hdr *h,
			    const uint8_t *plane, uint8_t *out, size_t *clen,
			    struct stp_model **used)
{
	struct stp_model_plane mp = {
		.sym = plane, .n = h->len[0], .rowlen = h->rowlen,
		.column = h->column,
	};
	uint8_t *alt = out + stp_rans_bound(h->len[0]);

	*used = NULL;
	for (int k = 0; k < 2; k++) {
		size_t mlen;
		int rc;

		if (!cand[k])
			continue;
		rc = stp_model_encode(cand[k], &mp, 0, alt,
				      stp_model_bound(h->len[0]), &mlen);
		if (rc == STP_ERANGE)
			continue;	/* a symbol the model cannot code */
		if (rc < 0)
			return rc;
		if (mlen < *clen) {
			memmove(out, alt, mlen);
			*clen = mlen;
			*used = cand[k];
		}
	}
	return 0;
}

/* PLANES payload p -> CODED frame at out (room: coded_bound). values are
 * the chunk's original bytes when the caller has them, else NULL and tmp
 * (room for the values) is used to rebuild them for 1-byte dtypes. */
static int code_planes(struct stp_model *const cand[2], const uint8_t *p,
		       size_t len, uint8_t *out, struct piece *pc,
		       const uint8_t *values, uint8_t *tmp)
{
	struct stp_planes_hdr h;
	const uint8_t *src;
	size_t at, clen, jlen;
	int rc = check_planes(p, len, &h), joint, model = has_cand(cand);
	struct stp_model *used = NULL;

	if (rc < 0)
		return rc;
	src = p + rc;
	at = stp_planes_hdr_size(&h);
	if (stp_float_width(h.dtype) == 1 && !values) {
		const uint8_t *plane[2] = { src, src + h.len[0] };
		if ((rc = stp_planes_merge(h.dtype, plane, h.count, tmp)) < 0)
			return rc;
		values = tmp;
	}
	joint = values && joint_pays(&h, src, values);
	/* With a model, the planes are coded as well and the smaller kept:
	 * a model may make the exponents cheaper than the joint symbol. */
	if (!joint || model) {
		for (unsigned i = 0; i < h.nplanes; i++) {
			rc = stp_rans_encode(src, h.len[i], out + at,
					     stp_rans_bound(h.len[i]), &clen);
			if (rc < 0)
				return rc;
			if (i == 0 && model &&
			    (rc = code_with_models(cand, &h, src, out + at,
						   &clen, &used)) < 0)
				return rc;
			if (i > 0 && h.len[i] > SM_SMALL &&
			    clen > h.len[i] - h.len[i] / SM_MIN_GAIN) {
				/* A raw body (formats/rans.md, method 0). */
				out[at] = STP_RANS_RAW;
				memcpy(out + at + 1, src, h.len[i]);
				clen = (size_t)h.len[i] + 1;
			}
			src += h.len[i];
			h.len[i] = (uint32_t)clen;
			at += clen;
		}
	}
	if (values && (joint || (model && stp_float_width(h.dtype) == 1))) {
		size_t hs = stp_planes_hdr_size(&h);

		rc = stp_rans_encode(values, h.count, out + at,
				     stp_rans_bound(h.count), &jlen);
		if (rc < 0)
			return rc;
		if (at == hs || jlen < at - hs) {
			used = NULL;
			memmove(out + hs, out + at, jlen);
			h.layout = STP_LAYOUT_JOINT;
			h.len[0] = (uint32_t)jlen;
			for (unsigned i = 1; i < h.nplanes; i++)
				h.len[i] = 0;
			at = hs + jlen;
		}
	}
	if (at > STP_MAX_PAYLOAD)
		return STP_ETOOBIG;
	stp_planes_hdr_build(&h, out);
	pc->type = STP_F_CODED;
	pc->hdr_off = 0;
	pc->hdr_len = stp_planes_hdr_size(&h);
	pc->body_off = pc->hdr_len;
	pc->body_len = at - pc->hdr_len;
	pc->used = used;
	return 0;
}

/* Decodes one body into n bytes: bodies coded with a model (method 4)
 * through the segment's models, every other method by lib/rans.c. Plane 0
 * of a CODED frame has its rows; other bodies use rowlen 1, column 0
 * (formats/model.md). */
static int decode_body(const struct job *j, const uint8_t *in, size_t len,
		       uint8_t *out, size_t n, uint64_t rowlen, uint64_t column)
{
	uint32_t id;

	if (len == 0 || in[0] != STP_RANS_MODEL)
		return stp_rans_decode(in, len, out, n);
	if (stp_model_body_id(in, len, &id) < 0)
		return STP_ETRUNCATED;
	for (unsigned i = 0; i < j->nmodels; i++)
		if (j->models[i].m->id == id)
			return stp_model_decode(j->models[i].m, in, len, out, n,
						rowlen, column);
	return STP_ECORRUPT;      /* no MODEL frame before it */
}

/* Checks a CODED header and its layout; on success *body is the offset of
 * the first coded body. */
static int check_coded(const uint8_t *p, size_t len, struct stp_planes_hdr *h,
		       size_t *body)
{
	int rc = stp_planes_hdr_parse(p, len, h);
	size_t at;

	if (rc < 0)
		return rc;
	at = (size_t)rc;
	if (h->layout == STP_LAYOUT_JOINT) {
		if (stp_float_width(h->dtype) != 1)
			return STP_EFRAME;
		for (unsigned i = 1; i < h->nplanes; i++)
			if (h->len[i] != 0)
				return STP_EFRAME;
	} else if (h->layout != STP_LAYOUT_PLANES) {
		return STP_ERESERVED;
	}
	for (unsigned i = 0; i < h->nplanes; i++) {
		if (h->len[i] > len - at)
			return STP_ECORRUPT;
		at += h->len[i];
	}
	if (at != len)
		return STP_ECORRUPT;
	*body = (size_t)rc;
	return 0;
}

/* CODED payload p -> PLANES frame at out (room: STP_MAX_PAYLOAD); tmp
 * holds the values of a joint layout (room: STP_MAX_PAYLOAD). */
static int decode_coded(const struct job *j, const uint8_t *p, size_t len,
			uint8_t *out, struct piece *pc, uint8_t *tmp)
{
	struct stp_planes_hdr h, want;
	size_t src, at;
	int rc = check_coded(p, len, &h, &src);

	if (rc < 0)
		return rc;
	want = h;
	want.layout = STP_LAYOUT_PLANES;
	stp_planes_lengths(&want);
	at = stp_planes_hdr_size(&want);
	for (unsigned i = 0; i < want.nplanes; i++)
		if (want.len[i] > STP_MAX_PAYLOAD - at - (i ? want.len[0] : 0))
			return STP_ECORRUPT;
	if (h.layout == STP_LAYOUT_JOINT) {
		uint8_t *plane[2] = { out + at, out + at + want.len[0] };

		if (h.count > STP_MAX_PAYLOAD)
			return STP_ECORRUPT;
		rc = stp_rans_decode(p + src, h.len[0], tmp, h.count);
		if (rc < 0)
			return rc;
		if ((rc = stp_planes_split(h.dtype, tmp, h.count, plane)) < 0)
			return rc;
		at += want.len[0] + want.len[1];
	} else {
		for (unsigned i = 0; i < h.nplanes; i++) {
			rc = decode_body(j, p + src, h.len[i], out + at,
					 want.len[i], i ? 1 : h.rowlen,
					 i ? 0 : h.column);
			if (rc < 0)
				return rc;
			src += h.len[i];
			at += want.len[i];
		}
	}
	stp_planes_hdr_build(&want, out);
	pc->type = STP_F_PLANES;
	pc->hdr_off = 0;
	pc->hdr_len = stp_planes_hdr_size(&want);
	pc->body_off = pc->hdr_len;
	pc->body_len = at - pc->hdr_len;
	return 0;
}

/* A CODED frame of joint layout straight to a DATA frame: the decoded
 * symbols are the values. */
static int decode_joint_data(const struct job *j, const uint8_t *p,
			     size_t len, uint8_t *out, struct piece *pc)
{
	struct stp_planes_hdr h;
	size_t src;
	int rc = check_coded(p, len, &h, &src);

	if (rc < 0)
		return rc;
	if (h.count > STP_MAX_PAYLOAD - 8)
		return STP_ECORRUPT;
	if ((rc = decode_body(j, p + src, h.len[0], out + 8, h.count, 1, 0)) < 0)
		return rc;
	stp_put64(out, h.offset);
	pc->type = STP_F_DATA;
	pc->hdr_off = 0;
	pc->hdr_len = 8;
	pc->body_off = 8;
	pc->body_len = h.count;
	return 0;
}

/* DATA payload -> CODED_DATA (offset, n, body) when that is smaller;
 * returns 1 if the frame should pass unchanged.  Bytes outside tensors
 * (text) are deflated too, and the smaller body is kept; out has room
 * for both. */
static int code_data(const uint8_t *p, size_t len, int text, uint8_t *out,
		     struct piece *pc)
{
	size_t n = len - 8, clen, dlen;
	uint8_t *alt = out + 12 + stp_rans_bound(n);
	int rc = stp_rans_encode(p + 8, n, out + 12, stp_rans_bound(n), &clen);

	if (rc < 0)
		return rc;
	/* alt has room for n bytes (out_need), and a deflate body must
	 * beat the rANS one */
	if (text && (rc = stp_deflate_encode(p + 8, n, alt, clen < n ? clen : n,
					     &dlen)) < 0)
		return rc;
	if (text && rc == 0 && dlen < clen) {
		memcpy(out + 12, alt, dlen);
		clen = dlen;
	}
	if (clen + 4 >= n)
		return 1;
	memcpy(out, p, 8);
	stp_put32(out + 8, (uint32_t)n);
	pc->type = STP_F_CODED_DATA;
	pc->hdr_off = 0;
	pc->hdr_len = 12;
	pc->body_off = 12;
	pc->body_len = clen;
	return 0;
}

/* CODED_DATA payload -> DATA. */
static int decode_data(const struct job *j, const uint8_t *p, size_t len,
		       uint8_t *out, struct piece *pc)
{
	uint32_t n;
	int rc;

	if (len < 13)
		return STP_EFRAME;
	n = stp_get32(p + 8);
	if (n == 0 || n > STP_MAX_PAYLOAD - 8)
		return STP_EFRAME;
	if ((rc = decode_body(j, p + 12, len - 12, out + 8, n, 1, 0)) < 0)
		return rc;
	memcpy(out, p, 8);
	pc->type = STP_F_DATA;
	pc->hdr_off = 0;
	pc->hdr_len = 8;
	pc->body_off = 8;
	pc->body_len = n;
	return 0;
}

/* PLANES payload p -> DATA frame at out: offset, then values. The header
 * was checked against the tensor by the caller's thread. */
static int merge_planes(const uint8_t *p, size_t len, uint8_t *out,
			struct piece *pc)
{
	struct stp_planes_hdr h;
	const uint8_t *plane[STP_MAX_PLANES];
	size_t at;
	int rc = check_planes(p, len, &h);
	uint64_t n;

	if (rc < 0)
		return rc;
	at = (size_t)rc;
	for (unsigned i = 0; i < h.nplanes; i++) {
		plane[i] = p + at;
		at += h.len[i];
	}
	n = (uint64_t)h.count * stp_float_width(h.dtype);
	if (n > STP_MAX_PAYLOAD - 8)
		return STP_EFRAME;
	stp_put64(out, h.offset);
	if ((rc = stp_planes_merge(h.dtype, plane, h.count, out + 8)) < 0)
		return rc;
	pc->type = STP_F_DATA;
	pc->hdr_off = 0;
	pc->hdr_len = 8;
	pc->body_off = 8;
	pc->body_len = (size_t)n;
	return 0;
}

/* RESIDUAL -> CODED_RESIDUAL (CODE) or DATA (DECODE|MERGE);
 * CODED_RESIDUAL -> RESIDUAL (DECODE) or, through scratch, DATA
 * (formats/predict.md). */
static int residual_job(struct job *j, uint8_t *scratch)
{
	const uint8_t *p = j->src;
	size_t len = j->in_len, n;
	unsigned type = STP_F_DATA;
	int rc;

	if (j->type == STP_F_CODED_RESIDUAL) {
		uint8_t *dst = j->op & STP_OP_MERGE ? scratch : j->out;

		if ((rc = stp_resid_decode(p, len, dst, &n)) < 0)
			return rc;
		p = dst;
		len = n;
		type = STP_F_RESIDUAL;
	} else if (j->op & STP_OP_CODE) {
		rc = stp_resid_code(p, len, j->out, j->out_cap, &n);
		type = STP_F_CODED_RESIDUAL;
		p = NULL;
		if (rc < 0)
			return rc;
	}
	if (p && (j->op & STP_OP_MERGE)) {
		if ((rc = stp_resid_merge(p, len, j->out, &n)) < 0)
			return rc;
		type = STP_F_DATA;
	}
	j->piece[0].type = type;
	j->piece[0].hdr_off = 0;
	j->piece[0].hdr_len = 8;
	j->piece[0].body_off = 8;
	j->piece[0].body_len = n - 8;
	return 0;
}

static int run_job(struct job *j, uint8_t *scratch)
{
	struct piece tmp[MAX_OUT_FRAMES];
	struct stp_planes_hdr h;
	size_t body;
	int rc = 0, k;

	j->npieces = 1;
	for (int i = 0; i < MAX_OUT_FRAMES; i++)
		j->piece[i].used = NULL;
	if (j->crc_pending &&
	    (rc = stp_frame_verify(j->type, j->src, j->in_len, j->crc,
				   &j->in_crc)) < 0)
		return rc;
	if (j->type == STP_F_DATA && j->op == STP_OP_CODE) {
		/* rans-enc on bytes that are not float planes */
		rc = code_data(j->src, j->in_len, j->text, j->out, j->piece);
		if (rc == 1) {
			j->op = 0;    /* coding does not pay: pass on */
			return 0;
		}
		goto crc;
	}
	if (j->type == STP_F_CODED_DATA) {
		rc = decode_data(j, j->src, j->in_len, j->out, j->piece);
		goto crc;
	}
	if (j->type == STP_F_RESIDUAL || j->type == STP_F_CODED_RESIDUAL) {
		rc = residual_job(j, scratch);
		goto crc;
	}
	switch (j->op) {
	case STP_OP_SPLIT:
		rc = split_data(j, j->src, j->in_len, j->out, j->piece,
				&j->npieces);
		break;
	case STP_OP_SPLIT | STP_OP_CODE:
		rc = split_data(j, j->src, j->in_len, scratch, tmp, &k);
		j->npieces = k;
		for (size_t i = 0, at = 0; rc == 0 && i < (size_t)k; i++) {
			const uint8_t *pl = scratch + tmp[i].hdr_off;
			size_t plen = tmp[i].hdr_len + tmp[i].body_len;

			stp_planes_hdr_parse(pl, plen, &h);
			rc = code_planes(j->cand, pl, plen, j->out + at,
					 &j->piece[i],
					 j->src + 8 + (h.offset -
						       stp_get64(j->src)),
					 NULL);
			j->piece[i].hdr_off += at;
			j->piece[i].body_off += at;
			at += coded_bound(&h, has_cand(j->cand));
		}
		break;
	case STP_OP_CODE:
		rc = code_planes(j->cand, j->src, j->in_len, j->out,
				 j->piece, NULL, scratch);
		break;
	case STP_OP_DECODE:
		rc = decode_coded(j, j->src, j->in_len, j->out, j->piece, scratch);
		break;
	case STP_OP_MERGE:
		rc = merge_planes(j->src, j->in_len, j->out, j->piece);
		break;
	case STP_OP_DECODE | STP_OP_MERGE:
		rc = check_coded(j->src, j->in_len, &h, &body);
		if (rc == 0 && h.layout == STP_LAYOUT_JOINT) {
			rc = decode_joint_data(j, j->src, j->in_len, j->out,
					       j->piece);
			break;
		}
		if (rc == 0)
			rc = decode_coded(j, j->src, j->in_len, scratch, tmp,
					  NULL);
		if (rc == 0)
			rc = merge_planes(scratch, tmp[0].hdr_len +
						   tmp[0].body_len,
					  j->out, j->piece);
		break;
	}
crc:
	for (int i = 0; rc == 0 && i < j->npieces; i++)
		j->piece[i].body_crc = stp_crc32(0, j->out + j->piece[i].body_off,
						 j->piece[i].body_len);
	return rc;
}


/* A worker takes the oldest waiting frame, transforms it, marks it done. */
static void *work(void *arg)
{
	struct worker_arg *w = arg;
	struct codec *c = w->c;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		struct job *j;

		while (!c->stop && c->next == c->tail)
			pthread_cond_wait(&c->work_cv, &c->lock);
		if (c->stop)
			break;
		j = &c->jobs[c->next++ % c->cap_jobs];
		pthread_mutex_unlock(&c->lock);
		if (j->op)
			j->rc = run_job(j, c->scratch[w->id]);
		pthread_mutex_lock(&c->lock);
		j->done = 1;
		pthread_cond_broadcast(&c->done_cv);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* ---- the caller's thread ---- */

static int add_index(struct codec *c, uint8_t kind, const char *name,
		     size_t namelen)
{
	struct index_entry *e;

	if (c->nindex == c->cap_index) {
		size_t cap = c->cap_index ? 2 * c->cap_index : 64;
		e = realloc(c->index, cap * sizeof *e);
		if (!e)
			return STP_ENOMEM;
		c->index = e;
		c->cap_index = cap;
	}
	e = &c->index[c->nindex];
	e->name = malloc(namelen ? namelen : 1);
	if (!e->name)
		return STP_ENOMEM;
	memcpy(e->name, name, namelen);
	e->namelen = namelen;
	e->kind = kind;
	e->offset = c->seg_bytes;
	c->nindex++;
	c->index_bytes += 22 + namelen;   /* the most write_index uses */
	return 0;
}

static void clear_index(struct codec *c)
{
	for (size_t i = 0; i < c->nindex; i++)
		free(c->index[i].name);
	c->nindex = 0;
	c->index_bytes = 0;
}

/* Adds FILE and TENSOR frames to the index of a coded segment. */
static int index_frame(struct codec *c, unsigned type, const struct iovec *v,
		       int n, size_t len)
{
	static __thread uint8_t buf[24 + 8 * STP_MAX_NDIM + STP_MAX_DTYPE +
				    0xFFFF + STP_MAX_PATH];
	struct stp_file_info fi;
	struct stp_tensor_info t;
	size_t at = 0;

	if (len > sizeof buf)
		return STP_EFRAME;
	for (int i = 0; i < n; i++) {
		memcpy(buf + at, v[i].iov_base, v[i].iov_len);
		at += v[i].iov_len;
	}
	if (type == STP_F_FILE && stp_file_parse(buf, len, &fi) == 0)
		return add_index(c, 1, fi.path, fi.pathlen);
	if (type == STP_F_TENSOR && stp_tensor_parse(buf, len, &t) == 0)
		return add_index(c, 2, t.name, t.namelen);
	return 0;
}

/* Sends one frame on, keeping the index of a coded segment. */
static int emit(struct codec *c, struct stp_out *out, unsigned type,
		const struct iovec *v, int n, const uint32_t *crc)
{
	size_t len = 0;
	int rc;

	for (int i = 0; i < n; i++)
		len += v[i].iov_len;
	if (c->ops & STP_OP_CODE) {
		if (!c->in_segment) {
			c->in_segment = 1;
			c->seg_bytes = STP_HEADER_SIZE;
		}
		if ((type == STP_F_FILE || type == STP_F_TENSOR) &&
		    (rc = index_frame(c, type, v, n, len)) < 0)
			return rc;
		if (type == STP_F_MODEL && (rc = add_index(c, 3, "", 0)) < 0)
			return rc;
		c->seg_bytes += len + STP_FRAME_OVERHEAD;
	}
	return out->frame(out->ctx, type, v, n, crc);
}

/* Sends model m's MODEL frame if it has not gone out yet. */
static int send_model(struct codec *c, const struct stp_model *m,
		      struct stp_out *out)
{
	for (unsigned i = 0; i < c->nmodels; i++) {
		struct seg_model *sm = &c->models[i];
		const uint8_t *payload;
		struct iovec v[2];
		uint32_t crc;
		size_t len;

		if (sm->m != m)
			continue;
		if (sm->sent)
			return 0;
		sm->sent = 1;
		payload = stp_model_payload(m, &len);
		v[0] = (struct iovec){ (void *)payload, 8 };
		v[1] = (struct iovec){ (void *)(payload + 8), len - 8 };
		crc = stp_crc32(0, payload + 8, len - 8);
		return emit(c, out, STP_F_MODEL, v, 2, &crc);
	}
	return STP_ECORRUPT;
}

static int emit_job(struct codec *c, struct job *j, struct stp_out *out)
{
	if (!j->op) {
		struct iovec v[2] = {
			{ (void *)j->src, j->in_len < 8 ? j->in_len : 8 },
			{ (void *)(j->src + 8), j->in_len < 8 ? 0 : j->in_len - 8 },
		};
		return emit(c, out, j->type, v, j->in_len < 8 ? 1 : 2,
			    j->in_len < 8 ? NULL : &j->in_crc);
	}
	for (int i = 0; i < j->npieces; i++) {
		const struct piece *p = &j->piece[i];
		struct iovec v[2] = {
			{ j->out + p->hdr_off, p->hdr_len },
			{ j->out + p->body_off, p->body_len },
		};
		int rc;

		if (p->used && (rc = send_model(c, p->used, out)) < 0)
			return rc;
		if ((rc = emit(c, out, p->type, v, 2, &p->body_crc)) < 0)
			return rc;
	}
	return 0;
}

/* Sends the oldest frame on once it is done. Rather than sleep while it
 * is not, the caller's thread codes waiting frames itself: progress never
 * hangs on a worker being scheduled on a busy machine. */
static int emit_oldest(struct codec *c, struct stp_out *out)
{
	struct job *j = &c->jobs[c->head % c->cap_jobs];

	if (c->nworkers) {
		pthread_mutex_lock(&c->lock);
		while (!j->done) {
			struct job *w;

			if (c->next == c->tail) {
				pthread_cond_wait(&c->done_cv, &c->lock);
				continue;
			}
			w = &c->jobs[c->next++ % c->cap_jobs];
			pthread_mutex_unlock(&c->lock);
			if (w->op)
				w->rc = run_job(w, c->scratch[c->nworkers]);
			pthread_mutex_lock(&c->lock);
			w->done = 1;
		}
		pthread_mutex_unlock(&c->lock);
	}
	c->head++;
	if (j->op && j->rc < 0) {
		snprintf(c->where, sizeof c->where, "%s", j->where);
		c->fault_pos = j->pos;
		return j->rc;
	}
	return emit_job(c, j, out);
}

/* Sends every queued frame on, in order. */
static int drain(struct codec *c, struct stp_out *out)
{
	int rc = 0;

	while (rc == 0 && c->head != c->tail)
		rc = emit_oldest(c, out);
	return rc;
}

/* Room a job's output needs for its input frame. */
static size_t out_need(const struct codec *c, const struct job *j)
{
	struct stp_planes_hdr h = { .dtype = j->code };
	size_t n;

	if (j->type == STP_F_RESIDUAL && (j->op & STP_OP_CODE))
		return stp_resid_code_bound(j->in_len);
	if (j->type == STP_F_DATA && j->op == STP_OP_CODE)
		return 12 + stp_rans_bound(j->in_len - 8) +
		       (j->text ? j->in_len - 8 : 0);
	switch (j->op) {
	case STP_OP_SPLIT | STP_OP_CODE:
		/* at most MAX_OUT_FRAMES PLANES of max_values() values */
		h.count = (uint32_t)max_values(j->code);
		stp_planes_lengths(&h);
		n = coded_bound(&h, has_cand(j->cand));
		return n * ((j->in_len - 8) / stp_float_width(j->code) /
				    max_values(j->code) + 1);
	case STP_OP_CODE:
		if (stp_planes_hdr_parse(j->src, j->in_len, &h) < 0)
			return 0;
		return coded_bound(&h, has_cand(j->cand));
	case STP_OP_SPLIT:
		/* planes are at most 1.5 times the values (FP8 nibbles) */
		return (j->in_len - 8) / 2 * 3 + 2 +
		       MAX_OUT_FRAMES * (STP_PLANES_FIXED + 4 * STP_MAX_PLANES);
	default:
		(void)c;
		return STP_MAX_PAYLOAD + STP_PLANES_FIXED +
		       4 * STP_MAX_PLANES;
	}
}

static int queue(struct codec *c, const struct stp_frame *f, unsigned op,
		 struct stp_out *out);

/* Adds m to the segment's models; 0, STP_ETOOBIG (too many), STP_ENOMEM,
 * STP_EFRAME (an id the segment has). */
static int add_model(struct codec *c, struct stp_model *m)
{
	for (unsigned i = 0; i < c->nmodels; i++)
		if (c->models[i].m->id == m->id)
			return STP_EFRAME;
	/* Allocated whole the first time, never moved: jobs in flight read
	 * it while the reader adds models. */
	if (!c->models &&
	    !(c->models = calloc(MAX_MODELS, sizeof *c->models)))
		return STP_ENOMEM;
	if (c->nmodels == MAX_MODELS)
		return STP_ETOOBIG;
	c->models[c->nmodels++] = (struct seg_model){ m, 0 };
	return 0;
}

static struct stp_model *find_model(const struct codec *c, uint32_t id)
{
	for (unsigned i = 0; i < c->nmodels; i++)
		if (c->models[i].m->id == id)
			return c->models[i].m;
	return NULL;
}

/* The model of the -m kind that codes exponents of this frame's dtype
 * (CODE): one per exponent alphabet, its id the alphabet size, made the
 * first time the segment needs it; its MODEL frame goes out before the
 * first frame that uses it. */
static int exponent_model(struct codec *c, const struct stp_frame *f,
			  struct stp_model **out_m)
{
	static const uint8_t adaptive_params[12] = {
		/* period 256, limit 65536, increment 32 (formats/model.md) */
		0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x20, 0x00,
		0x00, 0x00,
	};
	uint8_t params[16];
	const uint8_t *pp = adaptive_params;
	size_t pn = sizeof adaptive_params;
	unsigned pb = 15;
	struct stp_planes_hdr h;
	struct stp_model *m;
	unsigned code = c->code, alphabet;
	int rc;

	*out_m = NULL;
	if (f->type == STP_F_PLANES) {
		if (stp_planes_hdr_parse(f->payload, f->len, &h) < 0)
			return 0;
		code = h.dtype;
	}
	if (!stp_float_width(code))
		return 0;
	alphabet = 1u << stp_float_expbits(code);
	if ((*out_m = find_model(c, alphabet)) != NULL)
		return 0;
	if (c->model_kind == STP_MODEL_CTX) {
		/* formats/model.md, "How rans-enc uses models" */
		pn = (size_t)stp_ctx_params_build(params, 2, 5, 5, 256, 1u << 16,
						  32);
		pp = params;
		pb = 12;
	}
	rc = stp_model_create(alphabet, c->model_kind, alphabet, pb, pp, pn,
			      &m);
	if (rc < 0)
		return rc;
	if ((rc = add_model(c, m)) < 0) {
		stp_model_free(m);
		return rc;
	}
	*out_m = m;
	return 0;
}

static int queue(struct codec *c, const struct stp_frame *f, unsigned op,
		 struct stp_out *out)
{
	struct stp_model *model = NULL;
	struct job *j;
	int rc;

	if ((op & STP_OP_CODE) && c->model_kind &&
	    (f->type == STP_F_PLANES || f->type == STP_F_DATA) &&
	    (rc = exponent_model(c, f, &model)) < 0)
		return rc;

	if (c->tail - c->head == c->cap_jobs && (rc = emit_oldest(c, out)) < 0)
		return rc;
	j = &c->jobs[c->tail % c->cap_jobs];
	if (!c->nworkers) {
		/* Done before the next read: no need for a copy. */
		j->src = f->payload;
	} else {
		if ((rc = grow(&j->in, &j->in_cap, f->len ? f->len : 1)) < 0)
			return rc;
		memcpy(j->in, f->payload, f->len);
		j->src = j->in;
	}
	j->type = f->type;
	j->in_len = f->len;
	j->in_crc = f->body_crc;
	j->crc_pending = f->crc_pending;
	j->crc = f->crc;
	j->pos = f->pos;
	j->op = op;
	j->code = c->code;
	j->start = c->start;
	j->rowlen = c->rowlen;
	j->text = f->type == STP_F_DATA && c->text;
	j->cand[0] = model;
	j->cand[1] = (op & STP_OP_CODE) && (f->type == STP_F_PLANES ||
					    f->type == STP_F_DATA)
		     ? c->tensor_model : NULL;
	j->models = c->models;
	j->nmodels = c->nmodels;
	j->rc = 0;
	/* Even a frame passed on unchanged goes through a worker, which
	 * marks it done: a slot is reused only after the workers have moved
	 * past it. */
	j->done = 0;
	if (op) {
		size_t need = out_need(c, j);
		if (need == 0)
			return STP_EFRAME;
		if ((rc = grow(&j->out, &j->out_cap, need)) < 0)
			return rc;
		if (c->tensor[0])
			snprintf(j->where, sizeof j->where, "%s: tensor '%s'",
				 c->file, c->tensor);
		else
			snprintf(j->where, sizeof j->where, "%s", c->file);
	}
	if (!c->nworkers) {
		c->tail++;
		c->next++;
		if (op)
			j->rc = run_job(j, c->scratch[0]);
		return emit_oldest(c, out);
	}
	pthread_mutex_lock(&c->lock);
	c->tail++;
	pthread_cond_signal(&c->work_cv);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static int consume(struct codec *c, uint64_t n)
{
	if (n > c->pending)
		return STP_EFRAME;
	c->pending -= n;
	return 0;
}

static int on_file(struct codec *c, const struct stp_frame *f)
{
	struct stp_file_info fi;
	int rc = stp_file_parse(f->payload, f->len, &fi);

	if (rc < 0)
		return rc;
	memcpy(c->file, fi.path, fi.pathlen);
	c->file[fi.pathlen] = '\0';
	c->tensor[0] = '\0';
	c->pending = 0;
	c->in_file = 1;
	return 0;
}

static int on_tensor(struct codec *c, const struct stp_frame *f)
{
	struct stp_tensor_info t;
	int rc = stp_tensor_parse(f->payload, f->len, &t);

	if (rc < 0)
		return rc;
	snprintf(c->tensor, sizeof c->tensor, "%.*s",
		 (int)(t.namelen > 500 ? 500 : t.namelen), t.name);
	if (c->pending)
		return STP_EORDER;
	c->pending = t.nbytes;
	c->start = t.offset;
	c->code = stp_float_code(t.dtype);
	c->icode = stp_int_code(t.dtype);
	c->tensor_model = c->hint ? find_model(c, c->hint - 1) : NULL;
	c->hint = 0;
	c->rowlen = t.ndim ? t.shape[t.ndim - 1] : 1;
	return 0;
}

/* Checks a PLANES or CODED header against the tensor whose bytes it
 * carries, and counts its bytes. */
static int on_planes(struct codec *c, const struct stp_frame *f)
{
	struct stp_planes_hdr h;
	unsigned width;
	int rc = stp_planes_hdr_parse(f->payload, f->len, &h);

	if (rc < 0)
		return rc;
	if (f->type == STP_F_PLANES && h.layout != STP_LAYOUT_PLANES)
		return STP_ERESERVED;
	width = stp_float_width(h.dtype);
	if (!c->pending || h.dtype != c->code || h.offset < c->start ||
	    h.rowlen != c->rowlen ||
	    h.column != (h.offset - c->start) / width % c->rowlen)
		return STP_EFRAME;
	return consume(c, (uint64_t)h.count * width);
}

/* Checks a RESIDUAL or CODED_RESIDUAL header against the tensor whose
 * bytes it carries, and counts its bytes. */
static int on_residual(struct codec *c, const struct stp_frame *f)
{
	struct stp_resid_hdr h;
	int rc = stp_resid_hdr_parse(f->payload, f->len, &h);

	if (rc < 0)
		return rc;
	if (!c->pending || h.dtype != c->icode || h.offset < c->start ||
	    h.rowlen != c->rowlen ||
	    h.column != (h.offset - c->start) % c->rowlen)
		return STP_EFRAME;
	return consume(c, h.count);
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	do {
		p[n++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return n;
}

/* The index (formats/planes.md): names front-coded against the previous
 * entry, offsets as deltas, both small for the names of real models. */
static int write_index(struct codec *c, struct stp_out *out)
{
	uint8_t loc[8], *buf;
	size_t at = 4;
	uint64_t index_at = c->seg_bytes, prev_off = 0;
	const char *prev = "";
	size_t prev_len = 0;
	struct iovec v;
	int rc;

	/* An index too large for one frame is left out: readers then scan. */
	if (4 + c->index_bytes > STP_MAX_PAYLOAD)
		return 0;
	buf = malloc(4 + c->index_bytes);
	if (!buf)
		return STP_ENOMEM;
	stp_put32(buf, (uint32_t)c->nindex);
	for (size_t i = 0; i < c->nindex; i++) {
		const struct index_entry *e = &c->index[i];
		size_t shared = 0;

		while (shared < 255 && shared < prev_len &&
		       shared < e->namelen && prev[shared] == e->name[shared])
			shared++;
		buf[at++] = e->kind;
		buf[at++] = (uint8_t)shared;
		at += put_varint(buf + at, e->namelen - shared);
		at += put_varint(buf + at, e->offset - prev_off);
		memcpy(buf + at, e->name + shared, e->namelen - shared);
		at += e->namelen - shared;
		prev = e->name;
		prev_len = e->namelen;
		prev_off = e->offset;
	}
	v.iov_base = buf;
	v.iov_len = at;
	rc = emit(c, out, STP_F_INDEX, &v, 1, NULL);
	free(buf);
	if (rc < 0)
		return rc;
	stp_put64(loc, index_at);
	v.iov_base = loc;
	v.iov_len = 8;
	return emit(c, out, STP_F_INDEX_LOC, &v, 1, NULL);
}

/* A MODEL frame for the decoder: kept for the bodies that name it, and
 * not passed on (formats/model.md). */
static int on_model(struct codec *c, const struct stp_frame *f)
{
	struct stp_model *m;
	int rc;

	if ((rc = stp_model_parse(f->payload, f->len, &m)) < 0)
		return rc;
	if ((rc = add_model(c, m)) < 0)
		stp_model_free(m);
	return rc;
}

/* MODEL_FIT (CODE): a model lstm-model fitted, kept for the tensors whose
 * MODEL_USE names it; its MODEL frame goes out only if a body uses it. */
static int on_model_fit(struct codec *c, const struct stp_frame *f)
{
	return on_model(c, f);
}

/* MODEL_USE (CODE): the next tensor's exponents are coded with that
 * model too, where it pays. */
static int on_model_use(struct codec *c, const struct stp_frame *f)
{
	if (f->len != 4)
		return STP_EFRAME;
	c->hint = stp_get32(f->payload) + 1;
	if (c->hint == 0 || !find_model(c, c->hint - 1))
		return STP_EFRAME;
	return 0;
}

static void free_models(struct codec *c)
{
	for (unsigned i = 0; i < c->nmodels; i++)
		stp_model_free(c->models[i].m);
	c->nmodels = 0;
	c->hint = 0;
	c->tensor_model = NULL;
}

static int on_end(struct codec *c, struct stp_out *out)
{
	int rc = drain(c, out);

	/* every job is done: the segment's models can go */
	free_models(c);

	if (rc == 0 && (c->ops & STP_OP_CODE)) {
		if (!c->in_segment) {
			c->in_segment = 1;
			c->seg_bytes = STP_HEADER_SIZE;
		}
		rc = write_index(c, out);
		clear_index(c);
		c->in_segment = 0;
	}
	if (rc == 0)
		rc = out->frame(out->ctx, STP_F_END, NULL, 0, NULL);
	return rc;
}

/* 1 if codec_frame() will queue f for a worker (it must agree). */
static int will_transform(const struct codec *c, const struct stp_frame *f)
{
	switch (f->type) {
	case STP_F_PLANES:
		return (c->ops & (STP_OP_CODE | STP_OP_MERGE)) != 0;
	case STP_F_CODED:
	case STP_F_CODED_DATA:
	case STP_F_CODED_RESIDUAL:
		return (c->ops & STP_OP_DECODE) != 0;
	case STP_F_RESIDUAL:
		return (c->ops & STP_OP_CODE) ||
		       c->ops == (STP_OP_DECODE | STP_OP_MERGE);
	default:
		return 0;
	}
}

static int codec_frame(void *self, const struct stp_frame *f,
		       struct stp_out *out)
{
	struct codec *c = self;
	struct stp_frame fv;
	unsigned op = 0;
	int rc = 0;

	c->fault_pos = f->pos;
	if (f->crc_pending) {
		/* Checked here unless a worker will take the frame. */
		fv = *f;
		fv.crc_pending = 0;
		if (!c->nworkers || !will_transform(c, f)) {
			rc = stp_frame_verify(f->type, f->payload, f->len,
					      f->crc, &fv.body_crc);
			if (rc < 0)
				return rc;
		} else {
			fv.crc_pending = 1;
		}
		f = &fv;
	}
	switch (f->type) {
	case STP_F_FILE:
		rc = on_file(c, f);
		break;
	case STP_F_TENSOR:
		/* a TENSOR frame is inside a file (the reader checks it);
		 * after a seek to one, it is the first frame of that file
		 * this stage sees */
		c->in_file = 1;
		rc = on_tensor(c, f);
		break;
	case STP_F_DATA:
		if (f->len < 9)
			return STP_EFRAME;
		if ((c->ops & STP_OP_SPLIT) && c->pending && c->code &&
		    (f->len - 8) % stp_float_width(c->code) == 0 &&
		    (f->len - 8) / stp_float_width(c->code) >= STP_MIN_SPLIT)
			op = c->ops;
		else if (c->ops & STP_OP_CODE)
			op = STP_OP_CODE;   /* bytes coded as they are */
		c->text = !c->pending;
		if (c->pending)
			rc = consume(c, f->len - 8);
		break;
	case STP_F_CODED_DATA:
		if (f->len < 12)
			return STP_EFRAME;
		/* it stands for DATA, which belongs in a file */
		if (!c->in_file)
			return STP_EORDER;
		if (c->ops & STP_OP_DECODE)
			op = c->ops;
		if (c->pending)
			rc = consume(c, stp_get32(f->payload + 8));
		break;
	case STP_F_PLANES:
		if (c->ops & (STP_OP_CODE | STP_OP_MERGE))
			op = c->ops & (STP_OP_CODE | STP_OP_MERGE);
		rc = on_planes(c, f);
		break;
	case STP_F_CODED:
		if (c->ops & STP_OP_DECODE)
			op = c->ops;
		rc = on_planes(c, f);
		break;
	case STP_F_RESIDUAL:
		/* coded by rans-enc; undone where decoding goes to DATA (the
		 * front end, the library), else by predict -d */
		if (c->ops & STP_OP_CODE)
			op = STP_OP_CODE;
		else if (c->ops == (STP_OP_DECODE | STP_OP_MERGE))
			op = c->ops;
		rc = on_residual(c, f);
		break;
	case STP_F_CODED_RESIDUAL:
		if (c->ops & STP_OP_DECODE)
			op = c->ops;
		rc = on_residual(c, f);
		break;
	case STP_F_FILE_END:
		if (c->pending)
			return STP_ETRUNCATED;
		c->tensor[0] = '\0';
		c->in_file = 0;
		break;
	case STP_F_MODEL:
		if (c->ops & STP_OP_DECODE)
			return on_model(c, f);
		break;
	case STP_F_MODEL_FIT:
		if (c->ops & STP_OP_CODE)
			return on_model_fit(c, f);
		break;
	case STP_F_MODEL_USE:
		if (c->ops & STP_OP_CODE)
			return on_model_use(c, f);
		break;
	case STP_F_INDEX:
	case STP_F_INDEX_LOC:
		/* Owned by the coder: rewritten when coding, dropped when
		 * decoding, since offsets change with the frames. */
		if (c->ops & (STP_OP_CODE | STP_OP_DECODE))
			return 0;
		break;
	case STP_F_END:
		return on_end(c, out);
	}
	if (rc < 0 && f->crc_pending &&
	    stp_frame_verify(f->type, f->payload, f->len, f->crc,
			     &fv.body_crc) < 0)
		return STP_ECRC;
	if (rc < 0)
		return rc;
	return queue(c, f, op, out);
}

static const char *codec_where(void *self, uint64_t *pos)
{
	struct codec *c = self;

	if (!c->where[0]) {
		if (c->tensor[0])
			snprintf(c->where, sizeof c->where, "%s: tensor '%s'",
				 c->file, c->tensor);
		else
			snprintf(c->where, sizeof c->where, "%s", c->file);
	}
	*pos = c->fault_pos;
	return c->where;
}

static void codec_free(void *self)
{
	struct codec *c = self;

	if (!c)
		return;
	if (c->nworkers) {
		pthread_mutex_lock(&c->lock);
		c->stop = 1;
		pthread_cond_broadcast(&c->work_cv);
		pthread_mutex_unlock(&c->lock);
		for (unsigned t = 0; t < c->nworkers; t++)
			pthread_join(c->tid[t], NULL);
		pthread_cond_destroy(&c->work_cv);
		pthread_cond_destroy(&c->done_cv);
		pthread_mutex_destroy(&c->lock);
	}
	for (unsigned i = 0; i < c->cap_jobs; i++) {
		free(c->jobs[i].in);
		free(c->jobs[i].out);
	}
	for (unsigned t = 0; t < c->threads; t++)
		free(c->scratch[t]);
	clear_index(c);
	free_models(c);
	free(c->models);
	free(c->index);
	free(c->jobs);
	free(c);
}

int stp_codec_open(struct stp_stage *out_st, unsigned ops, unsigned threads,
		   unsigned model_kind)
{
	struct codec *c;

	switch (ops) {
	case STP_OP_SPLIT: case STP_OP_CODE: case STP_OP_SPLIT | STP_OP_CODE:
	case STP_OP_DECODE: case STP_OP_MERGE:
	case STP_OP_DECODE | STP_OP_MERGE:
		break;
	default:
		return STP_EUNSUPPORTED;
	}
	c = calloc(1, sizeof *c);
	if (!c)
		return STP_ENOMEM;
	c->ops = ops;
	c->model_kind = ops & STP_OP_CODE ? model_kind : 0;
	c->threads = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS :
								 threads;
	/* Enough frames in flight to keep every thread busy, and no more:
	 * each slot has buffers of its own, which cost page faults the first
	 * time they are touched (measured: 2 a thread beats 3 and 4). */
	c->cap_jobs = c->threads == 1 ? 1 : 2 * c->threads;
	c->jobs = calloc(c->cap_jobs, sizeof *c->jobs);
	if (!c->jobs) {
		free(c);
		return STP_ENOMEM;
	}
	for (unsigned t = 0; t < c->threads; t++) {
		/* the planes of a whole DATA frame (SPLIT|CODE) */
		c->scratch[t] = malloc(STP_MAX_PAYLOAD / 2 * 3 + 2 +
				       MAX_OUT_FRAMES * (STP_PLANES_FIXED +
							 4 * STP_MAX_PLANES));
		if (!c->scratch[t]) {
			codec_free(c);
			return STP_ENOMEM;
		}
	}
	if (c->threads > 1) {
		/* threads - 1 workers; the caller's thread is the last one */
		pthread_mutex_init(&c->lock, NULL);
		pthread_cond_init(&c->work_cv, NULL);
		pthread_cond_init(&c->done_cv, NULL);
		for (unsigned t = 0; t + 1 < c->threads; t++) {
			c->args[t].c = c;
			c->args[t].id = t;
			if (pthread_create(&c->tid[t], NULL, work, &c->args[t]))
				break;
			c->nworkers++;
		}
	}
	out_st->frame = codec_frame;
	out_st->where = codec_where;
	out_st->free = codec_free;
	out_st->self = c;
	out_st->checks_crc = c->nworkers > 0;
	return 0;
}
