/* The framed stream (formats/stream.md): reading and writing frames, and
 * building and parsing the payloads of the core frame types. */
#ifndef STP_STREAM_H
#define STP_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "crc32.h"

#define STP_STREAM_VERSION 1
#define STP_HEADER_SIZE 16
#define STP_FRAME_OVERHEAD 12           /* 8-byte frame header + CRC */
#define STP_MAX_PAYLOAD (8u << 20)
#define STP_MAX_PATH 4095
#define STP_MAX_NDIM 32
#define STP_MAX_DTYPE 31
#define STP_SIZE_UNKNOWN UINT64_MAX

enum stp_frame_type {
	STP_F_FILE = 0x01,
	STP_F_TENSOR = 0x02,
	STP_F_DATA = 0x03,
	STP_F_FILE_END = 0x04,
	STP_F_END = 0x0F,
	STP_F_PLANES = 0x10,
	STP_F_CODED = 0x30,
	STP_F_CODED_DATA = 0x31,
	STP_F_LOSSY = 0xF4,        /* formats/lossy.md */
	STP_F_PLANE_FIRST = 0x10, STP_F_PLANE_LAST = 0x1F,
	STP_F_MODEL_FIRST = 0x20, STP_F_MODEL_LAST = 0x2F,
	STP_F_CODED_FIRST = 0x30, STP_F_CODED_LAST = 0x3F,
	STP_F_SKIP_FIRST = 0xF0, STP_F_SKIP_LAST = 0xFE,
};

enum stp_file_kind { STP_KIND_SAFETENSORS = 1, STP_KIND_OTHER = 2 };

struct stp_frame {
	unsigned type;
	uint32_t len;
	const uint8_t *payload;  /* valid until the next stp_reader_next() */
	uint64_t pos;            /* input offset of the frame's first byte */
	uint32_t body_crc;       /* CRC-32 of payload[8..len), 0 if len < 8:
				  * file bytes of DATA frames, checksummed
				  * without a second pass */
	int crc_pending;         /* CRC deferred to the caller (body_crc is
				  * then unknown): see stp_frame_verify() */
	uint32_t crc;            /* the frame's stored CRC-32 */
};

struct stp_reader;
struct stp_writer;

/* Reader over file descriptor fd (not closed by the reader). Returns 0 and
 * sets *out_r, or STP_ENOMEM. */
int stp_reader_open(struct stp_reader **out_r, int fd);
void stp_reader_free(struct stp_reader *r);

/* Reads the next frame, END frames included, checking the stream header,
 * frame CRCs, lengths, reserved fields, END totals, truncation and trailing
 * garbage. Returns 1 with *out filled, 0 at the clean end of input, or a
 * negative STP_E* code; stp_reader_pos() then gives the offset at fault. */
int stp_reader_next(struct stp_reader *r, struct stp_frame *out);

/* Moves a reader over a seekable fd to a frame that starts at input
 * offset off inside a file of a segment (from an index). Frames are then
 * checked one by one as usual; the totals of that segment's END frame
 * cannot be and are not. 0 or STP_EIO. */
int stp_reader_seek(struct stp_reader *r, uint64_t off);

/* The same to a FILE frame (between files). */
int stp_reader_seek_file(struct stp_reader *r, uint64_t off);

/* With on set, frames of the plane, model and coded families (0x10..0x3F)
 * come back with crc_pending set instead of a checked CRC, so that a
 * caller transforming them on other threads checks each one there. */
void stp_reader_defer_crc(struct stp_reader *r, int on);

/* Checks the CRC of a frame whose check was deferred; sets body_crc and
 * clears crc_pending. 0 or STP_ECRC. Safe to call on any thread, on a copy
 * of the payload (the frame header is rebuilt from type and len). */
int stp_frame_verify(unsigned type, const uint8_t *payload, uint32_t len,
		     uint32_t crc, uint32_t *out_body_crc);

/* Input offset of the frame or header being read when an error occurred. */
uint64_t stp_reader_pos(const struct stp_reader *r);

/* Writer to fd (not closed by the writer). The stream header is written
 * before the first frame of each segment. Returns 0 or STP_ENOMEM. */
int stp_writer_open(struct stp_writer **out_w, int fd);
void stp_writer_free(struct stp_writer *w);

/* Writes one frame whose payload is the concatenation of iov[0..n-1]
 * (total at most STP_MAX_PAYLOAD). Returns 0 or a negative code. */
int stp_writev(struct stp_writer *w, unsigned type, const struct iovec *iov,
	       int n);

/* stp_writev for a caller that has already computed the CRC-32 of the
 * last piece (it checksums file bytes too), so they are read only once. */
int stp_writev_crc(struct stp_writer *w, unsigned type,
		   const struct iovec *iov, int n, uint32_t last_crc);

/* stp_writev with one piece. */
int stp_write(struct stp_writer *w, unsigned type, const void *payload,
	      size_t len);

/* Ends the segment with an END frame carrying the totals of what this
 * writer wrote since the segment began, and flushes. */
int stp_writer_end(struct stp_writer *w);

/* Writes out buffered bytes. */
int stp_writer_flush(struct stp_writer *w);

/* 1 if the writer has begun a segment that it has not yet ended. */
int stp_writer_in_segment(const struct stp_writer *w);

/* Where a stage sends its frames: a writer, or the next stage of an
 * in-process pipeline. frame() takes a payload in pieces like
 * stp_writev_crc (last_crc may be NULL); type STP_F_END with no payload
 * ends the segment. Returns 0 or a negative code. */
struct stp_out {
	int (*frame)(void *ctx, unsigned type, const struct iovec *iov, int n,
		     const uint32_t *last_crc);
	void *ctx;
};

/* An stp_out that writes to w (END frames end w's segment). */
struct stp_out stp_writer_out(struct stp_writer *w);

/* Sends a frame read from a stream on unchanged. */
int stp_out_copy(struct stp_out *out, const struct stp_frame *f);

/* --- payloads of the core frame types --- */

struct stp_file_info {
	unsigned kind;
	uint32_t mode;
	int64_t mtime;
	uint64_t size;            /* STP_SIZE_UNKNOWN when unknown */
	const char *path;         /* for parse: points into the payload */
	size_t pathlen;
};

struct stp_tensor_info {
	uint64_t offset;
	uint64_t nbytes;
	uint32_t index;
	unsigned ndim;
	uint64_t shape[STP_MAX_NDIM];
	char dtype[STP_MAX_DTYPE + 1];
	const char *name;         /* for parse: points into the payload */
	size_t namelen;
};

struct stp_file_end {
	uint64_t size;
	uint32_t crc;
	uint32_t tensors;
};

/* Check a relative path against the rules of the FILE frame. 0 or STP_EPATH. */
int stp_path_check(const char *path, size_t len);

/* The paths of a stream so far, which must be unique, and none a folder
 * on the way to another (formats/stream.md, FILE). */
struct stp_paths {
	char **p;
	size_t n, cap;
};

/* Adds path[0..len); STP_EPATH if it came before or one of it and an
 * earlier path is a folder of the other, STP_ENOMEM.  A linear scan:
 * streams hold files by the thousand at most. */
int stp_paths_add(struct stp_paths *s, const char *path, size_t len);
/* Forgets every path (s stays usable). */
void stp_paths_clear(struct stp_paths *s);
void stp_paths_free(struct stp_paths *s);

/* Element size of a safetensors dtype, or 0 if unknown. */
unsigned stp_dtype_size(const char *dtype);

/* Builders write the payload into buf (cap bytes) and return its length, or
 * a negative code. Parsers validate a payload completely. */
int stp_file_build(const struct stp_file_info *f, uint8_t *buf, size_t cap);
int stp_file_parse(const uint8_t *p, size_t len, struct stp_file_info *out);
int stp_tensor_build(const struct stp_tensor_info *t, uint8_t *buf, size_t cap);
int stp_tensor_parse(const uint8_t *p, size_t len,
		     struct stp_tensor_info *out);
void stp_file_end_build(const struct stp_file_end *e, uint8_t buf[16]);
int stp_file_end_parse(const uint8_t *p, size_t len, struct stp_file_end *out);

/* Little-endian helpers. */
static inline void stp_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void stp_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void stp_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t stp_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t stp_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t stp_get64(const uint8_t *p)
{
	return (uint64_t)stp_get32(p) | (uint64_t)stp_get32(p + 4) << 32;
}

#endif
