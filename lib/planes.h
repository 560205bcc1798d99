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
	unsigned layout;          /* CODED frames: STP_LAYOUT_*; PLANES: 0 */
	uint32_t len[STP_MAX_PLANES];
};

/* How a CODED frame holds its planes (formats/planes.md). */
enum stp_layout {
	STP_LAYOUT_PLANES = 0,    /* each plane coded on its own */
	STP_LAYOUT_JOINT = 1,     /* 1-byte dtypes: the values coded whole */
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
 * frames they are coded lengths) and so is the layout field, which the
 * caller checks (0 for PLANES). Returns the header size or a negative
 * code. */
int stp_planes_hdr_parse(const uint8_t *p, size_t len,
			 struct stp_planes_hdr *out);

/* Splits count values at data into the planes (plane[i] has room for
 * stp_plane_len(code, i, count) bytes).  Returns 0, STP_EFRAME for an
 * unknown code, or STP_EUNSUPPORTED, writing nothing, while STP_IMPL
 * holds every call back (see stp_planes_force_impl). */
int stp_planes_split(unsigned code, const uint8_t *data, uint32_t count,
		     uint8_t *const plane[]);

/* Merges planes back into count values at out, checking every symbol's
 * range.  Returns 0, STP_EFRAME (a symbol out of range, a padding nibble
 * that is not 0, an unknown code; out then holds garbage), or
 * STP_EUNSUPPORTED as stp_planes_split. */
int stp_planes_merge(unsigned code, const uint8_t *const plane[],
		     uint32_t count, uint8_t *out);

/* Forces the variant that splits and merges: "scalar", "avx2", "avx512",
 * or NULL, "auto" or "cuda" for the best this CPU runs; every variant
 * gives the same bytes and the same verdicts.  At start-up the
 * environment variable STP_IMPL does the same; if it names a variant this
 * CPU lacks, or an unknown one, every call fails with STP_EUNSUPPORTED
 * until this function picks another, so a forced test never quietly runs
 * another variant.  Returns 0, or STP_EUNSUPPORTED (nothing changed) for
 * a variant this CPU lacks or an unknown name.  Not thread-safe: call it
 * before splitting or merging starts on other threads. */
int stp_planes_force_impl(const char *name);

/* Name of the variant in use ("scalar", "avx2", "avx512"), or "none"
 * while STP_IMPL holds every call back. */
const char *stp_planes_impl_name(void);

/* ---- Internal: the contract between planes.c and its per-ISA files. ---- */

/* Each does the values 0 .. n-1 of a frame of count values, where n is
 * what it returns (through *out_done for a merge): an even number, at most
 * count, 0 for a code the variant leaves to the scalar reference (F64).
 * planes.c does the rest with the scalar reference.  code is valid.  A
 * merge returns 0, or STP_EFRAME if a symbol of those values is out of
 * range. */
uint32_t stp_planes_split_avx2(unsigned code, const uint8_t *data,
			       uint32_t count, uint8_t *const plane[]);
int stp_planes_merge_avx2(unsigned code, const uint8_t *const plane[],
			  uint32_t count, uint8_t *out, uint32_t *out_done);
uint32_t stp_planes_split_avx512(unsigned code, const uint8_t *data,
				 uint32_t count, uint8_t *const plane[]);
int stp_planes_merge_avx512(unsigned code, const uint8_t *const plane[],
			    uint32_t count, uint8_t *out, uint32_t *out_done);

#endif
