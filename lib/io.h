/* Whole-buffer reads and writes on file descriptors, retrying on EINTR and
 * short transfers. Failures return STP_EIO with errno left as the system
 * set it. */
#ifndef STP_IO_H
#define STP_IO_H

#include <stddef.h>
#include <sys/uio.h>

/* Writes all n bytes. 0 or STP_EIO. */
int stp_write_all(int fd, const void *buf, size_t n);

/* Writes all bytes of iov[0..n-1]; the array itself is not modified.
 * 0, STP_EIO, or STP_ETOOBIG for more than 32 pieces. */
int stp_writev_all(int fd, const struct iovec *iov, int n);

/* Reads until n bytes or end of input. Returns the count read (less than
 * n only at end of input) or STP_EIO. */
long stp_read_full(int fd, void *buf, size_t n);

/* Creates and opens a temporary file beside dest (DIR/.BASE.stp-XXXXXX),
 * its name in tmp. Returns the descriptor, STP_EPATH or STP_EIO. */
int stp_temp_create(char *tmp, size_t cap, const char *dest);

/* Removes a temporary file that will not be placed. */
void stp_temp_discard(const char *tmp);

/* Removes every temporary file made by stp_temp_create() and not yet
 * placed or discarded: async-signal-safe, for the handler of a signal
 * that ends the program. */
void stp_temp_cleanup(void);

/* Renames tmp (a file or folder) to dest; without force an existing dest
 * is never replaced (STP_EEXIST). 0 or a negative code. */
int stp_temp_place(const char *tmp, const char *dest, int force);

#endif
