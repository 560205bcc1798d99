/* The codec stage: fp8-exp, rans-enc and rans-dec as one engine that
 * transforms frames on several threads and emits them in order. Each
 * program runs one operation; the front end runs two at once per frame
 * (split and code, or decode and merge), and the bytes are the same as the
 * pipeline of programs would write. */
#ifndef STP_CODEC_H
#define STP_CODEC_H

#include "stage.h"

enum stp_codec_ops {
	STP_OP_SPLIT = 1,   /* DATA of float tensors -> PLANES (fp8-exp) */
	STP_OP_CODE = 2,    /* PLANES -> CODED, and the index (rans-enc) */
	STP_OP_DECODE = 4,  /* CODED -> PLANES (rans-dec) */
	STP_OP_MERGE = 8,   /* PLANES -> DATA (fp8-exp -d) */
};

/* Skippable frames owned by rans-enc: the tensor index of a coded
 * segment and, right before END, where it starts (formats/planes.md). */
#define STP_F_INDEX 0xF0
#define STP_F_INDEX_LOC 0xF1

/* Opens a codec stage doing ops (SPLIT, CODE, SPLIT|CODE, DECODE, MERGE
 * or DECODE|MERGE) on threads threads (0 or 1: the caller's thread only).
 * model_kind (CODE only) is 0 for static order-0 tables in each body, or
 * a model kind of lib/model.h (STP_MODEL_ADAPTIVE0) that exponent planes
 * are coded with where it beats them: its MODEL frames go into the stream
 * ahead of the planes they serve (formats/model.md). Output is identical
 * for every thread count. 0, STP_ENOMEM, or STP_EUNSUPPORTED for another
 * combination. */
int stp_codec_open(struct stp_stage *out_st, unsigned ops, unsigned threads,
		   unsigned model_kind);

#endif
