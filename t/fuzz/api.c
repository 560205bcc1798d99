/* The public API's readers (lib/stpipe.h): stp_stz_open_fd (index or
 * walk), stp_stz_load of every tensor, stp_stz_read_file of every file,
 * stp_stz_load_all and stp_stream_load.
 * Input: one flags byte, then the stream.
 *   bit 0     mend the CRCs first (fuzz.h)
 *   bits 1-2  the variant (fuzz.h)
 *   bit 3     two decoding threads instead of one
 * Promises checked: descriptors are sane; load_all and stream_load agree
 * (the same count, the same bytes); a tensor that stp_stz_load decodes
 * without error has the bytes load_all gave it, when load_all succeeded
 * (an index the fuzzer broke may make a load fail, never succeed with
 * other bytes). Tensors of more than 16 MiB are skipped. */
#include "fuzz.h"

#include "../../lib/stpipe.h"

#define MAX_TENSOR (16u << 20)
#define MAX_KEEP 512

struct got {
	long n;
	uint8_t *buf[MAX_KEEP];
	uint64_t len[MAX_KEEP];
	int ended[MAX_KEEP];
	char *key[MAX_KEEP];      /* "file\nname" */
	long begun;
};

static char *key_of(const struct stp_tensor_desc *t)
{
	size_t a = strlen(t->file), b = strlen(t->name);
	char *k = malloc(a + b + 2);

	if (k) {
		memcpy(k, t->file, a);
		k[a] = '\n';
		memcpy(k + a + 1, t->name, b + 1);
	}
	return k;
}

/* The one tensor load_all saw under t's file and name, or -1 (none, or
 * several). */
static long find_key(const struct got *g, const struct stp_tensor_desc *t)
{
	char *k = key_of(t);
	long hit = -1;

	for (long i = 0; k && i < g->begun && i < MAX_KEEP; i++) {
		if (!g->key[i] || strcmp(g->key[i], k) != 0)
			continue;
		if (hit >= 0) {
			hit = -1;
			break;
		}
		hit = i;
	}
	free(k);
	return hit;
}

static int on_begin(void *ctx, const struct stp_tensor_desc *t, void **buf)
{
	struct got *g = ctx;
	long i = g->begun++;

	FUZZ_CHECK(t->name && t->file && t->dtype && t->ndim <= 32);
	FUZZ_CHECK(t->ndim == 0 || t->shape);
	*buf = NULL;
	if (i < MAX_KEEP)
		g->key[i] = key_of(t);
	if (i < MAX_KEEP && t->nbytes <= MAX_TENSOR) {
		g->buf[i] = malloc(t->nbytes ? t->nbytes : 1);
		g->len[i] = t->nbytes;
		*buf = g->buf[i];
		/* a short stream never fills it: make it defined */
		if (*buf)
			memset(*buf, 0, t->nbytes);
	}
	return 0;
}

static int on_end(void *ctx, const struct stp_tensor_desc *t, void *buf)
{
	struct got *g = ctx;
	long i = g->begun - 1;

	FUZZ_CHECK(i >= 0 && i < MAX_KEEP && buf == g->buf[i]);
	FUZZ_CHECK(t->nbytes == g->len[i]);
	g->ended[i] = 1;
	return 0;
}

static void got_free(struct got *g)
{
	for (int i = 0; i < MAX_KEEP; i++) {
		free(g->buf[i]);
		free(g->key[i]);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct got a, b;
	unsigned flags, threads;
	uint8_t *in;
	stp_stz *z = NULL;
	long na, nb;
	int fd, rc;

	if (size < 1)
		return 0;
	flags = data[0];
	threads = flags & 8 ? 2 : 1;
	in = fuzz_copy(data + 1, size - 1, flags & 1);
	if (!in)
		return 0;
	fuzz_force_impl(flags >> 1);
	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	fd = fuzz_memfd(in, size - 1);
	if (fd < 0)
		goto out;

	/* a memfd reads as a stream too */
	{
		struct stp_load_cb cb = { on_begin, on_end, &b };
		nb = stp_stream_load(fd, &cb, threads);
		FUZZ_CHECK(nb <= b.begun);
	}
	rc = stp_stz_open_fd(&z, fd);
	/* what reads whole as a stream opens */
	FUZZ_CHECK(nb < 0 || rc == 0 || rc == STP_ENOMEM);
	if (rc == 0) {
		struct stp_load_cb cb = { on_begin, on_end, &a };
		size_t n = stp_stz_count(z);

		na = stp_stz_load_all(z, &cb, threads);
		FUZZ_CHECK(na <= a.begun);
		FUZZ_CHECK((na < 0) == (nb < 0));
		if (na >= 0) {
			FUZZ_CHECK(na == nb && a.begun == b.begun);
			for (long i = 0; i < a.begun && i < MAX_KEEP; i++)
				FUZZ_CHECK(a.len[i] == b.len[i] &&
					   (!a.len[i] || memcmp(a.buf[i], b.buf[i],
								a.len[i]) == 0));
		}
		for (size_t i = 0; i < n; i++) {
			const struct stp_tensor_desc *t = stp_stz_tensor(z, i);
			uint8_t *buf;
			long j;

			FUZZ_CHECK(t && t->name && t->file && t->dtype);
			FUZZ_CHECK(stp_stz_find(z, t->file, t->name) <= (long)i);
			if (t->nbytes > MAX_TENSOR)
				continue;
			buf = malloc(t->nbytes ? t->nbytes : 1);
			if (!buf)
				continue;
			rc = stp_stz_load(z, i, buf, t->nbytes, threads);
			FUZZ_CHECK(rc <= 0);
			/* the same bytes as load_all gave the tensor of
			 * that file and name */
			if (rc == 0 && na >= 0 && (j = find_key(&a, t)) >= 0 &&
			    a.ended[j]) {
				FUZZ_CHECK(a.len[j] == t->nbytes);
				FUZZ_CHECK(!t->nbytes ||
					   memcmp(buf, a.buf[j], t->nbytes) == 0);
			}
			free(buf);
		}
		FUZZ_CHECK(stp_stz_load(z, n, NULL, 0, 1) == STP_ERANGE);
		for (size_t i = 0; i < stp_stz_file_count(z); i++) {
			const struct stp_file_desc *f = stp_stz_file(z, i);
			uint8_t *buf;
			int64_t got;

			FUZZ_CHECK(f && f->path);
			if (f->size > MAX_TENSOR)
				continue;
			if (!(buf = malloc(f->size ? f->size : 1)))
				continue;
			got = stp_stz_read_file(z, i, buf, f->size, threads);
			FUZZ_CHECK(got < 0 || (uint64_t)got == f->size);
			free(buf);
		}
		FUZZ_CHECK(stp_stz_file(z, stp_stz_file_count(z)) == NULL);
		stp_stz_close(z);
	}
out:
	got_free(&a);
	got_free(&b);
	if (fd >= 0)
		close(fd);
	free(in);
	return 0;
}
