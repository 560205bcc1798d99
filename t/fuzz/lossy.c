/* The lossy filters' rewriting stage (lib/rewrite.c) under int8-quant,
 * fp8-quant (stp_quant_open) and lowrank (stp_lowrank_open), on a hostile
 * stream: the stage parses each safetensors header inside the stream,
 * plans, rewrites headers, buffers whole tensors and rewrites
 * *.safetensors.index.json files.  Input: one flags byte, then the stream.
 *   bit 0     mend the CRCs first (fuzz.h)
 *   bits 1-3  the stage: int8-quant, int8-quant -d, fp8-quant,
 *             fp8-quant -d, lowrank --rank, lowrank --rank --int8,
 *             lowrank --energy, lowrank --merge
 *   bit 4     -p '*' (every name) rather than the default excludes
 *   bits 5-7  --min-dim (1 to 200), or with -d and --merge the dtype of
 *             tensors the record does not name
 * What must hold: no sanitizer report or leak; a stage that succeeds
 * writes a stream that stp_reader reads to its end; when the joiner
 * accepts the input and the stage succeeds, it accepts the output too;
 * and a quantizing stage's output, from a stream the joiner accepts,
 * dequantizes (int8/fp8-quant -d, lowrank --merge) to a stream it
 * accepts as well, unless the inverse stage refuses the input too. */
#include "fuzz.h"

#include "../../lib/error.h"
#include "../../lib/join.h"
#include "../../lib/lossy.h"
#include "../../lib/lowrank.h"
#include "../../lib/stpipe.h"

static const char *const default_exclude[] = { "*embed*", "*lm_head*",
					       "*wte*", "*wpe*" };
static const char *const every_name[] = { "*" };
static const uint64_t min_dims[8] = { 1, 1, 2, 8, 16, 64, 129, 200 };
static const char *const dtypes[8] = { NULL, "BF16", "F16", "F32",
				       NULL, "BF16", "F16", "F32" };

/* Opens the stage that mode (0-7) names, or its inverse; sel as given. */
static int open_stage(struct stp_stage *st, unsigned mode, int inverse,
		      const struct stp_select *sel, const char *dtype)
{
	if (mode < 4) {
		struct stp_quant_opts o = {
			.kind = mode < 2 ? STP_QUANT_INT8 : STP_QUANT_FP8,
			.decode = (mode & 1) || inverse, .sel = *sel,
			.options = "fuzz",
		};
		if (o.decode)
			o.dtype = dtype;
		return stp_quant_open(st, &o);
	}
	struct stp_lowrank_opts o = { .sel = *sel, .options = "fuzz" };
	if (mode == 7 || inverse) {
		o.merge = 1;
		o.dtype = dtype;
	} else if (mode == 6) {
		o.set = STP_LR_ENERGY | STP_LR_RANK;
		o.energy = 0.9;
		o.rank = 8;
	} else {
		o.set = STP_LR_RANK;
		o.rank = 2;
		o.int8 = mode == 5;
	}
	return stp_lowrank_open(st, &o);
}

/* One filter program: in_fd through st (freed here) into a new memory
 * file *out_fd (rewound).  Returns the stage's result; *out_stage says
 * whether the reader (0) or the stage (1) failed. */
static int run_filter(int in_fd, struct stp_stage *st, int *out_fd,
		      int *out_stage)
{
	struct stp_reader *r = NULL;
	struct stp_writer *w = NULL;
	struct stp_out out;
	uint64_t pos = 0;
	int rc, fd = memfd_create("fuzz-stage", 0);

	*out_fd = fd;
	*out_stage = 0;
	if (fd < 0) {
		rc = STP_EIO;
		goto out;
	}
	if ((rc = stp_reader_open(&r, in_fd)) < 0 ||
	    (rc = stp_writer_open(&w, fd)) < 0)
		goto out;
	out = stp_writer_out(w);
	rc = stp_run_stage(r, st, &out, &pos, out_stage);
	if (rc == 0) {
		FUZZ_CHECK(!stp_writer_in_segment(w));
		rc = stp_writer_flush(w);
	}
out:
	st->free(st->self);
	stp_writer_free(w);
	stp_reader_free(r);
	if (fd >= 0)
		lseek(fd, 0, SEEK_SET);
	return rc;
}

/* st-join over a null sink; *out_stage as run_filter sets it. */
static int run_join(int in_fd, int *out_stage)
{
	struct stp_reader *r = NULL;
	struct stp_sink *k = NULL;
	struct stp_joiner *j = NULL;
	struct stp_frame f;
	int rc;

	*out_stage = 0;
	lseek(in_fd, 0, SEEK_SET);
	if ((rc = stp_reader_open(&r, in_fd)) < 0 ||
	    (rc = stp_sink_open_null(&k)) < 0 ||
	    (rc = stp_joiner_open(&j, k)) < 0)
		goto out;
	while ((rc = stp_reader_next(r, &f)) > 0)
		if ((rc = stp_join_frame(j, &f)) < 0) {
			*out_stage = 1;
			break;
		}
out:
	stp_joiner_free(j);
	stp_sink_abort(k);
	stp_reader_free(r);
	lseek(in_fd, 0, SEEK_SET);
	return rc;
}

/* Reads the stream in fd to its end: 0 or the reader's error. */
static int read_all(int fd)
{
	struct stp_reader *r = NULL;
	struct stp_frame f;
	int rc;

	lseek(fd, 0, SEEK_SET);
	if ((rc = stp_reader_open(&r, fd)) == 0)
		while ((rc = stp_reader_next(r, &f)) > 0)
			;
	stp_reader_free(r);
	lseek(fd, 0, SEEK_SET);
	return rc;
}

/* Checks what a stage that succeeded wrote to fd: a stream read whole,
 * and one the joiner accepts where it accepted the input. */
static void check_output(int fd, int input_joins)
{
	int rc, in_stage;

	FUZZ_CHECK(read_all(fd) == 0);
	if (!input_joins)
		return;
	rc = run_join(fd, &in_stage);
	if (rc != 0)
		fprintf(stderr, "fuzz: output does not join: %s\n",
			stp_strerror(rc));
	FUZZ_CHECK(rc == 0 || rc == STP_ENOMEM);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stp_select sel = { .min_dim = 1 };
	struct stp_stage st;
	unsigned flags, mode;
	const char *dtype;
	uint8_t *in;
	int fd = -1, fd1 = -1, fd2 = -1, rc, in_stage, joins;

	if (size < 1)
		return 0;
	flags = data[0];
	mode = (flags >> 1) & 7;
	in = fuzz_copy(data + 1, size - 1, flags & 1);
	if (!in)
		return 0;
	if (flags & 16) {
		sel.include = every_name;
		sel.ninclude = 1;
	} else {
		sel.exclude = default_exclude;
		sel.nexclude = sizeof default_exclude /
			       sizeof default_exclude[0];
	}
	dtype = dtypes[flags >> 5];
	if (mode != 1 && mode != 3 && mode != 7)
		sel.min_dim = min_dims[flags >> 5];
	fd = fuzz_memfd(in, size - 1);
	if (fd < 0)
		goto out;
	joins = run_join(fd, &in_stage) == 0;
	if (open_stage(&st, mode, 0, &sel, dtype) < 0)
		goto out;
	rc = run_filter(fd, &st, &fd1, &in_stage);
	FUZZ_CHECK(rc <= 0);
	if (rc != 0)
		goto out;
	check_output(fd1, joins);
	/* a quantizing stage's output dequantizes; with -p '*' the inverse
	 * takes what the default excludes kept out, so it selects as the
	 * forward stage did */
	if (!joins || mode == 1 || mode == 3 || mode == 7)
		goto out;
	sel.min_dim = 1;
	if (open_stage(&st, mode, 1, &sel, NULL) < 0)
		goto out;
	rc = run_filter(fd1, &st, &fd2, &in_stage);
	if (rc == 0) {
		check_output(fd2, 1);
		goto out;
	}
	/* it may refuse what it refuses in the input too (a TENSOR frame
	 * that disagrees with its header, in a file the forward stage
	 * passed byte for byte) */
	close(fd2);
	fd2 = -1;
	if (rc == STP_ENOMEM || open_stage(&st, mode, 1, &sel, NULL) < 0 ||
	    run_filter(fd, &st, &fd2, &in_stage) != 0)
		goto out;
	fprintf(stderr, "fuzz: the inverse stage fails: %s\n",
		stp_strerror(rc));
	FUZZ_CHECK(rc == 0);
out:
	if (fd2 >= 0)
		close(fd2);
	if (fd1 >= 0)
		close(fd1);
	if (fd >= 0)
		close(fd);
	free(in);
	return 0;
}
