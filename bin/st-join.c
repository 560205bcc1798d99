/* st-join: frames in, safetensors file, folder or archive out. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../lib/error.h"
#include "../lib/join.h"
#include "../lib/stream.h"
#include "cli.h"

static const char usage[] =
	"Usage: st-join [OPTION]...\n"
	"Rebuild the files of the stpipe stream on standard input, verified\n"
	"byte for byte against the checksums the stream carries.\n"
	"\n"
	"  -o, --output=OUT  write to OUT: a file, a folder (OUT/ or an existing\n"
	"                    folder), or an archive (.tar, .tar.gz, .tgz,\n"
	"                    .tar.xz, .tar.zst, .tar.bz2, .zip); default stdout,\n"
	"                    which takes a stream of exactly one file\n"
	"  -f, --force       overwrite existing output\n"
	"  -q, --quiet       no progress\n"
	"  -P, --progress    show progress even when stderr is not a terminal\n"
	"  -h, --help        show this help and exit\n"
	"  -V, --version     show the version and exit\n"
	"\n"
	"Output goes to a temporary name and is renamed only when complete and\n"
	"verified; on any error nothing is left under the output name.\n"
	"\n"
	"Exit status: 0 success, 1 bad input, 100 usage error (or output exists\n"
	"without -f), 111 system error.\n";

/* Reads every frame into the joiner; returns 0 or a code, with where set. */
static int join_all(struct stp_reader *r, struct stp_joiner *j,
		    char *where, size_t cap)
{
	struct stp_frame f;
	int rc;

	while ((rc = stp_reader_next(r, &f)) > 0) {
		rc = stp_join_frame(j, &f);
		if (rc < 0) {
			const char *at = stp_joiner_where(j);
			snprintf(where, cap, "%s%sframe at offset %" PRIu64,
				 *at ? at : "stdin", ": ", f.pos);
			return rc;
		}
		cli_progress("join", stp_joiner_bytes(j), 0);
	}
	if (rc < 0)
		snprintf(where, cap, "stdin: offset %" PRIu64,
			 stp_reader_pos(r));
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'f' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "progress", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	const char *out = NULL;
	struct stp_reader *r = NULL;
	struct stp_joiner *j = NULL;
	struct stp_sink *k = NULL;
	char where[8192] = "";
	int c, rc, force = 0;

	cli_init("st-join");
	while ((c = getopt_long(argc, argv, "o:fqPhV", longs, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'f': force = 1; break;
		case 'q': cli_progress_mode = -1; break;
		case 'P': cli_progress_mode = 1; break;
		case 'h': fputs(usage, stdout); return cli_close_stdout();
		case 'V': return cli_version();
		default: return cli_usage("invalid option");
		}
	}
	if (optind < argc)
		return cli_usage("unexpected argument '%s'", argv[optind]);
	if ((rc = stp_sink_open(&k, out, force)) < 0) {
		stp_sink_abort(k);
		return cli_fail(rc, out);
	}
	if ((rc = stp_reader_open(&r, 0)) < 0 ||
	    (rc = stp_joiner_open(&j, k)) < 0) {
		stp_sink_abort(k);
		return cli_fail(rc, "");
	}
	rc = join_all(r, j, where, sizeof where);
	if (rc < 0) {
		stp_sink_abort(k);
		rc = cli_fail(rc, where);
	} else if ((rc = stp_sink_finish(k)) < 0) {
		rc = cli_fail(rc, out ? out : "stdout");
	} else {
		cli_progress_done();
		rc = cli_close_stdout();
	}
	stp_joiner_free(j);
	stp_reader_free(r);
	return rc;
}
