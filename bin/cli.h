/* What every stpipe program does the same way: messages, exit codes,
 * --version, closing stdout. Exit codes: 0 success, 1 bad input,
 * 100 usage, 111 system or I/O failure. */
#ifndef STP_CLI_H
#define STP_CLI_H

#include <stddef.h>
#include <stdint.h>

enum { EXIT_BAD_INPUT = 1, EXIT_USAGE = 100, EXIT_SYSTEM = 111 };

/* Names the program in messages and makes a closed pipe an EPIPE error
 * rather than a silent death by SIGPIPE. */
void cli_init(const char *name);

/* Prints "NAME: WHERE: MESSAGE" for an STP_E* code (with the system's
 * reason for system failures) and returns the exit status for it. */
int cli_fail(int code, const char *where);

/* Prints "NAME: MESSAGE" and a hint to --help; returns EXIT_USAGE. */
__attribute__((format(printf, 1, 2)))
int cli_usage(const char *fmt, ...);

/* Prints "NAME (stpipe) VERSION"; returns 0. */
int cli_version(void);

/* Flushes and closes stdout; 0 or EXIT_SYSTEM after a message. */
int cli_close_stdout(void);

/* A progress line on stderr, redrawn in place, when enabled. */
void cli_progress(const char *what, uint64_t done, uint64_t total);
void cli_progress_done(void);

struct stp_stage;

/* Runs a filter stage from stdin to stdout, reporting any failure as
 * "NAME: where: what" (the stage's tensor, or the stream offset), frees the
 * stage and returns the exit status. */
int cli_run_stage(struct stp_stage *st);

/* 0 if every coder variant STP_IMPL asks for runs on this CPU; else a
 * message and EXIT_USAGE. */
int cli_check_impl(void);

/* Parses a -m argument: 0 for "order0" (static tables), else a model
 * kind of lib/model.h; -1 after a usage message.  "lstm" and "auto"
 * (STP_MODEL_AUTO) are known where cli_model_fitted is set: the front
 * end, which runs lstm-model for them. */
int cli_model(const char *arg);
extern int cli_model_fitted;

/* Parses a -T argument: a thread count from 1 to 64, or 0 for one per
 * online CPU. Returns the count, or -1 after a usage message. */
int cli_threads(const char *arg);

/* The tensors a lossy filter leaves without -p or -x: embeddings and
 * the output head. */
extern const char *const cli_lossy_exclude[];
extern const size_t cli_nlossy_exclude;

/* argv[1..argc) joined by spaces into out (cap bytes, cut if longer):
 * the options a lossy filter records. */
void cli_args_text(int argc, char **argv, char *out, size_t cap);

/* -1 quiet, 0 default (progress only if stderr is a terminal), 1 forced. */
extern int cli_progress_mode;

#endif
