/* What the stpipe front end does: the usual pipelines run in one process
 * (byte-identical to the separate programs), and reading .stz files:
 * statistics, random access to one tensor through the index. */
#ifndef STP_FRONTEND_H
#define STP_FRONTEND_H

#include <stdint.h>

#include "join.h"
#include "split.h"

struct stp_stage;

/* Where a failure happened: file, tensor, stream offset. */
struct stp_report {
	char where[8192];
	uint64_t file_bytes;        /* file bytes read (compress) or written */
};

/* st-split PATHS | [lossy |] fp8-exp | rans-enc [-m KIND], to out_fd;
 * model_kind as for stp_codec_open (0: static order-0 tables); lossy (a
 * lossy filter's stage, or NULL) is freed by the call. */
int stp_compress(const char *const *paths, int npaths, int out_fd,
		 unsigned threads, unsigned model_kind, struct stp_stage *lossy,
		 stp_progress_fn *progress, void *ctx, struct stp_report *rep);

/* The pipeline of stp_compress, to be fed by the caller: frames from a
 * splitter go to stp_cpipe_out(), then stp_cpipe_end() writes the END
 * frame. model_kind as for stp_compress. 0, STP_ENOMEM. */
struct stp_cpipe;
int stp_cpipe_open(struct stp_cpipe **out_p, int out_fd, unsigned threads,
		   unsigned model_kind);
struct stp_splitter *stp_cpipe_splitter(struct stp_cpipe *p);
/* Puts stage st (which p then owns) between the splitter and the codec.
 * 0 or STP_ENOMEM. */
int stp_cpipe_lossy(struct stp_cpipe *p, struct stp_stage *st);
struct stp_out *stp_cpipe_out(struct stp_cpipe *p);
int stp_cpipe_end(struct stp_cpipe *p);
/* After failure rc: the input, tensor or "output" at fault. */
const char *stp_cpipe_where(struct stp_cpipe *p, int rc);
void stp_cpipe_free(struct stp_cpipe *p);

/* rans-dec | fp8-exp -d | st-join, from in_fd into sink k (which the
 * caller finishes or aborts). */
int stp_decompress(int in_fd, struct stp_sink *k, unsigned threads,
		   stp_progress_fn *progress, void *ctx,
		   struct stp_report *rep);

/* Statistics of one tensor of a coded stream. */
struct stp_tensor_stat {
	const char *file;
	const char *name;
	const char *dtype;
	unsigned ndim;
	const uint64_t *shape;
	uint64_t nbytes;          /* original bytes */
	uint64_t coded;           /* stream bytes of its frames */
	uint64_t nexp;            /* values in its exponent plane (0: none) */
	uint64_t exp_coded;       /* bytes of its coded exponent bodies (of a
				   * joint FP8 body, its bytes less the raw
				   * size of the sign/mantissa bits), and
				   * of the MODEL frames rans-enc put before
				   * its planes (a model counts once, in the
				   * first tensor that uses it) */
	double exp_h0;            /* order-0 entropy of the whole plane, bits */
	double exp_bound;         /* sum over chunks of n*H0(chunk), bits */
};

/* Totals of a coded stream beside its tensors. */
struct stp_stream_stat {
	uint64_t files;
	uint64_t tensors;
	uint64_t orig;            /* bytes of all files */
	uint64_t coded;           /* bytes of the stream */
	uint64_t other_orig;      /* file bytes outside float planes */
	double bound;             /* order-0 bound of the whole stream, bits:
				   * exponents at n*H0 per chunk, every other
				   * byte of the files as it is */
};

typedef int stp_tensor_fn(void *ctx, const struct stp_tensor_stat *t);
/* A LOSSY frame's JSON (formats/lossy.md), not NUL-terminated. */
typedef int stp_note_fn(void *ctx, const char *file, const uint8_t *json,
			size_t len);

/* Reads a whole stream from fd, calling fn once per tensor and note (if
 * not NULL) once per LOSSY frame, and fills *out. Checks every frame and
 * decodes every exponent plane (to measure its entropy). */
int stp_scan(int fd, stp_tensor_fn *fn, stp_note_fn *note, void *ctx,
	     struct stp_stream_stat *out, struct stp_report *rep);

/* Writes the bytes of tensor name (in file path, or the first file holding
 * it when path is NULL) of the coded stream on fd to out_fd, reading only
 * that tensor's frames when the stream ends with an index (fd seekable),
 * or scanning otherwise. STP_ERANGE if there is no such tensor. */
int stp_extract(int fd, const char *path, const char *name, int out_fd,
		struct stp_report *rep);

/* ---- helpers of random access, for api.c ---- */


/* Reads the whole frame at input offset off of fd into buf (cap bytes),
 * checking its CRC; returns its type and sets *len, or a negative code. */
int stp_read_frame_at(int fd, uint64_t off, uint8_t *buf, size_t cap,
		      uint32_t *len);

/* Calls fn for each entry of the index of a single-segment stream in the
 * regular file fd, in order: kind 1 FILE, 2 TENSOR, 3 MODEL (formats/
 * planes.md), with the entry's name and its frame's input offset (below
 * the file size). fn returns 0 to go on, anything else to stop the walk
 * with that value. 0 at the end; STP_EUNSUPPORTED when there is no
 * usable index (none, several segments, or a malformed one, which may
 * stop the walk midway); STP_ENOMEM. */
typedef int stp_index_fn(void *ctx, unsigned kind, const char *name,
			 size_t namelen, uint64_t off);
int stp_index_walk(int fd, stp_index_fn *fn, void *ctx);

/* Hands the MODEL frames at input offsets off[0..n) of fd to a decoding
 * stage, as if read in order, reading each into buf (STP_MAX_PAYLOAD + 4
 * bytes). 0 or a negative code. */
int stp_feed_models(int fd, const uint64_t *off, size_t n,
		    struct stp_stage *st, struct stp_out *out, uint8_t *buf);

#endif
