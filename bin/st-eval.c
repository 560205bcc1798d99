/* st-eval: perplexity of a Llama-architecture model on a text, and how
 * far a second model's logits are from the first's. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/error.h"
#include "../lib/llama.h"
#include "cli.h"

static const char usage[] =
	"Usage: st-eval [OPTION]... MODEL [MODEL2]\n"
	"Run a Llama-architecture model (a safetensors file or a Hugging Face\n"
	"folder, with config.json beside it) in F32 over a text cut into\n"
	"windows of N+1 tokens, feeding the first N of each and scoring the\n"
	"prediction of tokens 1..N; print bits per token and perplexity. With\n"
	"MODEL2, also compare the two models' logits. A token is a byte of the\n"
	"text (vocabulary 256), or a little-endian u32 of --tokens.\n"
	"\n"
	"  -t, --text=FILE     the text (default: standard input)\n"
	"      --tokens=FILE   token ids, little-endian u32, instead of bytes\n"
	"  -n, --context=N     tokens fed per window (default 256)\n"
	"  -c, --config=FILE   config.json to use (default: the model's own)\n"
	"      --tsv           one line of keys and one of values, tab-separated\n"
	"      --time          also print the seconds the evaluation took\n"
	"  -q, --quiet         no progress\n"
	"  -P, --progress      show progress even when stderr is not a terminal\n"
	"  -h, --help          show this help and exit\n"
	"  -V, --version       show the version and exit\n"
	"\n"
	"Exit status: 0 success, 1 bad input, 100 usage error, 111 system error.\n";

/* The whole of a file (NULL: standard input). */
static int slurp(const char *path, uint8_t **out, size_t *out_n)
{
	FILE *f = path ? fopen(path, "rb") : stdin;
	uint8_t *buf = NULL, *nb;
	size_t n = 0, cap = 0, r;

	if (!f)
		return STP_EIO;
	do {
		if (n == cap) {
			cap = cap ? cap * 2 : 1 << 16;
			if (!(nb = realloc(buf, cap))) {
				free(buf);
				if (path)
					fclose(f);
				return STP_ENOMEM;
			}
			buf = nb;
		}
		n += r = fread(buf + n, 1, cap - n, f);
	} while (r > 0);
	if (ferror(f)) {
		free(buf);
		if (path)
			fclose(f);
		return STP_EIO;
	}
	if (path)
		fclose(f);
	*out = buf;
	*out_n = n;
	return 0;
}

/* The tokens: bytes of the text, or u32 ids. */
static int read_tokens(const char *path, int u32, uint32_t **out,
		       size_t *out_n)
{
	uint8_t *buf;
	uint32_t *t;
	size_t n, k;
	int rc;

	if ((rc = slurp(path, &buf, &n)) < 0)
		return rc;
	if (u32 && n % 4) {
		free(buf);
		return STP_ESIZE;
	}
	k = u32 ? n / 4 : n;
	if (!(t = malloc((k ? k : 1) * sizeof *t))) {
		free(buf);
		return STP_ENOMEM;
	}
	for (size_t i = 0; i < k; i++)
		t[i] = u32 ? stp_get32(buf + 4 * i) : buf[i];
	free(buf);
	*out = t;
	*out_n = k;
	return 0;
}

static int load_model(const char *path, const char *config, int bytes,
		      stp_llama **out)
{
	struct stp_llama_config cfg;
	stp_weights *w;
	char where[1024], msg[2048], *cpath = NULL;
	int rc;

	if ((rc = stp_weights_open(&w, path, where, sizeof where)) < 0) {
		if (strcmp(where, path) != 0) {
			snprintf(msg, sizeof msg, "%s: %s", path, where);
			return cli_fail(rc, msg);
		}
		return cli_fail(rc, path);
	}
	if (!config &&
	    asprintf(&cpath, "%s/config.json", stp_weights_dir(w)) < 0) {
		stp_weights_close(w);
		return cli_fail(STP_ENOMEM, path);
	}
	rc = stp_llama_config_read(config ? config : cpath, &cfg, where,
				   sizeof where);
	free(cpath);
	if (rc < 0) {
		stp_weights_close(w);
		return cli_fail(rc, where);
	}
	if (bytes && cfg.vocab != 256) {
		stp_weights_close(w);
		fprintf(stderr, "st-eval: %s: vocabulary of %u tokens, not the "
			"256 bytes: give --tokens FILE\n", path, cfg.vocab);
		return EXIT_BAD_INPUT;
	}
	rc = stp_llama_open(out, w, &cfg, where, sizeof where);
	stp_weights_close(w);
	if (rc == STP_ERANGE) {
		fprintf(stderr, "st-eval: %s: %s: no such weight\n", path,
			where);
		return EXIT_BAD_INPUT;
	}
	if (rc < 0) {
		snprintf(msg, sizeof msg, "%s: %s", path, where);
		return cli_fail(rc, msg);
	}
	return 0;
}

/* Progress in bytes of the input: ctx holds the bytes of a window and
 * of the whole input. */
static void progress(void *ctx, uint64_t done, uint64_t total)
{
	const uint64_t *bytes = ctx;

	(void)total;
	cli_progress("scored", done * bytes[0] < bytes[1] ? done * bytes[0]
			       : bytes[1], bytes[1]);
}

/* The results, as "key: value" lines or two tab-separated lines. */
struct out {
	const char *key[16];
	char val[16][1100];
	int n;
};

__attribute__((format(printf, 3, 4)))
static void put(struct out *o, const char *key, const char *fmt, ...)
{
	va_list ap;

	o->key[o->n] = key;
	va_start(ap, fmt);
	vsnprintf(o->val[o->n++], sizeof o->val[0], fmt, ap);
	va_end(ap);
}

static void print(const struct out *o, int tsv)
{
	for (int i = 0; tsv && i < o->n; i++)
		printf("%s%c", o->key[i], i + 1 < o->n ? '\t' : '\n');
	for (int i = 0; i < o->n; i++) {
		if (tsv)
			printf("%s%c", o->val[i], i + 1 < o->n ? '\t' : '\n');
		else
			printf("%s: %s\n", o->key[i], o->val[i]);
	}
}

static double seconds(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	enum { OPT_TOKENS = 256, OPT_TSV, OPT_TIME };
	static const struct option longs[] = {
		{ "text", required_argument, NULL, 't' },
		{ "tokens", required_argument, NULL, OPT_TOKENS },
		{ "context", required_argument, NULL, 'n' },
		{ "config", required_argument, NULL, 'c' },
		{ "tsv", no_argument, NULL, OPT_TSV },
		{ "time", no_argument, NULL, OPT_TIME },
		{ "quiet", no_argument, NULL, 'q' },
		{ "progress", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	const char *text = NULL, *tokfile = NULL, *config = NULL;
	stp_llama *m[2] = { NULL, NULL };
	struct stp_eval e;
	struct out o = { .n = 0 };
	uint32_t *tok;
	size_t ntok;
	uint64_t bytes[2];
	long ctx = 256;
	int c, tsv = 0, timed = 0, nm, rc;
	double t0;
	char *end;

	cli_init("st-eval");
	while ((c = getopt_long(argc, argv, "t:n:c:qPhV", longs, NULL)) != -1) {
		switch (c) {
		case 't': text = optarg; break;
		case OPT_TOKENS: tokfile = optarg; break;
		case 'n':
			errno = 0;
			ctx = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || ctx < 1 ||
			    ctx > 65535)
				return cli_usage("invalid context '%s' (1 to "
						 "65535)", optarg);
			break;
		case 'c': config = optarg; break;
		case OPT_TSV: tsv = 1; break;
		case OPT_TIME: timed = 1; break;
		case 'q': cli_progress_mode = -1; break;
		case 'P': cli_progress_mode = 1; break;
		case 'h': fputs(usage, stdout); return cli_close_stdout();
		case 'V': return cli_version();
		default: return cli_usage("invalid option");
		}
	}
	nm = argc - optind;
	if (nm < 1)
		return cli_usage("no model given");
	if (nm > 2)
		return cli_usage("unexpected argument '%s'", argv[optind + 2]);
	if (text && tokfile)
		return cli_usage("--text and --tokens exclude each other");
	rc = read_tokens(tokfile ? tokfile : text, tokfile != NULL, &tok, &ntok);
	if (rc < 0)
		return cli_fail(rc, tokfile ? tokfile : text ? text : "stdin");
	for (int k = 0; k < nm; k++)
		if ((rc = load_model(argv[optind + k], config, !tokfile, &m[k]))) {
			stp_llama_close(m[0]);
			free(tok);
			return rc;
		}
	bytes[0] = (uint64_t)(ctx + 1) * (tokfile ? 4 : 1);
	bytes[1] = (uint64_t)ntok * (tokfile ? 4 : 1);
	t0 = seconds();
	rc = stp_llama_eval(m, (unsigned)nm, tok, ntok, (size_t)ctx, &e,
			    progress, bytes);
	cli_progress_done();
	stp_llama_close(m[0]);
	stp_llama_close(m[1]);
	free(tok);
	if (rc < 0)
		return cli_fail(rc, rc == STP_ERANGE ? "token id not below the "
				"vocabulary size" : tokfile ? tokfile :
				text ? text : "stdin");
	if (nm == 1) {
		put(&o, "model", "%s", argv[optind]);
	} else {
		put(&o, "model_a", "%s", argv[optind]);
		put(&o, "model_b", "%s", argv[optind + 1]);
	}
	put(&o, "windows", "%llu", (unsigned long long)e.windows);
	put(&o, "tokens_scored", "%llu", (unsigned long long)e.scored);
	for (int k = 0; k < nm; k++) {
		put(&o, nm == 1 ? "bits_per_token" : k ? "bits_per_token_b"
			: "bits_per_token_a", "%.6f", e.bits[k]);
		put(&o, nm == 1 ? "perplexity" : k ? "perplexity_b"
			: "perplexity_a", "%.6f", exp2(e.bits[k]));
	}
	if (nm == 2) {
		put(&o, "logits_cosine_mean", "%.9f", e.cos_mean);
		put(&o, "logits_cosine_min", "%.9f", e.cos_min);
		put(&o, "logits_mse", "%.6g", e.mse);
		put(&o, "top1_agreement", "%.6f", e.top1);
	}
	if (timed)
		put(&o, "seconds", "%.3f", seconds() - t0);
	print(&o, tsv);
	return cli_close_stdout();
}
