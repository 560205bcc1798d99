/* Deflate bodies (formats/rans.md, method 5): for bytes that are text or
 * structure rather than numbers, such as the safetensors header JSON,
 * config.json and tokenizer.json, where repeats of whole strings are what
 * a coder can find and order-0 rANS cannot.  Raw deflate (RFC 1951)
 * through zlib. */
#ifndef STP_DEFLATE_H
#define STP_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

/* Method byte of a deflate body. */
#define STP_RANS_DEFLATE 5

/* Codes in[0..n) (1 <= n <= STP_RANS_MAX_N) as a method-5 body into
 * out[0..cap) and sets *out_len.  Returns 0, or 1 when the body would not
 * fit in cap (so it does not pay: the caller keeps another body), or
 * STP_ETOOBIG (n out of range), STP_ENOMEM.  The bytes written depend on
 * zlib's deflate at level 9, which is the same on every machine for a
 * given zlib release. */
int stp_deflate_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap,
		       size_t *out_len);

/* Decodes the method-5 body in[0..len) into exactly n bytes at out.
 * The deflate stream must end (final block) exactly at the end of the
 * body and produce exactly n bytes.  Returns 0, STP_ETRUNCATED (the
 * stream stops before its final block), STP_ECORRUPT (invalid deflate
 * data, bytes after the final block, more or fewer than n bytes),
 * STP_ETOOBIG (n > STP_RANS_MAX_N), STP_ENOMEM.  Never writes outside
 * out[0..n). */
int stp_deflate_decode(const uint8_t *in, size_t len, uint8_t *out, size_t n);

#endif
