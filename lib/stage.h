/* Stages: the part of a filter program between reading frames and writing
 * them, so that the same code runs as a program in a pipeline or chained
 * in one process by the front end, with identical output. */
#ifndef STP_STAGE_H
#define STP_STAGE_H

#include "stream.h"

struct stp_stage {
	/* Handles one frame (END included: a stage that holds frames back
	 * sends them before passing END on). 0 or a negative code. */
	int (*frame)(void *self, const struct stp_frame *f,
		     struct stp_out *out);
	/* The file (and tensor) at fault after a failure, never NULL;
	 * *pos is set to the input offset of the frame at fault. */
	const char *(*where)(void *self, uint64_t *pos);
	void (*free)(void *self);
	void *self;
	/* 1 if the stage checks the CRCs of plane and coded frames itself
	 * (on its worker threads): the reader then defers them. */
	int checks_crc;
};

/* Feeds every frame of r to st, which writes to out. Returns 0 at the
 * clean end of input or a negative code; *out_pos is then the input
 * offset at fault and *out_stage says whether the stage (1) or the
 * reader (0) failed. */
int stp_run_stage(struct stp_reader *r, struct stp_stage *st,
		  struct stp_out *out, uint64_t *out_pos, int *out_stage);

struct stp_chain;

/* An stp_out that hands frames to stage next, which writes to next_out;
 * for in-process pipelines. 0 or STP_ENOMEM. */
int stp_chain_open(struct stp_chain **out_c, struct stp_stage *next,
		   struct stp_out *next_out);
struct stp_out stp_chain_out(struct stp_chain *c);
void stp_chain_free(struct stp_chain *c);

#endif
