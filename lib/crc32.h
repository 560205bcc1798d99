/* CRC-32 as zlib computes it (ISO-HDLC: reflected polynomial 0xEDB88320,
 * initial and final xor 0xFFFFFFFF; the CRC of "123456789" is 0xCBF43926).
 * zlib's crc32() is the scalar reference; the AVX2 (PCLMULQDQ) and AVX-512
 * (VPCLMULQDQ) variants fold the bulk of long inputs with carry-less
 * multiplies and hand zlib the last 16 to 31 bytes, so every variant
 * returns exactly what zlib does. */
#ifndef STP_CRC32_H
#define STP_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32 of p[0..n) continuing from crc, with zlib's chaining: start from
 * 0, and stp_crc32(stp_crc32(0, a, na), b, nb) is the CRC of a then b.
 * Any size_t length; p may be NULL when n is 0.  Thread-safe. */
uint32_t stp_crc32(uint32_t crc, const void *p, size_t n);

/* CRC-32 of A followed by B, from crc_a, crc_b and the length of B. */
uint32_t stp_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

/* Forces the variant stp_crc32 uses: "scalar" (zlib), "avx2", "avx512",
 * or NULL or "auto" for the best this CPU runs.  At start-up the
 * environment variable STP_IMPL does the same ("cuda", the GPU variant of
 * other stages, means auto here).  Returns 0, or STP_EUNSUPPORTED
 * (nothing changed) for a variant this CPU lacks or an unknown name.  If
 * STP_IMPL names such a variant, stp_crc32_impl_name() says "none" until
 * this function picks another; a CRC cannot fail, so stp_crc32 meanwhile
 * runs the reference, zlib.  Not thread-safe: call it before CRCs are
 * computed on other threads. */
int stp_crc32_force_impl(const char *name);

/* Name of the variant in use ("scalar", "avx2", "avx512"), or "none"
 * while STP_IMPL names one this CPU cannot run (see above). */
const char *stp_crc32_impl_name(void);

/* ---- Internal: the contract between crc32.c and its per-ISA files. ---- */

/* Shortest input a folding variant is handed; shorter ones go to zlib. */
#define STP_CRC32_FOLD_MIN 64

/* Constants that fold a 128-bit lane forward by 16, 64 and 256 bytes:
 * by<d>[0] multiplies the lane's low 64 bits, by<d>[1] its high 64 bits.
 * crc32.c derives them (see there) before any variant can run. */
struct stp_crc32_fold_k {
	uint64_t by16[2];
	uint64_t by64[2];
	uint64_t by256[2];
};

/* Folds p[0..m), m = n rounded down to a multiple of 16 (n >=
 * STP_CRC32_FOLD_MIN), with crc as the CRC-32 before p, into 16 bytes f
 * such that zlib's crc32(0xFFFFFFFF, f, 16) is the CRC-32 after p[0..m).
 * Returns m. */
size_t stp_crc32_fold_avx2(const struct stp_crc32_fold_k *k, uint32_t crc,
			   const uint8_t *p, size_t n, uint8_t out_f[16]);
size_t stp_crc32_fold_avx512(const struct stp_crc32_fold_k *k, uint32_t crc,
			     const uint8_t *p, size_t n, uint8_t out_f[16]);

#endif
