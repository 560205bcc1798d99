#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "io.h"

int stp_write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t put = write(fd, p, n);

		if (put < 0) {
			if (errno == EINTR)
				continue;
			return STP_EIO;
		}
		p += put;
		n -= (size_t)put;
	}
	return 0;
}

int stp_writev_all(int fd, const struct iovec *iov, int n)
{
	struct iovec v[32];
	int first = 0;

	if (n > 32)
		return STP_ETOOBIG;
	memcpy(v, iov, (size_t)n * sizeof *v);
	while (first < n) {
		ssize_t put = writev(fd, v + first, n - first);

		if (put < 0) {
			if (errno == EINTR)
				continue;
			return STP_EIO;
		}
		while (first < n && (size_t)put >= v[first].iov_len) {
			put -= (ssize_t)v[first].iov_len;
			first++;
		}
		if (first < n) {
			v[first].iov_base = (char *)v[first].iov_base + put;
			v[first].iov_len -= (size_t)put;
		}
	}
	return 0;
}

long stp_read_full(int fd, void *buf, size_t n)
{
	char *p = buf;
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return STP_EIO;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (long)got;
}

/* The temporary files that exist now, for stp_temp_cleanup() to remove
 * from a signal handler: a fixed table (its untouched pages cost
 * nothing), a slot live from creation to placing or discarding. */
#define TEMP_SLOTS 4096
#define TEMP_PATH 4200
static char temp_path[TEMP_SLOTS][TEMP_PATH];
static volatile sig_atomic_t temp_live[TEMP_SLOTS];
static pthread_mutex_t temp_lock = PTHREAD_MUTEX_INITIALIZER;

static void temp_register(const char *tmp)
{
	size_t n = strlen(tmp);

	if (n >= TEMP_PATH)
		return;
	pthread_mutex_lock(&temp_lock);
	for (unsigned i = 0; i < TEMP_SLOTS; i++)
		if (!temp_live[i]) {
			memcpy(temp_path[i], tmp, n + 1);
			temp_live[i] = 1;
			break;
		}
	pthread_mutex_unlock(&temp_lock);
}

static void temp_forget(const char *tmp)
{
	pthread_mutex_lock(&temp_lock);
	for (unsigned i = 0; i < TEMP_SLOTS; i++)
		if (temp_live[i] && strcmp(temp_path[i], tmp) == 0) {
			temp_live[i] = 0;
			break;
		}
	pthread_mutex_unlock(&temp_lock);
}

void stp_temp_discard(const char *tmp)
{
	unlink(tmp);
	temp_forget(tmp);
}

void stp_temp_cleanup(void)
{
	for (unsigned i = 0; i < TEMP_SLOTS; i++)
		if (temp_live[i])
			unlink(temp_path[i]);
}

int stp_temp_create(char *tmp, size_t cap, const char *dest)
{
	const char *slash = strrchr(dest, '/');
	int n, fd;

	if (slash)
		n = snprintf(tmp, cap, "%.*s/.%s.stp-XXXXXX",
			     (int)(slash - dest), dest, slash + 1);
	else
		n = snprintf(tmp, cap, ".%s.stp-XXXXXX", dest);
	if (n < 0 || (size_t)n >= cap)
		return STP_EPATH;
	fd = mkstemp(tmp);
	if (fd < 0)
		return STP_EIO;
	/* mkstemp makes 0600; the output gets what the umask allows. */
	mode_t mask = umask(0);
	umask(mask);
	if (fchmod(fd, 0666 & ~mask) < 0) {
		close(fd);
		unlink(tmp);
		return STP_EIO;
	}
	temp_register(tmp);
	return fd;
}

static int place(const char *tmp, const char *dest, int force)
{
	if (force)
		return rename(tmp, dest) < 0 ? STP_EIO : 0;
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dest, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno == EEXIST)
		return STP_EEXIST;
	if (errno != EINVAL && errno != ENOSYS)
		return STP_EIO;
	/* File systems without RENAME_NOREPLACE: link fails if dest exists. */
	if (link(tmp, dest) < 0)
		return errno == EEXIST ? STP_EEXIST : STP_EIO;
	unlink(tmp);
	return 0;
}

int stp_temp_place(const char *tmp, const char *dest, int force)
{
	int rc = place(tmp, dest, force);

	if (rc == 0)
		temp_forget(tmp);
	return rc;
}
