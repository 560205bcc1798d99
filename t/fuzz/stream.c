/* The stream frame reader (lib/stream.h stp_reader_*) and the parsers of
 * the core payloads.  Input: one flags byte, then the stream.
 *   bit 0  mend the CRCs first (fuzz.h)
 *   bit 1  defer the CRCs of plane/model/coded frames, checked here
 *   bit 2  seek the reader to the offset of the second frame after the
 *          first one (what stpipe extract does from an index)
 * A stream the reader takes whole must be written back byte for byte by
 * a writer given the same frames: the reader accepts only what the writer
 * writes. */
#include "fuzz.h"

static uint8_t *out_bytes(int fd, size_t *out_n)
{
	off_t end = lseek(fd, 0, SEEK_END);
	uint8_t *p;

	if (end < 0 || lseek(fd, 0, SEEK_SET) != 0)
		return NULL;
	p = malloc((size_t)end + 1);
	if (!p)
		return NULL;
	if (read(fd, p, (size_t)end) != (ssize_t)end) {
		free(p);
		return NULL;
	}
	*out_n = (size_t)end;
	return p;
}

/* Parses the payload of a core frame; a parser must not read past it. */
static void parse_core(const struct stp_frame *f)
{
	uint8_t *copy = malloc(f->len ? f->len : 1);
	struct stp_file_info fi;
	struct stp_tensor_info ti;
	struct stp_file_end fe;

	if (!copy)
		return;
	/* An exact-size copy, so that ASan sees any read past the end. */
	memcpy(copy, f->payload, f->len);
	switch (f->type) {
	case STP_F_FILE:
		if (stp_file_parse(copy, f->len, &fi) == 0)
			FUZZ_CHECK(stp_path_check(fi.path, fi.pathlen) == 0);
		break;
	case STP_F_TENSOR:
		if (stp_tensor_parse(copy, f->len, &ti) == 0)
			FUZZ_CHECK(stp_dtype_size(ti.dtype) > 0);
		break;
	case STP_F_FILE_END:
		(void)stp_file_end_parse(copy, f->len, &fe);
		break;
	}
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stp_reader *r = NULL;
	struct stp_writer *w = NULL;
	struct stp_frame f;
	uint8_t *in;
	unsigned flags;
	int fd, wfd = -1, rc, whole = 1, nframes = 0;

	if (size < 1)
		return 0;
	flags = data[0];
	in = fuzz_copy(data + 1, size - 1, flags & 1);
	if (!in)
		return 0;
	fd = fuzz_memfd(in, size - 1);
	if (fd < 0 || stp_reader_open(&r, fd) < 0)
		goto out;
	stp_reader_defer_crc(r, (flags & 2) != 0);
	if (!(flags & 4)) {
		wfd = memfd_create("fuzz-out", 0);
		if (wfd < 0 || stp_writer_open(&w, wfd) < 0)
			goto out;
	}
	while ((rc = stp_reader_next(r, &f)) > 0) {
		uint32_t body_crc;

		FUZZ_CHECK(f.len <= STP_MAX_PAYLOAD);
		FUZZ_CHECK(f.pos + f.len + STP_FRAME_OVERHEAD <= size - 1);
		if (f.crc_pending) {
			FUZZ_CHECK(f.type >= STP_F_PLANE_FIRST &&
				   f.type <= STP_F_CODED_LAST);
			if (stp_frame_verify(f.type, f.payload, f.len, f.crc,
					     &body_crc) < 0)
				whole = 0;
		}
		parse_core(&f);
		if (w && whole) {
			if (f.type == STP_F_END)
				FUZZ_CHECK(stp_writer_end(w) == 0);
			else
				FUZZ_CHECK(stp_write(w, f.type, f.payload,
						     f.len) == 0);
		}
		if ((flags & 4) && ++nframes == 1) {
			/* from the second frame on, as an index would */
			uint64_t next = f.pos + f.len + STP_FRAME_OVERHEAD;
			if (f.type == STP_F_END ||
			    stp_reader_seek(r, next) < 0)
				break;
		}
	}
	if (rc < 0)
		FUZZ_CHECK(stp_reader_pos(r) <= size - 1);
	if (w && rc == 0 && whole) {
		uint8_t *back;
		size_t n = 0;

		FUZZ_CHECK(stp_writer_flush(w) == 0);
		back = out_bytes(wfd, &n);
		FUZZ_CHECK(back != NULL);
		FUZZ_CHECK(n == size - 1 && memcmp(back, in, n) == 0);
		free(back);
	}
out:
	stp_writer_free(w);
	stp_reader_free(r);
	if (wfd >= 0)
		close(wfd);
	if (fd >= 0)
		close(fd);
	free(in);
	return 0;
}
