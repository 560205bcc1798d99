/* Internal to the lstm model kind (formats/model.md, "lstm"): the parsed
 * network, its integer step, and what the fit (lib/lstm_fit.c) needs to
 * write a payload.  Everything here is integer arithmetic. */
#ifndef STP_MODEL_LSTM_H
#define STP_MODEL_LSTM_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define LSTM_MAX_HIDDEN 64
#define LSTM_MAX_LAYERS 2
#define LSTM_MAX_EMBED 16
#define LSTM_MAX_WINDOW 32
#define LSTM_MAX_IN (2 * LSTM_MAX_EMBED)
#define LSTM_FIXED 16		/* params before the tensors */
#define LSTM_ONE 4096		/* 1.0 in Q12 */

struct lstm_layer {
	unsigned din, shift;
	int16_t *w;		/* 4H rows of din + H: input, then recurrent */
	int16_t *b;		/* 4H, Q12 */
};

struct lstm {
	unsigned alphabet, hidden, layers, de, dm, lo, window, online;
	unsigned row_shift, col_shift;
	unsigned ntok, nmu;	/* window + 3 tokens, 4 window + 2 levels */
	int16_t *esym;		/* ntok rows of de, Q12 */
	int16_t *emu;		/* nmu rows of dm, Q12 */
	struct lstm_layer l[LSTM_MAX_LAYERS];
	unsigned out_shift;
	int16_t *wo;		/* window rows of hidden */
	int16_t *bo;		/* window, Q12 */
	int16_t *mem;
};

/* What stp_lstm_fit learns: hidden units (1..64), layers (1..2), the
 * embeddings of the previous symbol (1..16) and of the row and column
 * level (0..16), the online shift (0: a static model), the symbols it
 * trains on (whole rows, taken in order) and its passes over them. */
struct stp_lstm_opts {
	unsigned hidden, layers, embed, mu_embed, online;
	size_t train;
	unsigned epochs;
};

#define STP_LSTM_OPTS_DEFAULT { 16, 2, 8, 8, 0, (size_t)1 << 20, 2 }

/* Trains a network on planes (symbols below alphabet) and writes the
 * params of an lstm MODEL payload (formats/model.md) as a malloc'd block
 * *out_params of *out_len bytes.  Deterministic: the same planes and
 * options give the same bytes on every machine.  0, STP_ERANGE (options
 * or alphabet out of range), STP_ENOMEM. */
int stp_lstm_fit(unsigned alphabet, const struct stp_model_plane *planes,
		 size_t nplanes, const struct stp_lstm_opts *o,
		 uint8_t **out_params, size_t *out_len);

/* Sizes of a network, for the fit: the params length for these
 * dimensions (formats/model.md, "lstm"). */
size_t stp_lstm_params_len(unsigned hidden, unsigned layers, unsigned de,
			   unsigned dm, unsigned window);

/* The token of a symbol: 0 below the window, 1 + its place in it, window
 * + 1 above it; window + 2 is the start of a row. */
static inline unsigned lstm_token(const struct lstm *n, unsigned s)
{
	return s < n->lo ? 0 : s >= n->lo + n->window ? n->window + 1
						       : s - n->lo + 1;
}

/* The level of mu (Q8, what the row and column predict): quarter exponents
 * from the window's start, clamped to 0 .. nmu-1. */
unsigned stp_lstm_level(const struct lstm *n, int32_t mu);

/* The lane-batched step of lib/model_lstm.c: in C, in AVX2 and in
 * AVX-512 (F and BW), all with exactly the same numbers. */
void stp_lstm_layer_lanes_c(const struct lstm_layer *L, unsigned H,
			    int16_t in[][32], int16_t h[][32],
			    int16_t c[][32], uint32_t mask);
void stp_lstm_layer_lanes_avx512(const struct lstm_layer *L, unsigned H,
				 int16_t in[][32], int16_t h[][32],
				 int16_t c[][32], uint32_t mask);
void stp_lstm_layer_lanes_avx2(const struct lstm_layer *L, unsigned H,
			       int16_t in[][32], int16_t h[][32],
			       int16_t c[][32], uint32_t mask);
void stp_lstm_scores_lanes_c(const struct lstm *n, const int32_t *bo,
			     int16_t h[][32], int32_t z[][32]);
void stp_lstm_scores_lanes_avx2(const struct lstm *n, const int32_t *bo,
				int16_t h[][32], int32_t z[][32]);
void stp_lstm_scores_lanes_avx512(const struct lstm *n, const int32_t *bo,
				  int16_t h[][32], int32_t z[][32]);

/* The points of the piecewise-linear tanh (4096 tanh(k/4)) and exp
 * (65536 exp(-k/2)), k = 0..32: formats/model.md, "lstm". */
extern const int16_t stp_lstm_tanh_tab[33];
extern const uint32_t stp_lstm_exp_tab[33];

/* tanh and the logistic function in Q12, the piecewise-linear tables of
 * formats/model.md. */
int32_t stp_lstm_tanh(int32_t v);
int32_t stp_lstm_sigmoid(int32_t v);
/* 65536 * exp(-t / 4096) for t >= 0, piecewise linear. */
uint32_t stp_lstm_exp(uint32_t t);

#endif
