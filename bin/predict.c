/* predict: integer tensors to residuals against their neighbours, and
 * back (formats/predict.md). */
#include <getopt.h>
#include <stdio.h>

#include "../lib/predict.h"
#include "cli.h"

static const char usage[] =
	"Usage: predict [-d] [-a] < STREAM > STREAM\n"
	"Replace the DATA frames of I8 and U8 tensors of rank 2 or more by\n"
	"RESIDUAL frames: each value less its prediction from its left, upper\n"
	"and upper-left neighbours, with the predictor of each run of 4096\n"
	"values chosen by cost, where that makes the frame cheaper to code.\n"
	"With -d restore the exact bytes. Every other frame passes through\n"
	"unchanged.\n"
	"\n"
	"  -d, --decode       turn RESIDUAL frames back into DATA\n"
	"  -a, --all          predict every such frame, even where it does\n"
	"                     not pay\n"
	"  -h, --help         show this help and exit\n"
	"  -V, --version      show the version and exit\n"
	"\n"
	"Exit status: 0 success, 1 bad input, 100 usage error, 111 system error.\n";

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "decode", no_argument, NULL, 'd' },
		{ "all", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	struct stp_stage st;
	int c, decode = 0, all = 0, rc;

	cli_init("predict");
	while ((c = getopt_long(argc, argv, "dahV", longs, NULL)) != -1) {
		switch (c) {
		case 'd': decode = 1; break;
		case 'a': all = 1; break;
		case 'h': fputs(usage, stdout); return cli_close_stdout();
		case 'V': return cli_version();
		default: return cli_usage("invalid option");
		}
	}
	if (optind < argc)
		return cli_usage("unexpected argument '%s'", argv[optind]);
	if (decode && all)
		return cli_usage("-a has no effect with -d");
	if (cli_check_impl())
		return EXIT_USAGE;
	if ((rc = stp_predict_open(&st, decode, all)) < 0)
		return cli_fail(rc, "");
	return cli_run_stage(&st);
}
