/* The forward pass of a Llama-architecture model, in F32 on the CPU,
 * as Hugging Face LlamaForCausalLM computes it (RMSNorm, rotary
 * embeddings in the rotate-half layout, grouped-query causal attention,
 * SiLU-gated MLP, tied or untied head), and the perplexity evaluation of
 * st-eval. Matrix products go through cblas_sgemm. */
#ifndef STP_LLAMA_H
#define STP_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "weights.h"

/* What config.json says, defaults as in Hugging Face's LlamaConfig
 * (num_key_value_heads: num_attention_heads; head_dim: hidden_size /
 * num_attention_heads; rms_norm_eps 1e-6; rope_theta 10000; untied). */
struct stp_llama_config {
	unsigned hidden, intermediate, layers, heads, kv_heads, head_dim;
	unsigned vocab;
	double eps, theta;
	int tied;
};

/* Reads config.json at path. STP_EIO, STP_EJSON (not JSON, or a field
 * missing or of the wrong type), STP_EUNSUPPORTED (rope_scaling, biases,
 * an activation other than SiLU, sizes out of range); where gets the
 * field at fault. */
int stp_llama_config_read(const char *path, struct stp_llama_config *out,
			  char *where, size_t wcap);

typedef struct stp_llama stp_llama;

/* Loads every weight the config names from w as F32 (w may be closed
 * afterwards). A weight that is missing gives STP_ERANGE, one of the
 * wrong shape STP_ESIZE, with its name in where; or what
 * stp_weights_load() returns. */
int stp_llama_open(stp_llama **out, stp_weights *w,
		   const struct stp_llama_config *cfg, char *where,
		   size_t wcap);
void stp_llama_close(stp_llama *m);
const struct stp_llama_config *stp_llama_cfg(const stp_llama *m);

/* Logits (n x vocab, row-major) of the n tokens at positions 0..n-1.
 * STP_ERANGE if a token is not below vocab, STP_ENOMEM. */
int stp_llama_forward(stp_llama *m, const uint32_t *tokens, size_t n,
		      float *logits);

/* The evaluation: tokens cut into consecutive windows of ctx + 1 (the
 * last one shorter when tokens run out, dropped under 2); each window's
 * first tokens are fed and the prediction of its tokens 1.. scored.
 * With two models, their logits are compared position by position. */
struct stp_eval {
	uint64_t windows, scored;
	double bits[2];           /* mean -log2 p of each model */
	double cos_mean, cos_min; /* per-position cosine of the logits */
	double mse;               /* mean squared difference of the logits */
	double top1;              /* fraction of positions with one argmax */
};

/* progress, if not NULL, is called after each window with windows done
 * and the total. STP_EEMPTY (fewer than 2 tokens), STP_EUNSUPPORTED
 * (models of different vocabularies), or what stp_llama_forward()
 * returns. */
int stp_llama_eval(stp_llama *const *models, unsigned nmodels,
		   const uint32_t *tokens, size_t n, size_t ctx,
		   struct stp_eval *out,
		   void (*progress)(void *, uint64_t, uint64_t), void *pctx);

#endif
