/* The lstm-model stage: fits an exponent model for each layer (or pair of
 * layers) of the tensors it is asked to, and puts it into the stream
 * ahead of the planes it serves, for rans-enc to code them with
 * (formats/model.md, "Models fitted by lstm-model"). */
#ifndef STP_LSTM_STAGE_H
#define STP_LSTM_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "model_lstm.h"
#include "stage.h"

/* Skippable frames (formats/model.md): a fitted model, and the hint that
 * the next tensor's exponent planes are to be coded with one. */
#define STP_F_MODEL_FIT 0xF2
#define STP_F_MODEL_USE 0xF3

/* How tensors are grouped under one model. */
enum stp_lstm_group {
	STP_LSTM_BY_LAYER,	/* the number after "layers." (or "h.", "blocks.") */
	STP_LSTM_BY_PAIR,	/* layers 2k and 2k+1 */
	STP_LSTM_BY_TENSOR	/* a model for each tensor */
};

struct stp_lstm_stage_opts {
	const char *pattern;		/* fnmatch(3) of tensor names; NULL: all */
	uint64_t min_values;		/* smaller tensors get no model */
	enum stp_lstm_group group;
	struct stp_lstm_opts fit;
	size_t buffer;			/* bytes of frames held while fitting */
	unsigned kind;			/* STP_MODEL_LSTM or STP_MODEL_CTX */
	unsigned against;		/* what rans-enc codes with otherwise:
					 * 0 (order-0) or STP_MODEL_CTX */
};

/* Opens the stage.  It selects the 2-D tensors of float dtypes whose name
 * matches and that hold at least min_values values, holds the frames of a
 * group (at most buffer bytes of them) while it fits a model on their
 * exponent planes, then sends a MODEL_FIT frame, and a MODEL_USE frame
 * before each selected tensor, when the model's estimated bodies plus its
 * own bytes beat what rans-enc would code them with otherwise (order-0,
 * or the better of order-0 and its own ctx model); otherwise the frames pass on as they
 * came.  Every other frame passes unchanged.  The same input gives the
 * same output on every machine.  0 or STP_ENOMEM. */
int stp_lstm_stage_open(struct stp_stage *out_st,
			const struct stp_lstm_stage_opts *o);

#endif
