/* The command line shared by int8-quant and fp8-quant. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/error.h"
#include "../lib/lossy.h"
#include "cli.h"
#include "quantcli.h"

static void usage(const char *name, int kind)
{
	printf("Usage: %s [-d] [-p PATTERN]... [-x PATTERN]... [options] "
	       "< STREAM > STREAM\n", name);
	if (kind == STP_QUANT_INT8)
		fputs("Quantize 2-D float tensors (BF16, F16, F32) to "
		      "symmetric INT8 with one F32\n"
		      "scale per output channel (row), stored beside each "
		      "weight as NAME_scale;\n"
		      "with -d, dequantize them back.\n", stdout);
	else
		fputs("Quantize 2-D float tensors (BF16, F16, F32) to "
		      "F8_E4M3 with 128x128 block\n"
		      "scales stored as NAME_scale_inv (the DeepSeek-V3 "
		      "layout); with -d,\n"
		      "dequantize them back (DeepSeek-V3 checkpoints "
		      "included).\n", stdout);
	fputs("LOSSY: the values change. Each file records what was done in "
	      "its header\n"
	      "(__metadata__ \"stpipe.lossy\") and in the stream (LOSSY "
	      "frames, stpipe info).\n"
	      "Run before fp8-exp; other files and frames pass through.\n"
	      "\n"
	      "  -d, --decode        dequantize\n"
	      "  -p, --pattern=GLOB  take tensors whose name matches GLOB "
	      "(repeatable)\n"
	      "  -x, --exclude=GLOB  leave tensors whose name matches GLOB "
	      "(repeatable)\n"
	      "                      (neither given: every 2-D tensor but "
	      "*embed*, *lm_head*,\n"
	      "                      *wte*, *wpe*)\n"
	      "      --min-dim=N     take only tensors with both dimensions "
	      ">= N (default 1)\n"
	      "      --dtype=TYPE    -d: dtype of tensors the record does "
	      "not name\n"
	      "                      (BF16, F16 or F32; default BF16)\n"
	      "  -h, --help          show this help and exit\n"
	      "  -V, --version       show the version and exit\n"
	      "\n"
	      "Exit status: 0 success, 1 bad input, 100 usage error, 111 "
	      "system error.\n", stdout);
}

static int run(int argc, char **argv, const char *name, int kind,
	       const char **inc, const char **exc)
{
	static const struct option longs[] = {
		{ "decode", no_argument, NULL, 'd' },
		{ "pattern", required_argument, NULL, 'p' },
		{ "exclude", required_argument, NULL, 'x' },
		{ "min-dim", required_argument, NULL, 'm' },
		{ "dtype", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	struct stp_quant_opts o = { .kind = (enum stp_quant_kind)kind };
	char options[4096] = "", *end;
	struct stp_stage st;
	int c, rc;

	while ((c = getopt_long(argc, argv, "dp:x:hV", longs, NULL)) != -1) {
		switch (c) {
		case 'd': o.decode = 1; break;
		case 'p': inc[o.sel.ninclude++] = optarg; break;
		case 'x': exc[o.sel.nexclude++] = optarg; break;
		case 'm':
			o.sel.min_dim = strtoull(optarg, &end, 10);
			if (*end || !*optarg || *optarg == '-')
				return cli_usage("--min-dim: not a number: "
						 "'%s'", optarg);
			break;
		case 't': o.dtype = optarg; break;
		case 'h': usage(name, kind); return cli_close_stdout();
		case 'V': return cli_version();
		default: return cli_usage("invalid option");
		}
	}
	if (optind < argc)
		return cli_usage("unexpected argument '%s'", argv[optind]);
	if (o.dtype && strcmp(o.dtype, "BF16") && strcmp(o.dtype, "F16") &&
	    strcmp(o.dtype, "F32"))
		return cli_usage("--dtype: BF16, F16 or F32, not '%s'", o.dtype);
	if (!o.sel.ninclude && !o.sel.nexclude) {
		o.sel.exclude = cli_lossy_exclude;
		o.sel.nexclude = cli_nlossy_exclude;
	} else {
		o.sel.exclude = exc;
	}
	o.sel.include = inc;
	cli_args_text(argc, argv, options, sizeof options);
	o.options = options;
	if ((rc = stp_quant_open(&st, &o)) < 0)
		return cli_fail(rc, "");
	return cli_run_stage(&st);
}

int quant_main(int argc, char **argv, const char *name, int kind)
{
	const char **inc = calloc((size_t)argc, sizeof *inc);
	const char **exc = calloc((size_t)argc, sizeof *exc);
	int rc;

	cli_init(name);
	rc = inc && exc ? run(argc, argv, name, kind, inc, exc) :
			  cli_fail(STP_ENOMEM, "");
	free(inc);
	free(exc);
	return rc;
}
