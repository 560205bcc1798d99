/* Internal to the model kinds: the row and column means that the ctx
 * model takes its contexts from and the lstm model reads as an input
 * (formats/model.md, "ctx"): the column means of the rows above as the
 * group began, each lane's row offset from them, the plane's mean. */
#ifndef STP_MODEL_FEAT_H
#define STP_MODEL_FEAT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define FEAT_MAX_COLUMNS ((uint64_t)1 << 16)	/* wider rows: no columns */

struct feat {
	unsigned alphabet, row_shift, col_shift;
	uint64_t rowlen;
	int columns;			/* rowlen <= FEAT_MAX_COLUMNS */
	uint64_t group;			/* the group being coded, +1 */
	uint64_t sum, count;		/* of the symbols coded */
	int32_t g;			/* the plane's mean, Q8 */
	int32_t r[STP_MODEL_MAX_LANES];	/* row offset of each lane, Q8 */
	uint32_t rn[STP_MODEL_MAX_LANES];
	int32_t *cp, *cn;		/* column means: previous groups, live */
	uint16_t *np, *nn;		/* their counts, up to 2^col_shift */
};

static inline void feat_close(struct feat *f)
{
	free(f->cp);
	f->cp = NULL;
}

/* 0 or STP_ENOMEM (with nothing to free). */
static inline int feat_open(struct feat *f, unsigned alphabet,
			    unsigned row_shift, unsigned col_shift,
			    const struct stp_model_geom *g)
{
	uint64_t cols;

	memset(f, 0, sizeof *f);
	f->alphabet = alphabet;
	f->row_shift = row_shift;
	f->col_shift = col_shift;
	f->rowlen = g->rowlen;
	f->columns = g->rowlen <= FEAT_MAX_COLUMNS && g->rows > 1;
	cols = f->columns ? g->rowlen : 0;
	f->cp = malloc(cols * (2 * sizeof(int32_t) + 2 * sizeof(uint16_t)) + 1);
	if (!f->cp)
		return -1;
	f->cn = f->cp + cols;
	f->np = (uint16_t *)(f->cn + cols);
	f->nn = f->np + cols;
	memset(f->cn, 0, cols * sizeof(int32_t));
	memset(f->nn, 0, cols * sizeof(uint16_t));
	return 0;
}

/* floor(v / 2^s) for a signed v, whatever the compiler does with >>. */
static inline int32_t floor_shift(int32_t v, unsigned s)
{
	return v >= 0 ? v >> s : -(int32_t)(((uint32_t)-v + (1u << s) - 1) >> s);
}

/* The start of group g: the plane's mean so far, and the column means of
 * the rows coded so far become those the group's symbols are told. */
static inline void feat_group(struct feat *f, uint64_t g)
{
	f->group = g + 1;
	f->g = f->count ? (int32_t)((f->sum << 8) / f->count)
			: (int32_t)(f->alphabet << 7);
	if (f->columns) {
		memcpy(f->cp, f->cn, f->rowlen * sizeof(int32_t));
		memcpy(f->np, f->nn, f->rowlen * sizeof(uint16_t));
	}
}

static inline void feat_row(struct feat *f, unsigned k)
{
	f->r[k] = 0;
	f->rn[k] = 0;
}

/* The column mean told to a symbol at column c (Q8). */
static inline int32_t feat_col(const struct feat *f, uint64_t c)
{
	return f->columns && f->np[c] ? f->cp[c] : f->g;
}

/* What the row and the column predict for a symbol in lane k whose
 * column mean is cm (Q8, may be negative). */
static inline int32_t feat_mu(const struct feat *f, int32_t cm, unsigned k)
{
	return cm + f->r[k];
}

/* What follows coding symbol s in lane k, column col, column mean cm. */
static inline void feat_learn(struct feat *f, unsigned k, uint64_t col,
			      int32_t cm, unsigned s)
{
	int32_t v = (int32_t)(s << 8), d;

	d = v - cm - f->r[k];
	if (f->rn[k] < 1u << f->row_shift)
		f->r[k] += d / (int32_t)++f->rn[k];
	else
		f->r[k] += floor_shift(d, f->row_shift);
	if (f->columns) {
		d = v - f->cn[col];
		if (f->nn[col] < 1u << f->col_shift)
			f->cn[col] += d / (int32_t)++f->nn[col];
		else
			f->cn[col] += floor_shift(d, f->col_shift);
	}
	f->sum += s;
	f->count++;
}

#endif
