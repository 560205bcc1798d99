#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "error.h"
#include "frontend.h"
#include "lstm_stage.h"
#include "io.h"
#include "model.h"
#include "planes.h"
#include "predict.h"
#include "rans.h"

/* st-split | fp8-exp [| lstm-model] | rans-enc in one process, to a
 * writer on out_fd: its input is cout. */
struct stp_cpipe {
	struct stp_splitter *s;
	struct stp_writer *w;
	struct stp_chain *ch, *ch2, *ch3, *ch4;
	struct stp_stage st, sp, lm;
	struct stp_out wout, cout, mid1, mid2, mid3;	/* chains keep pointers */
	/* a lossy filter before the codec, and whether it failed */
	struct stp_stage lossy, lossy_wrap;
	struct stp_out after_lossy;
	int lossy_failed, after_failed;
};

void stp_cpipe_free(struct stp_cpipe *p)
{
	if (!p)
		return;
	stp_chain_free(p->ch4);
	if (p->lossy.free)
		p->lossy.free(p->lossy.self);
	stp_chain_free(p->ch3);
	stp_chain_free(p->ch2);
	stp_chain_free(p->ch);
	if (p->sp.free)
		p->sp.free(p->sp.self);
	if (p->lm.free)
		p->lm.free(p->lm.self);
	if (p->st.free)
		p->st.free(p->st.self);
	stp_writer_free(p->w);
	stp_splitter_free(p->s);
	free(p);
}

int stp_cpipe_open(struct stp_cpipe **out_p, int out_fd, unsigned threads,
		   unsigned model_kind)
{
	struct stp_cpipe *p = calloc(1, sizeof *p);
	struct stp_lstm_stage_opts lo = {
		.min_values = 65536, .group = STP_LSTM_BY_LAYER,
		.fit = STP_LSTM_OPTS_DEFAULT, .buffer = (size_t)256 << 20,
		.kind = STP_MODEL_LSTM,
	};
	int fitted = model_kind == STP_MODEL_LSTM ||
		     model_kind == STP_MODEL_AUTO;
	unsigned code_kind = model_kind == STP_MODEL_LSTM ? 0
			     : model_kind == STP_MODEL_AUTO ? STP_MODEL_CTX
			     : model_kind;
	int rc;

	if (!p)
		return STP_ENOMEM;
	if ((rc = stp_splitter_open(&p->s, 0)) < 0 ||
	    (rc = stp_writer_open(&p->w, out_fd)) < 0)
		goto fail;
	p->wout = stp_writer_out(p->w);
	if (!fitted) {
		/* st-split | fp8-exp | rans-enc, the last two in one job a
		 * frame */
		if ((rc = stp_codec_open(&p->st, STP_OP_SPLIT | STP_OP_CODE,
					 threads, code_kind)) < 0 ||
		    (rc = stp_chain_open(&p->ch, &p->st, &p->wout)) < 0)
			goto fail;
		p->cout = stp_chain_out(p->ch);
	} else {
		/* st-split | fp8-exp | lstm-model | rans-enc; for auto,
		 * lstm-model -O 12 -a ctx | rans-enc -m ctx */
		if (model_kind == STP_MODEL_AUTO) {
			lo.fit.online = 12;
			lo.against = STP_MODEL_CTX;
		}
		if ((rc = stp_codec_open(&p->st, STP_OP_CODE, threads,
					 code_kind)) < 0 ||
		    (rc = stp_chain_open(&p->ch, &p->st, &p->wout)) < 0 ||
		    (rc = stp_lstm_stage_open(&p->lm, &lo)) < 0)
			goto fail;
		p->mid1 = stp_chain_out(p->ch);
		if ((rc = stp_chain_open(&p->ch2, &p->lm, &p->mid1)) < 0)
			goto fail;
		p->mid2 = stp_chain_out(p->ch2);
		if ((rc = stp_codec_open(&p->sp, STP_OP_SPLIT, threads, 0)) < 0 ||
		    (rc = stp_chain_open(&p->ch3, &p->sp, &p->mid2)) < 0)
			goto fail;
		p->cout = stp_chain_out(p->ch3);
	}
	*out_p = p;
	return 0;
fail:
	stp_cpipe_free(p);
	return rc;
}

struct stp_splitter *stp_cpipe_splitter(struct stp_cpipe *p)
{
	return p->s;
}

struct stp_out *stp_cpipe_out(struct stp_cpipe *p)
{
	return &p->cout;
}

int stp_cpipe_end(struct stp_cpipe *p)
{
	return p->cout.frame(p->cout.ctx, STP_F_END, NULL, 0, NULL);
}

const char *stp_cpipe_where(struct stp_cpipe *p, int rc)
{
	/* The splitter names its input; failures after it are the coder's
	 * (a tensor) or the output's. */
	const char *at = stp_splitter_where(p->s);
	uint64_t pos;

	if (strcmp(at, "stdout") == 0 || at[0] == '\0')
		at = rc == STP_EIO ? "output" :
		     p->lossy_failed ? p->lossy.where(p->lossy.self, &pos) :
		     p->st.where(p->st.self, &pos);
	return at;
}

/* A failure of the stages after the lossy one comes back through it:
 * it is at fault only if they did not fail first. */
static int after_lossy_frame(void *ctx, unsigned type, const struct iovec *v,
			     int n, const uint32_t *crc)
{
	struct stp_cpipe *p = ctx;
	int rc = p->after_lossy.frame(p->after_lossy.ctx, type, v, n, crc);

	if (rc < 0)
		p->after_failed = 1;
	return rc;
}

static int lossy_frame(void *self, const struct stp_frame *f,
		       struct stp_out *out)
{
	struct stp_cpipe *p = self;
	int rc = p->lossy.frame(p->lossy.self, f, out);

	if (rc < 0 && !p->after_failed)
		p->lossy_failed = 1;
	return rc;
}

int stp_cpipe_lossy(struct stp_cpipe *p, struct stp_stage *st)
{
	int rc;

	p->lossy = *st;
	p->lossy_wrap = (struct stp_stage){ .frame = lossy_frame, .self = p };
	p->after_lossy = p->cout;
	p->mid3 = (struct stp_out){ after_lossy_frame, p };
	if ((rc = stp_chain_open(&p->ch4, &p->lossy_wrap, &p->mid3)) < 0)
		return rc;
	p->cout = stp_chain_out(p->ch4);
	return 0;
}

int stp_compress(const char *const *paths, int npaths, int out_fd,
		 unsigned threads, unsigned model_kind, struct stp_stage *lossy,
		 stp_progress_fn *progress, void *ctx, struct stp_report *rep)
{
	struct stp_cpipe *p;
	int rc;

	rep->where[0] = '\0';
	rep->file_bytes = 0;
	if ((rc = stp_cpipe_open(&p, out_fd, threads, model_kind)) < 0) {
		if (lossy)
			lossy->free(lossy->self);
		return rc;
	}
	if (lossy && (rc = stp_cpipe_lossy(p, lossy)) < 0) {
		stp_cpipe_free(p);
		return rc;
	}
	stp_splitter_set_progress(p->s, progress, ctx);
	for (int i = 0; i < npaths && rc == 0; i++)
		rc = stp_split_path(p->s, &p->cout, paths[i]);
	if (rc == 0)
		rc = stp_cpipe_end(p);
	rep->file_bytes = stp_splitter_bytes(p->s);
	if (rc < 0)
		snprintf(rep->where, sizeof rep->where, "%s",
			 stp_cpipe_where(p, rc));
	stp_cpipe_free(p);
	return rc;
}

struct progress_out {
	struct stp_out next;
	stp_progress_fn *fn;
	void *ctx;
	uint64_t done;
};

static int progress_frame(void *ctx, unsigned type, const struct iovec *v,
			  int n, const uint32_t *crc)
{
	struct progress_out *p = ctx;

	if (type == STP_F_DATA && n == 2) {
		p->done += v[1].iov_len;
		if (p->fn)
			p->fn(p->ctx, p->done, UINT64_MAX);
	}
	return p->next.frame(p->next.ctx, type, v, n, crc);
}

int stp_decompress(int in_fd, struct stp_sink *k, unsigned threads,
		   stp_progress_fn *progress, void *ctx,
		   struct stp_report *rep)
{
	struct stp_reader *r = NULL;
	struct stp_joiner *j = NULL;
	struct stp_stage st = { 0 };
	struct progress_out po = { .fn = progress, .ctx = ctx };
	struct stp_out out = { progress_frame, &po };
	uint64_t pos = 0;
	int rc, in_stage = 0;

	rep->where[0] = '\0';
	rep->file_bytes = 0;
	if ((rc = stp_reader_open(&r, in_fd)) < 0 ||
	    (rc = stp_joiner_open(&j, k)) < 0 ||
	    (rc = stp_codec_open(&st, STP_OP_DECODE | STP_OP_MERGE,
				 threads, 0)) < 0)
		goto out;
	po.next = stp_joiner_out(j);
	rc = stp_run_stage(r, &st, &out, &pos, &in_stage);
	rep->file_bytes = po.done;
	if (rc < 0 && in_stage) {
		/* The joiner knows the file when it failed; else the coder. */
		const char *at = stp_joiner_where(j);
		if (!at[0])
			at = st.where(st.self, &pos);
		else
			st.where(st.self, &pos);
		snprintf(rep->where, sizeof rep->where,
			 "%s (frame at offset %llu)", at,
			 (unsigned long long)pos);
	} else if (rc < 0) {
		snprintf(rep->where, sizeof rep->where, "offset %llu",
			 (unsigned long long)pos);
	}
out:
	if (st.free)
		st.free(st.self);
	stp_joiner_free(j);
	stp_reader_free(r);
	return rc;
}

/* ---- scanning ---- */

struct scan {
	stp_tensor_fn *fn;
	stp_note_fn *note;
	void *ctx;
	char file[STP_MAX_PATH + 1];
	uint64_t file_size, file_bytes;	/* declared, and carried so far */
	struct stp_tensor_info ti;
	char name[65536];
	int in_tensor;
	uint64_t seen;            /* bytes of the tensor seen */
	uint64_t hist[256];
	struct stp_tensor_stat t;
	uint8_t *plane;
	struct stp_stream_stat *tot;
	struct stp_model **models;        /* of the current segment */
	unsigned nmodels, cap_models;
};

/* Decodes an exponent body: with a model of the segment (method 4), or
 * a static one. */
static int scan_decode(struct scan *sc, const uint8_t *in, size_t len,
		       uint8_t *out, size_t n, uint64_t rowlen, uint64_t col)
{
	uint32_t id;

	if (len == 0 || in[0] != STP_RANS_MODEL)
		return stp_rans_decode(in, len, out, n);
	if (stp_model_body_id(in, len, &id) < 0)
		return STP_ETRUNCATED;
	for (unsigned i = 0; i < sc->nmodels; i++)
		if (sc->models[i]->id == id)
			return stp_model_decode(sc->models[i], in, len, out, n,
						rowlen, col);
	return STP_ECORRUPT;
}

static void scan_free_models(struct scan *sc)
{
	for (unsigned i = 0; i < sc->nmodels; i++)
		stp_model_free(sc->models[i]);
	sc->nmodels = 0;
}

static double hist_bits(const uint64_t hist[256], uint64_t n)
{
	double bits = 0;

	for (int i = 0; i < 256; i++)
		if (hist[i])
			bits -= (double)hist[i] *
				log2((double)hist[i] / (double)n);
	return bits;
}

static int finish_tensor(struct scan *sc)
{
	int rc = 0;

	if (!sc->in_tensor)
		return 0;
	sc->t.exp_h0 = hist_bits(sc->hist, sc->t.nexp);
	sc->tot->bound += sc->t.exp_bound;
	if (sc->fn)
		rc = sc->fn(sc->ctx, &sc->t);
	sc->in_tensor = 0;
	return rc;
}

/* The exponent plane of a PLANES or CODED frame: its histogram, its
 * chunk's entropy and its coded size. */
static int scan_planes(struct scan *sc, const struct stp_frame *f)
{
	struct stp_planes_hdr h;
	const uint8_t *p0;
	int rc = stp_planes_hdr_parse(f->payload, f->len, &h);
	unsigned code;

	if (rc < 0)
		return rc;
	if (h.len[0] > f->len - (size_t)rc)
		return STP_EFRAME;
	p0 = f->payload + rc;
	code = h.dtype;
	if (f->type == STP_F_CODED && h.layout == STP_LAYOUT_JOINT) {
		/* whole values: their exponents are what the plane would be */
		uint8_t *plane[2] = { sc->plane, sc->plane + h.count };
		if (h.count > STP_MAX_PAYLOAD / 3 || stp_float_width(code) != 1)
			return STP_ECORRUPT;
		rc = scan_decode(sc, p0, h.len[0], sc->plane + 2 * h.count,
				 h.count, 1, 0);
		if (rc < 0)
			return rc;
		rc = stp_planes_split(code, sc->plane + 2 * h.count, h.count,
				      plane);
		if (rc < 0)
			return rc;
		p0 = sc->plane;
	} else if (f->type == STP_F_CODED) {
		rc = scan_decode(sc, p0, h.len[0], sc->plane, h.count,
				 h.rowlen, h.column);
		if (rc < 0)
			return rc;
		p0 = sc->plane;
	} else if (h.len[0] != h.count) {
		return STP_EFRAME;
	}
	for (uint32_t i = 0; i < h.count; i++)
		sc->hist[p0[i]]++;
	sc->t.nexp += h.count;
	if (f->type == STP_F_CODED && h.layout == STP_LAYOUT_JOINT) {
		/* The joint body codes whole values: the exponents' share is
		 * what is left once the sign/mantissa bits are counted as
		 * they are, which the planes would have stored raw. */
		uint64_t sm = ((uint64_t)h.count *
			       (8 - stp_float_expbits(code)) + 7) / 8;

		sc->t.exp_coded += h.len[0] > sm ? h.len[0] - sm : 0;
	} else {
		sc->t.exp_coded += h.len[0];
	}
	sc->t.exp_bound += stp_entropy0_bits(p0, h.count);
	/* every other bit of the values counts as it is */
	sc->tot->bound += (double)h.count *
			  (8.0 * stp_float_width(code) - stp_float_expbits(code));
	sc->seen += (uint64_t)h.count * stp_float_width(code);
	sc->file_bytes += (uint64_t)h.count * stp_float_width(code);
	return 0;
}

static int scan_frame(struct scan *sc, const struct stp_frame *f)
{
	uint64_t size = f->len + STP_FRAME_OVERHEAD;
	int rc = 0;

	switch (f->type) {
	case STP_F_FILE: {
		struct stp_file_info fi;
		if ((rc = stp_file_parse(f->payload, f->len, &fi)) < 0)
			return rc;
		memcpy(sc->file, fi.path, fi.pathlen);
		sc->file[fi.pathlen] = '\0';
		sc->file_size = fi.size;
		sc->file_bytes = 0;
		sc->tot->files++;
		break;
	}
	case STP_F_TENSOR:
		/* a tensor still open has not had all its bytes */
		if (sc->in_tensor)
			return STP_EORDER;
		if ((rc = stp_tensor_parse(f->payload, f->len, &sc->ti)) < 0)
			return rc;
		memcpy(sc->name, sc->ti.name, sc->ti.namelen);
		sc->name[sc->ti.namelen] = '\0';
		memset(&sc->t, 0, sizeof sc->t);
		memset(sc->hist, 0, sizeof sc->hist);
		sc->t.file = sc->file;
		sc->t.name = sc->name;
		sc->t.dtype = sc->ti.dtype;
		sc->t.ndim = sc->ti.ndim;
		sc->t.shape = sc->ti.shape;
		sc->t.nbytes = sc->ti.nbytes;
		sc->t.coded = size;
		sc->seen = 0;
		sc->in_tensor = 1;
		sc->tot->tensors++;
		return sc->ti.nbytes == 0 ? finish_tensor(sc) : 0;
	case STP_F_DATA:
	case STP_F_CODED_DATA: {
		uint64_t n = f->type == STP_F_DATA ?
				     (f->len > 8 ? f->len - 8 : 0) :
				     (f->len >= 12 ? stp_get32(f->payload + 8) : 0);
		if (n == 0)
			return STP_EFRAME;
		sc->tot->bound += 8.0 * (double)n;
		sc->file_bytes += n;
		if (sc->in_tensor) {
			/* a tensor's frames end where its bytes do */
			if (n > sc->ti.nbytes - sc->seen)
				return STP_EFRAME;
			sc->t.coded += size;
			sc->seen += n;
		}
		break;
	}
	case STP_F_RESIDUAL:
	case STP_F_CODED_RESIDUAL: {
		/* the bytes of a predicted tensor (formats/predict.md) */
		struct stp_resid_hdr h;
		if ((rc = stp_resid_hdr_parse(f->payload, f->len, &h)) < 0)
			return rc;
		if (!sc->in_tensor || h.count > sc->ti.nbytes - sc->seen)
			return STP_EFRAME;
		sc->tot->bound += 8.0 * (double)h.count;
		sc->file_bytes += h.count;
		sc->t.coded += size;
		sc->seen += h.count;
		break;
	}
	case STP_F_PLANES:
	case STP_F_CODED:
		if (!sc->in_tensor)
			return STP_EFRAME;
		sc->t.coded += size;
		if ((rc = scan_planes(sc, f)) < 0)
			return rc;
		break;
	case STP_F_MODEL: {
		struct stp_model *m;

		if (sc->nmodels == sc->cap_models) {
			unsigned cap = sc->cap_models ? 2 * sc->cap_models : 16;
			struct stp_model **n;

			if (sc->nmodels >= 4096)
				return STP_ETOOBIG;
			n = realloc(sc->models, cap * sizeof *n);
			if (!n)
				return STP_ENOMEM;
			sc->models = n;
			sc->cap_models = cap;
		}
		if ((rc = stp_model_parse(f->payload, f->len, &m)) < 0)
			return rc;
		sc->models[sc->nmodels++] = m;
		/* A model's bytes count in the exponents of the tensor
		 * before whose first plane rans-enc puts it. */
		if (sc->in_tensor) {
			sc->t.coded += size;
			sc->t.exp_coded += size;
		}
		break;
	}
	case STP_F_END:
		scan_free_models(sc);
		break;
	case STP_F_LOSSY:
		if (sc->note)
			rc = sc->note(sc->ctx, sc->file, f->payload, f->len);
		break;
	case STP_F_FILE_END: {
		struct stp_file_end e;
		if (sc->in_tensor)
			return STP_ETRUNCATED;
		if ((rc = stp_file_end_parse(f->payload, f->len, &e)) < 0)
			return rc;
		/* the totals st-join checks (the CRC needs the bytes) */
		if (e.size != sc->file_bytes ||
		    (sc->file_size != STP_SIZE_UNKNOWN && sc->file_size != e.size))
			return STP_ETOTALS;
		sc->tot->orig += e.size;
		break;
	}
	}
	if (sc->in_tensor && sc->seen >= sc->ti.nbytes)
		return finish_tensor(sc);
	return 0;
}

int stp_scan(int fd, stp_tensor_fn *fn, stp_note_fn *note, void *ctx,
	     struct stp_stream_stat *out, struct stp_report *rep)
{
	struct stp_reader *r = NULL;
	struct scan *sc = calloc(1, sizeof *sc);
	struct stp_frame f;
	uint64_t end = 0;
	int rc;

	rep->where[0] = '\0';
	memset(out, 0, sizeof *out);
	if (!sc)
		return STP_ENOMEM;
	sc->fn = fn;
	sc->note = note;
	sc->ctx = ctx;
	sc->tot = out;
	sc->plane = malloc(STP_MAX_PAYLOAD);
	if (!sc->plane || (rc = stp_reader_open(&r, fd)) < 0) {
		rc = STP_ENOMEM;
		goto out;
	}
	while ((rc = stp_reader_next(r, &f)) > 0) {
		end = f.pos + f.len + STP_FRAME_OVERHEAD;
		if ((rc = scan_frame(sc, &f)) < 0) {
			snprintf(rep->where, sizeof rep->where,
				 "%s%s%.1000s%s (frame at offset %llu)",
				 sc->file, sc->in_tensor ? ": tensor '" : "",
				 sc->in_tensor ? sc->name : "",
				 sc->in_tensor ? "'" : "",
				 (unsigned long long)f.pos);
			goto out;
		}
	}
	if (rc < 0)
		snprintf(rep->where, sizeof rep->where, "offset %llu",
			 (unsigned long long)stp_reader_pos(r));
	out->coded = end;
out:
	stp_reader_free(r);
	scan_free_models(sc);
	free(sc->models);
	free(sc->plane);
	free(sc);
	return rc;
}

/* ---- random access ---- */

int stp_read_frame_at(int fd, uint64_t off, uint8_t *buf, size_t cap,
		      uint32_t *len)
{
	uint8_t h[8];
	uint32_t n;

	if (pread(fd, h, 8, (off_t)off) != 8)
		return STP_ETRUNCATED;
	n = stp_get32(h + 4);
	/* the payload and its CRC must both fit */
	if (n > STP_MAX_PAYLOAD || (size_t)n + 4 > cap || h[1] ||
	    stp_get16(h + 2))
		return STP_EFRAME;
	if (pread(fd, buf, n + 4, (off_t)off + 8) != (ssize_t)n + 4)
		return STP_ETRUNCATED;
	if (stp_crc32(stp_crc32(0, h, 8), buf, n) != stp_get32(buf + n))
		return STP_ECRC;
	*len = n;
	return h[0];
}

/* Reads a LEB128 number from buf[*at..len). 0 or STP_EFRAME. */
static int get_varint(const uint8_t *buf, size_t len, size_t *at,
		      uint64_t *out)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		uint8_t b;

		if (*at >= len)
			return STP_EFRAME;
		b = buf[(*at)++];
		v |= (uint64_t)(b & 0x7F) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return STP_EFRAME;
}

int stp_index_walk(int fd, stp_index_fn *fn, void *ctx)
{
	struct stat st;
	uint8_t end[36], *buf = NULL;
	uint64_t size, seg, loc;
	uint32_t len;
	size_t at = 4, namelen = 0;
	int rc;
	uint32_t count;
	uint64_t off = 0;
	static __thread char entry[65536 + 256];

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size < STP_HEADER_SIZE + 36 + 20)
		return STP_EUNSUPPORTED;
	size = (uint64_t)st.st_size;
	if (stp_read_frame_at(fd, size - 36, end, sizeof end, &len) !=
		    STP_F_END ||
	    len != 24 || stp_get64(end + 8) > size - 36)
		return STP_EUNSUPPORTED;
	seg = size - 36 - stp_get64(end + 8);
	/* The index covers its own segment: with segments before it, the
	 * first file holding a tensor may be in one of those. */
	if (seg != 0)
		return STP_EUNSUPPORTED;
	if (stp_read_frame_at(fd, size - 56, end, sizeof end, &len) !=
		    STP_F_INDEX_LOC || len != 8)
		return STP_EUNSUPPORTED;
	loc = stp_get64(end);
	buf = malloc(STP_MAX_PAYLOAD + 4);
	if (!buf)
		return STP_ENOMEM;
	if (loc > size - seg ||
	    stp_read_frame_at(fd, seg + loc, buf, STP_MAX_PAYLOAD + 4, &len) !=
		    STP_F_INDEX || len < 4) {
		free(buf);
		return STP_EUNSUPPORTED;
	}
	count = stp_get32(buf);
	rc = 0;
	for (uint32_t i = 0; i < count && rc == 0; i++) {
		uint64_t suffix, delta;
		size_t shared;
		unsigned kind;

		if (at + 2 > len) {
			rc = STP_EUNSUPPORTED;
			break;
		}
		kind = buf[at];
		shared = buf[at + 1];
		at += 2;
		if (get_varint(buf, len, &at, &suffix) < 0 ||
		    get_varint(buf, len, &at, &delta) < 0 ||
		    shared > namelen || suffix > len - at ||
		    shared + suffix > sizeof entry || kind < 1 || kind > 3) {
			rc = STP_EUNSUPPORTED;
			break;
		}
		memcpy(entry + shared, buf + at, suffix);
		namelen = shared + (size_t)suffix;
		at += suffix;
		off += delta;
		if (off >= size - seg) {
			rc = STP_EUNSUPPORTED;
			break;
		}
		rc = fn(ctx, kind, entry, namelen, seg + off);
	}
	free(buf);
	return rc;
}

/* Input offsets of the MODEL frames an index lists before the tensor. */
#define MAX_INDEX_MODELS 4096

struct model_offsets {
	uint64_t off[MAX_INDEX_MODELS];
	unsigned n;
};

struct lookup {
	const char *path, *name;
	int in_path;
	uint64_t off;
	struct model_offsets *mo;
};

static int lookup_entry(void *ctx, unsigned kind, const char *entry,
			size_t namelen, uint64_t off)
{
	struct lookup *l = ctx;

	if (kind == 3 && l->mo->n < MAX_INDEX_MODELS)
		l->mo->off[l->mo->n++] = off;
	else if (kind == 1)
		l->in_path = !l->path ||
			     (strlen(l->path) == namelen &&
			      memcmp(l->path, entry, namelen) == 0);
	else if (kind == 2 && l->in_path && namelen == strlen(l->name) &&
		 memcmp(entry, l->name, namelen) == 0) {
		l->off = off;
		return 1;
	}
	return 0;
}

/* Finds the tensor in the index of a single-segment file; sets *out_off
 * to its TENSOR frame's input offset. 0, STP_ENOMEM, or STP_ERANGE (not
 * in the index, or no usable index: scan instead). */
static int index_lookup(int fd, const char *path, const char *name,
			uint64_t *out_off, struct model_offsets *mo)
{
	struct lookup l = { path, name, path == NULL, 0, mo };
	int rc = stp_index_walk(fd, lookup_entry, &l);

	if (rc == 1) {
		*out_off = l.off;
		return 0;
	}
	return rc == STP_ENOMEM ? rc : STP_ERANGE;
}

struct extract_out {
	int fd;
	uint64_t left;            /* bytes of the tensor still to write */
	int active;
};

static int extract_frame(void *ctx, unsigned type, const struct iovec *v,
			 int n, const uint32_t *crc)
{
	struct extract_out *x = ctx;

	(void)crc;
	if (!x->active || type != STP_F_DATA || n < 1)
		return 0;
	for (int i = 0; i < n; i++) {
		const uint8_t *p = v[i].iov_base;
		size_t len = v[i].iov_len;
		int rc;

		if (i == 0) {   /* the 8-byte offset */
			if (len < 8)
				return STP_EFRAME;
			p += 8;
			len -= 8;
		}
		if (len > x->left)
			return STP_EFRAME;
		if ((rc = stp_write_all(x->fd, p, len)) < 0)
			return rc;
		x->left -= len;
	}
	return 0;
}

int stp_feed_models(int fd, const uint64_t *off, size_t n,
		    struct stp_stage *st, struct stp_out *out, uint8_t *buf)
{
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct stp_frame mf = { .type = STP_F_MODEL, .payload = buf };
		uint32_t len;

		if (stp_read_frame_at(fd, off[i], buf, STP_MAX_PAYLOAD + 4,
				      &len) != STP_F_MODEL)
			return STP_ECORRUPT;
		mf.len = len;
		rc = st->frame(st->self, &mf, out);
	}
	return rc;
}

/* One attempt: from input offset off when seeked (a TENSOR frame the
 * index names), else from the start. *out_wrote says whether any byte of
 * the tensor went out. */
static int extract_from(int fd, int seeked, uint64_t off,
			const struct model_offsets *mo, const char *path,
			const char *name, int out_fd, int *out_wrote)
{
	struct stp_reader *r = NULL;
	struct stp_stage st = { 0 };
	struct extract_out x = { .fd = out_fd };
	struct stp_out out = { extract_frame, &x };
	struct stp_frame f;
	char file[STP_MAX_PATH + 1] = "";
	int rc;

	if ((rc = stp_reader_open(&r, fd)) < 0 ||
	    (rc = stp_codec_open(&st, STP_OP_DECODE | STP_OP_MERGE, 1, 0)) < 0)
		goto out;
	if (seeked && mo->n) {
		uint8_t *buf = malloc(STP_MAX_PAYLOAD + 4);

		rc = buf ? stp_feed_models(fd, mo->off, mo->n, &st, &out, buf)
			 : STP_ENOMEM;
		free(buf);
	}
	if (rc < 0)
		goto out;
	if (seeked)
		rc = stp_reader_seek(r, off);
	else
		(void)lseek(fd, 0, SEEK_SET);   /* a pipe cannot, nor need to */
	while (rc == 0) {
		int got = stp_reader_next(r, &f);

		if (got <= 0) {
			rc = got < 0 ? got : STP_ERANGE;
			break;
		}
		if (f.type == STP_F_FILE) {
			struct stp_file_info fi;
			if (stp_file_parse(f.payload, f.len, &fi) == 0)
				snprintf(file, sizeof file, "%.*s",
					 (int)fi.pathlen, fi.path);
		} else if (f.type == STP_F_TENSOR && !x.active) {
			struct stp_tensor_info t;

			if ((rc = stp_tensor_parse(f.payload, f.len, &t)) < 0)
				break;
			if (t.namelen == strlen(name) &&
			    memcmp(t.name, name, t.namelen) == 0 &&
			    (!path || seeked || strcmp(path, file) == 0)) {
				x.active = 1;
				x.left = t.nbytes;
			} else if (seeked) {
				rc = STP_ECORRUPT;   /* the index is wrong */
				break;
			}
		}
		if ((rc = st.frame(st.self, &f, &out)) < 0)
			break;
		if (x.active && x.left == 0)
			break;
	}
	*out_wrote = x.active;
out:
	if (st.free)
		st.free(st.self);
	stp_reader_free(r);
	return rc;
}

int stp_extract(int fd, const char *path, const char *name, int out_fd,
		struct stp_report *rep)
{
	struct model_offsets mo = { .n = 0 };
	uint64_t off = 0;
	int rc, wrote = 0;

	snprintf(rep->where, sizeof rep->where, "tensor '%s'", name);
	rc = index_lookup(fd, path, name, &off, &mo);
	if (rc == STP_ENOMEM)
		return rc;
	if (rc == 0) {
		rc = extract_from(fd, 1, off, &mo, path, name, out_fd, &wrote);
		if (rc == 0 || wrote)
			return rc;
	}
	/* No index, or one that does not lead to the tensor (it may sit in
	 * an earlier segment, or the index may be stale): read in order. */
	return extract_from(fd, 0, 0, &mo, path, name, out_fd, &wrote);
}
