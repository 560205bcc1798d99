#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "llama.h"

struct layer {
	float *in_norm, *q, *k, *v, *o, *post_norm, *gate, *up, *down;
};

struct stp_llama {
	struct stp_llama_config cfg;
	float *embed, *norm, *head;   /* head == embed when tied */
	struct layer *layer;
	float *cos, *sin;             /* cap x head_dim/2 */
	size_t cap;                   /* positions the buffers hold */
	float *x, *h, *q, *k, *v, *att, *s, *g, *u;
};

/* ---- config.json ---- */

static void set_where(char *where, size_t wcap, const char *s)
{
	if (wcap)
		snprintf(where, wcap, "%s", s);
}

static int get_uint(json_t *root, const char *key, int required,
		    unsigned lo, unsigned hi, unsigned *out)
{
	json_t *v = json_object_get(root, key);
	json_int_t i;

	if (!v || json_is_null(v))
		return required ? STP_EJSON : 0;
	if (!json_is_integer(v))
		return STP_EJSON;
	i = json_integer_value(v);
	if (i < lo || i > hi)
		return STP_EUNSUPPORTED;
	*out = (unsigned)i;
	return 0;
}

static int get_real(json_t *root, const char *key, double lo, double hi,
		    double *out)
{
	json_t *v = json_object_get(root, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v))
		return STP_EJSON;
	if (!(json_number_value(v) >= lo && json_number_value(v) <= hi))
		return STP_EUNSUPPORTED;
	*out = json_number_value(v);
	return 0;
}

/* A feature this forward pass does not compute: present and not
 * null or false. */
static int refused(json_t *root, const char *key)
{
	json_t *v = json_object_get(root, key);

	return v && !json_is_null(v) && !json_is_false(v);
}

static int read_config(json_t *root, struct stp_llama_config *c,
		       const char **key)
{
	static const char *const features[] = { "rope_scaling",
		"attention_bias", "mlp_bias", "sliding_window" };
	json_t *act = json_object_get(root, "hidden_act");
	json_t *tie = json_object_get(root, "tie_word_embeddings");
	int rc;

	memset(c, 0, sizeof *c);
	c->eps = 1e-6;
	c->theta = 10000;
	if (!json_is_object(root))
		return *key = "", STP_EJSON;
#define U(k, req, lo, hi, f) \
	if ((rc = get_uint(root, (*key = k), req, lo, hi, &c->f)) < 0) \
		return rc;
	U("hidden_size", 1, 1, 1u << 20, hidden)
	U("intermediate_size", 1, 1, 1u << 22, intermediate)
	U("num_hidden_layers", 1, 1, 4096, layers)
	U("num_attention_heads", 1, 1, 4096, heads)
	U("vocab_size", 1, 1, 1u << 26, vocab)
	c->kv_heads = c->heads;
	c->head_dim = c->hidden / c->heads;
	U("num_key_value_heads", 0, 1, 4096, kv_heads)
	U("head_dim", 0, 2, 1u << 16, head_dim)
#undef U
	if ((rc = get_real(root, (*key = "rms_norm_eps"), 0, 1, &c->eps)) < 0 ||
	    (rc = get_real(root, (*key = "rope_theta"), 1, 1e12, &c->theta)) < 0)
		return rc;
	*key = "num_key_value_heads";
	if (c->heads % c->kv_heads != 0)
		return STP_EUNSUPPORTED;
	*key = "head_dim";
	if (c->head_dim < 2 || c->head_dim % 2 != 0)
		return STP_EUNSUPPORTED;
	*key = "hidden_act";
	if (act && !json_is_null(act) &&
	    (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
		return STP_EUNSUPPORTED;
	*key = "tie_word_embeddings";
	if (tie && !json_is_null(tie) && !json_is_boolean(tie))
		return STP_EJSON;
	c->tied = json_is_true(tie);
	for (size_t i = 0; i < sizeof features / sizeof features[0]; i++)
		if (refused(root, (*key = features[i])))
			return STP_EUNSUPPORTED;
	return 0;
}

int stp_llama_config_read(const char *path, struct stp_llama_config *out,
			  char *where, size_t wcap)
{
	json_error_t jerr;
	json_t *root;
	const char *key = "";
	struct stp_llama_config c;
	int rc;

	set_where(where, wcap, path);
	if (access(path, R_OK) < 0)
		return STP_EIO;
	if (!(root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr)))
		return STP_EJSON;
	rc = read_config(root, &c, &key);
	json_decref(root);
	if (rc < 0) {
		if (wcap)
			snprintf(where, wcap, "%s: %s", path, key);
		return rc;
	}
	*out = c;
	return 0;
}

/* ---- weights ---- */

static int take(stp_weights *w, const char *name, uint64_t rows,
		uint64_t cols, float **out, char *where, size_t wcap)
{
	const struct stp_weight_info *info;
	long i = stp_weights_find(w, name);
	int rc;

	set_where(where, wcap, name);
	if (i < 0)
		return STP_ERANGE;
	info = stp_weights_info(w, (size_t)i);
	if (cols ? info->ndim != 2 || info->shape[0] != rows ||
		   info->shape[1] != cols
		 : info->ndim != 1 || info->shape[0] != rows)
		return STP_ESIZE;
	if ((rc = stp_weights_load(w, (size_t)i, out)) < 0)
		set_where(where, wcap, stp_weights_where(w));
	return rc;
}

static int load_layer(stp_weights *w, const struct stp_llama_config *c,
		      unsigned l, struct layer *y, char *where, size_t wcap)
{
	const uint64_t H = c->hidden, IM = c->intermediate;
	const uint64_t qd = (uint64_t)c->heads * c->head_dim;
	const uint64_t kd = (uint64_t)c->kv_heads * c->head_dim;
	const struct {
		const char *name;
		uint64_t rows, cols;
		float **dst;
	} parts[] = {
		{ "input_layernorm.weight", H, 0, &y->in_norm },
		{ "self_attn.q_proj.weight", qd, H, &y->q },
		{ "self_attn.k_proj.weight", kd, H, &y->k },
		{ "self_attn.v_proj.weight", kd, H, &y->v },
		{ "self_attn.o_proj.weight", H, qd, &y->o },
		{ "post_attention_layernorm.weight", H, 0, &y->post_norm },
		{ "mlp.gate_proj.weight", IM, H, &y->gate },
		{ "mlp.up_proj.weight", IM, H, &y->up },
		{ "mlp.down_proj.weight", H, IM, &y->down },
	};
	char name[256];
	int rc;

	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
		snprintf(name, sizeof name, "model.layers.%u.%s", l,
			 parts[i].name);
		if ((rc = take(w, name, parts[i].rows, parts[i].cols,
			       parts[i].dst, where, wcap)) < 0)
			return rc;
	}
	return 0;
}

int stp_llama_open(stp_llama **out, stp_weights *w,
		   const struct stp_llama_config *cfg, char *where,
		   size_t wcap)
{
	stp_llama *m = calloc(1, sizeof *m);
	int rc;

	if (!m)
		return STP_ENOMEM;
	m->cfg = *cfg;
	if (!(m->layer = calloc(cfg->layers, sizeof *m->layer))) {
		free(m);
		return STP_ENOMEM;
	}
	rc = take(w, "model.embed_tokens.weight", cfg->vocab, cfg->hidden,
		  &m->embed, where, wcap);
	if (rc == 0)
		rc = take(w, "model.norm.weight", cfg->hidden, 0, &m->norm,
			  where, wcap);
	if (rc == 0 && !cfg->tied)
		rc = take(w, "lm_head.weight", cfg->vocab, cfg->hidden,
			  &m->head, where, wcap);
	for (unsigned l = 0; rc == 0 && l < cfg->layers; l++)
		rc = load_layer(w, cfg, l, &m->layer[l], where, wcap);
	if (rc < 0) {
		stp_llama_close(m);
		return rc;
	}
	if (cfg->tied)
		m->head = m->embed;
	*out = m;
	return 0;
}

static void free_buffers(stp_llama *m)
{
	float **b[] = { &m->cos, &m->sin, &m->x, &m->h, &m->q, &m->k, &m->v,
			&m->att, &m->s, &m->g, &m->u };

	for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
		free(*b[i]);
		*b[i] = NULL;
	}
	m->cap = 0;
}

void stp_llama_close(stp_llama *m)
{
	if (!m)
		return;
	for (unsigned l = 0; m->layer && l < m->cfg.layers; l++) {
		struct layer *y = &m->layer[l];

		free(y->in_norm); free(y->q); free(y->k); free(y->v);
		free(y->o); free(y->post_norm); free(y->gate); free(y->up);
		free(y->down);
	}
	free(m->layer);
	if (m->head != m->embed)
		free(m->head);
	free(m->embed);
	free(m->norm);
	free_buffers(m);
	free(m);
}

const struct stp_llama_config *stp_llama_cfg(const stp_llama *m)
{
	return &m->cfg;
}

/* ---- the forward pass ---- */

static int reserve(stp_llama *m, size_t n)
{
	const struct stp_llama_config *c = &m->cfg;
	const size_t half = c->head_dim / 2;
	const size_t qd = (size_t)c->heads * c->head_dim;
	const size_t kd = (size_t)c->kv_heads * c->head_dim;
	int ok;

	if (n <= m->cap)
		return 0;
	free_buffers(m);
	if (n > (1u << 16))
		return STP_ETOOBIG;
	m->cos = malloc(n * half * sizeof *m->cos);
	m->sin = malloc(n * half * sizeof *m->sin);
	m->x = malloc(n * c->hidden * sizeof *m->x);
	m->h = malloc(n * c->hidden * sizeof *m->h);
	m->q = malloc(n * qd * sizeof *m->q);
	m->k = malloc(n * kd * sizeof *m->k);
	m->v = malloc(n * kd * sizeof *m->v);
	m->att = malloc(n * qd * sizeof *m->att);
	m->s = malloc(n * n * sizeof *m->s);
	m->g = malloc(n * c->intermediate * sizeof *m->g);
	m->u = malloc(n * c->intermediate * sizeof *m->u);
	ok = m->cos && m->sin && m->x && m->h && m->q && m->k && m->v &&
	     m->att && m->s && m->g && m->u;
	if (!ok) {
		free_buffers(m);
		return STP_ENOMEM;
	}
	/* inv_freq_i = theta^(-2i/d), angle = position * inv_freq_i. */
	for (size_t p = 0; p < n; p++)
		for (size_t i = 0; i < half; i++) {
			double f = 1.0 / pow(c->theta,
					     (double)(2 * i) / c->head_dim);
			double a = (double)(float)((float)p * (float)f);

			m->cos[p * half + i] = (float)cos(a);
			m->sin[p * half + i] = (float)sin(a);
		}
	m->cap = n;
	return 0;
}

/* y = x / sqrt(mean(x^2) + eps) * weight, for each of n rows. */
static void rmsnorm(const float *x, const float *wt, size_t n, size_t d,
		    double eps, float *y)
{
	for (size_t r = 0; r < n; r++) {
		const float *xr = x + r * d;
		double ss = 0;
		float inv;

		for (size_t i = 0; i < d; i++)
			ss += (double)xr[i] * xr[i];
		inv = (float)(1.0 / sqrt(ss / (double)d + eps));
		for (size_t i = 0; i < d; i++)
			y[r * d + i] = wt[i] * (xr[i] * inv);
	}
}

/* y (n x out) = x (n x in) W^T, W out x in; beta 1 adds to y. */
static void linear(const float *x, const float *wt, size_t n, size_t in,
		   size_t out, float beta, float *y)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out,
		    (int)in, 1.0f, x, (int)in, wt, (int)in, beta, y, (int)out);
}

/* Rotate-half: the pair (i, i + d/2) of every head turns by its angle. */
static void rope(const stp_llama *m, float *t, size_t n, unsigned heads)
{
	const size_t d = m->cfg.head_dim, half = d / 2;

	for (size_t p = 0; p < n; p++)
		for (unsigned h = 0; h < heads; h++) {
			float *v = t + (p * heads + h) * d;
			const float *c = m->cos + p * half, *s = m->sin + p * half;

			for (size_t i = 0; i < half; i++) {
				float a = v[i], b = v[i + half];

				v[i] = a * c[i] - b * s[i];
				v[i + half] = b * c[i] + a * s[i];
			}
		}
}

static void attention(stp_llama *m, size_t n)
{
	const struct stp_llama_config *c = &m->cfg;
	const size_t d = c->head_dim;
	const int ldq = (int)(c->heads * d), ldk = (int)(c->kv_heads * d);
	const float scale = (float)(1.0 / sqrt((double)d));

	for (unsigned h = 0; h < c->heads; h++) {
		unsigned g = h / (c->heads / c->kv_heads);

		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n,
			    (int)n, (int)d, scale, m->q + h * d, ldq,
			    m->k + g * d, ldk, 0.0f, m->s, (int)n);
		for (size_t i = 0; i < n; i++) {
			float *row = m->s + i * n, mx = row[0];
			double sum = 0;

			for (size_t j = 1; j <= i; j++)
				if (row[j] > mx)
					mx = row[j];
			for (size_t j = 0; j <= i; j++) {
				row[j] = expf(row[j] - mx);
				sum += row[j];
			}
			for (size_t j = 0; j <= i; j++)
				row[j] = (float)(row[j] / sum);
			for (size_t j = i + 1; j < n; j++)
				row[j] = 0;
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n,
			    (int)d, (int)n, 1.0f, m->s, (int)n, m->v + g * d,
			    ldk, 0.0f, m->att + h * d, ldq);
	}
}

int stp_llama_forward(stp_llama *m, const uint32_t *tokens, size_t n,
		      float *logits)
{
	const struct stp_llama_config *c = &m->cfg;
	const size_t H = c->hidden, IM = c->intermediate;
	const size_t qd = (size_t)c->heads * c->head_dim;
	const size_t kd = (size_t)c->kv_heads * c->head_dim;
	int rc;

	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (tokens[i] >= c->vocab)
			return STP_ERANGE;
	if ((rc = reserve(m, n)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		memcpy(m->x + i * H, m->embed + (size_t)tokens[i] * H,
		       H * sizeof *m->x);
	for (unsigned l = 0; l < c->layers; l++) {
		const struct layer *y = &m->layer[l];

		rmsnorm(m->x, y->in_norm, n, H, c->eps, m->h);
		linear(m->h, y->q, n, H, qd, 0, m->q);
		linear(m->h, y->k, n, H, kd, 0, m->k);
		linear(m->h, y->v, n, H, kd, 0, m->v);
		rope(m, m->q, n, c->heads);
		rope(m, m->k, n, c->kv_heads);
		attention(m, n);
		linear(m->att, y->o, n, qd, H, 1, m->x);
		rmsnorm(m->x, y->post_norm, n, H, c->eps, m->h);
		linear(m->h, y->gate, n, H, IM, 0, m->g);
		linear(m->h, y->up, n, H, IM, 0, m->u);
		for (size_t i = 0; i < n * IM; i++) {
			float g = m->g[i];

			m->g[i] = g / (1.0f + expf(-g)) * m->u[i];
		}
		linear(m->g, y->down, n, IM, H, 1, m->x);
	}
	rmsnorm(m->x, m->norm, n, H, c->eps, m->h);
	linear(m->h, m->head, n, H, c->vocab, 0, logits);
	return 0;
}

/* ---- evaluation ---- */

/* -log2 p(target) under a softmax of the v logits. */
static double bits_of(const float *l, size_t v, uint32_t target)
{
	double mx = l[0], sum = 0;

	for (size_t i = 1; i < v; i++)
		if (l[i] > mx)
			mx = l[i];
	for (size_t i = 0; i < v; i++)
		sum += exp((double)l[i] - mx);
	return (mx + log(sum) - l[target]) / M_LN2;
}

static size_t argmax(const float *l, size_t v)
{
	size_t k = 0;

	for (size_t i = 1; i < v; i++)
		if (l[i] > l[k])
			k = i;
	return k;
}

static void compare(const float *a, const float *b, size_t v,
		    struct stp_eval *e, double *sq)
{
	double aa = 0, bb = 0, ab = 0, cosv;

	for (size_t i = 0; i < v; i++) {
		double x = a[i], y = b[i];

		aa += x * x;
		bb += y * y;
		ab += x * y;
		*sq += (x - y) * (x - y);
	}
	if (aa > 0 && bb > 0)
		cosv = ab / (sqrt(aa) * sqrt(bb));
	else
		cosv = aa == bb ? 1 : 0;
	e->cos_mean += cosv;
	if (cosv < e->cos_min)
		e->cos_min = cosv;
	if (argmax(a, v) == argmax(b, v))
		e->top1 += 1;
}

int stp_llama_eval(stp_llama *const *models, unsigned nmodels,
		   const uint32_t *tokens, size_t n, size_t ctx,
		   struct stp_eval *out,
		   void (*progress)(void *, uint64_t, uint64_t), void *pctx)
{
	const size_t v = models[0]->cfg.vocab;
	const size_t win = ctx + 1;
	uint64_t total = n / win + (n % win >= 2);
	struct stp_eval e = { 0 };
	float *logits[2] = { NULL, NULL };
	double sq = 0;
	int rc = 0;

	if (nmodels < 1 || nmodels > 2 || ctx < 1)
		return STP_EUNSUPPORTED;
	if (nmodels == 2 && models[1]->cfg.vocab != v)
		return STP_EUNSUPPORTED;
	if (total == 0)
		return STP_EEMPTY;
	for (size_t i = 0; i < n; i++)
		if (tokens[i] >= v)
			return STP_ERANGE;
	e.cos_min = 1;
	for (unsigned k = 0; k < nmodels; k++)
		if (!(logits[k] = malloc(ctx * v * sizeof *logits[k])))
			rc = STP_ENOMEM;
	for (size_t off = 0; rc == 0 && off + 2 <= n; off += win) {
		size_t len = n - off < win ? n - off : win, fed = len - 1;

		for (unsigned k = 0; rc == 0 && k < nmodels; k++) {
			rc = stp_llama_forward(models[k], tokens + off, fed,
					       logits[k]);
			for (size_t p = 0; rc == 0 && p < fed; p++)
				e.bits[k] += bits_of(logits[k] + p * v, v,
						     tokens[off + p + 1]);
		}
		for (size_t p = 0; rc == 0 && nmodels == 2 && p < fed; p++)
			compare(logits[0] + p * v, logits[1] + p * v, v, &e,
				&sq);
		e.scored += fed;
		e.windows++;
		if (rc == 0 && progress)
			progress(pctx, e.windows, total);
	}
	free(logits[0]);
	free(logits[1]);
	if (rc < 0)
		return rc;
	for (unsigned k = 0; k < nmodels; k++)
		e.bits[k] /= (double)e.scored;
	if (nmodels == 2) {
		e.cos_mean /= (double)e.scored;
		e.top1 /= (double)e.scored;
		e.mse = sq / ((double)e.scored * (double)v);
	} else {
		e.cos_min = 0;
	}
	*out = e;
	return 0;
}
