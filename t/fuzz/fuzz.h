/* What the fuzz targets share: the input as a file descriptor, frame CRCs
 * mended so that a mutation reaches the checks behind them, and the
 * variant forced from a byte of the input.  Every target is a libFuzzer
 * LLVMFuzzerTestOneInput built with -fsanitize=fuzzer,address,undefined
 * (t/fuzz/GNUmakefile.inc); a target calls abort() where the library
 * broke a promise that no sanitizer sees (two variants disagree, a
 * decoded result does not encode back), so libFuzzer records the input. */
#ifndef STP_FUZZ_H
#define STP_FUZZ_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../lib/crc32.h"
#include "../../lib/planes.h"
#include "../../lib/rans.h"
#include "../../lib/stream.h"

/* Stops the run with a message: the promise the library broke. */
#define FUZZ_CHECK(cond)                                                   \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "%s:%d: check failed: %s\n",       \
				__FILE__, __LINE__, #cond);                \
			abort();                                           \
		}                                                          \
	} while (0)

/* A memory file holding data[0..n), positioned at 0; -1 on failure. */
static inline int fuzz_memfd(const uint8_t *data, size_t n)
{
	int fd = memfd_create("fuzz", 0);
	size_t at = 0;

	if (fd < 0)
		return -1;
	while (at < n) {
		ssize_t w = write(fd, data + at, n - at);
		if (w <= 0) {
			close(fd);
			return -1;
		}
		at += (size_t)w;
	}
	if (lseek(fd, 0, SEEK_SET) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Rewrites, in p[0..n), the CRC of every stream header and of every frame
 * that fits, walking the stream as a reader would: a mutation of a field
 * then meets the check of that field, not the CRC. */
static inline void fuzz_mend_crcs(uint8_t *p, size_t n)
{
	static const uint8_t magic[8] = { 0x89, 'S', 'T', 'P',
					  0x0D, 0x0A, 0x1A, 0x0A };
	size_t pos = 0;

	while (pos + 8 <= n) {
		if (memcmp(p + pos, magic, 8) == 0) {
			if (pos + STP_HEADER_SIZE > n)
				return;
			stp_put32(p + pos + 12, stp_crc32(0, p + pos, 12));
			pos += STP_HEADER_SIZE;
			continue;
		}
		uint64_t len = stp_get32(p + pos + 4);
		if (len > n - pos - 8 || n - pos - 8 - len < 4)
			return;
		stp_put32(p + pos + 8 + len, stp_crc32(0, p + pos, 8 + len));
		pos += 8 + len + 4;
	}
}

/* A copy of data[0..n) with the CRCs mended when mend is set; the caller
 * frees it.  NULL when out of memory. */
static inline uint8_t *fuzz_copy(const uint8_t *data, size_t n, int mend)
{
	uint8_t *p = malloc(n ? n : 1);

	if (!p)
		return NULL;
	memcpy(p, data, n);
	if (mend)
		fuzz_mend_crcs(p, n);
	return p;
}

/* The variant named by v % 4: scalar, avx2, avx512 or the best; one this
 * CPU lacks falls back to scalar.  Forces rANS, planes and CRC-32 alike
 * and returns the name in force. */
static inline const char *fuzz_force_impl(unsigned v)
{
	static const char *const names[] = { "scalar", "avx2", "avx512",
					     "auto" };
	const char *name = names[v % 4];

	if (stp_rans_force_impl(name) < 0 || stp_planes_force_impl(name) < 0 ||
	    stp_crc32_force_impl(name) < 0) {
		name = "scalar";
		stp_rans_force_impl(name);
		stp_planes_force_impl(name);
		stp_crc32_force_impl(name);
	}
	return name;
}

/* Little-endian reads from the front of an input, advancing it; 0 once
 * the input is used up. */
static inline uint64_t fuzz_take(const uint8_t **p, size_t *n, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes && *n > 0; i++) {
		v |= (uint64_t)**p << (8 * i);
		(*p)++;
		(*n)--;
	}
	return v;
}

#endif
