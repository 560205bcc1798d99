/* The lstm model kind (formats/model.md, "lstm"): a small recurrent
 * network run along each row, in integer arithmetic only, so that every
 * machine computes the encoder's tables bit for bit.  Its input is the
 * previous symbol of the row and what the row and column means predict
 * (lib/model_feat.h); its output, a table over a window of symbols.  The
 * online variant adapts the output biases as it codes.
 *
 * predict and update are the reference, one symbol at a time; the fast
 * path steps all lanes of a group at once (lstm_run), with the same
 * arithmetic. */
#include "model_lstm.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "impl.h"
#include "model_feat.h"
#include "model_walk.h"

/* ---- Activations: formats/model.md ---- */

/* 4096 tanh(k / 4), k = 0..32, rounded. */
const int16_t stp_lstm_tanh_tab[33] = {
	0, 1003, 1893, 2602, 3119, 3475, 3707, 3856, 3949, 4006, 4041,
	4063, 4076, 4084, 4089, 4091, 4093, 4094, 4095, 4095, 4096, 4096,
	4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096,
};

/* 65536 exp(-k / 2), k = 0..32, rounded. */
const uint32_t stp_lstm_exp_tab[33] = {
	65536, 39750, 24109, 14623, 8869, 5380, 3263, 1979, 1200, 728, 442,
	268, 162, 99, 60, 36, 22, 13, 8, 5, 3, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0,
	0, 0,
};

int32_t stp_lstm_tanh(int32_t v)
{
	uint32_t a = v < 0 ? (uint32_t)-(int64_t)v : (uint32_t)v, i, fr;
	int32_t y;

	if (a >= 32u << 10)
		y = LSTM_ONE;
	else {
		i = a >> 10;
		fr = a & 1023;
		int32_t t0 = stp_lstm_tanh_tab[i], t1 = stp_lstm_tanh_tab[i + 1];

		y = t0 + (int32_t)(((t1 - t0) * (int32_t)fr) >> 10);
	}
	return v < 0 ? -y : y;
}

int32_t stp_lstm_sigmoid(int32_t v)
{
	return (LSTM_ONE + stp_lstm_tanh(floor_shift(v, 1))) >> 1;
}

static inline uint32_t lstm_exp(uint32_t t)
{
	uint32_t i = t >> 11, fr = t & 2047;

	if (i >= 32)
		return 0;
	/* the table falls: e0 - (e0 - e1) * fr / 2048, rounded down */
	uint32_t e0 = stp_lstm_exp_tab[i], e1 = stp_lstm_exp_tab[i + 1];

	return e0 - (uint32_t)(((e0 - e1) * fr + 2047) >> 11);
}

uint32_t stp_lstm_exp(uint32_t t)
{
	return lstm_exp(t);
}

unsigned stp_lstm_level(const struct lstm *n, int32_t mu)
{
	int32_t lev = floor_shift(mu + 32, 6) - 4 * (int32_t)n->lo + 1;

	return lev < 0 ? 0 : lev >= (int32_t)n->nmu ? n->nmu - 1
						     : (unsigned)lev;
}

static int32_t clamp16(int32_t v)
{
	return v < -32768 ? -32768 : v > 32767 ? 32767 : v;
}

/* ---- Params ---- */

static int16_t get_i16(const uint8_t *p)
{
	return (int16_t)(uint16_t)(p[0] | p[1] << 8);
}

size_t stp_lstm_params_len(unsigned hidden, unsigned layers, unsigned de,
			   unsigned dm, unsigned window)
{
	size_t n = LSTM_FIXED + 2 * (size_t)(window + 3) * de +
		   2 * (size_t)(4 * window + 2) * dm;
	unsigned din = de + dm;

	for (unsigned l = 0; l < layers; l++) {
		n += (size_t)4 * hidden * (din + hidden) + 2 * 4 * (size_t)hidden;
		din = hidden;
	}
	return n + (size_t)window * hidden + 2 * (size_t)window;
}

static void lstm_free(void *priv)
{
	struct lstm *n = priv;

	if (n) {
		free(n->mem);
		free(n);
	}
}

static int lstm_parse(struct stp_model *m, const uint8_t *p, size_t len)
{
	struct lstm *n;
	size_t need, words;
	unsigned din;
	int16_t *w;

	if (len < LSTM_FIXED)
		return STP_EFRAME;
	if (p[9] || p[13] || p[14] || p[15])
		return STP_ERESERVED;
	if (m->prob_bits != 15)
		return STP_ECORRUPT;
	n = calloc(1, sizeof *n);
	if (!n)
		return STP_ENOMEM;
	n->alphabet = m->alphabet;
	n->hidden = p[0];
	n->layers = p[1];
	n->de = p[2];
	n->dm = p[3];
	n->lo = p[4];
	n->window = p[5];
	n->online = p[6];
	n->row_shift = p[7];
	n->col_shift = p[8];
	n->l[0].shift = p[10];
	n->l[1].shift = p[11];
	n->out_shift = p[12];
	if (n->hidden < 1 || n->hidden > LSTM_MAX_HIDDEN || n->layers < 1 ||
	    n->layers > LSTM_MAX_LAYERS || n->de < 1 ||
	    n->de > LSTM_MAX_EMBED || n->dm > LSTM_MAX_EMBED ||
	    n->window < 2 || n->window > LSTM_MAX_WINDOW ||
	    n->lo + n->window > m->alphabet || n->online > 15 ||
	    n->row_shift < 1 || n->row_shift > 12 || n->col_shift < 1 ||
	    n->col_shift > 12 || n->l[0].shift > 15 || n->l[1].shift > 15 ||
	    n->out_shift > 15 || (n->layers == 1 && n->l[1].shift)) {
		free(n);
		return STP_ECORRUPT;
	}
	need = stp_lstm_params_len(n->hidden, n->layers, n->de, n->dm,
				   n->window);
	if (len != need) {
		free(n);
		return STP_EFRAME;
	}
	n->ntok = n->window + 3;
	n->nmu = 4 * n->window + 2;
	/* Every weight and bias as int16, one block. */
	words = n->ntok * n->de + n->nmu * n->dm +
		(size_t)n->window * (n->hidden + 1);
	din = n->de + n->dm;
	for (unsigned l = 0; l < n->layers; l++) {
		words += (size_t)4 * n->hidden * (din + n->hidden + 1);
		din = n->hidden;
	}
	n->mem = malloc(words * sizeof(int16_t));
	if (!n->mem) {
		free(n);
		return STP_ENOMEM;
	}
	w = n->mem;
	p += LSTM_FIXED;
	n->esym = w;
	for (size_t i = 0; i < (size_t)n->ntok * n->de; i++, p += 2)
		*w++ = get_i16(p);
	n->emu = w;
	for (size_t i = 0; i < (size_t)n->nmu * n->dm; i++, p += 2)
		*w++ = get_i16(p);
	din = n->de + n->dm;
	for (unsigned l = 0; l < n->layers; l++) {
		size_t nw = (size_t)4 * n->hidden * (din + n->hidden);

		n->l[l].din = din;
		n->l[l].w = w;
		for (size_t i = 0; i < nw; i++)
			*w++ = (int8_t)*p++;
		n->l[l].b = w;
		for (size_t i = 0; i < 4 * (size_t)n->hidden; i++, p += 2)
			*w++ = get_i16(p);
		din = n->hidden;
	}
	n->wo = w;
	for (size_t i = 0; i < (size_t)n->window * n->hidden; i++)
		*w++ = (int8_t)*p++;
	n->bo = w;
	for (size_t i = 0; i < n->window; i++, p += 2)
		*w++ = get_i16(p);
	m->priv = n;
	return 0;
}

/* ---- The state of a plane ---- */

struct lane {
	int16_t h[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN];
	int16_t c[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN];
	unsigned fresh;			/* no symbol of the row yet */
};

struct lstm_state {
	const struct lstm *n;
	unsigned alphabet, pb, lanes;
	struct feat f;
	struct lane lane[STP_MODEL_MAX_LANES];
	int32_t bo[LSTM_MAX_WINDOW];	/* output biases, adapted if online */
	int32_t delta[LSTM_MAX_WINDOW];	/* online: this step's updates */
	uint64_t step;			/* online: group * rowlen + col, +1 */
	uint32_t fw[LSTM_MAX_WINDOW];	/* the window's frequencies */
	uint32_t wsum;			/* their sum */
	uint32_t freq[256];		/* the whole table (reference path) */
};

static void lstm_close(void *state)
{
	struct lstm_state *st = state;

	if (st) {
		feat_close(&st->f);
		free(st);
	}
}

static int lstm_open(const struct stp_model *m, const struct stp_model_geom *g,
		     void **out_state)
{
	const struct lstm *n = m->priv;
	struct lstm_state *st = calloc(1, sizeof *st);

	if (!st)
		return STP_ENOMEM;
	st->n = n;
	st->alphabet = m->alphabet;
	st->pb = m->prob_bits;
	st->lanes = g->lanes;
	if (feat_open(&st->f, m->alphabet, n->row_shift, n->col_shift, g) < 0) {
		free(st);
		return STP_ENOMEM;
	}
	for (unsigned j = 0; j < n->window; j++)
		st->bo[j] = n->bo[j];
	*out_state = st;
	return 0;
}

/* ---- One step of one lane: the reference ---- */

/* One layer: the gates from input in (din values) and the layer's state
 * h, c, which it updates. */
static void layer_step(const struct lstm_layer *L, unsigned H,
		       const int16_t *in, int16_t *h, int16_t *c)
{
	int32_t pre[4 * LSTM_MAX_HIDDEN];

	for (unsigned r = 0; r < 4 * H; r++) {
		const int16_t *w = L->w + (size_t)r * (L->din + H);
		int32_t acc = 0;

		for (unsigned j = 0; j < L->din; j++)
			acc += w[j] * in[j];
		for (unsigned j = 0; j < H; j++)
			acc += w[L->din + j] * h[j];
		pre[r] = clamp16(floor_shift(acc, L->shift) + L->b[r]);
	}
	for (unsigned j = 0; j < H; j++) {
		int32_t i = stp_lstm_sigmoid(pre[j]);
		int32_t f = stp_lstm_sigmoid(pre[H + j]);
		int32_t g = stp_lstm_tanh(pre[2 * H + j]);
		int32_t o = stp_lstm_sigmoid(pre[3 * H + j]);
		int32_t cn = clamp16(floor_shift(f * c[j] + i * g, 12));

		c[j] = (int16_t)cn;
		h[j] = (int16_t)floor_shift(o * stp_lstm_tanh(cn), 12);
	}
}

/* The window's frequencies from the output scores z (formats/model.md):
 * exp of each score below the highest, scaled so that the whole table,
 * one slot for each symbol outside the window, sums to 2^pb. */
static void window_table(struct lstm_state *st, const int32_t *z)
{
	const struct lstm *n = st->n;
	uint32_t e[LSTM_MAX_WINDOW], m = 1u << st->pb, sum = 0;
	uint32_t spare = m - st->alphabet;
	uint64_t total = 0, r;
	unsigned j, top = 0;

	for (j = 1; j < n->window; j++)
		if (z[j] > z[top])
			top = j;
	for (j = 0; j < n->window; j++) {
		e[j] = lstm_exp((uint32_t)(z[top] - z[j]));
		total += e[j];
	}
	r = ((uint64_t)spare << 32) / total;
	for (j = 0; j < n->window; j++) {
		st->fw[j] = 1 + (uint32_t)(e[j] * r >> 32);
		sum += st->fw[j];
	}
	st->fw[top] += m - (st->alphabet - n->window) - sum;
	st->wsum = m - (st->alphabet - n->window);
}

/* The output scores of the top layer's h. */
static void scores(const struct lstm_state *st, const int16_t *h, int32_t *z)
{
	const struct lstm *n = st->n;

	for (unsigned j = 0; j < n->window; j++) {
		const int16_t *w = n->wo + (size_t)j * n->hidden;
		int32_t acc = 0;

		for (unsigned k = 0; k < n->hidden; k++)
			acc += w[k] * h[k];
		z[j] = floor_shift(acc, n->out_shift) + st->bo[j];
	}
}

/* The input vector of a step: the previous token's embedding, then the
 * level's. */
static void input(const struct lstm *n, unsigned tok, unsigned lev,
		  int16_t *x)
{
	memcpy(x, n->esym + (size_t)tok * n->de, n->de * sizeof *x);
	memcpy(x + n->de, n->emu + (size_t)lev * n->dm, n->dm * sizeof *x);
}

/* Online: the updates of the step that ended go into the biases. */
static void apply_online(struct lstm_state *st)
{
	for (unsigned j = 0; j < st->n->window; j++) {
		st->bo[j] = clamp16(st->bo[j] +
				    floor_shift(st->delta[j], st->n->online));
		st->delta[j] = 0;
	}
}

/* Online: what coding symbol s with the current window table teaches. */
static void learn_online(struct lstm_state *st, unsigned s)
{
	unsigned tok = lstm_token(st->n, s);

	for (unsigned j = 0; j < st->n->window; j++)
		st->delta[j] += (tok == j + 1 ? (int32_t)st->wsum : 0) -
				(int32_t)st->fw[j];
}

static void lstm_start_row(void *state, const struct stp_model_ctx *ctx)
{
	struct lstm_state *st = state;
	struct lane *ln = &st->lane[ctx->lane];

	memset(ln->h, 0, sizeof ln->h);
	memset(ln->c, 0, sizeof ln->c);
	ln->fresh = 1;
	feat_row(&st->f, ctx->lane);
}

static int lstm_predict(void *state, const struct stp_model_ctx *ctx,
			const uint32_t **out_freq)
{
	struct lstm_state *st = state;
	const struct lstm *n = st->n;
	struct lane *ln = &st->lane[ctx->lane];
	uint64_t g = ctx->row / st->lanes, step;
	int16_t x[LSTM_MAX_IN];
	int32_t z[LSTM_MAX_WINDOW], cm;
	unsigned tok, lev, s;

	if (st->f.group != g + 1)
		feat_group(&st->f, g);
	step = g * ctx->rowlen + ctx->col + 1;
	if (n->online && step != st->step) {
		if (st->step)
			apply_online(st);
		st->step = step;
	}
	cm = feat_col(&st->f, ctx->col);
	tok = ln->fresh ? n->window + 2 : lstm_token(n, ctx->plane[ctx->i - 1]);
	lev = stp_lstm_level(n, feat_mu(&st->f, cm, ctx->lane));
	input(n, tok, lev, x);
	layer_step(&n->l[0], n->hidden, x, ln->h[0], ln->c[0]);
	if (n->layers == 2)
		layer_step(&n->l[1], n->hidden, ln->h[0], ln->h[1], ln->c[1]);
	scores(st, ln->h[n->layers - 1], z);
	window_table(st, z);
	for (s = 0; s < st->alphabet; s++)
		st->freq[s] = 1;
	for (unsigned j = 0; j < n->window; j++)
		st->freq[n->lo + j] = st->fw[j];
	*out_freq = st->freq;
	return 1;
}

static void lstm_update(void *state, const struct stp_model_ctx *ctx,
			unsigned symbol)
{
	struct lstm_state *st = state;

	if (st->n->online)
		learn_online(st, symbol);
	st->lane[ctx->lane].fresh = 0;
	feat_learn(&st->f, ctx->lane, ctx->col, feat_col(&st->f, ctx->col),
		   symbol);
}

/* ---- The fast path: every lane of a group a step at a time ---- */

/* One layer for the lanes of mask: inputs in[j][lane], states h and c
 * [unit][lane]; lanes outside mask keep their state.  The AVX-512 file
 * has the same function. */
void stp_lstm_layer_lanes_c(const struct lstm_layer *L, unsigned H,
			    int16_t in[][32], int16_t h[][32],
			    int16_t c[][32], uint32_t mask)
{
	int32_t pre[4 * LSTM_MAX_HIDDEN][STP_MODEL_MAX_LANES];
	int32_t acc[STP_MODEL_MAX_LANES];

	for (unsigned r = 0; r < 4 * H; r++) {
		const int16_t *w = L->w + (size_t)r * (L->din + H);

		memset(acc, 0, sizeof acc);
		for (unsigned j = 0; j < L->din; j++)
			for (unsigned k = 0; k < STP_MODEL_MAX_LANES; k++)
				acc[k] += w[j] * in[j][k];
		for (unsigned j = 0; j < H; j++)
			for (unsigned k = 0; k < STP_MODEL_MAX_LANES; k++)
				acc[k] += w[L->din + j] * h[j][k];
		for (unsigned k = 0; k < STP_MODEL_MAX_LANES; k++)
			pre[r][k] = clamp16(floor_shift(acc[k], L->shift) +
					    L->b[r]);
	}
	for (unsigned k = 0; k < STP_MODEL_MAX_LANES; k++) {
		if (!(mask >> k & 1))
			continue;
		for (unsigned j = 0; j < H; j++) {
			int32_t i = stp_lstm_sigmoid(pre[j][k]);
			int32_t f = stp_lstm_sigmoid(pre[H + j][k]);
			int32_t g = stp_lstm_tanh(pre[2 * H + j][k]);
			int32_t o = stp_lstm_sigmoid(pre[3 * H + j][k]);
			int32_t cn = clamp16(floor_shift(f * c[j][k] + i * g, 12));

			c[j][k] = (int16_t)cn;
			h[j][k] = (int16_t)floor_shift(o * stp_lstm_tanh(cn), 12);
		}
	}
}

/* The output scores z[j][lane] of every lane's top h, with biases bo. */
void stp_lstm_scores_lanes_c(const struct lstm *n, const int32_t *bo,
			     int16_t h[][32], int32_t z[][32])
{
	for (unsigned j = 0; j < n->window; j++) {
		const int16_t *w = n->wo + (size_t)j * n->hidden;
		int32_t acc[STP_MODEL_MAX_LANES] = { 0 };

		for (unsigned k = 0; k < n->hidden; k++)
			for (unsigned l = 0; l < STP_MODEL_MAX_LANES; l++)
				acc[l] += w[k] * h[k][l];
		for (unsigned l = 0; l < STP_MODEL_MAX_LANES; l++)
			z[j][l] = floor_shift(acc[l], n->out_shift) + bo[j];
	}
}

typedef void layer_fn(const struct lstm_layer *, unsigned, int16_t[][32],
		      int16_t[][32], int16_t[][32], uint32_t);
typedef void scores_fn(const struct lstm *, const int32_t *, int16_t[][32],
		       int32_t[][32]);

/* The lane-batched kernels: AVX-512 or AVX2 where the CPU has it and
 * STP_IMPL allows it, else the C ones. */
static void kernels(layer_fn **out_layer, scores_fn **out_scores)
{
	enum stp_impl impl;

	if (stp_impl_pick(stp_impl_env(), &impl) != 0)
		impl = STP_IMPL_SCALAR;
	if (impl == STP_IMPL_AVX512) {
		*out_layer = stp_lstm_layer_lanes_avx512;
		*out_scores = stp_lstm_scores_lanes_avx512;
	} else if (impl == STP_IMPL_AVX2) {
		*out_layer = stp_lstm_layer_lanes_avx2;
		*out_scores = stp_lstm_scores_lanes_avx2;
	} else {
		*out_layer = stp_lstm_layer_lanes_c;
		*out_scores = stp_lstm_scores_lanes_c;
	}
}

struct lanes {
	int16_t x[LSTM_MAX_IN][STP_MODEL_MAX_LANES];
	int32_t z[LSTM_MAX_WINDOW][STP_MODEL_MAX_LANES];
	int16_t h[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][STP_MODEL_MAX_LANES];
	int16_t c[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][STP_MODEL_MAX_LANES];
	unsigned fresh[STP_MODEL_MAX_LANES];
	int32_t cm[STP_MODEL_MAX_LANES];
};

/* The whole plane in coding order, as ctx_run in lib/model_ctx.c: the
 * encoder's forward pass with plane, the decoder without. */
static int lstm_run(const struct stp_model *m, const struct walk *w,
		    const uint8_t *plane, uint32_t *pairs, uint8_t *lane_of,
		    uint64_t *out_bits, uint32_t x[], const uint8_t **pp,
		    const uint8_t *end, uint8_t *out)
{
	const struct lstm *n = m->priv;
	struct stp_model_geom geom = { w->n, w->rowlen, w->c0, w->rows,
				       w->lanes };
	struct lstm_state *st;
	struct lanes *ls = calloc(1, sizeof *ls);
	const uint8_t *p = pp ? *pp : NULL, *sym = plane ? plane : out;
	unsigned pb = m->prob_bits, A = m->alphabet;
	uint32_t mask = (1u << pb) - 1;
	uint64_t bits = 0, pbq = (uint64_t)pb << 24, g, c;
	size_t tpos = 0;
	layer_fn *layer;
	scores_fn *score;
	int rc;

	if (!ls)
		return STP_ENOMEM;
	kernels(&layer, &score);
	rc = lstm_open(m, &geom, (void **)&st);
	if (rc < 0) {
		free(ls);
		return rc;
	}
	for (g = 0; g < ngroups(w) && rc == 0; g++) {
		struct group gr;

		group_init(w, g, &gr);
		feat_group(&st->f, g);
		for (unsigned sp = 0; sp < gr.nspans && rc == 0; sp++)
			for (c = gr.span[sp][0]; c <= gr.span[sp][1]; c++) {
				uint32_t act = 0;

				if (n->online && st->step)
					apply_online(st);
				st->step = 1;
				/* the inputs of every lane with a symbol here */
				for (unsigned k = 0; k < gr.nl; k++) {
					size_t i = (size_t)(gr.base[k] + c);
					int16_t v[LSTM_MAX_IN];
					unsigned tok;

					if (c < gr.lo[k] || c > gr.hi[k])
						continue;
					act |= 1u << k;
					if (c == gr.lo[k]) {
						memset(v, 0, sizeof v);
						for (unsigned l = 0; l < n->layers; l++)
							for (unsigned j = 0; j < n->hidden; j++)
								ls->h[l][j][k] = ls->c[l][j][k] = 0;
						feat_row(&st->f, k);
						tok = n->window + 2;
					} else {
						tok = lstm_token(n, sym[i - 1]);
					}
					ls->cm[k] = feat_col(&st->f, c);
					input(n, tok, stp_lstm_level(n,
						feat_mu(&st->f, ls->cm[k], k)), v);
					for (unsigned j = 0; j < n->de + n->dm; j++)
						ls->x[j][k] = v[j];
				}
				layer(&n->l[0], n->hidden, ls->x, ls->h[0],
				      ls->c[0], act);
				if (n->layers == 2)
					layer(&n->l[1], n->hidden, ls->h[0],
					      ls->h[1], ls->c[1], act);
				score(n, st->bo, ls->h[n->layers - 1], ls->z);
				/* each lane's table, then its symbol */
				for (unsigned k = 0; k < gr.nl; k++) {
					size_t i = (size_t)(gr.base[k] + c);
					int32_t z[LSTM_MAX_WINDOW];
					uint32_t start, f, s;

					if (!(act >> k & 1))
						continue;
					for (unsigned j = 0; j < n->window; j++)
						z[j] = ls->z[j][k];
					window_table(st, z);
					if (plane) {
						s = plane[i];
						if (s >= A) {
							rc = STP_ERANGE;
							break;
						}
					} else {
						uint32_t slot = x[k] & mask;

						if (slot < n->lo) {
							s = slot;
						} else if (slot < n->lo + st->wsum) {
							uint32_t acc = n->lo;

							for (s = 0; acc + st->fw[s] <= slot; s++)
								acc += st->fw[s];
							s += n->lo;
						} else {
							s = slot - st->wsum + n->window;
						}
					}
					if (s < n->lo) {
						start = s;
						f = 1;
					} else if (s < n->lo + n->window) {
						start = n->lo;
						for (unsigned j = 0; j < s - n->lo; j++)
							start += st->fw[j];
						f = st->fw[s - n->lo];
					} else {
						start = s - n->window + st->wsum;
						f = 1;
					}
					if (plane && pairs) {
						pairs[tpos] = start | f << 16;
						lane_of[tpos++] = (uint8_t)k;
					} else if (plane) {
						bits += pbq - stp_model_log2_fast(f);
					} else {
						uint32_t v = f * (x[k] >> pb) +
							     (x[k] & mask) - start;

						if (v < 1u << 15) {
							if (end - p < 2) {
								rc = STP_ETRUNCATED;
								break;
							}
							v = v << 16 | (uint32_t)p[0] |
							    (uint32_t)p[1] << 8;
							p += 2;
						}
						x[k] = v;
						out[i] = (uint8_t)s;
					}
					if (n->online)
						learn_online(st, s);
					feat_learn(&st->f, k, c, ls->cm[k], s);
				}
				if (rc)
					break;
			}
	}
	if (rc == 0 && out_bits)
		*out_bits = bits;
	if (rc == 0 && pp)
		*pp = p;
	lstm_close(st);
	free(ls);
	return rc;
}

static int lstm_forward(const struct stp_model *m, const struct walk *w,
			const uint8_t *plane, uint32_t *pairs,
			uint8_t *lane_of, uint64_t *out_bits)
{
	return lstm_run(m, w, plane, pairs, lane_of, out_bits, NULL, NULL,
			NULL, NULL);
}

static int lstm_decode(const struct stp_model *m, const struct walk *w,
		       uint32_t x[], const uint8_t **pp, const uint8_t *end,
		       uint8_t *out)
{
	return lstm_run(m, w, NULL, NULL, NULL, NULL, x, pp, end, out);
}

/* stp_model_fit's entry: the default network of stp_lstm_fit. */
static int lstm_fit_default(unsigned alphabet, unsigned pb,
			    const struct stp_model_plane *planes,
			    size_t nplanes, uint8_t **out_params,
			    size_t *out_len)
{
	const struct stp_lstm_opts o = STP_LSTM_OPTS_DEFAULT;

	if (pb != 15)
		return STP_ERANGE;
	return stp_lstm_fit(alphabet, planes, nplanes, &o, out_params,
			    out_len);
}

const struct stp_model_ops stp_model_lstm_ops = {
	.kind = STP_MODEL_LSTM,
	.name = "lstm",
	.default_prob_bits = 15,
	.parse = lstm_parse,
	.free_priv = lstm_free,
	.fit = lstm_fit_default,
	.open = lstm_open,
	.close = lstm_close,
	.start_row = lstm_start_row,
	.predict = lstm_predict,
	.update = lstm_update,
	.forward = lstm_forward,
	.decode = lstm_decode,
};
