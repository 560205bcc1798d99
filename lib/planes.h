/* Floats split into an exponent plane and sign/mantissa planes, and the
 * PLANES/CODED frame headers (formats/planes.md). */
#ifndef STP_PLANES_H
#define STP_PLANES_H

#include <stddef.h>
#include <stdint.h>

#define STP_MAX_PLANES 8
#define STP_PLANES_FIXED 32       /* header bytes before the lengths */

enum stp_float_code {
	STP_BF16 = 1, STP_F16 = 2, STP_F32 = 3, STP_F64 = 4,
	STP_E4M3 = 5, STP_E5M2 = 6,
};

struct stp_planes_hdr {
	uint64_t offset;
	uint32_t count;
	unsigned dtype;           /* enum stp_float_code */
	unsigned nplanes;
	uint64_t rowlen;
	uint64_t column;
	uint32_t len[STP_MAX_PLANES];
};

/* The code of a safetensors dtype string, or 0 if it is not split. */
unsigned stp_float_code(const char *dtype);

/* Bytes per value, and number of planes, of a code (0 if unknown). */
unsigned stp_float_width(unsigned code);
unsigned stp_float_nplanes(unsigned code);

/* Exponent bits of each value that plane 0 holds (8 of F64's 11). */
unsigned stp_float_expbits(unsigned code);

/* Byte length of plane i for count values. */
size_t stp_plane_len(unsigned code, unsigned plane, uint32_t count);

/* Fills h->len[] from h->dtype and h->count, and h->nplanes. */
void stp_planes_lengths(struct stp_planes_hdr *h);

/* Header size: STP_PLANES_FIXED + 4 * nplanes. */
size_t stp_planes_hdr_size(const struct stp_planes_hdr *h);

/* Writes the header (fixed part and lengths) into buf. */
void stp_planes_hdr_build(const struct stp_planes_hdr *h, uint8_t *buf);

/* Parses and checks a header; the lengths are read as stored (for CODED
 * frames they are coded lengths). Returns the header size or a negative
 * code. */
int stp_planes_hdr_parse(const uint8_t *p, size_t len,
			 struct stp_planes_hdr *out);

/* Splits count values at data into the planes (plane[i] has room for
 * stp_plane_len(code, i, count) bytes). */
void stp_planes_split(unsigned code, const uint8_t *data, uint32_t count,
		      uint8_t *const plane[]);

/* Merges planes back into count values at out, checking every symbol's
 * range. 0 or STP_EFRAME. */
int stp_planes_merge(unsigned code, const uint8_t *const plane[],
		     uint32_t count, uint8_t *out);

#endif
