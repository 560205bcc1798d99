/* The quantizing filters int8-quant and fp8-quant, on the rewriting
 * stage (lib/rewrite.h); formats/lossy.md says what they write. */
#ifndef STP_LOSSY_H
#define STP_LOSSY_H

#include <stddef.h>
#include <stdint.h>

#include "stage.h"

enum stp_quant_kind { STP_QUANT_INT8 = 1, STP_QUANT_FP8 };

/* Which tensors a filter takes: a float tensor of rank 2 (rank >= 1 for
 * INT8) whose name matches one of include (fnmatch patterns; NULL or none:
 * every name) and none of exclude, with both dimensions at least min_dim. */
struct stp_select {
	const char *const *include;
	size_t ninclude;
	const char *const *exclude;
	size_t nexclude;
	uint64_t min_dim;
};

/* 1 if a tensor of that name, rank and shape is selected. */
int stp_select_match(const struct stp_select *sel, const char *name,
		     unsigned ndim, const uint64_t *shape);

struct stp_quant_opts {
	enum stp_quant_kind kind;
	int decode;                /* dequantize back to floats */
	struct stp_select sel;
	/* -d: the dtype of a tensor the record does not name ("BF16") */
	const char *dtype;
	const char *options;       /* the command line, for the record */
};

/* A quantizing or dequantizing stage. 0, STP_EDTYPE (dtype), STP_ENOMEM. */
int stp_quant_open(struct stp_stage *out_st, const struct stp_quant_opts *o);

/* One line saying what a LOSSY frame's JSON records: stage, operation,
 * options, tensors and their errors. 0 or STP_EJSON. */
int stp_lossy_describe(const uint8_t *json, size_t len, char *out,
		       size_t cap);

#endif
