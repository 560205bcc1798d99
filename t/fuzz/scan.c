/* The readers of `stpipe info` and `stpipe extract` (lib/frontend.h
 * stp_scan, stp_extract): every frame checked, every exponent plane
 * decoded, and the INDEX/INDEX_LOC frames followed to one tensor.
 * Input: one flags byte, then the stream.
 *   bit 0     mend the CRCs first (fuzz.h)
 *   bits 1-2  the variant (fuzz.h)
 *   bit 3     extract by file and tensor name, not by tensor name alone
 * The tensor extracted is the first one the scan reports (or a name taken
 * from the input when it reports none, so that a damaged index is still
 * followed).  A tensor of a stream that scans whole must be extracted,
 * at exactly its size (the first tensor of its name, as the scan reports
 * it first), unless the stream fails stp_decompress too (the scan does
 * not decode sign/mantissa planes). */
#include "fuzz.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "../../lib/error.h"
#include "../../lib/frontend.h"
#include "../../lib/join.h"

struct first {
	char file[STP_MAX_PATH + 1];
	char name[256];
	uint64_t nbytes;
	int seen;
};

static int on_tensor(void *ctx, const struct stp_tensor_stat *t)
{
	struct first *f = ctx;

	FUZZ_CHECK(t->name && t->file && t->dtype);
	FUZZ_CHECK(t->ndim <= STP_MAX_NDIM);
	if (!f->seen && strlen(t->name) < sizeof f->name) {
		snprintf(f->file, sizeof f->file, "%s", t->file);
		snprintf(f->name, sizeof f->name, "%s", t->name);
		f->nbytes = t->nbytes;
		f->seen = 1;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stp_stream_stat st;
	struct stp_report rep;
	struct first first = { .seen = 0 };
	struct stat sb;
	unsigned flags;
	uint8_t *in;
	int fd, out = -1, rc;

	if (size < 1)
		return 0;
	flags = data[0];
	in = fuzz_copy(data + 1, size - 1, flags & 1);
	if (!in)
		return 0;
	fuzz_force_impl(flags >> 1);
	fd = fuzz_memfd(in, size - 1);
	if (fd < 0)
		goto out;
	rc = stp_scan(fd, on_tensor, NULL, &first, &st, &rep);
	FUZZ_CHECK(rc <= 0);
	FUZZ_CHECK(memchr(rep.where, '\0', sizeof rep.where) != NULL);
	if (!first.seen)
		snprintf(first.name, sizeof first.name, "w");
	out = memfd_create("fuzz-tensor", 0);
	if (out < 0)
		goto out;
	lseek(fd, 0, SEEK_SET);
	{
		int xrc = stp_extract(fd, flags & 8 && first.seen ? first.file
								  : NULL,
				      first.name, out, &rep);

		FUZZ_CHECK(xrc <= 0);
		FUZZ_CHECK(memchr(rep.where, '\0', sizeof rep.where) != NULL);
		if (rc == 0 && first.seen && xrc == 0) {
			FUZZ_CHECK(fstat(out, &sb) == 0);
			FUZZ_CHECK((uint64_t)sb.st_size == first.nbytes);
		}
		/* a stream that scans whole has every tensor it reports,
		 * unless it does not decode whole either: the scan decodes
		 * exponent planes only, so a damaged sign/mantissa body
		 * shows in extract and decompress, not in info */
		if (rc == 0 && first.seen && xrc != 0 && xrc != STP_ENOMEM) {
			struct stp_sink *k = NULL;
			int drc;

			FUZZ_CHECK(stp_sink_open_null(&k) == 0);
			lseek(fd, 0, SEEK_SET);
			drc = stp_decompress(fd, k, 1, NULL, NULL, &rep);
			stp_sink_abort(k);
			FUZZ_CHECK(drc < 0);
		}
	}
out:
	if (out >= 0)
		close(out);
	if (fd >= 0)
		close(fd);
	free(in);
	return 0;
}
