/* rans-dec: the rANS stage (formats/rans.md, formats/planes.md). */
#include <getopt.h>
#include <stdio.h>

#include "../lib/codec.h"
#include "cli.h"

static const char usage[] =
	"Usage: rans-dec [-T N] < STREAM > STREAM\n"
	"Decode the CODED frames of the stream on standard input back into\n"
	"PLANES frames, checking every table, state and length. Every other\n"
	"frame passes through unchanged; the index frames are dropped.\n"
	"\n"
	"  -T, --threads=N    use N threads (0: one per CPU; default 1);\n"
	"                     the output is the same for every N\n"
	"  -h, --help         show this help and exit\n"
	"  -V, --version      show the version and exit\n"
	"\n"
	"STP_IMPL=scalar|avx2|avx512 forces one coder variant; all give the\n"
	"same bytes.\n"
	"\n"
	"Exit status: 0 success, 1 bad input, 100 usage error, 111 system error.\n";

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "threads", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	struct stp_stage st;
	int c, threads = 1, rc;

	cli_init("rans-dec");
	while ((c = getopt_long(argc, argv, "T:hV", longs, NULL)) != -1) {
		switch (c) {
		case 'T':
			if ((threads = cli_threads(optarg)) < 0)
				return EXIT_USAGE;
			break;
		case 'h': fputs(usage, stdout); return cli_close_stdout();
		case 'V': return cli_version();
		default: return cli_usage("invalid option");
		}
	}
	if (optind < argc)
		return cli_usage("unexpected argument '%s'", argv[optind]);
	if (cli_check_impl())
		return EXIT_USAGE;
	if ((rc = stp_codec_open(&st, STP_OP_DECODE, (unsigned)threads, 0)) < 0)
		return cli_fail(rc, "");
	return cli_run_stage(&st);
}
