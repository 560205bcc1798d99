#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "quant.h"
#include "safetensors.h"
#include "weights.h"

/* A tensor as stored. */
struct raw {
	struct stp_st_tensor t;
	size_t file;
	int helper;               /* a _scale or _scale_inv of another */
};

/* A weight resolved from raw tensors; the factors of a low-rank weight
 * are entries of their own, not listed. */
struct entry {
	struct stp_weight_info info;
	char dtype[64];
	long data, scale;         /* raw indices (scale -1 when none) */
	long fa, fb;              /* low rank: the factors' entries */
};

struct stp_weights {
	char *dir;
	size_t nfiles;
	char **paths;
	int *fds;
	struct raw *raws;
	size_t nraws;
	size_t *by_name;          /* raw indices sorted by name */
	struct entry *ents;
	size_t nents;
	size_t *listed;           /* entry indices of the logical weights */
	size_t nlisted;
	char where[512];
};

static void set_where(char *where, size_t wcap, const char *s)
{
	if (wcap)
		snprintf(where, wcap, "%s", s);
}

/* ---- files ---- */

static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
	uint8_t *p = buf;

	while (n) {
		ssize_t r = pread(fd, p, n > (1u << 30) ? (1u << 30) : n,
				  (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return STP_EIO;
		if (r == 0)
			return STP_ETRUNCATED;
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static int add_file(stp_weights *w, const char *path, char *where,
		    size_t wcap)
{
	struct stp_st_header h;
	struct stat sb;
	uint8_t pre[8];
	uint8_t *json;
	uint64_t len;
	char **paths;
	int *fds;
	struct raw *raws;
	int fd, rc;

	paths = realloc(w->paths, (w->nfiles + 1) * sizeof *paths);
	if (!paths)
		return STP_ENOMEM;
	w->paths = paths;
	fds = realloc(w->fds, (w->nfiles + 1) * sizeof *fds);
	if (!fds)
		return STP_ENOMEM;
	w->fds = fds;
	set_where(where, wcap, path);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return STP_EIO;
	if (!(w->paths[w->nfiles] = strdup(path))) {
		close(fd);
		return STP_ENOMEM;
	}
	w->fds[w->nfiles++] = fd;
	if (fstat(fd, &sb) < 0)
		return STP_EIO;
	if (!S_ISREG(sb.st_mode))
		return STP_EUNSUPPORTED;
	if ((rc = pread_all(fd, pre, 8, 0)) < 0)
		return rc == STP_ETRUNCATED ? STP_EHEADER : rc;
	len = stp_get64(pre);
	if (len < 2 || len > STP_ST_MAX_HEADER ||
	    len > (uint64_t)sb.st_size - 8)
		return STP_EHEADER;
	if (!(json = malloc(len)))
		return STP_ENOMEM;
	if ((rc = pread_all(fd, json, len, 8)) < 0) {
		free(json);
		return rc == STP_ETRUNCATED ? STP_EHEADER : rc;
	}
	rc = stp_st_parse(json, len, &h, where, wcap);
	free(json);
	if (rc < 0)
		return rc;
	if (h.data_end > (uint64_t)sb.st_size) {
		stp_st_free(&h);
		set_where(where, wcap, path);
		return STP_ETRUNCATED;
	}
	raws = realloc(w->raws, (w->nraws + h.count + 1) * sizeof *raws);
	if (!raws) {
		stp_st_free(&h);
		return STP_ENOMEM;
	}
	w->raws = raws;
	for (size_t i = 0; i < h.count; i++) {
		raws[w->nraws].t = h.tensors[i];
		raws[w->nraws].file = w->nfiles - 1;
		raws[w->nraws++].helper = 0;
	}
	free(h.tensors);          /* the names now belong to w->raws */
	return 0;
}

static int has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n > k && strcmp(s + n - k, suffix) == 0;
}

static char *join_path(const char *dir, const char *name)
{
	char *p;

	return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

static int is_shard(const struct dirent *d)
{
	return d->d_name[0] != '.' && has_suffix(d->d_name, ".safetensors");
}

static int open_listing(stp_weights *w, char *where, size_t wcap)
{
	struct dirent **list;
	int n = scandir(w->dir, &list, is_shard, alphasort), rc = 0;

	if (n < 0) {
		set_where(where, wcap, w->dir);
		return STP_EIO;
	}
	for (int i = 0; i < n; i++) {
		char *p = rc < 0 ? NULL : join_path(w->dir, list[i]->d_name);

		if (rc == 0)
			rc = p ? add_file(w, p, where, wcap) : STP_ENOMEM;
		free(p);
		free(list[i]);
	}
	free(list);
	if (rc == 0 && n == 0) {
		set_where(where, wcap, w->dir);
		rc = STP_EEMPTY;
	}
	return rc;
}

static int by_name_cmp(const void *pa, const void *pb, void *ctx)
{
	const struct raw *r = ctx;

	return strcmp(r[*(const size_t *)pa].t.name,
		      r[*(const size_t *)pb].t.name);
}

static long find_raw(const stp_weights *w, const char *name)
{
	size_t lo = 0, hi = w->nraws;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(w->raws[w->by_name[mid]].t.name, name);

		if (c == 0)
			return (long)w->by_name[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* The index's weight_map: its shards, then every entry checked against
 * the tensors they hold. */
static int open_index(stp_weights *w, const char *index, char *where,
		      size_t wcap)
{
	json_error_t jerr;
	json_t *root = json_load_file(index, JSON_REJECT_DUPLICATES, &jerr);
	json_t *map, *v;
	const char *key;
	int rc = 0;

	set_where(where, wcap, index);
	if (!root)
		return access(index, R_OK) < 0 ? STP_EIO : STP_EJSON;
	map = json_object_get(root, "weight_map");
	if (!json_is_object(map) || json_object_size(map) == 0)
		rc = STP_EHEADER;
	json_object_foreach(map, key, v) {
		const char *f = json_string_value(v);
		char *p;
		size_t i;

		if (rc < 0)
			break;
		if (!f || !*f || strchr(f, '/') || strcmp(f, "..") == 0 ||
		    strcmp(f, ".") == 0) {
			set_where(where, wcap, key);
			rc = f ? STP_EPATH : STP_EHEADER;
			break;
		}
		if (!(p = join_path(w->dir, f))) {
			rc = STP_ENOMEM;
			break;
		}
		for (i = 0; i < w->nfiles; i++)
			if (strcmp(w->paths[i], p) == 0)
				break;
		if (i == w->nfiles)
			rc = add_file(w, p, where, wcap);
		free(p);
	}
	if (rc == 0) {
		if (!(w->by_name = malloc((w->nraws + 1) * sizeof *w->by_name)))
			rc = STP_ENOMEM;
		for (size_t i = 0; rc == 0 && i < w->nraws; i++)
			w->by_name[i] = i;
		if (rc == 0)
			qsort_r(w->by_name, w->nraws, sizeof *w->by_name,
				by_name_cmp, w->raws);
	}
	json_object_foreach(map, key, v) {
		long r;

		if (rc < 0)
			break;
		r = find_raw(w, key);
		if (r < 0 || strcmp(w->paths[w->raws[r].file] +
				    strlen(w->dir) + 1,
				    json_string_value(v)) != 0) {
			set_where(where, wcap, key);
			rc = STP_EHEADER;
		}
	}
	json_decref(root);
	return rc;
}

/* ---- resolving the representations ---- */

static int supported(const char *dtype)
{
	static const char *const known[] = { "BF16", "F16", "F32", "F64",
					     "F8_E4M3", "I8" };

	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (strcmp(dtype, known[i]) == 0)
			return 1;
	return 0;
}

/* base with suffix appended, looked up; -1 if absent. */
static long find_with(const stp_weights *w, const char *base, size_t blen,
		      const char *suffix)
{
	char name[1024];

	if (blen + strlen(suffix) >= sizeof name)
		return -1;
	memcpy(name, base, blen);
	strcpy(name + blen, suffix);
	return find_raw(w, name);
}

static const struct stp_st_tensor *rt(const stp_weights *w, long i)
{
	return &w->raws[i].t;
}

static int ceil128_is(uint64_t n, uint64_t blocks)
{
	return blocks == n / 128 + (n % 128 != 0);
}

/* A plain, int8 or fp8 entry for raw tensor d. */
static int make_entry(stp_weights *w, long d, struct entry *e)
{
	const struct stp_st_tensor *t = rt(w, d);
	const char *name = t->name;
	size_t n = strlen(name);
	long s;

	memset(e, 0, sizeof *e);
	e->data = d;
	e->scale = e->fa = e->fb = -1;
	e->info.name = name;
	e->info.ndim = t->ndim;
	memcpy(e->info.shape, t->shape, sizeof t->shape);
	e->info.count = 1;
	for (unsigned k = 0; k < t->ndim; k++)
		e->info.count *= t->shape[k];
	snprintf(e->dtype, sizeof e->dtype, "%s", t->dtype);
	if (strcmp(t->dtype, "I8") == 0 &&
	    (s = find_with(w, name, n, "_scale")) >= 0) {
		const struct stp_st_tensor *st = rt(w, s);

		snprintf(w->where, sizeof w->where, "%s", st->name);
		if (strcmp(st->dtype, "F32") != 0 || st->ndim != 1 ||
		    t->ndim < 1 || st->shape[0] != t->shape[0])
			return STP_ESIZE;
		e->info.repr = STP_WREPR_INT8;
		e->scale = s;
		strcpy(e->dtype, "I8/row");
	} else if (strcmp(t->dtype, "F8_E4M3") == 0 &&
		   (s = find_with(w, name, n, "_scale_inv")) >= 0) {
		const struct stp_st_tensor *st = rt(w, s);

		snprintf(w->where, sizeof w->where, "%s", st->name);
		if (strcmp(st->dtype, "F32") != 0 || st->ndim != 2 ||
		    t->ndim != 2 || !ceil128_is(t->shape[0], st->shape[0]) ||
		    !ceil128_is(t->shape[1], st->shape[1]))
			return STP_ESIZE;
		e->info.repr = STP_WREPR_FP8;
		e->scale = s;
		strcpy(e->dtype, "F8_E4M3/128");
	}
	e->info.dtype = e->dtype;
	return 0;
}

static int mark_helpers(stp_weights *w)
{
	for (size_t i = 0; i < w->nraws; i++) {
		const char *name = w->raws[i].t.name;
		size_t n = strlen(name);
		long b = -1;

		if (has_suffix(name, "_scale_inv")) {
			b = find_with(w, name, n - 10, "");
			if (b >= 0 && strcmp(rt(w, b)->dtype, "F8_E4M3") != 0)
				b = -1;
		} else if (has_suffix(name, "_scale")) {
			b = find_with(w, name, n - 6, "");
			if (b >= 0 && strcmp(rt(w, b)->dtype, "I8") != 0)
				b = -1;
		}
		w->raws[i].helper = b >= 0;
	}
	return 0;
}

/* Whether raw i is a factor of a low-rank weight (its base absent, its
 * partner present): 'a', 'b' or 0. */
static int factor_of(const stp_weights *w, size_t i)
{
	const char *name = w->raws[i].t.name;
	size_t n = strlen(name);
	int ab;

	if (has_suffix(name, "_lr_a"))
		ab = 'a';
	else if (has_suffix(name, "_lr_b"))
		ab = 'b';
	else
		return 0;
	if (find_with(w, name, n - 5, "") >= 0)
		return 0;
	if (find_with(w, name, n - 5, ab == 'a' ? "_lr_b" : "_lr_a") < 0)
		return 0;
	return ab;
}

static int resolve(stp_weights *w)
{
	size_t cap = 2 * w->nraws + 1;
	int rc;

	w->ents = calloc(cap, sizeof *w->ents);
	w->listed = calloc(cap, sizeof *w->listed);
	if (!w->ents || !w->listed)
		return STP_ENOMEM;
	mark_helpers(w);
	for (size_t i = 0; i < w->nraws; i++) {
		int ab = factor_of(w, i);
		struct entry *e;

		if (w->raws[i].helper || ab == 'b')
			continue;
		if ((rc = make_entry(w, (long)i, &w->ents[w->nents])) < 0)
			return rc;
		if (ab == 0) {
			w->listed[w->nlisted++] = w->nents++;
			continue;
		}
		{
			const char *name = w->raws[i].t.name;
			long b = find_with(w, name, strlen(name) - 5, "_lr_b");
			struct entry *ea = &w->ents[w->nents];
			struct entry *eb = &w->ents[w->nents + 1];
			struct entry *lr = &w->ents[w->nents + 2];
			uint64_t out, in, r;
			char fdt[64];

			if (w->raws[b].helper)
				return STP_EHEADER;
			if ((rc = make_entry(w, b, eb)) < 0)
				return rc;
			snprintf(w->where, sizeof w->where, "%s", name);
			if (ea->info.ndim != 2 || eb->info.ndim != 2 ||
			    ea->info.shape[1] != eb->info.shape[0])
				return STP_ESIZE;
			out = ea->info.shape[0];
			r = ea->info.shape[1];
			in = eb->info.shape[1];
			if (in && out > STP_WEIGHTS_MAX_VALUES / in)
				return STP_ETOOBIG;
			e = lr;
			memset(e, 0, sizeof *e);
			e->data = e->scale = -1;
			e->fa = (long)w->nents;
			e->fb = (long)w->nents + 1;
			e->info.repr = STP_WREPR_LOWRANK;
			e->info.ndim = 2;
			e->info.shape[0] = out;
			e->info.shape[1] = in;
			e->info.count = out * in;
			snprintf(fdt, sizeof fdt, "%s", ea->dtype);
			snprintf(e->dtype, sizeof e->dtype, "lr%llu:%.32s",
				 (unsigned long long)r, fdt);
			e->info.dtype = e->dtype;
			/* The name without _lr_a, in the factor's storage. */
			if (!(e->info.name = strndup(name, strlen(name) - 5)))
				return STP_ENOMEM;
			w->nents += 2;
			w->listed[w->nlisted++] = w->nents++;
		}
	}
	return 0;
}

int stp_weights_open(stp_weights **out, const char *path, char *where,
		     size_t wcap)
{
	stp_weights *w = calloc(1, sizeof *w);
	struct stat sb;
	int rc;

	if (!w)
		return STP_ENOMEM;
	set_where(where, wcap, path);
	if (stat(path, &sb) < 0) {
		rc = STP_EIO;
	} else if (S_ISDIR(sb.st_mode)) {
		char *index;

		w->dir = strdup(path);
		index = w->dir ? join_path(path, "model.safetensors.index.json")
			       : NULL;
		if (!index)
			rc = STP_ENOMEM;
		else if (access(index, F_OK) == 0)
			rc = open_index(w, index, where, wcap);
		else
			rc = open_listing(w, where, wcap);
		free(index);
	} else {
		const char *slash = strrchr(path, '/');

		w->dir = slash ? strndup(path, (size_t)(slash - path + (slash == path)))
			       : strdup(".");
		rc = w->dir ? add_file(w, path, where, wcap) : STP_ENOMEM;
	}
	if (rc == 0 && !w->by_name) {
		if (!(w->by_name = malloc((w->nraws + 1) * sizeof *w->by_name)))
			rc = STP_ENOMEM;
		for (size_t i = 0; rc == 0 && i < w->nraws; i++)
			w->by_name[i] = i;
		if (rc == 0)
			qsort_r(w->by_name, w->nraws, sizeof *w->by_name,
				by_name_cmp, w->raws);
	}
	for (size_t i = 1; rc == 0 && i < w->nraws; i++)
		if (strcmp(w->raws[w->by_name[i - 1]].t.name,
			   w->raws[w->by_name[i]].t.name) == 0) {
			set_where(where, wcap, w->raws[w->by_name[i]].t.name);
			rc = STP_EHEADER;
		}
	if (rc == 0 && (rc = resolve(w)) < 0)
		set_where(where, wcap, w->where);
	if (rc < 0) {
		stp_weights_close(w);
		return rc;
	}
	*out = w;
	return 0;
}

void stp_weights_close(stp_weights *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->nents; i++)
		if (w->ents[i].info.repr == STP_WREPR_LOWRANK)
			free((char *)w->ents[i].info.name);
	for (size_t i = 0; i < w->nraws; i++)
		free(w->raws[i].t.name);
	for (size_t i = 0; i < w->nfiles; i++) {
		close(w->fds[i]);
		free(w->paths[i]);
	}
	free(w->ents);
	free(w->listed);
	free(w->by_name);
	free(w->raws);
	free(w->fds);
	free(w->paths);
	free(w->dir);
	free(w);
}

const char *stp_weights_dir(const stp_weights *w)
{
	return w->dir;
}

size_t stp_weights_count(const stp_weights *w)
{
	return w->nlisted;
}

const struct stp_weight_info *stp_weights_info(const stp_weights *w,
					       size_t i)
{
	return i < w->nlisted ? &w->ents[w->listed[i]].info : NULL;
}

long stp_weights_find(const stp_weights *w, const char *name)
{
	for (size_t i = 0; i < w->nlisted; i++)
		if (strcmp(w->ents[w->listed[i]].info.name, name) == 0)
			return (long)i;
	return STP_ERANGE;
}

const char *stp_weights_where(const stp_weights *w)
{
	return w->where;
}

/* ---- loading ---- */

/* Raw tensor i as F32, its count checked against the cap. */
static int load_raw(stp_weights *w, long i, float **out)
{
	const struct raw *r = &w->raws[i];
	uint64_t nbytes = r->t.end - r->t.begin, count = nbytes / r->t.esize;
	uint8_t *buf;
	float *f;
	int rc;

	snprintf(w->where, sizeof w->where, "%s", r->t.name);
	if (!supported(r->t.dtype))
		return STP_EDTYPE;
	if (count > STP_WEIGHTS_MAX_VALUES || nbytes > SIZE_MAX / 2)
		return STP_ETOOBIG;
	buf = malloc(nbytes ? nbytes : 1);
	f = malloc(count ? count * sizeof *f : 1);
	if (!buf || !f) {
		free(buf);
		free(f);
		return STP_ENOMEM;
	}
	rc = pread_all(w->fds[r->file], buf, nbytes, r->t.begin);
	if (rc == 0)
		stp_to_f32(stp_qtype_of(r->t.dtype), buf, count, f);
	free(buf);
	if (rc < 0) {
		free(f);
		return rc;
	}
	*out = f;
	return 0;
}

static int load_entry(stp_weights *w, const struct entry *e, float **out)
{
	float *v, *s, *a, *b;
	int rc;

	if (e->info.repr == STP_WREPR_LOWRANK) {
		const struct entry *ea = &w->ents[e->fa], *eb = &w->ents[e->fb];
		uint64_t out_ = e->info.shape[0], in = e->info.shape[1];
		uint64_t r = ea->info.shape[1];

		snprintf(w->where, sizeof w->where, "%s", e->info.name);
		if (out_ > INT_MAX || in > INT_MAX || r > INT_MAX)
			return STP_ETOOBIG;
		if ((rc = load_entry(w, ea, &a)) < 0)
			return rc;
		if ((rc = load_entry(w, eb, &b)) < 0) {
			free(a);
			return rc;
		}
		v = malloc(e->info.count ? e->info.count * sizeof *v : 1);
		/* sgemm refuses a leading dimension of 0, with a message. */
		if (v && r == 0)
			memset(v, 0, e->info.count * sizeof *v);
		else if (v && e->info.count)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
				    (int)out_, (int)in, (int)r, 1.0f, a, (int)r,
				    b, (int)in, 0.0f, v, (int)in);
		free(a);
		free(b);
		if (!v)
			return STP_ENOMEM;
		*out = v;
		return 0;
	}
	if ((rc = load_raw(w, e->data, &v)) < 0)
		return rc;
	if (e->scale < 0) {
		*out = v;
		return 0;
	}
	if ((rc = load_raw(w, e->scale, &s)) < 0) {
		free(v);
		return rc;
	}
	if (e->info.repr == STP_WREPR_INT8) {
		uint64_t rows = e->info.shape[0];
		uint64_t per = rows ? e->info.count / rows : 0;

		for (uint64_t i = 0; i < rows; i++)
			for (uint64_t j = 0; j < per; j++)
				v[i * per + j] *= s[i];
	} else {
		uint64_t rows = e->info.shape[0], cols = e->info.shape[1];
		uint64_t bc = cols / 128 + (cols % 128 != 0);

		for (uint64_t i = 0; i < rows; i++)
			for (uint64_t j = 0; j < cols; j++)
				v[i * cols + j] *= s[(i / 128) * bc + j / 128];
	}
	free(s);
	*out = v;
	return 0;
}

int stp_weights_load(stp_weights *w, size_t i, float **out)
{
	if (i >= w->nlisted)
		return STP_ERANGE;
	return load_entry(w, &w->ents[w->listed[i]], out);
}

int stp_weights_get(stp_weights *w, const char *name, float **out,
		    const struct stp_weight_info **out_info)
{
	long i = stp_weights_find(w, name);
	int rc;

	if (i < 0) {
		snprintf(w->where, sizeof w->where, "%s", name);
		return (int)i;
	}
	if ((rc = stp_weights_load(w, (size_t)i, out)) < 0)
		return rc;
	if (out_info)
		*out_info = stp_weights_info(w, (size_t)i);
	return 0;
}

/* ---- comparing ---- */

static int same_raw(stp_weights *a, long ia, stp_weights *b, long ib)
{
	const struct raw *ra = &a->raws[ia], *rb = &b->raws[ib];
	uint64_t n = ra->t.end - ra->t.begin, off = 0;
	enum { CHUNK = 1 << 20 };
	uint8_t *pa, *pb;
	int rc = 1;

	if (strcmp(ra->t.dtype, rb->t.dtype) != 0 || ra->t.ndim != rb->t.ndim ||
	    memcmp(ra->t.shape, rb->t.shape, ra->t.ndim * sizeof ra->t.shape[0]))
		return 0;
	pa = malloc(CHUNK);
	pb = malloc(CHUNK);
	if (!pa || !pb)
		rc = STP_ENOMEM;
	while (rc == 1 && off < n) {
		size_t k = n - off < CHUNK ? (size_t)(n - off) : CHUNK;

		if (pread_all(a->fds[ra->file], pa, k, ra->t.begin + off) < 0 ||
		    pread_all(b->fds[rb->file], pb, k, rb->t.begin + off) < 0)
			rc = STP_EIO;
		else if (memcmp(pa, pb, k) != 0)
			rc = 0;
		off += k;
	}
	free(pa);
	free(pb);
	return rc;
}

static int same_entry(stp_weights *a, const struct entry *ea, stp_weights *b,
		      const struct entry *eb)
{
	int rc;

	if (ea->info.repr != eb->info.repr)
		return 0;
	if (ea->info.repr == STP_WREPR_LOWRANK) {
		rc = same_entry(a, &a->ents[ea->fa], b, &b->ents[eb->fa]);
		return rc == 1 ? same_entry(a, &a->ents[ea->fb], b,
					    &b->ents[eb->fb]) : rc;
	}
	rc = same_raw(a, ea->data, b, eb->data);
	if (rc == 1 && ea->scale >= 0)
		rc = same_raw(a, ea->scale, b, eb->scale);
	return rc;
}

int stp_weights_bitexact(stp_weights *a, size_t ia, stp_weights *b,
			 size_t ib)
{
	if (ia >= a->nlisted || ib >= b->nlisted)
		return STP_ERANGE;
	return same_entry(a, &a->ents[a->listed[ia]], b,
			  &b->ents[b->listed[ib]]);
}
