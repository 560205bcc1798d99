#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/error.h"
#include "../lib/version.h"
#include "cli.h"

static const char *prog = "stpipe";
static int progress_shown;
int cli_progress_mode;

void cli_init(const char *name)
{
	prog = name;
	signal(SIGPIPE, SIG_IGN);
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
