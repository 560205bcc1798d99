/* The compressing side on hostile input: st-split | fp8-exp | rans-enc
 * in one process (the splitter, then the codec stage doing SPLIT|CODE,
 * as stpipe compress chains them), then the decoding stage and the
 * joiner over the stream it wrote.  Input: one mode byte, then a file.
 *   bits 0-1  exponent model: static tables, adaptive0, ctx, static
 *   bit 2     the file is another file, not safetensors
 *   bit 3     two threads
 *   bits 4-5  the variant (fuzz.h)
 * A file the splitter takes must compress, and the stream must decode
 * back to exactly its bytes, through a joiner that takes every frame. */
#include "fuzz.h"

#include "../../lib/codec.h"
#include "../../lib/error.h"
#include "../../lib/join.h"
#include "../../lib/model.h"
#include "../../lib/split.h"

struct mem_source {
	const uint8_t *p;
	size_t n, at;
};

static long mem_read(void *ctx, void *buf, size_t n)
{
	struct mem_source *m = ctx;
	size_t left = m->n - m->at;

	if (n > left)
		n = left;
	memcpy(buf, m->p + m->at, n);
	m->at += n;
	return (long)n;
}

/* Where the decoding stage sends frames: file bytes are checked against
 * the original, then everything goes to the joiner. */
struct check_out {
	struct stp_out join;
	const uint8_t *file;
	size_t n;
	uint64_t seen;
};

static int check_frame(void *ctx, unsigned type, const struct iovec *v,
		       int n, const uint32_t *last_crc)
{
	struct check_out *c = ctx;

	if (type == STP_F_DATA) {
		const uint8_t *p;
		uint64_t off;
		size_t len;

		FUZZ_CHECK(n == 2 && v[0].iov_len == 8);
		off = stp_get64(v[0].iov_base);
		p = v[1].iov_base;
		len = v[1].iov_len;
		FUZZ_CHECK(off == c->seen && len <= c->n - off);
		FUZZ_CHECK(memcmp(c->file + off, p, len) == 0);
		c->seen += len;
	}
	FUZZ_CHECK(c->join.frame(c->join.ctx, type, v, n, last_crc) == 0);
	return 0;
}

static int compress(const uint8_t *file, size_t n, unsigned mode, int fd)
{
	static const unsigned models[] = { 0, STP_MODEL_ADAPTIVE0,
					   STP_MODEL_CTX, 0 };
	struct stp_splitter *s = NULL;
	struct stp_writer *w = NULL;
	struct stp_chain *ch = NULL;
	struct stp_stage st = { 0 };
	struct stp_out wout, cout;
	struct mem_source m = { file, n, 0 };
	struct stp_source src = { mem_read, &m };
	int other = (mode & 4) != 0;
	struct stp_file_info f = {
		.kind = other ? STP_KIND_OTHER : STP_KIND_SAFETENSORS,
		.path = other ? "x.bin" : "x.safetensors",
		.pathlen = other ? 5 : 13, .mode = 0644, .size = n,
	};
	int rc;

	if ((rc = stp_splitter_open(&s, 0)) < 0 ||
	    (rc = stp_writer_open(&w, fd)) < 0 ||
	    (rc = stp_codec_open(&st, STP_OP_SPLIT | STP_OP_CODE,
				 mode & 8 ? 2 : 1, models[mode & 3])) < 0)
		goto out;
	wout = stp_writer_out(w);
	if ((rc = stp_chain_open(&ch, &st, &wout)) < 0)
		goto out;
	cout = stp_chain_out(ch);
	rc = stp_split_file(s, &cout, &f, &src);
	if (rc == 0)
		rc = cout.frame(cout.ctx, STP_F_END, NULL, 0, NULL);
out:
	stp_chain_free(ch);
	if (st.free)
		st.free(st.self);
	stp_writer_free(w);
	stp_splitter_free(s);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stp_reader *r = NULL;
	struct stp_sink *k = NULL;
	struct stp_joiner *j = NULL;
	struct stp_stage st = { 0 };
	struct check_out c = { .seen = 0 };
	struct stp_out out = { check_frame, &c };
	uint64_t pos = 0;
	unsigned mode;
	uint8_t *file;
	int fd = -1, rc, in_stage = 0;

	if (size < 1)
		return 0;
	mode = data[0];
	file = fuzz_copy(data + 1, size - 1, 0);
	if (!file)
		return 0;
	fuzz_force_impl(mode >> 4);
	fd = memfd_create("fuzz-stz", 0);
	if (fd < 0)
		goto out;
	rc = compress(file, size - 1, mode, fd);
	if (rc < 0) {
		/* only the input may be at fault */
		FUZZ_CHECK(rc != STP_EIO && rc != STP_ETOOBIG &&
			   rc != STP_ECORRUPT && rc != STP_EUNDECODED);
		goto out;
	}
	lseek(fd, 0, SEEK_SET);
	c.file = file;
	c.n = size - 1;
	if (stp_reader_open(&r, fd) < 0 || stp_sink_open_null(&k) < 0 ||
	    stp_joiner_open(&j, k) < 0 ||
	    stp_codec_open(&st, STP_OP_DECODE | STP_OP_MERGE, 1, 0) < 0)
		goto out;
	c.join = stp_joiner_out(j);
	rc = stp_run_stage(r, &st, &out, &pos, &in_stage);
	FUZZ_CHECK(rc == 0);
	FUZZ_CHECK(c.seen == c.n);
out:
	if (st.free)
		st.free(st.self);
	stp_joiner_free(j);
	stp_sink_abort(k);
	stp_reader_free(r);
	if (fd >= 0)
		close(fd);
	free(file);
	return 0;
}
