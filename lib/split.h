/* Cutting inputs into frames: safetensors files, other files, folders and
 * archives (formats/stream.md, "Files"). */
#ifndef STP_SPLIT_H
#define STP_SPLIT_H

#include <stddef.h>
#include <stdint.h>

#include "stream.h"

/* A sequential byte source: read() returns the count read (less than n
 * only at the end of the input) or a negative STP_E* code. */
struct stp_source {
	long (*read)(void *ctx, void *buf, size_t n);
	void *ctx;
};

/* Called now and then with the bytes read so far from the current input. */
typedef void stp_progress_fn(void *ctx, uint64_t done, uint64_t total);

struct stp_splitter;

/* A splitter reuses its buffers across files; chunk is the target DATA
 * payload size for tensor data (0: 1 MiB). 0 or STP_ENOMEM. */
int stp_splitter_open(struct stp_splitter **out_s, size_t chunk);
void stp_splitter_free(struct stp_splitter *s);

void stp_splitter_set_progress(struct stp_splitter *s, stp_progress_fn *fn,
			       void *ctx);

/* Sends FILE, the file's frames and FILE_END for one file read from src
 * to w (a writer's stp_out, or the next stage).
 * info->kind says whether to cut it as safetensors. Returns 0 or a
 * negative code; stp_splitter_where() then names the place at fault. */
int stp_split_file(struct stp_splitter *s, struct stp_out *w,
		   const struct stp_file_info *info, struct stp_source *src);

/* Splits what path names: a safetensors file, a folder (every regular file
 * below it, in byte order of their relative paths, *.safetensors cut as
 * safetensors) or an archive that libarchive reads; "-" is standard input
 * (safetensors or archive). Returns 0 or a negative code. */
int stp_split_path(struct stp_splitter *s, struct stp_out *w,
		   const char *path);

/* Bytes read from all inputs so far. */
uint64_t stp_splitter_bytes(const struct stp_splitter *s);

/* After a failure: "FILE", "FILE: tensor 'NAME'" or similar, never NULL. */
const char *stp_splitter_where(const struct stp_splitter *s);

#endif
