/* The lstm-model stage (lib/lstm_stage.h). */
#include "lstm_stage.h"

#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32.h"
#include "error.h"
#include "planes.h"
#include "rans.h"

#define KEY_MAX 600
#define FIRST_ID 0x10000u	/* ids rans-enc's own models never use */

struct held {			/* a frame held while a group is fitted */
	unsigned type;
	uint8_t *payload;
	uint32_t len, body_crc;
	int selected;		/* a TENSOR frame that gets a MODEL_USE */
};

struct lstm_stage {
	struct stp_lstm_stage_opts o;
	struct held *held;
	size_t nheld, cap_held, held_bytes;
	int holding;
	char key[KEY_MAX];		/* the group held or last fitted */
	uint32_t key_model;		/* its model's id, 0: none (yet) */
	int key_done;			/* its model is decided */
	int in_selected;		/* the frames of a selected tensor */
	unsigned alphabet;		/* of the group */
	uint32_t next_id;
	uint64_t pos;			/* of the frame being handled */
	char where[KEY_MAX + 64];
};

/* The group of a tensor: its layer number (the first number after
 * "layers.", "h." or "blocks."), halved for pairs, with the alphabet;
 * the tensor's own name for BY_TENSOR or when there is no number. */
static void group_key(const struct lstm_stage *s, const char *name,
		      size_t len, unsigned alphabet, char *out)
{
	static const char *const marks[] = { "layers.", "h.", "blocks." };
	char nm[KEY_MAX - 32];
	size_t n = len < sizeof nm - 1 ? len : sizeof nm - 1;

	memcpy(nm, name, n);
	nm[n] = '\0';
	if (s->o.group != STP_LSTM_BY_TENSOR)
		for (size_t m = 0; m < sizeof marks / sizeof marks[0]; m++) {
			const char *p = strstr(nm, marks[m]);

			if (p && (p == nm || p[-1] == '.') &&
			    isdigit((unsigned char)p[strlen(marks[m])])) {
				unsigned long l = strtoul(p + strlen(marks[m]),
							  NULL, 10);

				if (s->o.group == STP_LSTM_BY_PAIR)
					l /= 2;
				snprintf(out, KEY_MAX, "%s%lu/%u", marks[m], l,
					 alphabet);
				return;
			}
		}
	snprintf(out, KEY_MAX, "%s/%u", nm, alphabet);
}

static int hold(struct lstm_stage *s, const struct stp_frame *f, int selected)
{
	struct held *h;

	if (s->nheld == s->cap_held) {
		size_t cap = s->cap_held ? 2 * s->cap_held : 64;

		h = realloc(s->held, cap * sizeof *h);
		if (!h)
			return STP_ENOMEM;
		s->held = h;
		s->cap_held = cap;
	}
	h = &s->held[s->nheld];
	h->payload = malloc(f->len ? f->len : 1);
	if (!h->payload)
		return STP_ENOMEM;
	memcpy(h->payload, f->payload, f->len);
	h->type = f->type;
	h->len = f->len;
	h->body_crc = f->body_crc;
	h->selected = selected;
	s->nheld++;
	s->held_bytes += f->len + 12;
	return 0;
}

static int send(struct stp_out *out, unsigned type, const uint8_t *p,
		uint32_t len, const uint32_t *body_crc)
{
	struct iovec v[2] = { { (void *)p, len < 8 ? len : 8 } };
	uint32_t crc;

	if (len < 8)
		return out->frame(out->ctx, type, v, 1, NULL);
	v[1] = (struct iovec){ (void *)(p + 8), len - 8 };
	if (!body_crc) {
		crc = stp_crc32(0, p + 8, len - 8);
		body_crc = &crc;
	}
	return out->frame(out->ctx, type, v, 2, body_crc);
}

static int send_use(struct stp_out *out, uint32_t id)
{
	uint8_t p[4];

	stp_put32(p, id);
	return send(out, STP_F_MODEL_USE, p, 4, NULL);
}

/* What order-0 coding would spend on a plane: its entropy and a table. */
static double order0_bytes(const uint8_t *p, size_t n)
{
	return stp_entropy0_bits(p, n) / 8 + 40;
}

/* Fits a model on the exponent planes of the held frames of selected
 * tensors; sets *out_id (0 when the model does not pay) and sends the
 * MODEL_FIT frame when it does. */
static int fit(struct lstm_stage *s, struct stp_out *out, uint32_t *out_id)
{
	struct stp_model_plane *pl = NULL;
	struct stp_model *m = NULL, *cx = NULL;
	uint8_t *params = NULL;
	size_t np = 0, plen = 0, est, total = 0;
	double model_bytes = 0, base = 0;
	int rc = 0, sel = 0;

	*out_id = 0;
	pl = malloc((s->nheld + 1) * sizeof *pl);
	if (!pl)
		return STP_ENOMEM;
	for (size_t i = 0; i < s->nheld; i++) {
		const struct held *h = &s->held[i];
		struct stp_planes_hdr ph;
		int at;

		if (h->type == STP_F_TENSOR)
			sel = h->selected;
		if (h->type != STP_F_PLANES || !sel)
			continue;
		at = stp_planes_hdr_parse(h->payload, h->len, &ph);
		if (at < 0 || ph.layout != STP_LAYOUT_PLANES ||
		    (size_t)at + ph.len[0] > h->len)
			continue;
		pl[np++] = (struct stp_model_plane){ h->payload + at, ph.len[0],
						     ph.rowlen, ph.column };
		total += ph.len[0];
	}
	if (np == 0 || total < 4096)
		goto out;
	if (s->o.kind == STP_MODEL_LSTM) {
		rc = stp_lstm_fit(s->alphabet, pl, np, &s->o.fit, &params, &plen);
		if (rc == 0)
			rc = stp_model_create(s->next_id, STP_MODEL_LSTM,
					      s->alphabet, 15, params, plen, &m);
	} else {
		rc = stp_model_fit(s->next_id, s->o.kind, s->alphabet, 0, pl,
				   np, &m);
	}
	if (rc < 0)
		goto out;
	if (s->o.against == STP_MODEL_CTX) {
		/* rans-enc -m ctx's own model (formats/model.md) */
		uint8_t cp[16];

		stp_ctx_params_build(cp, 2, 5, 5, 256, 1u << 16, 32);
		if ((rc = stp_model_create(s->alphabet, STP_MODEL_CTX,
					   s->alphabet, 12, cp, 16, &cx)) < 0)
			goto out;
	}
	for (size_t i = 0; i < np; i++) {
		double b0 = order0_bytes(pl[i].sym, pl[i].n);

		if (cx && stp_model_estimate(cx, &pl[i], 0, &est) == 0 &&
		    (double)est < b0)
			b0 = (double)est;
		rc = stp_model_estimate(m, &pl[i], 0, &est);
		if (rc == STP_ERANGE) {		/* a symbol it cannot code */
			rc = 0;
			goto out;
		}
		if (rc < 0)
			goto out;
		/* a plane keeps whichever body is smaller */
		model_bytes += (double)est < b0 ? (double)est : b0;
		base += b0;
	}
	{
		size_t len;
		const uint8_t *payload = stp_model_payload(m, &len);

		if (model_bytes + (double)len + 12 < base) {
			rc = send(out, STP_F_MODEL_FIT, payload, (uint32_t)len,
				  NULL);
			if (rc == 0)
				*out_id = s->next_id++;
		}
	}
out:
	stp_model_free(cx);
	stp_model_free(m);
	free(params);
	free(pl);
	return rc;
}

/* Ends the group held: fits, then sends what was held, with MODEL_USE
 * frames when the model pays. */
static int release(struct lstm_stage *s, struct stp_out *out)
{
	uint32_t id = 0;
	int rc = 0;

	if (!s->holding)
		return 0;
	rc = fit(s, out, &id);
	for (size_t i = 0; i < s->nheld; i++) {
		struct held *h = &s->held[i];

		if (rc == 0 && id && h->selected)
			rc = send_use(out, id);
		if (rc == 0)
			rc = send(out, h->type, h->payload, h->len,
				  h->len >= 8 ? &h->body_crc : NULL);
		free(h->payload);
	}
	s->nheld = 0;
	s->held_bytes = 0;
	s->holding = 0;
	s->key_model = id;
	s->key_done = 1;
	return rc;
}

/* Whether a tensor gets a model, and its exponent alphabet. */
static int selected(const struct lstm_stage *s,
		    const struct stp_tensor_info *t, unsigned *out_alphabet)
{
	unsigned code = stp_float_code(t->dtype);
	char name[512];
	size_t n = t->namelen < sizeof name - 1 ? t->namelen : sizeof name - 1;

	if (!code || t->ndim != 2 || !stp_float_width(code) ||
	    t->nbytes / stp_float_width(code) < s->o.min_values)
		return 0;
	memcpy(name, t->name, n);
	name[n] = '\0';
	if (s->o.pattern && fnmatch(s->o.pattern, name, 0) != 0)
		return 0;
	*out_alphabet = 1u << stp_float_expbits(code);
	return 1;
}

static int stage_frame(void *self, const struct stp_frame *f,
		       struct stp_out *out)
{
	struct lstm_stage *s = self;
	struct stp_tensor_info t;
	char key[KEY_MAX];
	unsigned alphabet = 0;
	int rc, sel;

	s->pos = f->pos;
	switch (f->type) {
	case STP_F_TENSOR:
		if ((rc = stp_tensor_parse(f->payload, f->len, &t)) < 0)
			return rc;
		snprintf(s->where, sizeof s->where, "tensor '%.*s'",
			 (int)(t.namelen > 500 ? 500 : t.namelen), t.name);
		sel = selected(s, &t, &alphabet);
		s->in_selected = sel;
		if (!sel)
			break;
		group_key(s, t.name, t.namelen, alphabet, key);
		if (strcmp(key, s->key) != 0) {
			if ((rc = release(s, out)) < 0)
				return rc;
			memcpy(s->key, key, sizeof key);
			s->key_done = 0;
			s->key_model = 0;
		}
		if (s->key_done) {
			/* the group's model is known: no need to hold */
			if (s->key_model && (rc = send_use(out, s->key_model)) < 0)
				return rc;
			break;
		}
		s->holding = 1;
		s->alphabet = alphabet;
		if ((rc = hold(s, f, 1)) < 0)
			return rc;
		goto check;
	case STP_F_END:
		if ((rc = release(s, out)) < 0)
			return rc;
		s->key[0] = '\0';
		s->key_done = 0;
		s->next_id = FIRST_ID;
		return out->frame(out->ctx, STP_F_END, NULL, 0, NULL);
	default:
		break;
	}
	if (!s->holding)
		return stp_out_copy(out, f);
	if ((rc = hold(s, f, 0)) < 0)
		return rc;
check:
	/* Memory stays bounded: a group that outgrows the buffer is fitted
	 * on what is held, and its model serves the rest of it. */
	if (s->held_bytes > s->o.buffer)
		return release(s, out);
	return 0;
}

static const char *stage_where(void *self, uint64_t *pos)
{
	struct lstm_stage *s = self;

	*pos = s->pos;
	return s->where;
}

static void stage_free(void *self)
{
	struct lstm_stage *s = self;

	for (size_t i = 0; i < s->nheld; i++)
		free(s->held[i].payload);
	free(s->held);
	free(s);
}

int stp_lstm_stage_open(struct stp_stage *out_st,
			const struct stp_lstm_stage_opts *o)
{
	struct lstm_stage *s = calloc(1, sizeof *s);

	if (!s)
		return STP_ENOMEM;
	s->o = *o;
	s->next_id = FIRST_ID;
	*out_st = (struct stp_stage){ stage_frame, stage_where, stage_free, s,
				      0 };
	return 0;
}
