/* st-split: safetensors files, model folders and archives in, frames out. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../lib/error.h"
#include "../lib/split.h"
#include "../lib/stream.h"
#include "cli.h"

static const char usage[] =
	"Usage: st-split [OPTION]... [INPUT]...\n"
	"Cut safetensors files, model folders or archives into an stpipe\n"
	"stream on standard output. INPUT may be a .safetensors file, a folder\n"
	"(every file below it travels), an archive libarchive reads (tar, zip,\n"
	"compressed tar), or - for standard input (the default).\n"
	"\n"
	"  -q, --quiet      no progress\n"
	"  -P, --progress   show progress even when stderr is not a terminal\n"
	"  -h, --help       show this help and exit\n"
	"  -V, --version    show the version and exit\n"
	"\n"
	"Exit status: 0 success, 1 bad input, 100 usage error, 111 system error.\n";

static void progress(void *ctx, uint64_t done, uint64_t total)
{
	(void)ctx;
	cli_progress("split", done, total);
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "progress", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	struct stp_splitter *s = NULL;
	struct stp_writer *w = NULL;
	struct stp_out out;
	int c, rc;

	cli_init("st-split");
	while ((c = getopt_long(argc, argv, "qPhV", longs, NULL)) != -1) {
		switch (c) {
		case 'q': cli_progress_mode = -1; break;
		case 'P': cli_progress_mode = 1; break;
		case 'h': fputs(usage, stdout); return cli_close_stdout();
		case 'V': return cli_version();
		default: return cli_usage("invalid option");
		}
	}
	if (isatty(1))
		return cli_usage("refusing to write a binary stream to a terminal");
	if ((rc = stp_splitter_open(&s, 0)) < 0 ||
	    (rc = stp_writer_open(&w, 1)) < 0)
		return cli_fail(rc, "");
	stp_splitter_set_progress(s, progress, NULL);
	out = stp_writer_out(w);
	if (optind == argc)
		rc = stp_split_path(s, &out, "-");
	for (int i = optind; i < argc && rc >= 0; i++)
		rc = stp_split_path(s, &out, argv[i]);
	if (rc < 0) {
		rc = cli_fail(rc, stp_splitter_where(s));
	} else if ((rc = stp_writer_end(w)) < 0) {
		rc = cli_fail(rc, "stdout");
	} else {
		cli_progress_done();
		rc = cli_close_stdout();
	}
	stp_writer_free(w);
	stp_splitter_free(s);
	return rc;
}
