/* MODEL frames and model-coded bodies (lib/model.h stp_model_parse,
 * stp_model_body_id, stp_model_decode).  Input:
 *   u8   sel: bit 0 forces the generic coder for the decode under test
 *   u24  n (mod 2^18: the ctx model decodes slowly)
 *   u32  rowlen, u32 column
 *   u16  m: length of the MODEL payload, then its m bytes
 *   the method-4 body, to the end of the input (libFuzzer's exact-size
 *   buffer, so that ASan sees a read past its end)
 * The generic coder and a kind's fast path must agree on every body; a
 * body that decodes must be the one the encoder writes for those symbols
 * (states and words are then fixed: formats/model.md). */
#include "fuzz.h"

#include "../../lib/error.h"
#include "../../lib/model.h"

#define MAX_N ((size_t)1 << 18)

static uint8_t *decode_with(int generic, const struct stp_model *m,
			    const uint8_t *body, size_t len, size_t n,
			    uint64_t rowlen, uint64_t column, int *out_rc)
{
	uint8_t *out = malloc(n ? n : 1);

	if (!out)
		return NULL;
	stp_model_force_generic(generic);
	*out_rc = stp_model_decode(m, body, len, out, n, rowlen, column);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data;
	struct stp_model *m = NULL;
	uint8_t *payload = NULL, *out = NULL, *ref = NULL, *enc = NULL;
	size_t len = size, n, mlen, enc_len;
	uint64_t rowlen, column;
	unsigned sel;
	uint32_t id;
	int rc, rc_ref, generic;

	if (size < 14)
		return 0;
	sel = (unsigned)fuzz_take(&p, &len, 1);
	n = (size_t)fuzz_take(&p, &len, 3) % MAX_N;
	rowlen = fuzz_take(&p, &len, 4);
	column = fuzz_take(&p, &len, 4);
	mlen = (size_t)fuzz_take(&p, &len, 2);
	if (mlen > len)
		mlen = len;
	payload = fuzz_copy(p, mlen, 0);
	p += mlen;
	len -= mlen;
	if (!payload)
		return 0;
	rc = stp_model_parse(payload, mlen, &m);
	FUZZ_CHECK(rc <= 0);
	if (rc < 0) {
		FUZZ_CHECK(rc == STP_EFRAME || rc == STP_ERESERVED ||
			   rc == STP_EUNSUPPORTED || rc == STP_ECORRUPT ||
			   rc == STP_ENOMEM);
		goto out;
	}
	{
		size_t plen;
		const uint8_t *back = stp_model_payload(m, &plen);
		FUZZ_CHECK(plen == mlen && memcmp(back, payload, mlen) == 0);
	}
	if (stp_model_body_id(p, len, &id) == 0)
		FUZZ_CHECK(id == stp_get32(p + 1));
	generic = sel & 1;
	ref = decode_with(!generic, m, p, len, n, rowlen, column, &rc_ref);
	out = decode_with(generic, m, p, len, n, rowlen, column, &rc);
	if (!ref || !out)
		goto out;
	FUZZ_CHECK(rc <= 0 && rc == rc_ref);
	if (rc < 0)
		goto out;
	FUZZ_CHECK(memcmp(out, ref, n) == 0);
	FUZZ_CHECK(n >= 1 && len >= STP_MODEL_BODY_HDR);
	enc = malloc(stp_model_bound(n));
	if (!enc)
		goto out;
	{
		struct stp_model_plane pl = { out, n, rowlen, column };
		rc = stp_model_encode(m, &pl, p[5], enc, stp_model_bound(n),
				      &enc_len);
	}
	FUZZ_CHECK(rc == 0);
	FUZZ_CHECK(enc_len == len && memcmp(enc, p, len) == 0);
out:
	stp_model_free(m);
	free(payload);
	free(out);
	free(ref);
	free(enc);
	return 0;
}
