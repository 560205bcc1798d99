/* Reading a model for inspection (st-eval, st-diff): a safetensors file
 * or a Hugging Face folder, its logical weights listed and loaded as F32
 * whatever their representation on disk (formats/lossy.md):
 *   plain     N in BF16, F16, F32, F64, F8_E4M3 or I8 (I8 as its integer)
 *   int8      N I8 [rows, ...] with N_scale F32 [rows]:
 *             value = int8 * scale[row], row the index along dim 0
 *   fp8       N F8_E4M3 [out, in] with N_scale_inv F32
 *             [ceil(out/128), ceil(in/128)]: value = fp8 * scale_inv[i/128][j/128]
 *   low rank  N absent, N_lr_a [out, r] and N_lr_b [r, in] (each plain,
 *             int8 or fp8): N = A B
 * The helpers (_scale, _scale_inv, _lr_a, _lr_b) are not listed. Other
 * dtypes (I32, U8, ...) are listed; loading them gives STP_EDTYPE. */
#ifndef STP_WEIGHTS_H
#define STP_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "stream.h"

/* No logical weight is loaded with more values than this (a low-rank
 * product of small factors could otherwise ask for anything). */
#define STP_WEIGHTS_MAX_VALUES (UINT64_C(1) << 34)

enum stp_wrepr { STP_WREPR_PLAIN, STP_WREPR_INT8, STP_WREPR_FP8,
		 STP_WREPR_LOWRANK };

/* One logical weight. dtype says how it is stored: the safetensors dtype
 * for a plain weight, "I8/row" (int8 with row scales), "F8_E4M3/128"
 * (block scales), "lrR:D" (low rank R, D the first factor's dtype). */
struct stp_weight_info {
	const char *name;
	const char *dtype;
	enum stp_wrepr repr;
	unsigned ndim;
	uint64_t shape[STP_MAX_NDIM];
	uint64_t count;           /* values: the product of shape */
};

typedef struct stp_weights stp_weights;

/* Opens a safetensors file or a folder: its model.safetensors.index.json
 * (the shards its weight_map names, each checked against it), else every
 * *.safetensors in it. Every header is checked against its file's size.
 * On failure copies the file or tensor at fault into where (wcap bytes).
 * STP_EIO, STP_EHEADER, STP_EJSON, STP_EPATH, STP_EEMPTY (no shards),
 * STP_ESIZE, STP_ERANGE, STP_EDTYPE, STP_ENOMEM. */
int stp_weights_open(stp_weights **out, const char *path, char *where,
		     size_t wcap);
void stp_weights_close(stp_weights *w);

/* The folder that holds the model (path itself for a folder, its
 * directory for a file), where config.json is looked for. */
const char *stp_weights_dir(const stp_weights *w);

/* Logical weights in file order: count, and weight i or NULL. */
size_t stp_weights_count(const stp_weights *w);
const struct stp_weight_info *stp_weights_info(const stp_weights *w,
					       size_t i);
/* Index of the logical weight called name, or STP_ERANGE. */
long stp_weights_find(const stp_weights *w, const char *name);

/* Loads logical weight i as F32 into a new array (the caller frees it)
 * of info->count values. STP_ERANGE, STP_EDTYPE, STP_ETOOBIG, STP_EIO,
 * STP_ENOMEM; stp_weights_where() then names the tensor at fault. */
int stp_weights_load(stp_weights *w, size_t i, float **out);

/* The same by name; *out_info (if not NULL) gets its description. */
int stp_weights_get(stp_weights *w, const char *name, float **out,
		    const struct stp_weight_info **out_info);

/* The tensor at fault in the last failed call on w. */
const char *stp_weights_where(const stp_weights *w);

/* 1 if weight ia of a and ib of b are stored the same way with the same
 * dtypes, shapes and bytes in every part, 0 if not; or STP_EIO. */
int stp_weights_bitexact(stp_weights *a, size_t ia, stp_weights *b,
			 size_t ib);

#endif
