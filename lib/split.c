#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "error.h"
#include "io.h"
#include "rewrite.h"
#include "safetensors.h"
#include "split.h"

#define DEFAULT_CHUNK (1u << 20)
#define MAX_DEPTH 64
#define SNIFF 16

struct stp_splitter {
	size_t chunk;
	uint8_t *buf;             /* chunk bytes */
	uint8_t *header;          /* safetensors header, grown as needed */
	size_t header_cap;
	char where[4096 + 512];
	char label[8192 + 256];   /* how messages name the current file */
	int write_failed;         /* then where names the output */
	uint64_t total;           /* bytes of all files split */
	stp_progress_fn *progress;
	void *progress_ctx;
	struct stp_paths paths;   /* of the stream: unique, as a reader
				   * checks */
	/* per file */
	uint64_t pos;
	uint32_t crc;
	uint64_t size;
};

/* snprintf that reports truncation instead of warning about it. */
__attribute__((format(printf, 3, 4)))
static int fmt(char *dst, size_t cap, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(dst, cap, f, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= cap ? STP_EPATH : 0;
}

int stp_splitter_open(struct stp_splitter **out_s, size_t chunk)
{
	struct stp_splitter *s = calloc(1, sizeof *s);

	if (!s)
		return STP_ENOMEM;
	s->chunk = chunk ? chunk : DEFAULT_CHUNK;
	if (s->chunk > STP_MAX_PAYLOAD - 8)
		s->chunk = STP_MAX_PAYLOAD - 8;
	s->buf = malloc(s->chunk);
	if (!s->buf) {
		free(s);
		return STP_ENOMEM;
	}
	*out_s = s;
	return 0;
}

void stp_splitter_free(struct stp_splitter *s)
{
	if (!s)
		return;
	free(s->buf);
	free(s->header);
	stp_paths_free(&s->paths);
	free(s);
}

void stp_splitter_set_progress(struct stp_splitter *s, stp_progress_fn *fn,
			       void *ctx)
{
	s->progress = fn;
	s->progress_ctx = ctx;
}

uint64_t stp_splitter_bytes(const struct stp_splitter *s)
{
	return s->total;
}

const char *stp_splitter_where(const struct stp_splitter *s)
{
	return s->where;
}

/* Names the place at fault: the file's label, then what fmt says. */
__attribute__((format(printf, 3, 4)))
static void where(struct stp_splitter *s, const struct stp_file_info *f,
		  const char *what, ...)
{
	size_t n;
	va_list ap;

	if (s->write_failed)
		return;
	if (s->label[0])
		fmt(s->where, sizeof s->where, "%s", s->label);
	else
		fmt(s->where, sizeof s->where, "%.*s", (int)f->pathlen,
		    f->path);
	n = strlen(s->where);
	if (!what)
		return;
	va_start(ap, what);
	vsnprintf(s->where + n, sizeof s->where - n, what, ap);
	va_end(ap);
}

/* Writes a frame; a failure is the output's, and messages say so. */
static int put(struct stp_splitter *s, struct stp_out *w, unsigned type,
	       const struct iovec *v, int n, const uint32_t *last_crc)
{
	int rc = w->frame(w->ctx, type, v, n, last_crc);

	if (rc < 0) {
		fmt(s->where, sizeof s->where, "stdout");
		s->write_failed = 1;
	}
	return rc;
}

static int put1(struct stp_splitter *s, struct stp_out *w, unsigned type,
		const void *p, size_t len)
{
	struct iovec v = { (void *)p, len };

	return put(s, w, type, &v, 1, NULL);
}

/* One DATA frame for bytes already in memory at the current position. */
static int emit(struct stp_splitter *s, struct stp_out *w, const void *p,
		size_t n)
{
	uint8_t off[8];
	struct iovec v[2] = { { off, 8 }, { (void *)p, n } };
	int rc;

	uint32_t crc = stp_crc32(0, p, n);

	stp_put64(off, s->pos);
	if ((rc = put(s, w, STP_F_DATA, v, 2, &crc)) < 0)
		return rc;
	s->crc = stp_crc32_combine(s->crc, crc, n);
	s->pos += n;
	if (s->progress)
		s->progress(s->progress_ctx, s->pos, s->size);
	return 0;
}

/* Copies n bytes (UINT64_MAX: up to the end of input) from src in DATA
 * frames of at most step bytes. */
static int copy(struct stp_splitter *s, struct stp_out *w,
		struct stp_source *src, uint64_t n, size_t step)
{
	while (n > 0) {
		size_t want = n < step ? (size_t)n : step;
		long got = src->read(src->ctx, s->buf, want);

		if (got < 0)
			return (int)got;
		if (got > 0) {
			int rc = emit(s, w, s->buf, (size_t)got);
			if (rc < 0)
				return rc;
		}
		if ((size_t)got < want)
			return n == UINT64_MAX ? 0 : STP_ETRUNCATED;
		if (n != UINT64_MAX)
			n -= (uint64_t)got;
	}
	return 0;
}

static size_t tensor_step(const struct stp_splitter *s,
			  const struct stp_st_tensor *t)
{
	uint64_t row = t->esize * (t->ndim ? t->shape[t->ndim - 1] : 1);

	if (row > 0 && row <= s->chunk)
		return (size_t)(s->chunk / row * row);
	return s->chunk / t->esize * t->esize;
}

static int tensor_frame(struct stp_splitter *s, struct stp_out *w,
			const struct stp_st_tensor *t,
			uint32_t index)
{
	uint8_t buf[24 + 8 * STP_MAX_NDIM + STP_MAX_DTYPE + 0xFFFF];
	struct stp_tensor_info ti = {
		.offset = t->begin, .nbytes = t->end - t->begin,
		.index = index, .ndim = t->ndim, .name = t->name,
		.namelen = strlen(t->name),
	};
	int len;

	memcpy(ti.shape, t->shape, sizeof ti.shape);
	memcpy(ti.dtype, t->dtype, sizeof ti.dtype);
	len = stp_tensor_build(&ti, buf, sizeof buf);
	if (len < 0)
		return len;
	return put1(s, w, STP_F_TENSOR, buf, (size_t)len);
}

static int grow_header(struct stp_splitter *s, size_t n)
{
	uint8_t *p;

	if (n <= s->header_cap)
		return 0;
	p = realloc(s->header, n);
	if (!p)
		return STP_ENOMEM;
	s->header = p;
	s->header_cap = n;
	return 0;
}

/* Reads and checks the header, then writes the FILE frame and the header
 * bytes. On success *h holds the parsed tensors. */
static int split_header(struct stp_splitter *s, struct stp_out *w,
			const struct stp_file_info *f, struct stp_source *src,
			struct stp_st_header *h)
{
	uint8_t buf[24 + STP_MAX_PATH];
	char tname[1024];
	uint64_t n;
	long got;
	int rc;

	if ((rc = grow_header(s, 8)) < 0)
		return rc;
	got = src->read(src->ctx, s->header, 8);
	if (got < 0)
		return (int)got;
	if (got == 0)
		return STP_EEMPTY;
	if (got < 8) {
		where(s, f, ": header length");
		return STP_ETRUNCATED;
	}
	n = stp_get64(s->header);
	if (n > STP_ST_MAX_HEADER ||
	    (f->size != STP_SIZE_UNKNOWN && 8 + n > f->size)) {
		where(s, f, ": header length beyond the end of the file");
		return STP_EHEADER;
	}
	if ((rc = grow_header(s, 8 + (size_t)n)) < 0)
		return rc;
	got = src->read(src->ctx, s->header + 8, (size_t)n);
	if (got < 0)
		return (int)got;
	if ((uint64_t)got < n) {
		where(s, f, ": header");
		return STP_ETRUNCATED;
	}
	rc = stp_st_parse(s->header + 8, (size_t)n, h, tname, sizeof tname);
	if (rc == STP_EJSON) {
		where(s, f, ": header: %s", tname);
		return rc;
	}
	if (rc < 0) {
		if (tname[0])
			where(s, f, ": tensor '%s'", tname);
		else
			where(s, f, NULL);
		return rc;
	}
	if (f->size != STP_SIZE_UNKNOWN && h->data_end > f->size) {
		for (size_t i = 0; i < h->count; i++)
			if (h->tensors[i].end > f->size) {
				where(s, f, ": tensor '%s'", h->tensors[i].name);
				break;
			}
		stp_st_free(h);
		return STP_ERANGE;
	}
	rc = stp_file_build(f, buf, sizeof buf);
	if (rc >= 0)
		rc = put1(s, w, STP_F_FILE, buf, (size_t)rc);
	for (uint64_t off = 0; rc >= 0 && off < 8 + n; off += s->chunk) {
		uint64_t left = 8 + n - off;
		rc = emit(s, w, s->header + off,
			  left < s->chunk ? (size_t)left : s->chunk);
	}
	if (rc < 0)
		stp_st_free(h);
	return rc < 0 ? rc : 0;
}

struct note_ctx {
	struct stp_splitter *s;
	struct stp_out *w;
};

static int send_note(void *ctx, const char *json, size_t len)
{
	struct note_ctx *n = ctx;

	return put1(n->s, n->w, STP_F_LOSSY, json, len);
}

static int split_safetensors(struct stp_splitter *s, struct stp_out *w,
			     const struct stp_file_info *f,
			     struct stp_source *src, uint32_t *out_tensors)
{
	struct stp_st_header h;
	struct note_ctx nc = { s, w };
	char path[STP_MAX_PATH + 1];
	int rc = split_header(s, w, f, src, &h);

	if (rc < 0)
		return rc;
	/* a file that went through a lossy stage says so in the stream */
	memcpy(path, f->path, f->pathlen);
	path[f->pathlen] = '\0';
	rc = stp_lossy_header_notes(s->header + 8, h.header_len, path,
				    send_note, &nc);
	for (size_t i = 0; i < h.count && rc >= 0; i++) {
		const struct stp_st_tensor *t = &h.tensors[i];

		rc = copy(s, w, src, t->begin - s->pos, s->chunk);
		if (rc >= 0)
			rc = tensor_frame(s, w, t, (uint32_t)i);
		if (rc >= 0)
			rc = copy(s, w, src, t->end - t->begin,
				  tensor_step(s, t));
		if (rc < 0)
			where(s, f, ": tensor '%s'", t->name);
	}
	*out_tensors = (uint32_t)h.count;
	stp_st_free(&h);
	if (rc < 0)
		return rc;
	return copy(s, w, src, UINT64_MAX, s->chunk);
}

int stp_split_file(struct stp_splitter *s, struct stp_out *w,
		   const struct stp_file_info *f, struct stp_source *src)
{
	uint8_t buf[24 + STP_MAX_PATH];
	struct stp_file_end e = { 0 };
	uint8_t end[16];
	int rc;

	s->pos = 0;
	s->crc = 0;
	s->size = f->size;
	where(s, f, NULL);
	/* Two files of one path (an archive that holds one twice, two
	 * inputs of one name) could not both be restored. */
	if ((rc = stp_paths_add(&s->paths, f->path, f->pathlen)) < 0)
		return rc;
	if (f->kind == STP_KIND_SAFETENSORS) {
		rc = split_safetensors(s, w, f, src, &e.tensors);
	} else {
		rc = stp_file_build(f, buf, sizeof buf);
		if (rc >= 0)
			rc = put1(s, w, STP_F_FILE, buf, (size_t)rc);
		if (rc >= 0)
			rc = copy(s, w, src, UINT64_MAX, s->chunk);
	}
	if (rc < 0)
		return rc;
	if (f->size != STP_SIZE_UNKNOWN && s->pos != f->size) {
		where(s, f, ": file changed while it was read");
		return STP_EIO;
	}
	e.size = s->pos;
	e.crc = s->crc;
	s->total += s->pos;
	stp_file_end_build(&e, end);
	return put1(s, w, STP_F_FILE_END, end, sizeof end);
}

/* --- sources --- */

/* A file descriptor, with bytes already read from it served first. */
struct fd_source {
	int fd;
	uint8_t pre[SNIFF];
	size_t pre_len, pre_off;
};

static long fd_read(void *ctx, void *buf, size_t n)
{
	struct fd_source *fs = ctx;
	size_t from_pre = fs->pre_len - fs->pre_off;
	long got;

	if (from_pre > n)
		from_pre = n;
	memcpy(buf, fs->pre + fs->pre_off, from_pre);
	fs->pre_off += from_pre;
	if (from_pre == n)
		return (long)n;
	got = stp_read_full(fs->fd, (uint8_t *)buf + from_pre, n - from_pre);
	return got < 0 ? got : got + (long)from_pre;
}

static long archive_source_read(void *ctx, void *buf, size_t n)
{
	struct archive *a = ctx;
	size_t got = 0;

	while (got < n) {
		la_ssize_t r = archive_read_data(a, (char *)buf + got, n - got);

		if (r < 0)
			return STP_EARCHIVE;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (long)got;
}

/* libarchive pulls the archive through this, pre-read bytes first. */
static la_ssize_t archive_pull(struct archive *a, void *ctx,
			       const void **out)
{
	struct fd_source *fs = ctx;
	static __thread uint8_t block[1 << 16];
	long got;

	(void)a;
	got = fd_read(fs, block, sizeof block);
	if (got < 0) {
		archive_set_error(a, EIO, "read error");
		return -1;
	}
	*out = block;
	return got;
}

static int has_suffix(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);

	return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static unsigned kind_of(const char *path, size_t n)
{
	return has_suffix(path, n, ".safetensors") ? STP_KIND_SAFETENSORS :
						     STP_KIND_OTHER;
}

/* Archive entry names may start with "./" and name directories too. */
static const char *entry_path(const char *name)
{
	while (name[0] == '.' && name[1] == '/')
		name += 2;
	while (name[0] == '/')
		name++;
	return name;
}

static int split_archive(struct stp_splitter *s, struct stp_out *w,
			 struct fd_source *fs, const char *label)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	int rc = 0, r;

	if (!a)
		return STP_ENOMEM;
	archive_read_support_filter_all(a);
	archive_read_support_format_all(a);
	if (archive_read_open(a, fs, NULL, archive_pull, NULL) != ARCHIVE_OK) {
		fmt(s->where, sizeof s->where, "%s: %s", label,
			 archive_error_string(a));
		archive_read_free(a);
		return STP_EARCHIVE;
	}
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		const char *path = entry_path(archive_entry_pathname(e));
		struct stp_source src = { archive_source_read, a };
		struct stp_file_info f = {
			.path = path, .pathlen = strlen(path),
			.mode = archive_entry_perm(e) & 07777,
			.mtime = archive_entry_mtime(e),
			.size = archive_entry_size_is_set(e) ?
				(uint64_t)archive_entry_size(e) :
				STP_SIZE_UNKNOWN,
		};

		if (archive_entry_filetype(e) == AE_IFDIR)
			continue;
		if (archive_entry_filetype(e) != AE_IFREG) {
			fmt(s->where, sizeof s->where,
				 "%s: %s: not a regular file", label, path);
			rc = STP_EUNSUPPORTED;
			break;
		}
		f.kind = kind_of(path, f.pathlen);
		if (stp_path_check(path, f.pathlen) < 0) {
			fmt(s->where, sizeof s->where, "%s: %s", label,
				 path);
			rc = STP_EPATH;
			break;
		}
		fmt(s->label, sizeof s->label, "%s: %s", label, path);
		rc = stp_split_file(s, w, &f, &src);
		if (rc < 0)
			break;
	}
	if (rc == 0 && r != ARCHIVE_EOF) {
		fmt(s->where, sizeof s->where, "%s: %s", label,
			 archive_error_string(a));
		rc = STP_EARCHIVE;
	}
	archive_read_free(a);
	return rc;
}

/* A single input stream: a safetensors file or an archive. */
static int split_stream(struct stp_splitter *s, struct stp_out *w, int fd,
			const char *label, const struct stat *st)
{
	struct fd_source fs = { .fd = fd };
	struct stp_source src = { fd_read, &fs };
	const char *base = strrchr(label, '/');
	long got = stp_read_full(fd, fs.pre, SNIFF);
	struct stp_file_info f = {
		.kind = STP_KIND_SAFETENSORS,
		.path = base ? base + 1 : label,
		.mode = st ? st->st_mode & 07777 : 0,
		.mtime = st ? st->st_mtime : 0,
		.size = st ? (uint64_t)st->st_size : STP_SIZE_UNKNOWN,
	};

	if (got < 0) {
		fmt(s->where, sizeof s->where, "%s", label);
		return (int)got;
	}
	fs.pre_len = (size_t)got;
	f.pathlen = strlen(f.path);
	if (got == 0) {
		fmt(s->where, sizeof s->where, "%s", label);
		return STP_EEMPTY;
	}
	if (stp_st_sniff(fs.pre, fs.pre_len) ||
	    has_suffix(label, strlen(label), ".safetensors") || got < 8) {
		fmt(s->label, sizeof s->label, "%s", label);
		return stp_split_file(s, w, &f, &src);
	}
	return split_archive(s, w, &fs, label);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int split_dir(struct stp_splitter *s, struct stp_out *w,
		     const char *root, const char *rel, int depth)
{
	char dir[8192], path[8192];
	struct dirent **names;
	int n, rc = 0;

	if (fmt(dir, sizeof dir, "%s%s%s", root, *rel ? "/" : "", rel)) {
		fmt(s->where, sizeof s->where, "%s", root);
		return STP_EPATH;
	}
	if (depth > MAX_DEPTH) {
		fmt(s->where, sizeof s->where, "%s: too deep", dir);
		return STP_EPATH;
	}
	n = scandir(dir, &names, NULL, by_name);
	if (n < 0) {
		fmt(s->where, sizeof s->where, "%s", dir);
		return STP_EIO;
	}
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		char sub[8192];
		struct stat st;

		if (rc < 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		if (fmt(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", name) ||
		    fmt(path, sizeof path, "%s/%s", root, sub)) {
			fmt(s->where, sizeof s->where, "%s/%s", dir, name);
			rc = STP_EPATH;
		} else if (stat(path, &st) < 0) {
			fmt(s->where, sizeof s->where, "%s", path);
			rc = STP_EIO;
		} else if (S_ISDIR(st.st_mode)) {
			rc = split_dir(s, w, root, sub, depth + 1);
		} else if (S_ISREG(st.st_mode)) {
			int fd = open(path, O_RDONLY);
			struct fd_source fs = { .fd = fd };
			struct stp_source src = { fd_read, &fs };
			struct stp_file_info f = {
				.path = sub, .pathlen = strlen(sub),
				.kind = kind_of(sub, strlen(sub)),
				.mode = st.st_mode & 07777,
				.mtime = st.st_mtime,
				.size = (uint64_t)st.st_size,
			};

			if (fd < 0) {
				fmt(s->where, sizeof s->where, "%s", path);
				rc = STP_EIO;
				continue;
			}
			fmt(s->label, sizeof s->label, "%s", path);
			rc = stp_split_file(s, w, &f, &src);
			close(fd);
		} else {
			fmt(s->where, sizeof s->where,
				 "%s: not a regular file", path);
			rc = STP_EUNSUPPORTED;
		}
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

int stp_split_path(struct stp_splitter *s, struct stp_out *w,
		   const char *path)
{
	struct stat st;
	int fd, rc;

	s->write_failed = 0;
	s->label[0] = '\0';
	if (strcmp(path, "-") == 0)
		return split_stream(s, w, 0, "-", NULL);
	fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fmt(s->where, sizeof s->where, "%s", path);
		if (fd >= 0)
			close(fd);
		return STP_EIO;
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		return split_dir(s, w, path, "", 0);
	}
	rc = split_stream(s, w, fd, path, S_ISREG(st.st_mode) ? &st : NULL);
	close(fd);
	return rc;
}
