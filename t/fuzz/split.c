/* The reading side of st-split (lib/split.h): a safetensors file, or an
 * archive that libarchive reads, cut into frames.  Input: one mode byte,
 * then the file.
 *   mode % 4 == 0  stp_split_path on a memory file, as `st-split FILE`:
 *                  sniffed as safetensors, else read as an archive
 *   mode % 4 == 1  stp_split_file as safetensors, size known
 *   mode % 4 == 2  stp_split_file as safetensors, size unknown (a pipe)
 *   mode % 4 == 3  stp_split_file as another file
 * Every frame the splitter sends goes to a joiner over a null sink, which
 * must take them all when the split succeeds: st-split must not write a
 * stream st-join refuses.  (Before a failure, such as input that ends
 * inside an element, a frame may be one the joiner refuses.)  For a
 * single file the DATA frames must hold exactly the input's bytes. */
#include "fuzz.h"

#include "../../lib/error.h"
#include "../../lib/join.h"
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

struct check_out {
	struct stp_out join;
	const uint8_t *file;      /* the single file's bytes, or NULL */
	size_t n;
	int join_rc;              /* the joiner's first failure */
};

static int check_frame(void *ctx, unsigned type, const struct iovec *v,
		       int n, const uint32_t *last_crc)
{
	struct check_out *c = ctx;
	size_t len = 0;

	for (int i = 0; i < n; i++)
		len += v[i].iov_len;
	FUZZ_CHECK(len <= STP_MAX_PAYLOAD);
	if (c->file && type == STP_F_DATA) {
		uint64_t off;

		FUZZ_CHECK(n == 2 && v[0].iov_len == 8);
		off = stp_get64(v[0].iov_base);
		FUZZ_CHECK(off <= c->n && v[1].iov_len <= c->n - off);
		FUZZ_CHECK(memcmp(c->file + off, v[1].iov_base,
				  v[1].iov_len) == 0);
		if (last_crc)
			FUZZ_CHECK(*last_crc == stp_crc32(0, v[1].iov_base,
							  v[1].iov_len));
	}
	if (c->join_rc == 0)
		c->join_rc = c->join.frame(c->join.ctx, type, v, n, last_crc);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stp_splitter *s = NULL;
	struct stp_sink *k = NULL;
	struct stp_joiner *j = NULL;
	struct check_out c = { .file = NULL };
	struct stp_out out = { check_frame, &c };
	unsigned mode;
	uint8_t *file;
	int fd = -1, rc;

	if (size < 1)
		return 0;
	mode = data[0] % 4;
	file = fuzz_copy(data + 1, size - 1, 0);
	if (!file)
		return 0;
	/* small chunks, so that small inputs still make several frames */
	if (stp_splitter_open(&s, 64 + (data[0] >> 2) * 16) < 0 ||
	    stp_sink_open_null(&k) < 0 || stp_joiner_open(&j, k) < 0)
		goto out;
	c.join = stp_joiner_out(j);
	if (mode == 0) {
		char path[64];

		fd = fuzz_memfd(file, size - 1);
		if (fd < 0)
			goto out;
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		rc = stp_split_path(s, &out, path);
	} else {
		struct mem_source m = { file, size - 1, 0 };
		struct stp_source src = { mem_read, &m };
		struct stp_file_info f = {
			.kind = mode == 3 ? STP_KIND_OTHER : STP_KIND_SAFETENSORS,
			.path = "x.safetensors", .pathlen = 13, .mode = 0644,
			.size = mode == 2 ? STP_SIZE_UNKNOWN : size - 1,
		};

		c.file = file;
		c.n = size - 1;
		rc = stp_split_file(s, &out, &f, &src);
		if (rc == 0)
			FUZZ_CHECK(m.at == m.n);
	}
	FUZZ_CHECK(rc <= 0);
	FUZZ_CHECK(rc < 0 || c.join_rc == 0);
	FUZZ_CHECK(memchr(stp_splitter_where(s), '\0', 4096 + 512) != NULL);
out:
	stp_joiner_free(j);
	stp_sink_abort(k);
	stp_splitter_free(s);
	if (fd >= 0)
		close(fd);
	free(file);
	return 0;
}
