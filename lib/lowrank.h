/* lowrank: 2-D weights W [out, in] replaced by truncated SVD factors
 * NAME_lr_a [out, r] and NAME_lr_b [r, in], W ~ A.B, on the rewriting
 * stage (lib/rewrite.h); with merge, the factors multiplied back. */
#ifndef STP_LOWRANK_H
#define STP_LOWRANK_H

#include <stddef.h>
#include <stdint.h>

#include "lossy.h"
#include "stage.h"

/* What a policy line (or the command line) asks for a tensor. */
enum { STP_LR_RANK = 1, STP_LR_ENERGY = 2, STP_LR_MIN_DIM = 4,
       STP_LR_SKIP = 8 };

struct stp_lr_rule {
	char *glob;                /* fnmatch pattern of the tensor name */
	unsigned set;              /* STP_LR_* keys the line gives */
	uint32_t rank;             /* rank=N: the rank, or the cap on energy's */
	double energy;             /* energy=F: fraction in (0, 1] */
	uint64_t min_dim;          /* min-dim=N */
	size_t line;               /* its line in the policy file */
};

struct stp_lr_policy {
	struct stp_lr_rule *rules;
	size_t n;
};

/* Parses a policy file's text (n bytes): lines "GLOB key=value...", keys
 * rank=N, energy=F, min-dim=N and skip, '#' to the line's end a comment,
 * blank lines ignored. need_rank: a line that is not skip must give rank
 * or energy (the command line gives neither). 0 and *out filled (freed by
 * stp_lr_policy_free), or STP_EUNSUPPORTED with *out_line the line at
 * fault and *out_why a static one-phrase reason, or STP_ENOMEM. */
int stp_lr_policy_parse(const char *text, size_t n, int need_rank,
			struct stp_lr_policy *out, size_t *out_line,
			const char **out_why);
void stp_lr_policy_free(struct stp_lr_policy *p);

/* The smallest rank r whose leading squared singular values s[0..r)
 * (descending, k of them) reach fraction energy of their sum; 1 for an
 * all-zero s, at most k. */
uint32_t stp_lr_energy_rank(const double *s, size_t k, double energy);

struct stp_lowrank_opts {
	struct stp_select sel;     /* which tensors may be factorized */
	const struct stp_lr_policy *policy;   /* NULL: none */
	/* the command line's rule, tried after the policy's lines */
	unsigned set;              /* STP_LR_RANK, STP_LR_ENERGY or both */
	uint32_t rank;
	double energy;
	int int8;                  /* factors as INT8 with per-row scales */
	/* merge: factors back to W (NAME) in their recorded dtype, or dtype
	 * ("BF16", "F16", "F32") where set or unrecorded */
	int merge;
	const char *dtype;
	const char *options;       /* the command line, for the record */
};

/* A lowrank stage. 0, STP_EDTYPE (dtype), STP_EUNSUPPORTED (no rule),
 * STP_ENOMEM. */
int stp_lowrank_open(struct stp_stage *out_st,
		     const struct stp_lowrank_opts *o);

#endif
