#include <errno.h>
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
