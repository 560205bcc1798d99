/* Unit test of the lstm model's lane-batched step (lib/model_lstm.c and
 * its AVX2 and AVX-512 files): on random layers, states, inputs and lane
 * masks, weights and states drawn over the whole int16 range as well as
 * the fitted ranges (so that clamps and the tanh table's saturation are
 * hit), every variant this CPU runs gives exactly the C kernel's numbers.
 * Prints TAP; exits 1 if any test failed; variants the CPU lacks are
 * reported as skipped. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/impl.h"
#include "../../lib/model_lstm.h"

static int ntest, nfail;
static uint64_t seed = 0x9e3779b97f4a7c15u;

static uint32_t rnd(void)
{
	seed ^= seed >> 12;
	seed ^= seed << 25;
	seed ^= seed >> 27;
	return (uint32_t)((seed * 0x2545f4914f6cdd1du) >> 32);
}

/* A value in [-lim, lim], lim up to 32767; one in 16 at an extreme. */
static int16_t draw(int32_t lim)
{
	uint32_t r = rnd();

	if ((r & 15) == 0)
		return (r >> 4 & 1) ? (int16_t)lim : (int16_t)-lim;
	return (int16_t)((int32_t)(r >> 8) % (2 * lim + 1) - lim);
}

typedef void layer_fn(const struct lstm_layer *, unsigned, int16_t[][32],
		      int16_t[][32], int16_t[][32], uint32_t);
typedef void scores_fn(const struct lstm *, const int32_t *, int16_t[][32],
		       int32_t[][32]);

static void check(const char *name, layer_fn *layer, scores_fn *sc)
{
	static int16_t w[4 * LSTM_MAX_HIDDEN * (LSTM_MAX_IN + LSTM_MAX_HIDDEN)];
	static int16_t b[4 * LSTM_MAX_HIDDEN], wo[LSTM_MAX_WINDOW * LSTM_MAX_HIDDEN];
	static int16_t in[LSTM_MAX_IN][32], h0[LSTM_MAX_HIDDEN][32],
		c0[LSTM_MAX_HIDDEN][32], h1[LSTM_MAX_HIDDEN][32],
		c1[LSTM_MAX_HIDDEN][32], h2[LSTM_MAX_HIDDEN][32],
		c2[LSTM_MAX_HIDDEN][32];
	static int32_t z1[LSTM_MAX_WINDOW][32], z2[LSTM_MAX_WINDOW][32],
		bo[LSTM_MAX_WINDOW];
	unsigned bad_layer = 0, bad_scores = 0, trials = 400;

	for (unsigned t = 0; t < trials; t++) {
		/* H even (the kernels' pairs), din odd and even, small
		 * and the largest */
		unsigned H = t % 5 == 0 ? LSTM_MAX_HIDDEN : 2 * (1 + rnd() % 32);
		unsigned din = t % 7 == 0 ? LSTM_MAX_IN : 1 + rnd() % LSTM_MAX_IN;
		unsigned win = 1 + rnd() % LSTM_MAX_WINDOW;
		/* weights and inputs as large as keep the 96-term sums in
		 * int32 (the C kernel's arithmetic; 96 wl sl < 2^31), both
		 * ways round */
		int32_t sl = t & 2 ? 32767 : 4096, wl = t & 2 ? 650 : 5000;
		uint32_t mask = t % 3 == 0 ? 0xffffffffu : rnd();
		struct lstm_layer L = { din, t & 1 ? 16 : 6 + rnd() % 6, w, b };
		struct lstm n;

		for (unsigned i = 0; i < 4 * H * (din + H); i++)
			w[i] = draw(wl);
		for (unsigned i = 0; i < 4 * H; i++)
			b[i] = draw(sl);
		for (unsigned j = 0; j < din; j++)
			for (unsigned k = 0; k < 32; k++)
				in[j][k] = draw(sl);
		for (unsigned j = 0; j < H; j++)
			for (unsigned k = 0; k < 32; k++) {
				h0[j][k] = draw(4096);
				c0[j][k] = draw(sl);
			}
		memcpy(h1, h0, sizeof h0);
		memcpy(c1, c0, sizeof c0);
		memcpy(h2, h0, sizeof h0);
		memcpy(c2, c0, sizeof c0);
		stp_lstm_layer_lanes_c(&L, H, in, h1, c1, mask);
		layer(&L, H, in, h2, c2, mask);
		if (memcmp(h1, h2, sizeof h1) || memcmp(c1, c2, sizeof c1))
			bad_layer++;

		memset(&n, 0, sizeof n);
		n.hidden = H;
		n.window = win;
		n.out_shift = 6 + rnd() % 8;
		n.wo = wo;
		for (unsigned i = 0; i < win * H; i++)
			wo[i] = draw(4096);
		for (unsigned j = 0; j < win; j++)
			bo[j] = draw(sl);
		stp_lstm_scores_lanes_c(&n, bo, h1, z1);
		sc(&n, bo, h1, z2);
		for (unsigned j = 0; j < win; j++)
			if (memcmp(z1[j], z2[j], sizeof z1[j]))
				bad_scores++;
	}
	ntest++;
	nfail += bad_layer != 0;
	printf("%sok %d - %s layer step equals the C kernel on %u trials (%u differ)\n",
	       bad_layer ? "not " : "", ntest, name, trials, bad_layer);
	ntest++;
	nfail += bad_scores != 0;
	printf("%sok %d - %s output scores equal the C kernel (%u rows differ)\n",
	       bad_scores ? "not " : "", ntest, name, bad_scores);
}

int main(void)
{
	enum stp_impl impl;

	if (stp_impl_pick("avx2", &impl) == 0)
		check("avx2", stp_lstm_layer_lanes_avx2, stp_lstm_scores_lanes_avx2);
	else
		for (int i = 0; i < 2; i++)
			printf("ok %d - # SKIP this CPU has no AVX2\n", ++ntest);
	if (stp_impl_pick("avx512", &impl) == 0)
		check("avx512", stp_lstm_layer_lanes_avx512,
		      stp_lstm_scores_lanes_avx512);
	else
		for (int i = 0; i < 2; i++)
			printf("ok %d - # SKIP this CPU has no AVX-512\n", ++ntest);
	printf("1..%d\n", ntest);
	return nfail ? 1 : 0;
}
