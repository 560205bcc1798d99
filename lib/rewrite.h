/* The rewriting stage under every lossy filter (formats/lossy.md): it
 * reads each safetensors file's header, asks the filter which tensors to
 * replace by which, writes a new header and layout, and feeds the filter
 * whole tensors. Tensors the filter leaves alone stream through; a file
 * it leaves alone passes byte for byte; a Hugging Face index
 * (*.safetensors.index.json) is rewritten to name the new tensors. */
#ifndef STP_REWRITE_H
#define STP_REWRITE_H

#include <jansson.h>

#include "safetensors.h"
#include "stage.h"

#define STP_RW_MAX_IN 4
#define STP_RW_MAX_OUT 4

struct stp_rw_out {
	char name[1024];
	char dtype[STP_MAX_DTYPE + 1];
	unsigned ndim;
	uint64_t shape[STP_MAX_NDIM];
	uint64_t nbytes;           /* set by the stage from dtype and shape */
	uint8_t *data;             /* make() fills nbytes bytes */
};

/* Input tensors (indices into the header's tensors) replaced by output
 * tensors. */
struct stp_rw_group {
	size_t nin, in[STP_RW_MAX_IN];
	size_t nout;
	struct stp_rw_out out[STP_RW_MAX_OUT];
	int kind;                  /* the filter's own tag */
	uint32_t arg;              /* and argument (a rank, a dtype) */
	/* internal */
	uint8_t *buf[STP_RW_MAX_IN];
	uint64_t have[STP_RW_MAX_IN];
	size_t done;
	uint64_t last;             /* offset of its last input */
};

struct stp_rw_plan;

/* Adds a group; its outputs' nbytes are computed. 0, STP_ESIZE (shape
 * overflow), STP_EDTYPE or STP_ENOMEM. */
int stp_rw_add(struct stp_rw_plan *p, const struct stp_rw_group *g);

struct stp_rw_ops {
	const char *stage;         /* name in records: "int8-quant" */
	/* Decides the groups of a file from its header h and its
	 * __metadata__ (NULL if none); tensors in no group pass through.
	 * Adds to note what the header's record of this step says beyond
	 * the stage's name (options, the tensors changed). */
	int (*plan)(void *self, struct stp_rw_plan *p,
		    const struct stp_st_header *h, json_t *metadata,
		    json_t *note);
	/* Fills the outputs of g from the inputs' bytes in[0..nin), and
	 * appends one object to stats for the LOSSY frame (errors). */
	int (*make)(void *self, struct stp_rw_group *g,
		    const struct stp_st_header *h, uint8_t *const *in,
		    json_t *stats);
	void *self;
};

/* A stage running ops. 0 or STP_ENOMEM. */
int stp_rewrite_open(struct stp_stage *out_st, const struct stp_rw_ops *ops);

/* The record of lossy steps in a header's __metadata__ (key
 * "stpipe.lossy", a JSON array as a string), as a new array reference:
 * empty when absent. NULL if the value is not a JSON array. */
json_t *stp_lossy_record(json_t *metadata);

/* What the last step of stage and op in record rec says of tensor name
 * (a borrowed reference), or NULL. */
json_t *stp_lossy_find(json_t *rec, const char *stage, const char *op,
		       const char *name);

typedef int stp_note_send_fn(void *ctx, const char *json, size_t len);

/* For a safetensors header (the n JSON bytes) that records lossy steps,
 * calls send once per step with the JSON of a LOSSY frame saying it
 * (its tensors without errors, "recorded": "header"), so that a file
 * quantized long ago still says so in every stream made from it. 0 or
 * the first negative code of send; a record that is not JSON is not a
 * record and sends nothing. */
int stp_lossy_header_notes(const uint8_t *json, size_t n, const char *path,
			   stp_note_send_fn *send, void *ctx);

#endif
