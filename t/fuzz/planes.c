/* fp8-exp's merge (lib/planes.h stp_planes_merge) and the PLANES/CODED
 * header parser.  Input: one selector byte, then the planes back to back.
 *   sel % 4        the variant (fuzz.h), forced for the merge
 *   sel / 4 % 6    the dtype code, 1..6
 * count is the largest that the planes' bytes hold.  Each plane lies in
 * its own exact-size buffer.  The forced variant and the scalar reference
 * must give the same verdict and the same bytes, and values that merge
 * must split back into exactly the planes they came from. */
#include "fuzz.h"

#include "../../lib/error.h"

#define MAX_COUNT (1u << 20)

static size_t total_len(unsigned code, uint32_t count)
{
	size_t n = 0;

	for (unsigned i = 0; i < stp_float_nplanes(code); i++)
		n += stp_plane_len(code, i, count);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *plane[STP_MAX_PLANES] = { 0 }, *back[STP_MAX_PLANES] = { 0 };
	uint8_t *out = NULL, *ref = NULL;
	struct stp_planes_hdr h;
	const uint8_t *p;
	unsigned sel, code, np, width;
	uint32_t lo = 0, hi, count;
	size_t at = 0;
	int rc, rc_ref;

	if (size < 1)
		return 0;
	sel = data[0];
	p = data + 1;
	size--;
	{
		/* the header parser, on an exact-size copy of the input */
		uint8_t *copy = fuzz_copy(p, size, 0);
		if (copy) {
			(void)stp_planes_hdr_parse(copy, size, &h);
			free(copy);
		}
	}
	code = 1 + sel / 4 % 6;
	np = stp_float_nplanes(code);
	width = stp_float_width(code);
	hi = size < MAX_COUNT ? (uint32_t)size : MAX_COUNT;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo + 1) / 2;
		if (total_len(code, mid) <= size)
			lo = mid;
		else
			hi = mid - 1;
	}
	count = lo;
	if (count == 0)
		return 0;
	for (unsigned i = 0; i < np; i++) {
		size_t n = stp_plane_len(code, i, count);
		plane[i] = malloc(n);
		back[i] = malloc(n);
		if (!plane[i] || !back[i])
			goto out;
		memcpy(plane[i], p + at, n);
		at += n;
	}
	out = malloc((size_t)count * width);
	ref = malloc((size_t)count * width);
	if (!out || !ref)
		goto out;
	fuzz_force_impl(0);
	rc_ref = stp_planes_merge(code, (const uint8_t *const *)plane, count,
				  ref);
	fuzz_force_impl(sel);
	rc = stp_planes_merge(code, (const uint8_t *const *)plane, count, out);
	FUZZ_CHECK(rc == rc_ref);
	FUZZ_CHECK(rc == 0 || rc == STP_EFRAME);
	if (rc == 0) {
		FUZZ_CHECK(memcmp(out, ref, (size_t)count * width) == 0);
		FUZZ_CHECK(stp_planes_split(code, out, count, back) == 0);
		for (unsigned i = 0; i < np; i++)
			FUZZ_CHECK(memcmp(back[i], plane[i],
					  stp_plane_len(code, i, count)) == 0);
		fuzz_force_impl(0);
		FUZZ_CHECK(stp_planes_split(code, out, count, back) == 0);
		for (unsigned i = 0; i < np; i++)
			FUZZ_CHECK(memcmp(back[i], plane[i],
					  stp_plane_len(code, i, count)) == 0);
	}
out:
	for (unsigned i = 0; i < np; i++) {
		free(plane[i]);
		free(back[i]);
	}
	free(out);
	free(ref);
	return 0;
}
