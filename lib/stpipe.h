/* stpipe.h: the public API of libstpipe, the library behind the stpipe
 * programs. It opens .stz files (streams that `stpipe compress` or
 * `st-split | fp8-exp | rans-enc` write), lists their tensors, decodes
 * tensors into buffers the caller provides, and compresses tensors held
 * in the caller's memory. This is the one installed header; stpipe(3)
 * says the same at more length.
 *
 * Conventions
 *   Every function that can fail returns 0 (or a count) on success and a
 *   negative STP_E* code on failure; stp_strerror() gives its message.
 *   Out-parameters are written only on success. Strings are UTF-8 and
 *   NUL-terminated.
 * Ownership
 *   What stp_stz_open() returns is the caller's, freed by stp_stz_close().
 *   Strings and arrays inside a struct stp_tensor_desc belong to the
 *   handle and live until stp_stz_close(). Buffers passed in stay the
 *   caller's; the library keeps no pointer to them after a call returns.
 * Thread safety
 *   A handle is used by one thread at a time; distinct handles, and the
 *   functions that take no handle, may run on any threads at once. The
 *   threads argument only says how many threads a call may start inside
 *   it (0: one per CPU); the bytes produced never depend on it.
 * Memory
 *   Decoding and compressing stream through working buffers of a few MiB
 *   whatever the size of the model; only the tensor list is kept whole.
 * Stability
 *   Symbols are versioned (STPIPE_0); the soname libstpipe.so.N changes
 *   only when this ABI changes incompatibly.
 */
#ifndef STPIPE_H
#define STPIPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define STPIPE_VERSION_MAJOR 0
#define STPIPE_VERSION_MINOR 1
#define STPIPE_VERSION_PATCH 0

/* The library's version, "MAJOR.MINOR.PATCH"; never NULL. */
const char *stp_version(void);

/* ---- errors ---- */

/* X(name, exit status, message): the one list of error codes. The
 * programs exit with the status given here (1: the input is at fault,
 * 100: usage, 111: system or I/O failure). */
#define STP_ERRORS(X) \
	X(IO,       111, "input/output error") \
	X(NOMEM,    111, "out of memory") \
	X(EMPTY,      1, "empty input") \
	X(MAGIC,      1, "bad magic number") \
	X(VERSION,    1, "unsupported format version") \
	X(RESERVED,   1, "reserved field is not zero") \
	X(CRC,        1, "CRC-32 mismatch") \
	X(TRUNCATED,  1, "truncated input") \
	X(TOOBIG,     1, "length exceeds limit") \
	X(FRAME,      1, "malformed frame") \
	X(ORDER,      1, "frame out of order") \
	X(TOTALS,     1, "end frame totals do not match the stream") \
	X(TRAILING,   1, "trailing garbage after end of stream") \
	X(HEADER,     1, "invalid safetensors header") \
	X(JSON,       1, "invalid JSON") \
	X(RANGE,      1, "offsets out of range") \
	X(OVERLAP,    1, "overlapping tensors") \
	X(SIZE,       1, "size does not match dtype and shape") \
	X(DTYPE,      1, "unknown dtype") \
	X(PATH,       1, "unsafe or invalid path") \
	X(ARCHIVE,    1, "invalid or unsupported archive") \
	X(UNSUPPORTED,1, "unsupported feature") \
	X(CORRUPT,    1, "corrupt coded data") \
	X(CHECKSUM,   1, "file checksum mismatch") \
	X(UNDECODED,  1, "frame must be decoded by an earlier stage") \
	X(EXIST,    100, "output exists (use -f to overwrite)") \
	X(MANY,       1, "stream holds more than one file (use -o DIR/ or -o NAME.tar)") \
	X(NODEVICE, 111, "no usable GPU")

/* Positive indices 1..N in list order; the codes are their negatives.
 * New codes are only ever added at the end. */
enum stp_error_index {
	STP_ERR_NONE_ = 0,
#define STP_X(name, sys, msg) STP_ERR_##name,
	STP_ERRORS(STP_X)
#undef STP_X
	STP_ERR_COUNT_
};

enum stp_error {
	STP_OK = 0,
#define STP_X(name, sys, msg) STP_E##name = -STP_ERR_##name,
	STP_ERRORS(STP_X)
#undef STP_X
};

/* Message for a code (0 gives "success", an unknown code "unknown
 * error"); never NULL, static storage. */
const char *stp_strerror(int code);

/* The exit status a program reports for a code: 0, 1, 100 or 111. */
int stp_error_exit(int code);

/* ---- reading .stz files ---- */

typedef struct stp_stz stp_stz;

/* One tensor of an opened stream. */
struct stp_tensor_desc {
	const char *file;         /* path of the file holding it, as stored
				   * (e.g. "model-00001-of-00002.safetensors") */
	const char *name;         /* its name in that file's header */
	const char *dtype;        /* the safetensors dtype: "BF16", "F16",
				   * "F32", "F64", "F8_E4M3", "F8_E5M2",
				   * "I8", "U8", "I32", ... as stored */
	unsigned ndim;
	const uint64_t *shape;    /* ndim extents, row (last) dimension last */
	uint64_t nbytes;          /* bytes of its data, as in the original */
};

/* Opens a .stz file for random access: reads its index (or, in a stream
 * without one, walks its frames once, decoding nothing) to list its
 * tensors. A stream of several files (a model folder, shards) lists the
 * tensors of all of them, in stream order.
 * STP_EIO (cannot open), STP_EMAGIC and the other format errors, STP_ENOMEM. */
int stp_stz_open(stp_stz **out, const char *path);

/* The same over an open, seekable file descriptor (a regular file), which
 * stays the caller's: stp_stz_close() does not close it, and the caller
 * must not move its offset while the handle is in use. A pipe gives
 * STP_EUNSUPPORTED: read it with stp_stream_load(). */
int stp_stz_open_fd(stp_stz **out, int fd);

/* Frees the handle and everything it returned. NULL is a no-op. */
void stp_stz_close(stp_stz *z);

/* Number of tensors. */
size_t stp_stz_count(const stp_stz *z);

/* Tensor i (0 <= i < count), or NULL past the end. */
const struct stp_tensor_desc *stp_stz_tensor(const stp_stz *z, size_t i);

/* One file of an opened stream: the shards of a model folder and its
 * other files (config.json, the index) alike. */
struct stp_file_desc {
	const char *path;         /* relative path, as stored */
	int safetensors;          /* 1: cut as safetensors (its tensors are
				   * listed), 0: any other file */
	uint64_t size;            /* its bytes, or UINT64_MAX when the
				   * stream does not say (written from a
				   * pipe) */
};

/* Number of files, and file i (0 <= i < count) or NULL, in stream order. */
size_t stp_stz_file_count(const stp_stz *z);
const struct stp_file_desc *stp_stz_file(const stp_stz *z, size_t i);

/* Decodes file i whole into buf (cap >= its size), checking its length
 * and CRC-32 against the original's: config.json, a tokenizer, or a
 * safetensors file with its header. Returns the number of bytes, or
 * STP_ERANGE, STP_ETOOBIG, a format error, STP_EIO. */
int64_t stp_stz_read_file(stp_stz *z, size_t i, void *buf, size_t cap,
			  unsigned threads);

/* Index of the tensor called name in file (NULL: the first file holding
 * one), or STP_ERANGE when there is none. */
long stp_stz_find(const stp_stz *z, const char *file, const char *name);

/* Decodes tensor i into buf (cap >= its nbytes), reading only its own
 * frames and the models they use. Every coded frame's CRC-32 is checked;
 * the file's checksum, which covers whole files, is checked only by
 * stp_stz_load_all(). STP_ERANGE (no such i), STP_ETOOBIG (cap too small),
 * format errors (STP_ECORRUPT, STP_ECRC, ...) or STP_EIO; on failure the
 * contents of buf are unspecified. */
int stp_stz_load(stp_stz *z, size_t i, void *buf, size_t cap,
		 unsigned threads);

/* Where stp_stz_load_all() and stp_stream_load() put tensors. begin is
 * called when a tensor starts, in stream order: it sets *buf to memory of
 * t->nbytes bytes for it, or to NULL to skip it, and returns 0 (or a
 * negative code, which ends the load with that code). end, if not NULL,
 * is called once the tensor's bytes are all in its buffer (only for
 * tensors given one), with the same t and buf. t is valid during the
 * calls only. The callbacks run on the calling thread, never two at
 * once. For stp_stz_load_all the k-th call of begin is for tensor k of
 * the handle's list. */
struct stp_load_cb {
	int (*begin)(void *ctx, const struct stp_tensor_desc *t, void **buf);
	int (*end)(void *ctx, const struct stp_tensor_desc *t, void *buf);
	void *ctx;
};

/* Decodes every tensor of the handle in one pass from the start, as
 * `stpipe verify` does (whole-file checksums included), handing each to
 * cb. Returns the number of tensors loaded, or a negative code. */
long stp_stz_load_all(stp_stz *z, const struct stp_load_cb *cb,
		      unsigned threads);

/* The same over a stream read from fd to its end (a pipe, a socket or a
 * file, from its current offset), for callers that cannot seek. */
long stp_stream_load(int fd, const struct stp_load_cb *cb, unsigned threads);

/* ---- compressing ---- */

/* One tensor in the caller's memory. */
struct stp_tensor_in {
	const char *name;
	const char *dtype;        /* a safetensors dtype, as above */
	unsigned ndim;            /* 0 for a scalar; at most 32 */
	const uint64_t *shape;
	const void *data;         /* nbytes bytes, in safetensors layout
				   * (little-endian, row-major) */
	uint64_t nbytes;          /* must equal product(shape) x dtype width */
};

struct stp_compress_opts {
	unsigned threads;         /* 0: one per CPU (default 1 when opts is
				   * NULL) */
	const char *model;        /* exponent model, as stpipe compress -m:
				   * "order0" (NULL), "ctx", "adaptive0",
				   * "lstm" or "auto" */
};

/* Writes to out_fd a complete .stz stream holding one safetensors file
 * called file_name (a relative path), made of the n tensors in t, in that
 * order, with metadata (a JSON object of string values, or NULL) as its
 * "__metadata__". The file it restores to has a compact JSON header
 * ("__metadata__" first, then the tensors in the given order) padded
 * with spaces to a multiple of 8 bytes, as the safetensors library pads,
 * and the tensors' data back to back in the same order. Calling it
 * again on the same fd appends a second file to the stream (streams
 * concatenate). STP_EDTYPE, STP_ESIZE, STP_EPATH, STP_EJSON (bad
 * metadata), STP_EUNSUPPORTED (bad model name), STP_EIO, STP_ENOMEM. */
int stp_compress_tensors(int out_fd, const char *file_name,
			 const struct stp_tensor_in *t, size_t n,
			 const char *metadata,
			 const struct stp_compress_opts *opts);

/* Writes to out_fd a .stz stream holding one file called file_name whose
 * bytes are buf[0..len): a safetensors file (checked as st-split checks
 * it) when the name ends in ".safetensors", any other file as it is. */
int stp_compress_buffer(int out_fd, const char *file_name, const void *buf,
			size_t len, const struct stp_compress_opts *opts);

#ifdef __cplusplus
}
#endif

#endif
