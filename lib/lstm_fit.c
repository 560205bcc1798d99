/* Fitting an lstm model (lib/model_lstm.h): the network is trained in
 * single-precision floating point, truncated back-propagation through
 * time along rows, with Adam; then quantized to the integer network of
 * formats/model.md, which alone is ever used for coding.
 *
 * The float network computes what the integer one does, with the same
 * piecewise-linear tanh, logistic and exp, the same inputs (the previous
 * token and the row and column level, computed by lib/model_feat.h as the
 * coder computes them) and the same clamp of the cell state.  The fit is
 * deterministic: one thread, a fixed order of every sum, no library
 * transcendental functions, and no contraction of a * b + c into fused
 * multiply-adds (the file is built with -ffp-contract=off), so the same
 * planes give the same payload on every machine. */
#include "model_lstm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model_feat.h"
#include "model_walk.h"

#define B 32			/* rows trained side by side */
#define T 32			/* steps of back-propagation */

/* ---- The activations, as the integer network has them ---- */

/* tanh of v and its slope there. */
static float ftanh(float v, float *slope)
{
	float a = v < 0 ? -v : v, y, d;
	int i;

	if (a >= 8) {
		*slope = 0;
		return v < 0 ? -1 : 1;
	}
	i = (int)(a * 4);
	const float t0 = stp_lstm_tanh_tab[i], t1 = stp_lstm_tanh_tab[i + 1];

	d = (t1 - t0) / 4096;
	y = t0 / 4096 + d * (a * 4 - (float)i);
	*slope = d * 4;
	return v < 0 ? -y : y;
}

static float fsig(float v, float *slope)
{
	float s, y = ftanh(v * 0.5f, &s);

	*slope = s * 0.25f;
	return 0.5f + 0.5f * y;
}

/* exp(-t), t >= 0. */
static float fexp(float t)
{
	int i;

	if (t >= 16)
		return 0;
	i = (int)(t * 2);
	const float e0 = (float)stp_lstm_exp_tab[i];
	const float e1 = (float)stp_lstm_exp_tab[i + 1];

	return (e0 + (e1 - e0) * (t * 2 - (float)i)) /
	       65536;
}

/* ---- The float network ---- */

struct fnet {
	unsigned A, H, layers, de, dm, lo, K, ntok, nmu, din[LSTM_MAX_LAYERS];
	size_t np;		/* parameters, all in p */
	float *p, *g, *m1, *m2;	/* values, gradients, Adam moments */
	float b1t, b2t;		/* Adam's beta1^t and beta2^t */
	float *esym, *emu, *w[LSTM_MAX_LAYERS], *b[LSTM_MAX_LAYERS], *wo, *bo;
};

static uint64_t rng;

static float urand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)(rng >> 40) / 16777216.0f;	/* [0, 1) */
}

/* Points each part of n at its place in base. */
static void layout(struct fnet *n, float *base)
{
	size_t at = 0;

	n->esym = base + at;
	at += n->ntok * n->de;
	n->emu = base + at;
	at += n->nmu * n->dm;
	for (unsigned l = 0; l < n->layers; l++) {
		n->w[l] = base + at;
		at += (size_t)4 * n->H * (n->din[l] + n->H);
		n->b[l] = base + at;
		at += 4 * n->H;
	}
	n->wo = base + at;
	at += (size_t)n->K * n->H;
	n->bo = base + at;
	n->np = at + n->K;
}

static size_t count_params(const struct fnet *n)
{
	size_t at = n->ntok * n->de + n->nmu * n->dm;

	for (unsigned l = 0; l < n->layers; l++)
		at += (size_t)4 * n->H * (n->din[l] + n->H) + 4 * n->H;
	return at + (size_t)n->K * n->H + n->K;
}

static int fnet_init(struct fnet *n)
{
	n->ntok = n->K + 3;
	n->nmu = 4 * n->K + 2;
	n->din[0] = n->de + n->dm;
	n->din[1] = n->H;
	n->np = count_params(n);
	n->p = calloc(4 * n->np, sizeof(float));
	if (!n->p)
		return STP_ENOMEM;
	n->g = n->p + n->np;
	n->m1 = n->g + n->np;
	n->m2 = n->m1 + n->np;
	layout(n, n->p);
	rng = 0x9E3779B97F4A7C15u;
	for (size_t i = 0; i < (size_t)n->ntok * n->de; i++)
		n->esym[i] = (urand() - 0.5f) * 0.5f;
	for (size_t i = 0; i < (size_t)n->nmu * n->dm; i++)
		n->emu[i] = (urand() - 0.5f) * 0.5f;
	for (unsigned l = 0; l < n->layers; l++) {
		float r = 1.0f / sqrtf((float)(n->din[l] + n->H));

		for (size_t i = 0; i < (size_t)4 * n->H * (n->din[l] + n->H); i++)
			n->w[l][i] = (urand() * 2 - 1) * r;
		for (unsigned j = 0; j < n->H; j++)
			n->b[l][n->H + j] = 1;	/* forget gates open */
	}
	for (size_t i = 0; i < (size_t)n->K * n->H; i++)
		n->wo[i] = (urand() * 2 - 1) / sqrtf((float)n->H);
	return 0;
}

/* ---- Training data ---- */

/* One training row: its tokens in, levels, and targets (window index, or
 * -1 outside the window), len steps. */
struct rows {
	size_t nrows, len;	/* len: steps a row (all rows of a batch) */
	uint8_t *tok, *lev;
	int8_t *tgt;
};

/* The inputs of every symbol of a plane, as the coder's walk gives them
 * (levels depend on the coding order through the column means). */
static int plane_inputs(const struct lstm *q, const struct stp_model_plane *pl,
			uint8_t *tok, uint8_t *lev)
{
	struct walk w;
	struct feat f;
	struct stp_model_geom geom;

	if (walk_init(&w, pl->n, pl->rowlen, pl->column) < 0)
		return STP_ERANGE;
	geom = (struct stp_model_geom){ w.n, w.rowlen, w.c0, w.rows, w.lanes };
	if (feat_open(&f, q->alphabet, q->row_shift, q->col_shift, &geom) < 0)
		return STP_ENOMEM;
	for (uint64_t g = 0; g < ngroups(&w); g++) {
		struct group gr;

		group_init(&w, g, &gr);
		feat_group(&f, g);
		for (unsigned sp = 0; sp < gr.nspans; sp++)
			for (uint64_t c = gr.span[sp][0]; c <= gr.span[sp][1]; c++)
				for (unsigned k = 0; k < gr.nl; k++) {
					size_t i = (size_t)(gr.base[k] + c);
					int32_t cm;

					if (c < gr.lo[k] || c > gr.hi[k])
						continue;
					if (c == gr.lo[k])
						feat_row(&f, k);
					cm = feat_col(&f, c);
					tok[i] = (uint8_t)(c == gr.lo[k] ? q->window + 2
						 : lstm_token(q, pl->sym[i - 1]));
					lev[i] = (uint8_t)stp_lstm_level(q,
						feat_mu(&f, cm, k));
					feat_learn(&f, k, c, cm, pl->sym[i]);
				}
	}
	feat_close(&f);
	return 0;
}

/* ---- One batch of rows: forward and back ---- */

struct acts {			/* what a step keeps for the way back */
	float x[LSTM_MAX_IN][B];
	float i[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B], f[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B];
	float gg[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B], o[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B];
	float di[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B], df[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B];
	float dg[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B], dov[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B];
	float cprev[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B], c[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B];
	float cclip[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B];
	float tc[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B], dtc[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B];
	float hprev[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B], h[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B];
	float p[LSTM_MAX_WINDOW][B];
	int tgt[B];
	unsigned tok[B], lev[B];
};

struct batch {
	struct acts a[T];
	float h[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B];	/* carried between chunks */
	float c[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B];
};

/* Forward over steps t0 .. t0+nt-1 of the rows of the batch (nb rows,
 * starting at row r0 of rows); returns the loss in nats summed, and the
 * count of scored symbols in *out_n. */
static double forward(struct fnet *n, struct batch *bt, const struct rows *rw,
		      size_t r0, unsigned nb, size_t t0, unsigned nt,
		      size_t *out_n)
{
	double loss = 0;
	size_t cnt = 0;

	for (unsigned t = 0; t < nt; t++) {
		struct acts *a = &bt->a[t];
		unsigned din = n->din[0];

		for (unsigned b = 0; b < B; b++) {
			size_t at = (r0 + (b < nb ? b : 0)) * rw->len + t0 + t;

			a->tok[b] = rw->tok[at];
			a->lev[b] = rw->lev[at];
			a->tgt[b] = b < nb ? rw->tgt[at] : -1;
			for (unsigned j = 0; j < n->de; j++)
				a->x[j][b] = n->esym[a->tok[b] * n->de + j];
			for (unsigned j = 0; j < n->dm; j++)
				a->x[n->de + j][b] = n->emu[a->lev[b] * n->dm + j];
		}
		for (unsigned l = 0; l < n->layers; l++) {
			const float *in0 = l == 0 ? &a->x[0][0] : &a->h[0][0][0];
			unsigned H = n->H;

			memcpy(a->hprev[l], bt->h[l], sizeof a->hprev[l]);
			memcpy(a->cprev[l], bt->c[l], sizeof a->cprev[l]);
			for (unsigned r = 0; r < 4 * H; r++) {
				const float *w = n->w[l] + (size_t)r * (din + H);
				float pre[B];

				for (unsigned b = 0; b < B; b++)
					pre[b] = n->b[l][r];
				for (unsigned j = 0; j < din; j++)
					for (unsigned b = 0; b < B; b++)
						pre[b] += w[j] * in0[j * B + b];
				for (unsigned j = 0; j < H; j++)
					for (unsigned b = 0; b < B; b++)
						pre[b] += w[din + j] * a->hprev[l][j][b];
				for (unsigned b = 0; b < B; b++) {
					unsigned u = r % H, gate = r / H;
					float s, y;

					if (gate == 2) {
						y = ftanh(pre[b], &s);
						a->gg[l][u][b] = y;
						a->dg[l][u][b] = s;
					} else {
						y = fsig(pre[b], &s);
						if (gate == 0) {
							a->i[l][u][b] = y;
							a->di[l][u][b] = s;
						} else if (gate == 1) {
							a->f[l][u][b] = y;
							a->df[l][u][b] = s;
						} else {
							a->o[l][u][b] = y;
							a->dov[l][u][b] = s;
						}
					}
				}
			}
			for (unsigned j = 0; j < H; j++)
				for (unsigned b = 0; b < B; b++) {
					float c = a->f[l][j][b] * a->cprev[l][j][b] +
						  a->i[l][j][b] * a->gg[l][j][b], s;

					a->cclip[l][j][b] = c > 8 || c < -8 ? 0 : 1;
					c = c > 8 ? 8 : c < -8 ? -8 : c;
					a->c[l][j][b] = c;
					a->tc[l][j][b] = ftanh(c, &s);
					a->dtc[l][j][b] = s;
					a->h[l][j][b] = a->o[l][j][b] * a->tc[l][j][b];
				}
			memcpy(bt->h[l], a->h[l], sizeof bt->h[l]);
			memcpy(bt->c[l], a->c[l], sizeof bt->c[l]);
			din = H;
		}
		for (unsigned b = 0; b < B; b++) {
			float z[LSTM_MAX_WINDOW], zmax, sum = 0;
			unsigned top = n->layers - 1;

			for (unsigned j = 0; j < n->K; j++) {
				z[j] = n->bo[j];
				for (unsigned k = 0; k < n->H; k++)
					z[j] += n->wo[j * n->H + k] * a->h[top][k][b];
			}
			zmax = z[0];
			for (unsigned j = 1; j < n->K; j++)
				zmax = z[j] > zmax ? z[j] : zmax;
			for (unsigned j = 0; j < n->K; j++) {
				a->p[j][b] = fexp(zmax - z[j]);
				sum += a->p[j][b];
			}
			for (unsigned j = 0; j < n->K; j++)
				a->p[j][b] /= sum;
			if (a->tgt[b] >= 0) {
				float pt = a->p[a->tgt[b]][b];

				loss -= (double)logf(pt > 1e-9f ? pt : 1e-9f);
				cnt++;
			}
		}
	}
	*out_n = cnt;
	return loss;
}

/* Back through the nt steps forward() kept, adding to n->g. */
static void backward(struct fnet *n, struct batch *bt, unsigned nt)
{
	static _Thread_local float dh[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B];
	static _Thread_local float dc[LSTM_MAX_LAYERS][LSTM_MAX_HIDDEN][B];
	unsigned H = n->H, top = n->layers - 1;

	memset(dh, 0, sizeof dh);
	memset(dc, 0, sizeof dc);
	for (unsigned t = nt; t-- > 0;) {
		struct acts *a = &bt->a[t];
		float dx[LSTM_MAX_HIDDEN][B];

		/* the output: softmax and cross-entropy */
		for (unsigned j = 0; j < n->K; j++)
			for (unsigned b = 0; b < B; b++) {
				float dz = a->tgt[b] < 0 ? 0
					   : a->p[j][b] - ((int)j == a->tgt[b]);

				n->g[(size_t)(n->bo - n->p) + j] += dz;
				for (unsigned k = 0; k < H; k++) {
					n->g[(size_t)(n->wo - n->p) + j * H + k] +=
						dz * a->h[top][k][b];
					dh[top][k][b] += dz * n->wo[j * H + k];
				}
			}
		for (unsigned l = n->layers; l-- > 0;) {
			unsigned din = n->din[l];
			const float *in0 = l == 0 ? &a->x[0][0] : &a->h[0][0][0];
			float dpre[4 * LSTM_MAX_HIDDEN][B];
			float *gw = n->g + (n->w[l] - n->p);
			float *gb = n->g + (n->b[l] - n->p);

			for (unsigned j = 0; j < H; j++)
				for (unsigned b = 0; b < B; b++) {
					float dhh = dh[l][j][b];
					float dcc = dc[l][j][b] +
						    dhh * a->o[l][j][b] * a->dtc[l][j][b];

					dcc *= a->cclip[l][j][b];
					dpre[3 * H + j][b] = dhh * a->tc[l][j][b] *
							     a->dov[l][j][b];
					dpre[j][b] = dcc * a->gg[l][j][b] * a->di[l][j][b];
					dpre[H + j][b] = dcc * a->cprev[l][j][b] *
							 a->df[l][j][b];
					dpre[2 * H + j][b] = dcc * a->i[l][j][b] *
							     a->dg[l][j][b];
					dc[l][j][b] = dcc * a->f[l][j][b];
				}
			memset(dh[l], 0, sizeof dh[l]);
			memset(dx, 0, sizeof dx);
			for (unsigned r = 0; r < 4 * H; r++) {
				const float *w = n->w[l] + (size_t)r * (din + H);
				float *g = gw + (size_t)r * (din + H);

				for (unsigned b = 0; b < B; b++)
					gb[r] += dpre[r][b];
				for (unsigned j = 0; j < din; j++) {
					float s = 0;

					for (unsigned b = 0; b < B; b++) {
						s += dpre[r][b] * in0[j * B + b];
						dx[j][b] += dpre[r][b] * w[j];
					}
					g[j] += s;
				}
				for (unsigned j = 0; j < H; j++) {
					float s = 0;

					for (unsigned b = 0; b < B; b++) {
						s += dpre[r][b] * a->hprev[l][j][b];
						dh[l][j][b] += dpre[r][b] * w[din + j];
					}
					g[din + j] += s;
				}
			}
			if (l > 0) {
				for (unsigned j = 0; j < H; j++)
					for (unsigned b = 0; b < B; b++)
						dh[l - 1][j][b] += dx[j][b];
			} else {
				for (unsigned b = 0; b < B; b++) {
					for (unsigned j = 0; j < n->de; j++)
						n->g[(size_t)(n->esym - n->p) +
						     a->tok[b] * n->de + j] += dx[j][b];
					for (unsigned j = 0; j < n->dm; j++)
						n->g[(size_t)(n->emu - n->p) +
						     a->lev[b] * n->dm + j] +=
							dx[n->de + j][b];
				}
			}
		}
	}
}

static void adam(struct fnet *n, float lr, float scale)
{
	const float b1 = 0.9f, b2 = 0.999f;
	float c1, c2;

	n->b1t *= b1;
	n->b2t *= b2;
	c1 = 1 - n->b1t;
	c2 = 1 - n->b2t;
	for (size_t i = 0; i < n->np; i++) {
		float g = n->g[i] * scale;

		n->m1[i] = b1 * n->m1[i] + (1 - b1) * g;
		n->m2[i] = b2 * n->m2[i] + (1 - b2) * g * g;
		n->p[i] -= lr * (n->m1[i] / c1) / (sqrtf(n->m2[i] / c2) + 1e-8f);
		n->g[i] = 0;
	}
}

/* ---- Quantization into the payload ---- */

static void put16(uint8_t *p, int v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)((unsigned)v >> 8);
}

static int q12(float v)
{
	float r = v * 4096;

	return r > 32767 ? 32767 : r < -32768 ? -32768 : (int)lrintf(r);
}

/* The largest shift s <= 15 that keeps every w * 2^s within int8. */
static unsigned weight_shift(const float *w, size_t n)
{
	float mx = 0;
	unsigned s = 0;

	for (size_t i = 0; i < n; i++)
		mx = fabsf(w[i]) > mx ? fabsf(w[i]) : mx;
	while (s < 15 && mx * (float)(1u << (s + 1)) <= 127)
		s++;
	return s;
}

static void put_weights(uint8_t **pp, const float *w, size_t n, unsigned s)
{
	for (size_t i = 0; i < n; i++) {
		long v = lrintf(w[i] * (float)(1u << s));

		*(*pp)++ = (uint8_t)(int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
	}
}

static int write_params(const struct fnet *n, const struct stp_lstm_opts *o,
			uint8_t **out, size_t *out_len)
{
	size_t len = stp_lstm_params_len(n->H, n->layers, n->de, n->dm, n->K);
	uint8_t *p = calloc(1, len), *q;
	unsigned sh[LSTM_MAX_LAYERS] = { 0, 0 }, so;

	if (!p)
		return STP_ENOMEM;
	for (unsigned l = 0; l < n->layers; l++)
		sh[l] = weight_shift(n->w[l], (size_t)4 * n->H *
						      (n->din[l] + n->H));
	so = weight_shift(n->wo, (size_t)n->K * n->H);
	p[0] = (uint8_t)n->H;
	p[1] = (uint8_t)n->layers;
	p[2] = (uint8_t)n->de;
	p[3] = (uint8_t)n->dm;
	p[4] = (uint8_t)n->lo;
	p[5] = (uint8_t)n->K;
	p[6] = (uint8_t)o->online;
	p[7] = 5;			/* row and column shifts of the levels */
	p[8] = 5;
	p[10] = (uint8_t)sh[0];
	p[11] = (uint8_t)sh[1];
	p[12] = (uint8_t)so;
	q = p + LSTM_FIXED;
	for (size_t i = 0; i < (size_t)n->ntok * n->de; i++, q += 2)
		put16(q, q12(n->esym[i]));
	for (size_t i = 0; i < (size_t)n->nmu * n->dm; i++, q += 2)
		put16(q, q12(n->emu[i]));
	for (unsigned l = 0; l < n->layers; l++) {
		put_weights(&q, n->w[l], (size_t)4 * n->H * (n->din[l] + n->H),
			    sh[l]);
		for (unsigned r = 0; r < 4 * n->H; r++, q += 2)
			put16(q, q12(n->b[l][r]));
	}
	put_weights(&q, n->wo, (size_t)n->K * n->H, so);
	for (unsigned j = 0; j < n->K; j++, q += 2)
		put16(q, q12(n->bo[j]));
	*out = p;
	*out_len = len;
	return 0;
}

/* ---- The fit ---- */

/* The window: all of a small alphabet, else the 32 symbols in a row that
 * hold the most of the planes' symbols (the lowest such run). */
static void pick_window(unsigned alphabet, const struct stp_model_plane *pl,
			size_t np, size_t budget, unsigned *lo, unsigned *K)
{
	uint64_t cnt[256] = { 0 }, best = 0, run = 0;

	if (alphabet <= LSTM_MAX_WINDOW) {
		*lo = 0;
		*K = alphabet;
		return;
	}
	for (size_t i = 0; i < np && budget; i++)
		for (size_t j = 0; j < pl[i].n && budget; j++, budget--)
			cnt[pl[i].sym[j]]++;
	*K = LSTM_MAX_WINDOW;
	*lo = 0;
	for (unsigned s = 0; s < LSTM_MAX_WINDOW; s++)
		run += cnt[s];
	best = run;
	for (unsigned s = 1; s + LSTM_MAX_WINDOW <= alphabet; s++) {
		run += cnt[s + LSTM_MAX_WINDOW - 1] - cnt[s - 1];
		if (run > best) {
			best = run;
			*lo = s;
		}
	}
}

int stp_lstm_fit(unsigned alphabet, const struct stp_model_plane *planes,
		 size_t nplanes, const struct stp_lstm_opts *o,
		 uint8_t **out_params, size_t *out_len)
{
	struct fnet n = { 0 };
	struct lstm q = { 0 };
	struct batch *bt = NULL;
	struct rows *rw = NULL;
	size_t budget = o->train, nrw = 0, nupd = 0, upd = 0;
	uint8_t *tok = NULL, *lev = NULL;
	int rc;

	if (alphabet < 2 || alphabet > 256 || o->hidden < 1 ||
	    o->hidden > LSTM_MAX_HIDDEN || o->layers < 1 ||
	    o->layers > LSTM_MAX_LAYERS || o->embed < 1 ||
	    o->embed > LSTM_MAX_EMBED || o->mu_embed > LSTM_MAX_EMBED ||
	    o->online > 15)
		return STP_ERANGE;
	n.A = alphabet;
	n.H = o->hidden;
	n.layers = o->layers;
	n.de = o->embed;
	n.dm = o->mu_embed;
	pick_window(alphabet, planes, nplanes, budget, &n.lo, &n.K);
	if ((rc = fnet_init(&n)) < 0)
		return rc;
	n.b1t = n.b2t = 1;
	q.alphabet = alphabet;
	q.lo = n.lo;
	q.window = n.K;
	q.nmu = n.nmu;
	q.row_shift = 5;
	q.col_shift = 5;
	rc = STP_ENOMEM;
	bt = calloc(1, sizeof *bt);
	rw = calloc(nplanes ? nplanes : 1, sizeof *rw);
	if (!bt || !rw)
		goto out;
	/* The training rows: the whole rows of the planes, in order, until
	 * the budget is spent. */
	for (size_t i = 0; i < nplanes && budget; i++) {
		const struct stp_model_plane *pl = &planes[i];
		uint64_t first = pl->column ? pl->rowlen - pl->column : 0;
		size_t full, rows;

		if (pl->n == 0 || pl->rowlen == 0 || pl->column >= pl->rowlen ||
		    pl->rowlen > budget)
			continue;
		if (first > pl->n)
			continue;
		full = (size_t)((pl->n - first) / pl->rowlen);
		rows = full < budget / pl->rowlen ? full : budget / pl->rowlen;
		if (!rows)
			continue;
		free(tok);
		free(lev);
		tok = malloc(pl->n);
		lev = malloc(pl->n);
		if (!tok || !lev)
			goto out;
		if ((rc = plane_inputs(&q, pl, tok, lev)) < 0)
			goto out;
		rc = STP_ENOMEM;
		rw[nrw].nrows = rows;
		rw[nrw].len = (size_t)pl->rowlen;
		rw[nrw].tok = malloc(rows * pl->rowlen);
		rw[nrw].lev = malloc(rows * pl->rowlen);
		rw[nrw].tgt = malloc(rows * pl->rowlen);
		if (!rw[nrw].tok || !rw[nrw].lev || !rw[nrw].tgt) {
			nrw++;
			goto out;
		}
		memcpy(rw[nrw].tok, tok + first, rows * pl->rowlen);
		memcpy(rw[nrw].lev, lev + first, rows * pl->rowlen);
		for (size_t j = 0; j < rows * pl->rowlen; j++) {
			unsigned t = lstm_token(&q, pl->sym[first + j]);

			rw[nrw].tgt[j] = (int8_t)(t >= 1 && t <= n.K ? (int)t - 1 : -1);
		}
		budget -= rows * (size_t)pl->rowlen;
		nrw++;
	}
	/* The learning rate falls linearly from 0.02 to 0.002 over the
	 * updates. */
	for (size_t i = 0; i < nrw; i++)
		nupd += (rw[i].nrows + B - 1) / B * ((rw[i].len + T - 1) / T);
	nupd *= o->epochs;
	for (unsigned e = 0; e < o->epochs; e++)
		for (size_t i = 0; i < nrw; i++)
			for (size_t r0 = 0; r0 < rw[i].nrows; r0 += B) {
				unsigned nb = rw[i].nrows - r0 < B ?
					      (unsigned)(rw[i].nrows - r0) : B;

				memset(bt->h, 0, sizeof bt->h);
				memset(bt->c, 0, sizeof bt->c);
				for (size_t t0 = 0; t0 < rw[i].len; t0 += T) {
					unsigned nt = rw[i].len - t0 < T ?
						      (unsigned)(rw[i].len - t0) : T;
					size_t cnt;

					forward(&n, bt, &rw[i], r0, nb, t0, nt, &cnt);
					backward(&n, bt, nt);
					adam(&n, 0.02f - 0.018f * (float)upd++ /
							 (float)nupd,
					     cnt ? 1.0f / (float)cnt : 0);
				}
			}
	rc = write_params(&n, o, out_params, out_len);
out:
	for (size_t i = 0; rw && i < nrw; i++) {
		free(rw[i].tok);
		free(rw[i].lev);
		free(rw[i].tgt);
	}
	free(rw);
	free(tok);
	free(lev);
	free(bt);
	free(n.p);
	return rc;
}
