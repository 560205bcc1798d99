/* lstm-model: fits exponent models and attaches them to the stream
 * (formats/model.md, "Models fitted by lstm-model"). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/error.h"
#include "../lib/lstm_stage.h"
#include "cli.h"

static const char usage[] =
	"Usage: lstm-model [OPTION]... < STREAM > STREAM\n"
	"Fit an exponent model for each layer of the float weights of the stream\n"
	"on standard input (2-D tensors; their PLANES frames, as fp8-exp writes\n"
	"them) and put it into the stream ahead of the planes it serves, for\n"
	"rans-enc to code them with where it pays.  A model goes in only when its\n"
	"estimated bodies and its own bytes beat order-0 coding.  Every other\n"
	"frame passes unchanged.\n"
	"\n"
	"  -k, --kind=KIND        lstm (default: a two-layer LSTM along rows) or\n"
	"                         ctx (row and column context counts)\n"
	"  -p, --pattern=GLOB     only tensors whose name matches (fnmatch(3))\n"
	"  -n, --min-values=N     only tensors of at least N values (65536)\n"
	"  -g, --group=HOW        one model a layer (layer, the default), a pair\n"
	"                         of layers (pair) or a tensor (tensor)\n"
	"  -H, --hidden=N         LSTM units a layer, 1..64 (16)\n"
	"  -L, --layers=N         LSTM layers, 1 or 2 (2)\n"
	"  -E, --embed=N          embedding of the previous exponent, 1..16 (8)\n"
	"      --level-embed=N    embedding of the row and column level, 0..16 (8)\n"
	"  -t, --train=N          exponents a model trains on (1048576)\n"
	"      --epochs=N         passes over them (2)\n"
	"  -O, --online=SHIFT     online variant: the output biases adapt as the\n"
	"                         planes are coded, at rate 2^-SHIFT (1..15;\n"
	"                         0, the default: a static model)\n"
	"  -a, --against=KIND     a model goes in when it beats what rans-enc\n"
	"                         codes with otherwise: order0 (default) or\n"
	"                         ctx (rans-enc -m ctx: the better of the two)\n"
	"  -b, --buffer=MIB       frames held while a layer is fitted (256)\n"
	"  -T, --threads=N        accepted; fitting uses one thread\n"
	"      --gpu              fit on the GPU (not in this build: exit 111)\n"
	"  -h, --help             show this help and exit\n"
	"  -V, --version          show the version and exit\n"
	"\n"
	"The same input gives the same output on every machine.\n"
	"\n"
	"Exit status: 0 success, 1 bad input, 100 usage error, 111 system error.\n";

/* A number from lo to hi, or -1 after a usage message. */
static long number(const char *opt, const char *arg, long lo, long hi)
{
	char *end;
	long n = strtol(arg, &end, 10);

	if (*arg == '\0' || *end != '\0' || n < lo || n > hi) {
		cli_usage("%s takes a number from %ld to %ld, not '%s'", opt, lo,
			  hi, arg);
		return -1;
	}
	return n;
}

int main(int argc, char **argv)
{
	enum { OPT_EPOCHS = 256, OPT_LEVEL, OPT_GPU };
	static const struct option longs[] = {
		{ "kind", required_argument, NULL, 'k' },
		{ "pattern", required_argument, NULL, 'p' },
		{ "min-values", required_argument, NULL, 'n' },
		{ "group", required_argument, NULL, 'g' },
		{ "hidden", required_argument, NULL, 'H' },
		{ "layers", required_argument, NULL, 'L' },
		{ "embed", required_argument, NULL, 'E' },
		{ "level-embed", required_argument, NULL, OPT_LEVEL },
		{ "train", required_argument, NULL, 't' },
		{ "epochs", required_argument, NULL, OPT_EPOCHS },
		{ "online", required_argument, NULL, 'O' },
		{ "buffer", required_argument, NULL, 'b' },
		{ "against", required_argument, NULL, 'a' },
		{ "threads", required_argument, NULL, 'T' },
		{ "gpu", no_argument, NULL, OPT_GPU },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	struct stp_lstm_stage_opts o = {
		.min_values = 65536, .group = STP_LSTM_BY_LAYER,
		.fit = STP_LSTM_OPTS_DEFAULT, .buffer = (size_t)256 << 20,
		.kind = STP_MODEL_LSTM,
	};
	struct stp_stage st;
	long v;
	int c, rc, gpu = 0;

	cli_init("lstm-model");
	while ((c = getopt_long(argc, argv, "k:p:n:g:H:L:E:t:O:a:b:T:hV", longs,
				NULL)) != -1) {
		v = 0;
		switch (c) {
		case 'k':
			if (!strcmp(optarg, "lstm"))
				o.kind = STP_MODEL_LSTM;
			else if (!strcmp(optarg, "ctx"))
				o.kind = STP_MODEL_CTX;
			else
				return cli_usage("unknown kind '%s' (known: lstm, ctx)",
						 optarg);
			break;
		case 'p': o.pattern = optarg; break;
		case 'n':
			if ((v = number("-n", optarg, 1, 1L << 40)) < 0)
				return EXIT_USAGE;
			o.min_values = (uint64_t)v;
			break;
		case 'g':
			if (!strcmp(optarg, "layer"))
				o.group = STP_LSTM_BY_LAYER;
			else if (!strcmp(optarg, "pair"))
				o.group = STP_LSTM_BY_PAIR;
			else if (!strcmp(optarg, "tensor"))
				o.group = STP_LSTM_BY_TENSOR;
			else
				return cli_usage("unknown group '%s' (known: layer, pair, tensor)",
						 optarg);
			break;
		case 'H':
			if ((v = number("-H", optarg, 1, LSTM_MAX_HIDDEN)) < 0)
				return EXIT_USAGE;
			o.fit.hidden = (unsigned)v;
			break;
		case 'L':
			if ((v = number("-L", optarg, 1, LSTM_MAX_LAYERS)) < 0)
				return EXIT_USAGE;
			o.fit.layers = (unsigned)v;
			break;
		case 'E':
			if ((v = number("-E", optarg, 1, LSTM_MAX_EMBED)) < 0)
				return EXIT_USAGE;
			o.fit.embed = (unsigned)v;
			break;
		case OPT_LEVEL:
			if ((v = number("--level-embed", optarg, 0,
					LSTM_MAX_EMBED)) < 0)
				return EXIT_USAGE;
			o.fit.mu_embed = (unsigned)v;
			break;
		case 't':
			if ((v = number("-t", optarg, 1, 1L << 34)) < 0)
				return EXIT_USAGE;
			o.fit.train = (size_t)v;
			break;
		case OPT_EPOCHS:
			if ((v = number("--epochs", optarg, 1, 100)) < 0)
				return EXIT_USAGE;
			o.fit.epochs = (unsigned)v;
			break;
		case 'O':
			if ((v = number("-O", optarg, 0, 15)) < 0)
				return EXIT_USAGE;
			o.fit.online = (unsigned)v;
			break;
		case 'a':
			if (!strcmp(optarg, "order0"))
				o.against = 0;
			else if (!strcmp(optarg, "ctx"))
				o.against = STP_MODEL_CTX;
			else
				return cli_usage("unknown kind '%s' (known: order0, ctx)",
						 optarg);
			break;
		case 'b':
			if ((v = number("-b", optarg, 1, 1L << 20)) < 0)
				return EXIT_USAGE;
			o.buffer = (size_t)v << 20;
			break;
		case 'T':
			if (cli_threads(optarg) < 0)
				return EXIT_USAGE;
			break;
		case OPT_GPU: gpu = 1; break;
		case 'h': fputs(usage, stdout); return cli_close_stdout();
		case 'V': return cli_version();
		default: return cli_usage("invalid option");
		}
	}
	if (optind < argc)
		return cli_usage("unexpected argument '%s'", argv[optind]);
	if (gpu)
		return cli_fail(STP_ENODEVICE, "--gpu");
	if ((rc = stp_lstm_stage_open(&st, &o)) < 0)
		return cli_fail(rc, "");
	return cli_run_stage(&st);
}
