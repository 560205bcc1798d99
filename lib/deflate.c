/* Method-5 bodies: raw deflate through zlib (lib/deflate.h). */
#include "deflate.h"

#include <limits.h>
#include <zlib.h>

#include "error.h"
#include "rans.h"

int stp_deflate_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap,
		       size_t *out_len)
{
	z_stream z = { 0 };
	int rc;

	if (n == 0 || n > STP_RANS_MAX_N)
		return STP_ETOOBIG;
	if (cap < 2)
		return 1;
	/* windowBits -15: a raw stream, no zlib header or Adler-32 (the
	 * frame's CRC-32 covers it); memLevel 9: the most matches. */
	if (deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) != Z_OK)
		return STP_ENOMEM;
	out[0] = STP_RANS_DEFLATE;
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	z.next_out = out + 1;
	z.avail_out = cap - 1 > UINT_MAX ? UINT_MAX : (uInt)(cap - 1);
	rc = deflate(&z, Z_FINISH);
	*out_len = 1 + z.total_out;
	deflateEnd(&z);
	if (rc == Z_STREAM_END)
		return 0;
	return rc == Z_OK || rc == Z_BUF_ERROR ? 1 : STP_ENOMEM;
}

int stp_deflate_decode(const uint8_t *in, size_t len, uint8_t *out, size_t n)
{
	z_stream z = { 0 };
	int rc;

	if (n > STP_RANS_MAX_N)
		return STP_ETOOBIG;
	if (len < 2)
		return STP_ETRUNCATED;
	if (n == 0)
		return STP_ECORRUPT;
	if (inflateInit2(&z, -15) != Z_OK)
		return STP_ENOMEM;
	z.next_in = (Bytef *)(uintptr_t)(in + 1);
	z.avail_in = (uInt)(len - 1);
	z.next_out = out;
	z.avail_out = (uInt)n;
	rc = inflate(&z, Z_FINISH);
	if (rc == Z_BUF_ERROR && z.avail_out == 0) {
		/* n bytes out, and the stream wants to go on: it holds more */
		uint8_t extra;

		z.next_out = &extra;
		z.avail_out = 1;
		rc = inflate(&z, Z_FINISH);
		if (z.avail_out == 0)
			rc = Z_DATA_ERROR;
	}
	inflateEnd(&z);
	switch (rc) {
	case Z_STREAM_END:
		if (z.total_out != n || z.avail_in != 0)
			return STP_ECORRUPT;
		return 0;
	case Z_MEM_ERROR:
		return STP_ENOMEM;
	case Z_BUF_ERROR:
		/* the input ran out before the final block */
		return STP_ETRUNCATED;
	default:
		return STP_ECORRUPT;
	}
}
