/* lowrank: 2-D weights replaced by truncated SVD factors (lib/lowrank.c). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/error.h"
#include "../lib/lowrank.h"
#include "cli.h"

static void usage(void)
{
	fputs("Usage: lowrank (--rank=R | --energy=E | --policy=FILE) "
	      "[options] < STREAM > STREAM\n"
	      "       lowrank --merge [-p PATTERN]... [--dtype=TYPE] "
	      "< STREAM > STREAM\n"
	      "Replace 2-D float weights W [out, in] by truncated SVD factors "
	      "NAME_lr_a [out, r]\n"
	      "and NAME_lr_b [r, in], W ~ A.B, where they are smaller than W; "
	      "with --merge,\n"
	      "multiply them back into W.\n"
	      "LOSSY: the values change. Each file records what was done in "
	      "its header\n"
	      "(__metadata__ \"stpipe.lossy\") and in the stream (LOSSY "
	      "frames, stpipe info).\n"
	      "Run before fp8-exp; other files and frames pass through.\n"
	      "\n"
	      "  -r, --rank=R        keep R singular values\n"
	      "  -e, --energy=E      keep the fewest that hold fraction E of "
	      "the squared sum\n"
	      "                      (with --rank: at most R)\n"
	      "  -P, --policy=FILE   lines 'GLOB key=value...' (rank=N, "
	      "energy=F, min-dim=N,\n"
	      "                      skip); the first matching line wins, "
	      "then --rank/--energy\n"
	      "  -p, --pattern=GLOB  take tensors whose name matches GLOB "
	      "(repeatable)\n"
	      "  -x, --exclude=GLOB  leave tensors whose name matches GLOB "
	      "(repeatable)\n"
	      "                      (none of -p, -x, --policy: every 2-D "
	      "tensor but *embed*,\n"
	      "                      *lm_head*, *wte*, *wpe*)\n"
	      "      --min-dim=N     take only tensors with both dimensions "
	      ">= N (default 1)\n"
	      "      --int8          factors as INT8 with an F32 scale per "
	      "row (NAME_lr_a_scale,\n"
	      "                      NAME_lr_b_scale), as int8-quant\n"
	      "  -m, --merge         factors back into W\n"
	      "      --dtype=TYPE    --merge: dtype of W (BF16, F16 or F32; "
	      "default: the\n"
	      "                      recorded one, else BF16)\n"
	      "  -h, --help          show this help and exit\n"
	      "  -V, --version       show the version and exit\n"
	      "\n"
	      "Exit status: 0 success, 1 bad input, 100 usage error, 111 "
	      "system error.\n", stdout);
}

/* The policy file's text, NUL-terminated; NULL with errno set. */
static char *slurp(const char *path, size_t *out_n)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL, *q;
	size_t n = 0, cap = 0, got;

	if (!f)
		return NULL;
	do {
		if (n + 4096 > cap) {
			cap = 2 * cap + 4096;
			if (!(q = realloc(buf, cap + 1))) {
				free(buf);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			buf = q;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
	} while (got > 0);
	if (ferror(f)) {
		free(buf);
		fclose(f);
		errno = EIO;
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*out_n = n;
	return buf;
}

static int number(const char *opt, const char *arg, uint64_t max,
		  uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(arg, &end, 10);
	if (*end || !*arg || *arg == '-' || errno || *out == 0 || *out > max)
		return cli_usage("%s: not a positive integer: '%s'", opt, arg);
	return 0;
}

/* Everything but the pattern arrays inc and exc (argc entries each) and
 * the policy, which main frees. */
static int run(int argc, char **argv, const char **inc, const char **exc,
	       struct stp_lr_policy *policy)
{
	static const struct option longs[] = {
		{ "rank", required_argument, NULL, 'r' },
		{ "energy", required_argument, NULL, 'e' },
		{ "policy", required_argument, NULL, 'P' },
		{ "pattern", required_argument, NULL, 'p' },
		{ "exclude", required_argument, NULL, 'x' },
		{ "min-dim", required_argument, NULL, 'D' },
		{ "int8", no_argument, NULL, 'I' },
		{ "merge", no_argument, NULL, 'm' },
		{ "dtype", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	struct stp_lowrank_opts o = { .sel.min_dim = 1 };
	const char *policy_path = NULL, *why;
	char options[4096] = "", *end, *text;
	struct stp_stage st;
	uint64_t v;
	size_t n, line;
	int c, rc;

	while ((c = getopt_long(argc, argv, "r:e:P:p:x:mhV", longs, NULL)) !=
	       -1) {
		switch (c) {
		case 'r':
			if (number("--rank", optarg, UINT32_MAX, &v))
				return EXIT_USAGE;
			o.rank = (uint32_t)v;
			o.set |= STP_LR_RANK;
			break;
		case 'e':
			o.energy = strtod(optarg, &end);
			if (*end || !*optarg || !(o.energy > 0 && o.energy <= 1))
				return cli_usage("--energy: not a number in "
						 "(0, 1]: '%s'", optarg);
			o.set |= STP_LR_ENERGY;
			break;
		case 'P': policy_path = optarg; break;
		case 'p': inc[o.sel.ninclude++] = optarg; break;
		case 'x': exc[o.sel.nexclude++] = optarg; break;
		case 'D':
			if (number("--min-dim", optarg, UINT64_MAX,
				   &o.sel.min_dim))
				return EXIT_USAGE;
			break;
		case 'I': o.int8 = 1; break;
		case 'm': o.merge = 1; break;
		case 't': o.dtype = optarg; break;
		case 'h': usage(); return cli_close_stdout();
		case 'V': return cli_version();
		default: return cli_usage("invalid option");
		}
	}
	if (optind < argc)
		return cli_usage("unexpected argument '%s'", argv[optind]);
	if (o.merge && (o.set || policy_path || o.int8))
		return cli_usage("--merge takes no --rank, --energy, --policy "
				 "or --int8");
	if (!o.merge && !o.set && !policy_path)
		return cli_usage("give --rank, --energy or --policy");
	if (o.dtype && !o.merge)
		return cli_usage("--dtype is for --merge");
	if (o.dtype && strcmp(o.dtype, "BF16") && strcmp(o.dtype, "F16") &&
	    strcmp(o.dtype, "F32"))
		return cli_usage("--dtype: BF16, F16 or F32, not '%s'", o.dtype);
	if (policy_path) {
		if (!(text = slurp(policy_path, &n)))
			return cli_fail(STP_EIO, policy_path);
		rc = stp_lr_policy_parse(text, n, !o.set, policy, &line, &why);
		free(text);
		if (rc == STP_EUNSUPPORTED)
			return cli_usage("%s:%zu: %s", policy_path, line, why);
		if (rc < 0)
			return cli_fail(rc, policy_path);
		o.policy = policy;
	}
	if (!o.sel.ninclude && !o.sel.nexclude && !policy_path && !o.merge) {
		o.sel.exclude = cli_lossy_exclude;
		o.sel.nexclude = cli_nlossy_exclude;
	} else {
		o.sel.exclude = exc;
	}
	o.sel.include = inc;
	cli_args_text(argc, argv, options, sizeof options);
	o.options = options;
	if ((rc = stp_lowrank_open(&st, &o)) < 0)
		return cli_fail(rc, "");
	return cli_run_stage(&st);
}

int main(int argc, char **argv)
{
	struct stp_lr_policy policy = { NULL, 0 };
	const char **inc = calloc((size_t)argc, sizeof *inc);
	const char **exc = calloc((size_t)argc, sizeof *exc);
	int rc;

	cli_init("lowrank");
	rc = inc && exc ? run(argc, argv, inc, exc, &policy) :
			  cli_fail(STP_ENOMEM, "");
	stp_lr_policy_free(&policy);
	free(inc);
	free(exc);
	return rc;
}
