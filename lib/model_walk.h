/* Internal to the model coder and the model kinds that have a fast path
 * of their own: a plane's rows and the coding order of formats/model.md,
 * "Lanes and coding order". */
#ifndef STP_MODEL_WALK_H
#define STP_MODEL_WALK_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* A plane's rows: row 0 holds columns c0 .. rowlen-1 (or fewer, if it is
 * also the last), the last row columns 0 .. lastc, every other row all
 * of them.  Rows go to lanes in groups of `lanes` rows. */
struct walk {
	size_t n;
	uint64_t rowlen, c0, rows, lastc;
	unsigned lanes;
};

static inline int walk_init(struct walk *w, size_t n, uint64_t rowlen,
		     uint64_t column)
{
	uint64_t first;

	if (n == 0 || rowlen == 0 || column >= rowlen)
		return -1;
	first = rowlen - column;
	w->n = n;
	w->rowlen = rowlen;
	w->c0 = column;
	if (n <= first) {
		w->rows = 1;
		w->lastc = column + n - 1;
	} else {
		w->rows = 2 + (n - first - 1) / rowlen;
		w->lastc = (n - first - 1) % rowlen;
	}
	w->lanes = w->rows < STP_MODEL_MAX_LANES ? (unsigned)w->rows
						 : STP_MODEL_MAX_LANES;
	return 0;
}

/* One group of rows: the rows r0 .. r0+nl-1, lane k's columns lo[k] ..
 * hi[k], its symbol at column c being plane[base[k] + c], and the column
 * spans its steps cover (two only where a plane of two rows leaves a gap
 * of columns between the end of the second and the start of the first;
 * elsewhere no step is empty, so the steps number at most n). */
struct group {
	uint64_t r0;
	unsigned nl, nspans;
	uint64_t lo[STP_MODEL_MAX_LANES], hi[STP_MODEL_MAX_LANES];
	uint64_t base[STP_MODEL_MAX_LANES];
	uint64_t span[2][2];
};

static inline void group_init(const struct walk *w, uint64_t g, struct group *gr)
{
	uint64_t left = w->rows - g * w->lanes;
	unsigned k;

	gr->r0 = g * w->lanes;
	gr->nl = left < w->lanes ? (unsigned)left : w->lanes;
	for (k = 0; k < gr->nl; k++) {
		uint64_t r = gr->r0 + k;

		gr->lo[k] = r == 0 ? w->c0 : 0;
		gr->hi[k] = r == w->rows - 1 ? w->lastc : w->rowlen - 1;
		/* Wraps below zero for row 0; base + c does not. */
		gr->base[k] = r * w->rowlen - w->c0;
	}
	gr->nspans = 1;
	/* lo[0] and hi[nl - 1], said again where the compiler sees them */
	gr->span[0][0] = gr->r0 == 0 ? w->c0 : 0;
	gr->span[0][1] = gr->r0 + gr->nl == w->rows ? w->lastc : w->rowlen - 1;
	if (gr->nl == 2 && gr->r0 == 0 && w->rows == 2) {
		gr->span[0][0] = 0;
		gr->span[0][1] = w->rowlen - 1;
		if (w->lastc + 1 < w->c0) {
			gr->span[0][1] = w->lastc;
			gr->span[1][0] = w->c0;
			gr->span[1][1] = w->rowlen - 1;
			gr->nspans = 2;
		}
	} else if (gr->nl >= 2) {
		gr->span[0][0] = 0;
		gr->span[0][1] = w->rowlen - 1;
	}
}

static inline uint64_t ngroups(const struct walk *w)
{
	return (w->rows + w->lanes - 1) / w->lanes;
}

/* pb - log2(f) is what a symbol of frequency f costs: log2(f) in Q24,
 * to within 0.0015 bits (exact below 2^11).  The caller of the coder's
 * estimate has set up its table. */
uint32_t stp_model_log2_fast(uint32_t f);

#endif
