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
#include "join.h"

#define NAME_MAX_ 8192

enum sink_kind { SINK_FD, SINK_FILE, SINK_DIR, SINK_ARCHIVE, SINK_NULL };

struct stp_sink {
	enum sink_kind kind;
	int force;
	unsigned files;
	char target[NAME_MAX_];
	/* the file being written (SINK_FILE, SINK_DIR) */
	int fd;
	char tmp[NAME_MAX_];
	char dest[NAME_MAX_];
	struct stp_file_info info;
	/* SINK_DIR into a folder that did not exist: built beside it */
	char root[NAME_MAX_];
	int new_root;
	/* verified files waiting for the end of the stream to be renamed */
	struct pending { char *tmp, *dest; } *pending;
	size_t npending;
	/* SINK_ARCHIVE */
	struct archive *ar;
	struct archive_entry *entry;
	FILE *spool;              /* entry of unknown size, held until known */
	char path[STP_MAX_PATH + 1];
};

struct stp_joiner {
	struct stp_sink *k;
	struct stp_paths paths;   /* of the stream so far: unique */
	uint8_t *tmp;             /* frames given in pieces, made whole */
	size_t tmp_cap;
	int in_file;
	char path[STP_MAX_PATH + 1];
	struct stp_file_info info;
	uint64_t pos;
	uint32_t crc;
	uint32_t tensors;
	uint64_t pending;         /* bytes the current tensor still needs */
	unsigned esize;
	uint64_t total;
	char tensor[1024];
	char where[STP_MAX_PATH + 1200];
};

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

static int has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int is_archive_name(const char *s)
{
	static const char *const ext[] = {
		".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.zst", ".tar.bz2",
		".zip",
	};

	for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
		if (has_suffix(s, ext[i]))
			return 1;
	return 0;
}

static int exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

static int mkdirs(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0777) < 0 && errno != EEXIST) {
			*p = '/';
			return STP_EIO;
		}
		*p = '/';
	}
	if (mkdir(path, 0777) < 0 && errno != EEXIST)
		return STP_EIO;
	return 0;
}

int stp_sink_open(struct stp_sink **out_k, const char *target, int force)
{
	struct stp_sink *k = calloc(1, sizeof *k);
	struct stat st;
	size_t n;

	if (!k)
		return STP_ENOMEM;
	k->force = force;
	k->fd = -1;
	*out_k = k;
	if (!target || strcmp(target, "-") == 0) {
		k->kind = SINK_FD;
		k->fd = 1;
		return 0;
	}
	if (fmt(k->target, sizeof k->target, "%s", target) < 0)
		return STP_EPATH;
	n = strlen(k->target);
	while (n > 1 && k->target[n - 1] == '/')
		k->target[--n] = '\0';
	if (has_suffix(target, "/") ||
	    (stat(target, &st) == 0 && S_ISDIR(st.st_mode))) {
		k->kind = SINK_DIR;
		if (exists(k->target))
			return fmt(k->root, sizeof k->root, "%s", k->target);
		/* Built under a temporary name, renamed when complete. */
		k->new_root = 1;
		if (fmt(k->root, sizeof k->root, "%s.stp-XXXXXX", k->target) < 0)
			return STP_EPATH;
		return mkdtemp(k->root) ? 0 : STP_EIO;
	}
	if (!force && exists(k->target))
		return STP_EEXIST;
	if (is_archive_name(k->target)) {
		k->kind = SINK_ARCHIVE;
		k->fd = stp_temp_create(k->tmp, sizeof k->tmp, k->target);
		if (k->fd < 0)
			return k->fd;
		k->ar = archive_write_new();
		k->entry = archive_entry_new();
		if (!k->ar || !k->entry)
			return STP_ENOMEM;
		if (archive_write_set_format_filter_by_ext(k->ar, k->target) !=
			    ARCHIVE_OK ||
		    archive_write_open_fd(k->ar, k->fd) != ARCHIVE_OK)
			return STP_EARCHIVE;
		return 0;
	}
	k->kind = SINK_FILE;
	return 0;
}

int stp_sink_open_null(struct stp_sink **out_k)
{
	struct stp_sink *k = calloc(1, sizeof *k);

	if (!k)
		return STP_ENOMEM;
	k->kind = SINK_NULL;
	k->fd = -1;
	*out_k = k;
	return 0;
}

static int sink_begin(struct stp_sink *k, const struct stp_file_info *f)
{
	char dest[NAME_MAX_];
	int rc;

	k->info = *f;
	if (k->kind == SINK_FD || k->kind == SINK_FILE) {
		if (k->files > 0)
			return STP_EMANY;
	}
	k->files++;
	switch (k->kind) {
	case SINK_FD:
	case SINK_NULL:
		return 0;
	case SINK_FILE:
		if (fmt(k->dest, sizeof k->dest, "%s", k->target) < 0)
			return STP_EPATH;
		break;
	case SINK_DIR:
		if (fmt(dest, sizeof dest, "%s/%.*s", k->root,
			(int)f->pathlen, f->path) < 0 ||
		    fmt(k->dest, sizeof k->dest, "%s", dest) < 0)
			return STP_EPATH;
		if (strrchr(dest, '/') != dest) {
			*strrchr(dest, '/') = '\0';
			if ((rc = mkdirs(dest)) < 0)
				return rc;
		}
		if (!k->force && exists(k->dest))
			return STP_EEXIST;
		break;
	case SINK_ARCHIVE:
		memcpy(k->path, f->path, f->pathlen);
		k->path[f->pathlen] = '\0';
		archive_entry_clear(k->entry);
		archive_entry_set_pathname(k->entry, k->path);
		archive_entry_set_filetype(k->entry, AE_IFREG);
		archive_entry_set_perm(k->entry, f->mode ? f->mode & 0777 : 0644);
		archive_entry_set_mtime(k->entry, f->mtime, 0);
		if (f->size == STP_SIZE_UNKNOWN) {
			k->spool = tmpfile();
			return k->spool ? 0 : STP_EIO;
		}
		archive_entry_set_size(k->entry, (la_int64_t)f->size);
		return archive_write_header(k->ar, k->entry) == ARCHIVE_OK ?
			       0 : STP_EIO;
	}
	k->fd = stp_temp_create(k->tmp, sizeof k->tmp, k->dest);
	return k->fd < 0 ? k->fd : 0;
}

static int archive_put(struct archive *ar, const void *p, size_t n)
{
	while (n > 0) {
		la_ssize_t put = archive_write_data(ar, p, n);

		if (put <= 0)
			return STP_EIO;
		p = (const char *)p + put;
		n -= (size_t)put;
	}
	return 0;
}

static int sink_write(struct stp_sink *k, const void *p, size_t n)
{
	if (k->kind == SINK_NULL)
		return 0;
	if (k->kind != SINK_ARCHIVE)
		return stp_write_all(k->fd, p, n);
	if (k->spool)
		return fwrite(p, 1, n, k->spool) == n ? 0 : STP_EIO;
	return archive_put(k->ar, p, n);
}

/* Writes a spooled entry now that its size is known. */
static int unspool(struct stp_sink *k, uint64_t size)
{
	char buf[1 << 16];
	size_t got;
	int rc = 0;

	archive_entry_set_size(k->entry, (la_int64_t)size);
	if (fflush(k->spool) != 0 || fseek(k->spool, 0, SEEK_SET) != 0 ||
	    archive_write_header(k->ar, k->entry) != ARCHIVE_OK)
		rc = STP_EIO;
	while (rc == 0 && (got = fread(buf, 1, sizeof buf, k->spool)) > 0)
		rc = archive_put(k->ar, buf, got);
	if (rc == 0 && ferror(k->spool))
		rc = STP_EIO;
	fclose(k->spool);
	k->spool = NULL;
	return rc;
}

/* Keeps a verified file under its temporary name until the stream ends. */
static int defer(struct stp_sink *k)
{
	struct pending *p = realloc(k->pending,
				    (k->npending + 1) * sizeof *p);

	if (!p)
		return STP_ENOMEM;
	k->pending = p;
	p += k->npending;
	p->tmp = strdup(k->tmp);
	p->dest = strdup(k->dest);
	if (!p->tmp || !p->dest) {
		free(p->tmp);
		free(p->dest);
		return STP_ENOMEM;
	}
	k->npending++;
	return 0;
}

static int sink_commit(struct stp_sink *k, uint64_t size)
{
	const struct stp_file_info *f = &k->info;
	int rc;

	switch (k->kind) {
	case SINK_FD:
	case SINK_NULL:
		return 0;
	case SINK_ARCHIVE:
		return k->spool ? unspool(k, size) : 0;
	case SINK_FILE:
	case SINK_DIR:
		break;
	}
	rc = 0;
	/* Never setuid, setgid or sticky bits from a stream. */
	if (f->mode && fchmod(k->fd, f->mode & 0777) < 0)
		rc = STP_EIO;
	if (f->mtime) {
		struct timespec ts[2] = { { f->mtime, 0 }, { f->mtime, 0 } };
		if (futimens(k->fd, ts) < 0)
			rc = STP_EIO;
	}
	if (close(k->fd) < 0)
		rc = STP_EIO;
	k->fd = -1;
	if (rc == 0)
		rc = defer(k);
	if (rc < 0)
		stp_temp_discard(k->tmp);
	k->tmp[0] = '\0';
	return rc;
}

/* Renames every verified file into place, once the whole stream is. */
static int place_pending(struct stp_sink *k)
{
	int rc = 0;

	for (size_t i = 0; i < k->npending && rc == 0; i++) {
		rc = stp_temp_place(k->pending[i].tmp, k->pending[i].dest, k->force);
		if (rc == 0)
			k->pending[i].tmp[0] = '\0';
	}
	return rc;
}

static void free_pending(struct stp_sink *k)
{
	for (size_t i = 0; i < k->npending; i++) {
		if (k->pending[i].tmp[0])
			stp_temp_discard(k->pending[i].tmp);
		free(k->pending[i].tmp);
		free(k->pending[i].dest);
	}
	free(k->pending);
	k->pending = NULL;
	k->npending = 0;
}

/* Removes a folder this sink created, with what it holds. */
static void rmtree(const char *path)
{
	struct dirent **names;
	char sub[NAME_MAX_];
	struct stat st;
	int n;

	if (lstat(path, &st) < 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlink(path);
		return;
	}
	n = scandir(path, &names, NULL, NULL);
	for (int i = 0; i < n; i++) {
		const char *nm = names[i]->d_name;

		if (strcmp(nm, ".") && strcmp(nm, "..") &&
		    fmt(sub, sizeof sub, "%s/%s", path, nm) == 0)
			rmtree(sub);
		free(names[i]);
	}
	if (n >= 0)
		free(names);
	rmdir(path);
}

void stp_sink_abort(struct stp_sink *k)
{
	if (!k)
		return;
	if (k->kind != SINK_FD && k->fd >= 0)
		close(k->fd);
	if (k->tmp[0])
		stp_temp_discard(k->tmp);
	free_pending(k);
	if (k->spool)
		fclose(k->spool);
	if (k->ar)
		archive_write_free(k->ar);
	if (k->entry)
		archive_entry_free(k->entry);
	if (k->new_root && k->root[0])
		rmtree(k->root);
	free(k);
}

int stp_sink_finish(struct stp_sink *k)
{
	int rc = 0;

	switch (k->kind) {
	case SINK_FD:
		rc = k->files == 0 ? STP_EEMPTY : 0;
		break;
	case SINK_NULL:
		break;
	case SINK_FILE:
		rc = k->files == 0 ? STP_EEMPTY : place_pending(k);
		break;
	case SINK_DIR:
		rc = place_pending(k);
		if (rc == 0 && k->new_root) {
			rc = stp_temp_place(k->root, k->target, 0);
			if (rc == 0)
				k->new_root = 0;
		}
		break;
	case SINK_ARCHIVE:
		if (archive_write_close(k->ar) != ARCHIVE_OK)
			rc = STP_EIO;
		if (rc == 0 && close(k->fd) < 0)
			rc = STP_EIO;
		k->fd = -1;
		if (rc == 0)
			rc = stp_temp_place(k->tmp, k->target, k->force);
		if (rc == 0)
			k->tmp[0] = '\0';
		break;
	}
	if (rc < 0) {
		stp_sink_abort(k);
		return rc;
	}
	free_pending(k);
	if (k->ar)
		archive_write_free(k->ar);
	if (k->entry)
		archive_entry_free(k->entry);
	free(k);
	return 0;
}

int stp_joiner_open(struct stp_joiner **out_j, struct stp_sink *k)
{
	struct stp_joiner *j = calloc(1, sizeof *j);

	if (!j)
		return STP_ENOMEM;
	j->k = k;
	*out_j = j;
	return 0;
}

void stp_joiner_free(struct stp_joiner *j)
{
	if (!j)
		return;
	stp_paths_free(&j->paths);
	free(j->tmp);
	free(j);
}

/* 1 if a is a folder on the way to b ("x" and "x/y"). */
uint64_t stp_joiner_bytes(const struct stp_joiner *j)
{
	return j->total;
}

const char *stp_joiner_where(const struct stp_joiner *j)
{
	return j->where;
}

static int join_file(struct stp_joiner *j, const struct stp_frame *f)
{
	int rc = stp_file_parse(f->payload, f->len, &j->info);

	if (rc < 0)
		return rc;
	memcpy(j->path, j->info.path, j->info.pathlen);
	j->path[j->info.pathlen] = '\0';
	j->info.path = j->path;
	fmt(j->where, sizeof j->where, "%s", j->path);
	if ((rc = stp_paths_add(&j->paths, j->path, strlen(j->path))) < 0)
		return rc;
	j->in_file = 1;
	j->pos = 0;
	j->crc = 0;
	j->tensors = 0;
	j->pending = 0;
	return sink_begin(j->k, &j->info);
}

static int join_tensor(struct stp_joiner *j, const struct stp_frame *f)
{
	struct stp_tensor_info t;
	int rc = stp_tensor_parse(f->payload, f->len, &t);

	if (rc == 0)
		fmt(j->tensor, sizeof j->tensor, "%.*s",
		    (int)(t.namelen > 900 ? 900 : t.namelen), t.name);
	fmt(j->where, sizeof j->where, "%s: tensor '%s'", j->path, j->tensor);
	if (rc < 0)
		return rc;
	if (j->pending || t.offset != j->pos || t.index != j->tensors)
		return STP_EORDER;
	j->tensors++;
	j->pending = t.nbytes;
	j->esize = stp_dtype_size(t.dtype);
	return 0;
}

/* The n bytes of a DATA frame for file offset off; crc is their CRC-32. */
static int join_bytes(struct stp_joiner *j, uint64_t off, const uint8_t *data,
		      size_t n, uint32_t crc)
{
	if (!j->in_file)
		return STP_EORDER;
	if (n == 0)
		return STP_EFRAME;
	if (off != j->pos)
		return STP_EORDER;
	if (j->pending) {
		if (n > j->pending || n % j->esize)
			return STP_EFRAME;
		j->pending -= n;
		if (j->pending == 0)
			fmt(j->where, sizeof j->where, "%s", j->path);
	}
	j->crc = stp_crc32_combine(j->crc, crc, n);
	j->pos += n;
	j->total += n;
	return sink_write(j->k, data, n);
}

static int join_data(struct stp_joiner *j, const struct stp_frame *f)
{
	if (f->len < 9)
		return STP_EFRAME;
	return join_bytes(j, stp_get64(f->payload), f->payload + 8, f->len - 8,
			  f->body_crc);
}

/* In-process frames: DATA goes straight from its pieces, others are made
 * contiguous first. */
static int joiner_out_frame(void *ctx, unsigned type, const struct iovec *v,
			    int n, const uint32_t *last_crc)
{
	struct stp_joiner *j = ctx;
	struct stp_frame f = { .type = type };
	size_t len = 0, at = 0;

	if (type == STP_F_DATA && n == 2 && v[0].iov_len == 8) {
		uint32_t crc = last_crc ? *last_crc :
				   stp_crc32(0, v[1].iov_base, v[1].iov_len);
		return join_bytes(j, stp_get64(v[0].iov_base), v[1].iov_base,
				  v[1].iov_len, crc);
	}
	for (int i = 0; i < n; i++)
		len += v[i].iov_len;
	if (len > STP_MAX_PAYLOAD)
		return STP_ETOOBIG;
	if (len > j->tmp_cap) {
		uint8_t *p = realloc(j->tmp, len);
		if (!p)
			return STP_ENOMEM;
		j->tmp = p;
		j->tmp_cap = len;
	}
	for (int i = 0; i < n; i++) {
		if (v[i].iov_len)	/* j->tmp is NULL until a payload */
			memcpy(j->tmp + at, v[i].iov_base, v[i].iov_len);
		at += v[i].iov_len;
	}
	f.payload = j->tmp;
	f.len = (uint32_t)len;
	if (len >= 8)
		f.body_crc = stp_crc32(0, j->tmp + 8, len - 8);
	return stp_join_frame(j, &f);
}

struct stp_out stp_joiner_out(struct stp_joiner *j)
{
	struct stp_out out = { joiner_out_frame, j };

	return out;
}

static int join_file_end(struct stp_joiner *j, const struct stp_frame *f)
{
	struct stp_file_end e;
	int rc = stp_file_end_parse(f->payload, f->len, &e);

	if (rc < 0)
		return rc;
	if (j->pending)
		return STP_ETRUNCATED;
	if (e.size != j->pos || e.tensors != j->tensors ||
	    (j->info.size != STP_SIZE_UNKNOWN && j->info.size != j->pos))
		return STP_ETOTALS;
	if (e.crc != j->crc)
		return STP_ECHECKSUM;
	j->in_file = 0;
	return sink_commit(j->k, j->pos);
}

int stp_join_frame(struct stp_joiner *j, const struct stp_frame *f)
{
	switch (f->type) {
	case STP_F_FILE:
		return join_file(j, f);
	case STP_F_TENSOR:
		return join_tensor(j, f);
	case STP_F_DATA:
		return join_data(j, f);
	case STP_F_FILE_END:
		return join_file_end(j, f);
	case STP_F_END:
		return 0;
	default:
		if (f->type >= STP_F_SKIP_FIRST && f->type <= STP_F_SKIP_LAST)
			return 0;
		return STP_EUNDECODED;
	}
}
