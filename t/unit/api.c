/* Unit test of the public API (lib/stpipe.h, and nothing else of the
 * library): tensors compressed from memory with every model kind and
 * thread count give the same bytes; opened files list them and load each
 * (by index, all at once, from a pipe) byte-exactly; streams of several
 * segments use the walk instead of the index; bad arguments and damaged
 * files give the documented codes. Prints TAP; exits 1 if any test
 * failed. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../lib/stpipe.h"

static int ntest, nfail;

static void ok(int cond, const char *fmt, ...)
{
	va_list ap;

	ntest++;
	if (!cond)
		nfail++;
	printf("%sok %d - ", cond ? "" : "not ", ntest);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		printf("Bail out! out of memory\n");
		exit(1);
	}
	return p;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

/* A roughly normal float, small. */
static float gauss(void)
{
	float s = 0;

	for (int i = 0; i < 4; i++)
		s += (float)(rnd() & 0xFFFF) / 65536.0f - 0.5f;
	return s * 0.05f;
}

#define NT 8
static struct stp_tensor_in tin[NT];
static uint64_t shapes[NT][2];
static void *datas[NT];

static void make_tensors(void)
{
	static const struct {
		const char *name, *dtype;
		unsigned ndim;
		uint64_t s0, s1;
		unsigned width;
	} spec[NT] = {
		{ "model.embed.weight", "BF16", 2, 64, 300, 2 },
		{ "model.layers.0.w", "F32", 2, 17, 33, 4 },
		{ "model.layers.0.q", "F8_E4M3", 2, 128, 256, 1 },
		{ "ids", "I32", 1, 5000, 0, 4 },
		{ "scalar", "F16", 0, 0, 0, 2 },
		{ "empty", "F32", 2, 0, 4, 4 },
		{ "odd \"name\" \\ \x01", "BF16", 1, 3, 0, 2 },
		{ "model.layers.1.w", "F16", 2, 40, 70, 2 },
	};

	for (int i = 0; i < NT; i++) {
		uint64_t n = spec[i].ndim == 0 ? 1
			     : spec[i].ndim == 1 ? spec[i].s0
			     : spec[i].s0 * spec[i].s1;
		uint8_t *p = xmalloc(n * spec[i].width);

		for (uint64_t k = 0; k < n; k++) {
			float f = gauss();
			uint32_t u;

			memcpy(&u, &f, 4);
			if (spec[i].width == 4)
				memcpy(p + 4 * k, &u, 4);
			else if (spec[i].width == 2) {
				uint16_t h = (uint16_t)(u >> 16);
				memcpy(p + 2 * k, &h, 2);
			} else {
				p[k] = (uint8_t)(rnd() % 0x7E);
			}
		}
		shapes[i][0] = spec[i].s0;
		shapes[i][1] = spec[i].s1;
		datas[i] = p;
		tin[i] = (struct stp_tensor_in){ spec[i].name, spec[i].dtype,
						 spec[i].ndim, shapes[i], p,
						 n * spec[i].width };
	}
}

static char tmpdir[] = "/tmp/stp-api-XXXXXX";

static char *path_of(const char *name)
{
	static char p[4][256];
	static int k;

	k = (k + 1) % 4;
	snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
	return p[k];
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	p = xmalloc((size_t)n);
	if (fread(p, 1, (size_t)n, f) != (size_t)n)
		n = -1;
	fclose(f);
	*len = (size_t)n;
	return p;
}

static int compress_to(const char *path, const char *file,
		       const char *model, unsigned threads, int append)
{
	struct stp_compress_opts o = { threads, model };
	FILE *f = fopen(path, append ? "ab" : "wb");
	int rc;

	if (!f)
		return STP_EIO;
	rc = stp_compress_tensors(fileno(f), file, tin, NT,
				  "{\"format\":\"pt\"}", &o);
	fclose(f);
	return rc;
}

static int same_desc(const struct stp_tensor_desc *d,
		     const struct stp_tensor_in *t, const char *file)
{
	if (strcmp(d->name, t->name) || strcmp(d->dtype, t->dtype) ||
	    strcmp(d->file, file) || d->ndim != t->ndim ||
	    d->nbytes != t->nbytes)
		return 0;
	for (unsigned k = 0; k < d->ndim; k++)
		if (d->shape[k] != t->shape[k])
			return 0;
	return 1;
}

/* Loads every tensor of path by index; 1 if all match tin. */
static int check_each(stp_stz *z, size_t first, const char *file,
		      unsigned threads)
{
	for (int i = 0; i < NT; i++) {
		const struct stp_tensor_desc *d = stp_stz_tensor(z, first + i);
		uint8_t *b;
		int rc;

		if (!d || !same_desc(d, &tin[i], file))
			return 0;
		b = xmalloc(d->nbytes + 16);
		memset(b, 0xA5, d->nbytes + 16);
		rc = stp_stz_load(z, first + i, b, d->nbytes + 16, threads);
		if (rc != 0 || memcmp(b, datas[i], d->nbytes) ||
		    b[d->nbytes] != 0xA5) {
			printf("# tensor %d: rc %d (%s)\n", i, rc,
			       stp_strerror(rc));
			free(b);
			return 0;
		}
		free(b);
	}
	return 1;
}

struct all {
	int seen, bad, ended;
	void *bufs[2 * NT];
};

static int all_begin(void *ctx, const struct stp_tensor_desc *t, void **buf)
{
	struct all *a = ctx;
	int i = a->seen++ % NT;

	if (!same_desc(t, &tin[i], t->file))
		a->bad++;
	/* skip the fourth to show that skipping works */
	*buf = i == 3 ? NULL : (a->bufs[a->seen - 1] = xmalloc(t->nbytes));
	return 0;
}

static int all_end(void *ctx, const struct stp_tensor_desc *t, void *buf)
{
	struct all *a = ctx;
	int i = (a->seen - 1) % NT;

	if (buf != a->bufs[a->seen - 1] || memcmp(buf, datas[i], t->nbytes))
		a->bad++;
	a->ended++;
	return 0;
}

static void free_all(struct all *a)
{
	for (int i = 0; i < 2 * NT; i++)
		free(a->bufs[i]);
}

static int stop_begin(void *ctx, const struct stp_tensor_desc *t, void **buf)
{
	(void)ctx;
	(void)t;
	*buf = NULL;
	return STP_ERANGE;
}

int main(void)
{
	uint8_t *ref, *p;
	size_t reflen, len;
	stp_stz *z = NULL;
	int rc, same = 1;
	const char *models[] = { "order0", "ctx", "adaptive0", "lstm", "auto" };

	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp\n");
		return 1;
	}
	make_tensors();
	ok(strcmp(stp_version(), "0.1.0") == 0, "stp_version is %s",
	   stp_version());
	ok(strcmp(stp_strerror(STP_ECRC), "CRC-32 mismatch") == 0 &&
	   stp_error_exit(STP_EIO) == 111 && stp_error_exit(0) == 0,
	   "stp_strerror, stp_error_exit");

	rc = compress_to(path_of("a.stz"), "m.safetensors", NULL, 1, 0);
	ok(rc == 0, "stp_compress_tensors: %s", stp_strerror(rc));
	ref = slurp(path_of("a.stz"), &reflen);
	for (unsigned th = 2; th <= 3; th++) {
		compress_to(path_of("b.stz"), "m.safetensors", "order0", th, 0);
		p = slurp(path_of("b.stz"), &len);
		same &= p && len == reflen && memcmp(p, ref, len) == 0;
		free(p);
	}
	ok(same, "-T2 and -T3 write the bytes of -T1");

	rc = stp_stz_open(&z, path_of("a.stz"));
	ok(rc == 0 && stp_stz_count(z) == NT, "stp_stz_open lists %d tensors",
	   NT);
	if (rc == 0) {
		uint8_t small[4];

		ok(check_each(z, 0, "m.safetensors", 1),
		   "every tensor loads byte-exactly, 1 thread");
		ok(check_each(z, 0, "m.safetensors", 3),
		   "every tensor loads byte-exactly, 3 threads");
		ok(stp_stz_find(z, NULL, "model.layers.0.q") == 2 &&
		   stp_stz_find(z, "m.safetensors", "ids") == 3 &&
		   stp_stz_find(z, "x.safetensors", "ids") == STP_ERANGE &&
		   stp_stz_find(z, NULL, "nope") == STP_ERANGE,
		   "stp_stz_find");
		ok(stp_stz_load(z, 0, small, sizeof small, 1) == STP_ETOOBIG,
		   "a buffer too small: STP_ETOOBIG");
		ok(stp_stz_load(z, NT, small, sizeof small, 1) == STP_ERANGE &&
		   stp_stz_tensor(z, NT) == NULL, "past the end: STP_ERANGE");
		struct all a = { 0 };
		struct stp_load_cb cb = { all_begin, all_end, &a };
		long got = stp_stz_load_all(z, &cb, 2);
		ok(got == NT - 1 && a.seen == NT && a.ended == NT - 1 &&
		   a.bad == 0, "stp_stz_load_all: %ld loaded, one skipped", got);
		free_all(&a);
		{
			const struct stp_file_desc *fd = stp_stz_file(z, 0);
			uint8_t *img = fd ? xmalloc(fd->size) : NULL;
			int64_t got = img ? stp_stz_read_file(z, 0, img,
							      fd->size, 2) : -1;
			uint64_t hl = 0;
			int good = stp_stz_file_count(z) == 1 && fd &&
				   strcmp(fd->path, "m.safetensors") == 0 &&
				   fd->safetensors &&
				   got == (int64_t)fd->size &&
				   stp_stz_file(z, 1) == NULL;

			/* the data section is the tensors back to back */
			if (good) {
				uint64_t off;

				memcpy(&hl, img, 8);
				off = 8 + hl;
				good = (8 + hl) % 8 == 0 && img[8] == '{' &&
				       img[8 + hl - 1] != 0;
				for (int i = 0; good && i < NT; i++) {
					good = memcmp(img + off, datas[i],
						      tin[i].nbytes) == 0;
					off += tin[i].nbytes;
				}
				good = good && off == fd->size;
			}
			ok(good, "stp_stz_file, stp_stz_read_file: the whole "
			   "safetensors file, header padded to 8");
			ok(img && stp_stz_read_file(z, 0, img, 10, 1) ==
				   STP_ETOOBIG &&
			   stp_stz_read_file(z, 1, img, 10, 1) == STP_ERANGE,
			   "stp_stz_read_file: STP_ETOOBIG, STP_ERANGE");
			free(img);
		}
		struct stp_load_cb stop = { stop_begin, NULL, NULL };
		ok(stp_stz_load_all(z, &stop, 1) == STP_ERANGE,
		   "a callback's error ends the load with its code");
		stp_stz_close(z);
	}
	stp_stz_close(NULL);

	for (size_t k = 1; k < sizeof models / sizeof *models; k++) {
		const char *n = path_of("k.stz");

		rc = compress_to(n, "m.safetensors", models[k], 2, 0);
		if (rc == 0)
			rc = stp_stz_open(&z, n);
		ok(rc == 0 && check_each(z, 0, "m.safetensors", 2),
		   "model %s: compresses, loads byte-exactly (%s)", models[k],
		   stp_strerror(rc));
		if (rc == 0)
			stp_stz_close(z);
	}

	/* Two segments: no index covers both, so the frames are walked. */
	compress_to(path_of("two.stz"), "one/a.safetensors", "ctx", 1, 0);
	compress_to(path_of("two.stz"), "two/b.safetensors", "ctx", 1, 1);
	rc = stp_stz_open(&z, path_of("two.stz"));
	ok(rc == 0 && stp_stz_count(z) == 2 * NT &&
	   check_each(z, 0, "one/a.safetensors", 1) &&
	   check_each(z, NT, "two/b.safetensors", 2) &&
	   stp_stz_find(z, "two/b.safetensors", "ids") == NT + 3 &&
	   stp_stz_file_count(z) == 2 &&
	   strcmp(stp_stz_file(z, 1)->path, "two/b.safetensors") == 0,
	   "a stream of two segments lists and loads both files");
	if (rc == 0) {
		const struct stp_file_desc *f1 = stp_stz_file(z, 1);
		uint8_t *img = xmalloc(f1->size);
		uint8_t *ref0 = xmalloc(f1->size);

		ok(stp_stz_read_file(z, 1, img, f1->size, 1) ==
			   (int64_t)f1->size &&
		   stp_stz_read_file(z, 0, ref0, f1->size, 1) ==
			   (int64_t)f1->size &&
		   memcmp(img, ref0, f1->size) == 0,
		   "stp_stz_read_file in the second segment (ctx models)");
		free(img);
		free(ref0);
	}
	if (rc == 0)
		stp_stz_close(z);

	/* From a pipe. */
	{
		int fd[2];
		pid_t pid;
		struct all a = { 0 };
		struct stp_load_cb cb = { all_begin, all_end, &a };
		long got;

		if (pipe(fd) < 0 || (pid = fork()) < 0) {
			printf("Bail out! pipe\n");
			return 1;
		}
		if (pid == 0) {
			size_t n;
			uint8_t *q = slurp(path_of("two.stz"), &n);
			close(fd[0]);
			if (write(fd[1], q, n) != (ssize_t)n)
				_exit(1);
			_exit(0);
		}
		close(fd[1]);
		ok(stp_stz_open_fd(&z, fd[0]) == STP_EUNSUPPORTED,
		   "stp_stz_open_fd on a pipe: STP_EUNSUPPORTED");
		got = stp_stream_load(fd[0], &cb, 1);
		close(fd[0]);
		waitpid(pid, NULL, 0);
		ok(got == 2 * (NT - 1) && a.bad == 0 && a.seen == 2 * NT,
		   "stp_stream_load from a pipe: %ld tensors", got);
		free_all(&a);
	}

	/* Damage: every byte flip is found by open, load or load_all. */
	{
		int missed = 0, tried = 0;

		for (size_t at = 0; at < reflen; at += reflen / 97 + 1) {
			FILE *f = fopen(path_of("bad.stz"), "wb");
			struct all a = { 0 };
			struct stp_load_cb cb = { all_begin, all_end, &a };
			int found = 0;

			ref[at] ^= 0x10;
			fwrite(ref, 1, reflen, f);
			fclose(f);
			ref[at] ^= 0x10;
			tried++;
			if (stp_stz_open(&z, path_of("bad.stz")) < 0) {
				free_all(&a);
				continue;
			}
			for (size_t i = 0; i < stp_stz_count(z); i++) {
				const struct stp_tensor_desc *d =
					stp_stz_tensor(z, i);
				uint8_t *b = xmalloc(d->nbytes);
				if (stp_stz_load(z, i, b, d->nbytes, 1) < 0)
					found = 1;
				free(b);
			}
			if (stp_stz_load_all(z, &cb, 1) < 0)
				found = 1;
			for (size_t i = 0; i < stp_stz_file_count(z); i++) {
				const struct stp_file_desc *fd =
					stp_stz_file(z, i);
				uint8_t *b = xmalloc(fd->size);
				if (stp_stz_read_file(z, i, b, fd->size, 1) < 0)
					found = 1;
				free(b);
			}
			free_all(&a);
			stp_stz_close(z);
			missed += !found;
		}
		ok(missed == 0, "%d damaged files: every one refused", tried);
	}

	/* Bad arguments. */
	{
		struct stp_tensor_in t = tin[1];
		struct stp_compress_opts o = { 1, "nope" };
		const char *n = path_of("x.stz");
		FILE *f = fopen(n, "wb");
		int fd = fileno(f);

		ok(stp_compress_tensors(fd, "m.safetensors", tin, NT, NULL,
					&o) == STP_EUNSUPPORTED,
		   "unknown model: STP_EUNSUPPORTED");
		ok(stp_compress_tensors(fd, "m.safetensors", tin, NT,
					"[1]", NULL) == STP_EJSON &&
		   stp_compress_tensors(fd, "m.safetensors", tin, NT,
					"{\"a\":1}", NULL) == STP_EJSON,
		   "metadata not an object of strings: STP_EJSON");
		ok(stp_compress_tensors(fd, "../m.safetensors", tin, NT, NULL,
					NULL) == STP_EPATH,
		   "unsafe file name: STP_EPATH");
		t.nbytes -= 4;
		rc = stp_compress_tensors(fd, "m.safetensors", &t, 1, NULL,
					  NULL);
		ok(rc == STP_ESIZE, "nbytes not shape x width: %s",
		   stp_strerror(rc));
		t = tin[1];
		t.dtype = "F33";
		rc = stp_compress_tensors(fd, "m.safetensors", &t, 1, NULL,
					  NULL);
		ok(rc == STP_EDTYPE, "unknown dtype: %s", stp_strerror(rc));
		fclose(f);
		ok(stp_stz_open(&z, path_of("none.stz")) == STP_EIO,
		   "a missing file: STP_EIO");
	}

	/* stp_compress_buffer: the file as it is. */
	{
		const char *n = path_of("buf.stz");
		FILE *f = fopen(n, "wb");
		const char text[] = "{\"a\": 1}\n";

		rc = stp_compress_buffer(fileno(f), "config.json", text,
					 sizeof text - 1, NULL);
		fclose(f);
		ok(rc == 0 && stp_stz_open(&z, n) == 0 &&
		   stp_stz_count(z) == 0 && stp_stz_file_count(z) == 1 &&
		   !stp_stz_file(z, 0)->safetensors,
		   "stp_compress_buffer of a non-safetensors file");
		if (rc == 0) {
			char back[sizeof text];
			ok(stp_stz_read_file(z, 0, back, sizeof back, 1) ==
				   (int64_t)sizeof text - 1 &&
			   memcmp(back, text, sizeof text - 1) == 0,
			   "stp_stz_read_file gives config.json back");
			stp_stz_close(z);
		}
	}

	free(ref);
	for (int i = 0; i < NT; i++)
		free(datas[i]);
	{
		char cmd[300];
		snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			nfail++;
	}
	printf("1..%d\n", ntest);
	return nfail != 0;
}
