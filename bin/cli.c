#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <inttypes.h>

#include "../lib/crc32.h"
#include "../lib/io.h"
#include "../lib/error.h"
#include "../lib/model.h"
#include "../lib/planes.h"
#include "../lib/rans.h"
#include "../lib/stage.h"
#include "../lib/stream.h"
#include "../lib/version.h"
#include "cli.h"

static const char *prog = "stpipe";
static int progress_shown;
int cli_progress_mode;

/* A signal that ends the program takes its unfinished output files with
 * it, then ends it as the signal would have. */
static void on_fatal_signal(int sig)
{
	stp_temp_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

void cli_init(const char *name)
{
	prog = name;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_fatal_signal);
	signal(SIGTERM, on_fatal_signal);
	signal(SIGHUP, on_fatal_signal);
}

int cli_fail(int code, const char *where)
{
	int status = stp_error_exit(code);
	int err = errno;

	cli_progress_done();
	if (status == EXIT_SYSTEM && err && code == STP_EIO)
		fprintf(stderr, "%s: %s%s%s\n", prog, where ? where : "",
			where && *where ? ": " : "", strerror(err));
	else
		fprintf(stderr, "%s: %s%s%s\n", prog, where ? where : "",
			where && *where ? ": " : "", stp_strerror(code));
	return status;
}

int cli_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", prog);
	return EXIT_USAGE;
}

int cli_version(void)
{
	printf("%s (stpipe) %s\n", prog, STP_VERSION_STRING);
	return cli_close_stdout();
}

int cli_close_stdout(void)
{
	if (fflush(stdout) != 0 || fclose(stdout) != 0) {
		fprintf(stderr, "%s: stdout: %s\n", prog, strerror(errno));
		return EXIT_SYSTEM;
	}
	return 0;
}

void cli_progress(const char *what, uint64_t done, uint64_t total)
{
	static struct timespec last;
	struct timespec now;

	if (cli_progress_mode < 0 || (cli_progress_mode == 0 && !isatty(2)))
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (progress_shown && now.tv_sec * 1000 + now.tv_nsec / 1000000 -
				      (last.tv_sec * 1000 +
				       last.tv_nsec / 1000000) < 200)
		return;
	last = now;
	progress_shown = 1;
	if (total && total != UINT64_MAX)
		fprintf(stderr, "\r%s: %s %.1f / %.1f MiB (%3.0f%%) ", prog, what,
			done / 1048576.0, total / 1048576.0,
			100.0 * (double)done / (double)total);
	else
		fprintf(stderr, "\r%s: %s %.1f MiB ", prog, what,
			done / 1048576.0);
}

void cli_progress_done(void)
{
	if (progress_shown)
		fputs("\r\033[K", stderr);
	progress_shown = 0;
}

int cli_run_stage(struct stp_stage *st)
{
	struct stp_reader *r = NULL;
	struct stp_writer *w = NULL;
	struct stp_out out;
	char where[8192];
	uint64_t pos = 0;
	int rc, in_stage = 0;

	if (isatty(1)) {
		st->free(st->self);
		return cli_usage("refusing to write a binary stream to a terminal");
	}
	if ((rc = stp_reader_open(&r, 0)) < 0 ||
	    (rc = stp_writer_open(&w, 1)) < 0) {
		rc = cli_fail(rc, "");
		goto out;
	}
	out = stp_writer_out(w);
	rc = stp_run_stage(r, st, &out, &pos, &in_stage);
	if (rc == STP_EIO && in_stage) {
		rc = cli_fail(rc, "stdout");
	} else if (rc < 0 && in_stage) {
		const char *at = st->where(st->self, &pos);
		snprintf(where, sizeof where, "%s%sframe at offset %" PRIu64,
			 at, *at ? ": " : "", pos);
		rc = cli_fail(rc, where);
	} else if (rc < 0) {
		snprintf(where, sizeof where, "stdin: offset %" PRIu64, pos);
		rc = cli_fail(rc, where);
	} else if ((rc = stp_writer_flush(w)) < 0) {
		rc = cli_fail(rc, "stdout");
	} else {
		rc = cli_close_stdout();
	}
out:
	stp_writer_free(w);
	stp_reader_free(r);
	st->free(st->self);
	return rc;
}

int cli_threads(const char *arg)
{
	char *end;
	long n = strtol(arg, &end, 10);

	if (*arg == '\0' || *end != '\0' || n < 0 || n > 64) {
		cli_usage("-T takes a thread count from 0 to 64, not '%s'", arg);
		return -1;
	}
	if (n == 0) {
		n = sysconf(_SC_NPROCESSORS_ONLN);
		if (n < 1)
			n = 1;
		if (n > 64)
			n = 64;
	}
	return (int)n;
}

int cli_check_impl(void)
{
	if (strcmp(stp_rans_impl_name(), "none") == 0 ||
	    strcmp(stp_planes_impl_name(), "none") == 0 ||
	    strcmp(stp_crc32_impl_name(), "none") == 0)
		return cli_usage("STP_IMPL=%s: not a variant this CPU runs "
				 "(scalar, avx2, avx512)", getenv("STP_IMPL"));
	return 0;
}

int cli_model_fitted;

int cli_model(const char *arg)
{
	if (strcmp(arg, "order0") == 0)
		return 0;
	if (strcmp(arg, "adaptive0") == 0)
		return STP_MODEL_ADAPTIVE0;
	if (strcmp(arg, "ctx") == 0)
		return STP_MODEL_CTX;
	if (cli_model_fitted && strcmp(arg, "lstm") == 0)
		return STP_MODEL_LSTM;
	if (cli_model_fitted && strcmp(arg, "auto") == 0)
		return STP_MODEL_AUTO;
	cli_usage("unknown model kind '%s' (known: order0, ctx, adaptive0%s)",
		  arg, cli_model_fitted ? ", lstm, auto" : "");
	return -1;
}

const char *const cli_lossy_exclude[] = { "*embed*", "*lm_head*", "*wte*",
					  "*wpe*" };
const size_t cli_nlossy_exclude = sizeof cli_lossy_exclude /
				  sizeof cli_lossy_exclude[0];

void cli_args_text(int argc, char **argv, char *out, size_t cap)
{
	size_t n = 0;

	out[0] = '\0';
	for (int i = 1; i < argc && n < cap; i++)
		n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? " " : "",
				      argv[i]);
}
