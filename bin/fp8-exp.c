/* fp8-exp: float tensors to exponent and sign/mantissa planes, and back. */
#include <getopt.h>
#include <stdio.h>

#include "../lib/codec.h"
#include "cli.h"

static const char usage[] =
	"Usage: fp8-exp [-d] [-T N] < STREAM > STREAM\n"
	"Split the values of float tensors (BF16, F16, F32, F64, F8_E4M3,\n"
	"F8_E5M2) into an exponent plane and sign/mantissa planes, or with -d\n"
	"merge them back. Every other frame passes through unchanged.\n"
	"\n"
	"  -d, --decode       merge planes back into tensor bytes\n"
	"  -T, --threads=N    use N threads (0: one per CPU; default 1);\n"
	"                     the output is the same for every N\n"
	"  -h, --help         show this help and exit\n"
	"  -V, --version      show the version and exit\n"
	"\n"
	"Exit status: 0 success, 1 bad input, 100 usage error, 111 system error.\n";

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "decode", no_argument, NULL, 'd' },
		{ "threads", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	struct stp_stage st;
	int c, decode = 0, threads = 1, rc;

	cli_init("fp8-exp");
	while ((c = getopt_long(argc, argv, "dT:hV", longs, NULL)) != -1) {
		switch (c) {
		case 'd': decode = 1; break;
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
	rc = stp_codec_open(&st, decode ? STP_OP_MERGE : STP_OP_SPLIT,
			    (unsigned)threads, 0);
	if (rc < 0)
		return cli_fail(rc, "");
	return cli_run_stage(&st);
}
