/* Float conversions and the quantizers of the lossy stages
 * (formats/lossy.md). All arithmetic is F32 with round-to-nearest-even
 * and no contraction, so every machine gives the same bytes. */
#ifndef STP_QUANT_H
#define STP_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* The float dtypes a lossy stage reads and writes. */
enum stp_qtype { STP_Q_NONE = 0, STP_Q_BF16, STP_Q_F16, STP_Q_F32,
		 STP_Q_F8_E4M3, STP_Q_I8, STP_Q_F64 };

/* The code of a safetensors dtype string, STP_Q_NONE if not one above. */
enum stp_qtype stp_qtype_of(const char *dtype);
const char *stp_qtype_name(enum stp_qtype t);
unsigned stp_qtype_size(enum stp_qtype t);

/* n little-endian values of type t at src as F32 (I8 as its integer;
 * F64 rounded). */
void stp_to_f32(enum stp_qtype t, const uint8_t *src, size_t n, float *dst);
/* n F32 values to type t (BF16, F16, F32, F8_E4M3, F64), rounded to nearest
 * even; F8_E4M3 saturates at +-448 and F16 overflows to infinity. */
void stp_from_f32(enum stp_qtype t, const float *src, size_t n, uint8_t *dst);

/* 1 if all n values are finite. */
int stp_all_finite(const float *x, size_t n);

/* Symmetric INT8 of one row of n values: *out_scale = max|x| / 127 (1
 * when the row is all zeros), q = rint(x / scale) clamped to +-127. */
void stp_int8_row(const float *x, size_t n, int8_t *q, float *out_scale);

/* F8_E4M3 of a rows x cols matrix with 128 x 128 block scales (the
 * DeepSeek-V3 layout): scale_inv[bi][bj] = amax / 448 of the block (1 when
 * the block is all zeros), q = E4M3(x / scale_inv).  scale_inv holds
 * ceil(rows/128) x ceil(cols/128) values. */
void stp_fp8_blocks(const float *x, uint64_t rows, uint64_t cols,
		    uint8_t *q, float *scale_inv);

/* Error of an approximation b of a (n values), in double: the largest
 * |a - b| (NaN if a difference is NaN), the relative Frobenius error
 * ||a - b|| / ||a|| (0 when both are zero, infinity when only a is) and
 * the cosine (1 when both are zero, 0 when only one is). */
struct stp_qerr {
	double max_abs, rel_fro, cosine;
};
void stp_qerr(const float *a, const float *b, size_t n, struct stp_qerr *out);

#endif
