/* rans-enc: the rANS stage (formats/rans.md, formats/planes.md). */
#include <getopt.h>
#include <stdio.h>

#include "../lib/codec.h"
#include "cli.h"

static const char usage[] =
	"Usage: rans-enc [-T N] < STREAM > STREAM\n"
	"Entropy-code the planes of the stream on standard input with rANS\n"
	"(formats/rans.md): each plane of each PLANES frame becomes a coded body\n"
	"with its own order-0 table, or is stored where coding does not pay.\n"
	"An index of files and tensors is written before each END frame.\n"
	"Every other frame passes through unchanged.\n"
	"\n"
	"  -m, --model=KIND   order0 (default: a static table per plane), ctx\n"
	"                     (MODEL frames, counts in row and column\n"
	"                     contexts) or adaptive0 (MODEL frames, counts)\n"
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
		{ "model", required_argument, NULL, 'm' },
		{ "threads", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	struct stp_stage st;
	int c, threads = 1, model_kind = 0, rc;

	cli_init("rans-enc");
	while ((c = getopt_long(argc, argv, "m:T:hV", longs, NULL)) != -1) {
		switch (c) {
		case 'm':
			if ((model_kind = cli_model(optarg)) < 0)
				return EXIT_USAGE;
			break;
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
	if ((rc = stp_codec_open(&st, STP_OP_CODE, (unsigned)threads,
				 (unsigned)model_kind)) < 0)
		return cli_fail(rc, "");
	return cli_run_stage(&st);
}
