#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "stage.h"

int stp_run_stage(struct stp_reader *r, struct stp_stage *st,
		  struct stp_out *out, uint64_t *out_pos, int *out_stage)
{
	struct stp_frame f;
	int rc;

	stp_reader_defer_crc(r, st->checks_crc);
	while ((rc = stp_reader_next(r, &f)) > 0) {
		rc = st->frame(st->self, &f, out);
		if (rc < 0) {
			*out_stage = 1;
			return rc;
		}
	}
	*out_stage = 0;
	if (rc < 0)
		*out_pos = stp_reader_pos(r);
	return rc;
}

struct stp_chain {
	struct stp_stage *next;
	struct stp_out *next_out;
	uint8_t *buf;
};

int stp_chain_open(struct stp_chain **out_c, struct stp_stage *next,
		   struct stp_out *next_out)
{
	struct stp_chain *c = calloc(1, sizeof *c);

	if (!c)
		return STP_ENOMEM;
	c->buf = malloc(STP_MAX_PAYLOAD);
	if (!c->buf) {
		free(c);
		return STP_ENOMEM;
	}
	c->next = next;
	c->next_out = next_out;
	*out_c = c;
	return 0;
}

void stp_chain_free(struct stp_chain *c)
{
	if (!c)
		return;
	free(c->buf);
	free(c);
}

/* Makes the pieces one frame, as a reader would have returned it. */
static int chain_frame(void *ctx, unsigned type, const struct iovec *iov,
		       int n, const uint32_t *last_crc)
{
	struct stp_chain *c = ctx;
	struct stp_frame f = { .type = type };
	size_t len = 0;

	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	if (len > STP_MAX_PAYLOAD)
		return STP_ETOOBIG;
	if (n == 1) {
		f.payload = iov[0].iov_base;
	} else {
		size_t at = 0;
		for (int i = 0; i < n; i++) {
			memcpy(c->buf + at, iov[i].iov_base, iov[i].iov_len);
			at += iov[i].iov_len;
		}
		f.payload = c->buf;
	}
	f.len = (uint32_t)len;
	if (len >= 8) {
		if (last_crc && n > 0 && iov[n - 1].iov_len == len - 8)
			f.body_crc = *last_crc;
		else
			f.body_crc = stp_crc32(0, f.payload + 8, len - 8);
	}
	return c->next->frame(c->next->self, &f, c->next_out);
}

struct stp_out stp_chain_out(struct stp_chain *c)
{
	struct stp_out out = { chain_frame, c };

	return out;
}
