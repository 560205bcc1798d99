/* rANS body decode (lib/rans.h stp_rans_decode), every method, every
 * variant.  Input: one selector byte, n as u24 (mod 2^21), then the body.
 *   sel % 4   the variant (fuzz.h): scalar, avx2, avx512, best
 * The body is the tail of libFuzzer's exact-size buffer and out is an
 * exact-size buffer, so ASan sees any read or write outside them.  The
 * forced variant and the scalar reference must give the same verdict and
 * the same bytes; decoded bytes must encode (to the same body on every
 * variant) and decode back. */
#include "fuzz.h"

#define MAX_N ((size_t)1 << 21)

static uint8_t *decode_with(const char *impl, const uint8_t *body,
			    size_t len, size_t n, int *out_rc)
{
	uint8_t *out = malloc(n ? n : 1);

	if (!out)
		return NULL;
	FUZZ_CHECK(stp_rans_force_impl(impl) == 0);
	*out_rc = stp_rans_decode(body, len, out, n);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "scalar", "avx2", "avx512",
					     "auto" };
	const uint8_t *p = data;
	const char *impl;
	uint8_t *out = NULL, *ref = NULL, *enc = NULL, *enc_ref = NULL;
	size_t n, len, enc_len, enc_ref_len;
	unsigned sel;
	int rc, rc_ref;

	if (size < 4)
		return 0;
	len = size;
	sel = (unsigned)fuzz_take(&p, &len, 1);
	n = (size_t)fuzz_take(&p, &len, 3) % MAX_N;
	impl = names[sel % 4];
	if (stp_rans_force_impl(impl) < 0)
		impl = "scalar";
	ref = decode_with("scalar", p, len, n, &rc_ref);
	out = decode_with(impl, p, len, n, &rc);
	if (!ref || !out)
		goto out;
	FUZZ_CHECK(rc <= 0 && rc == rc_ref);
	if (rc < 0)
		goto out;
	FUZZ_CHECK(memcmp(out, ref, n) == 0);
	/* what decoded must code and decode back, alike on every variant */
	enc = malloc(stp_rans_bound(n));
	enc_ref = malloc(stp_rans_bound(n));
	if (!enc || !enc_ref)
		goto out;
	FUZZ_CHECK(stp_rans_encode(out, n, enc, stp_rans_bound(n),
				   &enc_len) == 0);
	FUZZ_CHECK(stp_rans_force_impl("scalar") == 0);
	FUZZ_CHECK(stp_rans_encode(out, n, enc_ref, stp_rans_bound(n),
				   &enc_ref_len) == 0);
	FUZZ_CHECK(enc_len == enc_ref_len &&
		   memcmp(enc, enc_ref, enc_len) == 0);
	FUZZ_CHECK(enc_len <= n + 1);
	FUZZ_CHECK(stp_rans_force_impl(impl) == 0);
	memset(ref, 0, n);
	FUZZ_CHECK(stp_rans_decode(enc, enc_len, ref, n) == 0);
	FUZZ_CHECK(memcmp(out, ref, n) == 0);
out:
	free(out);
	free(ref);
	free(enc);
	free(enc_ref);
	return 0;
}
