/* The whole decoding pipeline of a coded stream: stp_decompress (the
 * codec stage doing DECODE|MERGE in one process, then the joiner) into a
 * null sink, as `stpipe decompress` and `stpipe verify` run it.  Input:
 * one flags byte, then the stream.
 *   bit 0     mend the CRCs first (fuzz.h)
 *   bits 1-2  the variant (fuzz.h)
 *   bit 3     two threads (a worker beside the caller's thread)
 *   bit 4     also run the programs' pipeline, rans-dec | predict -d |
 *             fp8-exp -d | st-join, through memory files: it must agree with the
 *             front end, and every stage that succeeds must write a
 *             stream the next one reads without a fault of the reader
 *   bit 5     the generic model coder, not a kind's fast path */
#include "fuzz.h"

#include "../../lib/codec.h"
#include "../../lib/error.h"
#include "../../lib/frontend.h"
#include "../../lib/join.h"
#include "../../lib/model.h"
#include "../../lib/predict.h"

/* One filter program: in_fd through a codec stage doing ops (0: predict
 * -d) into a new memory file *out_fd (rewound).  Returns the stage's
 * result; *out_stage says whether the reader (0) or the stage (1)
 * failed. */
static int run_filter(int in_fd, unsigned ops, int *out_fd, int *out_stage)
{
	struct stp_reader *r = NULL;
	struct stp_writer *w = NULL;
	struct stp_stage st = { 0 };
	struct stp_out out;
	uint64_t pos = 0;
	int rc, fd = memfd_create("fuzz-stage", 0);

	*out_fd = fd;
	*out_stage = 0;
	if (fd < 0)
		return STP_EIO;
	if ((rc = stp_reader_open(&r, in_fd)) < 0 ||
	    (rc = stp_writer_open(&w, fd)) < 0 ||
	    (rc = ops ? stp_codec_open(&st, ops, 1, 0) :
			stp_predict_open(&st, 1, 0)) < 0)
		goto out;
	out = stp_writer_out(w);
	rc = stp_run_stage(r, &st, &out, &pos, out_stage);
	if (rc == 0)
		FUZZ_CHECK(!stp_writer_in_segment(w));
out:
	if (st.free)
		st.free(st.self);
	stp_writer_free(w);
	stp_reader_free(r);
	lseek(fd, 0, SEEK_SET);
	return rc;
}

/* st-join over a null sink; sets *out_bytes to the file bytes joined and
 * *out_stage as run_filter does. */
static int run_join(int in_fd, uint64_t *out_bytes, int *out_stage)
{
	struct stp_reader *r = NULL;
	struct stp_sink *k = NULL;
	struct stp_joiner *j = NULL;
	struct stp_frame f;
	int rc;

	*out_stage = 0;
	if ((rc = stp_reader_open(&r, in_fd)) < 0 ||
	    (rc = stp_sink_open_null(&k)) < 0 ||
	    (rc = stp_joiner_open(&j, k)) < 0)
		goto out;
	while ((rc = stp_reader_next(r, &f)) > 0)
		if ((rc = stp_join_frame(j, &f)) < 0) {
			*out_stage = 1;
			break;
		}
	*out_bytes = stp_joiner_bytes(j);
out:
	stp_joiner_free(j);
	stp_sink_abort(k);
	stp_reader_free(r);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stp_sink *k = NULL;
	struct stp_report rep;
	unsigned flags;
	uint8_t *in;
	int fd, rc;

	if (size < 1)
		return 0;
	flags = data[0];
	in = fuzz_copy(data + 1, size - 1, flags & 1);
	if (!in)
		return 0;
	fuzz_force_impl(flags >> 1);
	stp_model_force_generic((flags >> 5) & 1);
	fd = fuzz_memfd(in, size - 1);
	if (fd < 0 || stp_sink_open_null(&k) < 0)
		goto out;
	rc = stp_decompress(fd, k, flags & 8 ? 2 : 1, NULL, NULL, &rep);
	FUZZ_CHECK(rc <= 0);
	FUZZ_CHECK(memchr(rep.where, '\0', sizeof rep.where) != NULL);
	if (flags & 16) {
		int fd1 = -1, fd2 = -1, fd3 = -1, in_stage = 0, rc2;
		uint64_t joined = 0;

		lseek(fd, 0, SEEK_SET);
		rc2 = run_filter(fd, STP_OP_DECODE, &fd1, &in_stage);
		if (rc2 == 0) {
			rc2 = run_filter(fd1, 0, &fd3, &in_stage);
			FUZZ_CHECK(rc2 == 0 || in_stage || rc2 == STP_ENOMEM);
		}
		if (rc2 == 0) {
			rc2 = run_filter(fd3, STP_OP_MERGE, &fd2, &in_stage);
			FUZZ_CHECK(rc2 == 0 || in_stage || rc2 == STP_ENOMEM);
		}
		if (rc2 == 0) {
			rc2 = run_join(fd2, &joined, &in_stage);
			FUZZ_CHECK(rc2 == 0 || in_stage || rc2 == STP_ENOMEM);
		}
		/* the front end and the programs agree */
		FUZZ_CHECK((rc == 0) == (rc2 == 0));
		if (rc == 0)
			FUZZ_CHECK(joined == rep.file_bytes);
		if (fd1 >= 0)
			close(fd1);
		if (fd2 >= 0)
			close(fd2);
		if (fd3 >= 0)
			close(fd3);
	}
out:
	stp_sink_abort(k);
	if (fd >= 0)
		close(fd);
	free(in);
	return 0;
}
