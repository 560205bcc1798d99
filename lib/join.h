/* Rebuilding files from frames, verified end to end, and writing them to
 * standard output, a file, a folder or an archive. */
#ifndef STP_JOIN_H
#define STP_JOIN_H

#include <stddef.h>

#include "stream.h"

struct stp_sink;
struct stp_joiner;

/* Opens the output named by target: NULL or "-" is fd 1; a name ending in
 * '/' or naming an existing directory is a folder; a name ending in .tar,
 * .tar.gz, .tgz, .tar.xz, .tar.zst, .tar.bz2 or .zip is an archive; any
 * other name is a single file. Files are written under temporary names and
 * renamed only when verified (archives when complete); without force an
 * existing output is refused (STP_EEXIST). */
int stp_sink_open(struct stp_sink **out_k, const char *target, int force);

/* A sink that checks everything and keeps nothing (stpipe verify). */
int stp_sink_open_null(struct stp_sink **out_k);

/* Removes whatever the sink has not committed, then frees it. */
void stp_sink_abort(struct stp_sink *k);

/* Completes the output after the last frame (an archive is closed and
 * renamed, a new folder is moved into place) and frees the sink. */
int stp_sink_finish(struct stp_sink *k);

/* A joiner checks the file grammar, offsets, tensor extents and FILE_END
 * totals of the frames it is given and sends file bytes to the sink. */
int stp_joiner_open(struct stp_joiner **out_j, struct stp_sink *k);
void stp_joiner_free(struct stp_joiner *j);

/* Consumes one frame. Skippable frames are ignored; a frame of another
 * type that is not a core type gives STP_EUNDECODED. */
int stp_join_frame(struct stp_joiner *j, const struct stp_frame *f);

/* An stp_out feeding the joiner, for the end of an in-process pipeline. */
struct stp_out stp_joiner_out(struct stp_joiner *j);

/* Total file bytes written so far. */
uint64_t stp_joiner_bytes(const struct stp_joiner *j);

/* After a failure: the file (and tensor) at fault, never NULL. */
const char *stp_joiner_where(const struct stp_joiner *j);

#endif
