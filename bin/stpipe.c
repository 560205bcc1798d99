/* stpipe: the front end. Runs the usual pipelines in one process (output
 * byte-identical to st-split | fp8-exp | rans-enc and back) and reads .stz
 * files: info, extract, verify. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/error.h"
#include "../lib/frontend.h"
#include "../lib/lossy.h"
#include "../lib/io.h"
#include "../lib/stream.h"
#include "cli.h"

static const char usage[] =
	"Usage: stpipe COMMAND [OPTION]... ARGS\n"
	"Lossless compression of LLM weights (safetensors files, model\n"
	"folders, archives).\n"
	"\n"
	"  stpipe compress MODEL... [-o OUT.stz | -c]   (default MODEL.stz)\n"
	"  stpipe decompress IN.stz [-o OUT | -c]        (default IN without .stz)\n"
	"  stpipe info IN.stz [--tsv]                   per-tensor sizes and bounds\n"
	"  stpipe extract IN.stz TENSOR [--file PATH] [-o OUT]\n"
	"  stpipe verify IN.stz...                      decode and check, write nothing\n"
	"  stpipe batch [-d] [-j N] [-S HOSTS] -o OUTDIR INPUT...\n"
	"                 many files, one job each, through GNU parallel, here and\n"
	"                 on ssh hosts (stpipe batch --help)\n"
	"\n"
	"Options:\n"
	"  -o, --output=OUT    write OUT (a file, DIR/ or an archive name)\n"
	"  -c, --stdout        write to standard output\n"
	"  -f, --force         overwrite existing output\n"
	"  -k, --keep          keep input files (always so; for zstd/xz habits)\n"
	"  -m, --model=KIND    exponent model: order0 (default: a static table\n"
	"                      per plane; fastest), ctx (counts in row and\n"
	"                      column contexts; smaller where weights have row\n"
	"                      and column scales, decodes about 40x slower),\n"
	"                      lstm (a small LSTM a layer, fitted first; slow\n"
	"                      to compress, decodes about 600x slower), auto\n"
	"                      (each plane with whichever of order0, ctx and an\n"
	"                      online lstm codes it smallest) or adaptive0\n"
	"  -T, --threads=N     threads (0: one per CPU; default 1); same output\n"
	"  -q, --quiet         no progress, no summary\n"
	"  -v, --verbose       print a summary line\n"
	"  -P, --progress      show progress even when stderr is not a terminal\n"
	"      --tsv           (info) tab-separated values with a header line\n"
	"      --file=PATH     (extract) the file of a folder holding TENSOR\n"
	"      --quantize=int8|fp8\n"
	"                      (compress) LOSSY: quantize the 2-D weights first,\n"
	"                      as int8-quant or fp8-quant would (recorded; see\n"
	"                      stpipe info)\n"
	"  -h, --help          show this help and exit\n"
	"  -V, --version       show the version and exit\n"
	"\n"
	"Exit status: 0 success, 1 bad input, 100 usage error, 111 system error.\n";

struct opts {
	const char *out;
	const char *file;
	int to_stdout, force, verbose, tsv;
	unsigned threads;
	unsigned model;           /* 0: static order-0 tables */
	int quantize;             /* 0 or an stp_quant_kind (lossy) */
};


static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void progress(void *ctx, uint64_t done, uint64_t total)
{
	cli_progress((const char *)ctx, done, total);
}

/* One line: original and coded sizes, ratio, and speed in original bytes
 * per second, whichever way the work went. */
static void summary(const char *name, uint64_t orig, uint64_t coded,
		    double secs, int decompressed)
{
	cli_progress_done();
	fprintf(stderr, "%s: %.1f MB %s %.1f MB (%.3fx), %.0f MB/s\n", name,
		(decompressed ? coded : orig) / 1e6, "->",
		(decompressed ? orig : coded) / 1e6,
		coded ? (double)orig / (double)coded : 0.0,
		secs > 0 ? orig / secs / 1e6 : 0.0);
}

/* The default output of compress: the first input plus .stz. */
static int default_stz(char *buf, size_t cap, const char *in)
{
	size_t n = strlen(in);

	while (n > 1 && in[n - 1] == '/')
		n--;
	if ((size_t)snprintf(buf, cap, "%.*s.stz", (int)n, in) >= cap)
		return -1;
	return 0;
}

static int cmd_compress(struct opts *o, char **in, int nin)
{
	char out[8192], tmp[8300];
	struct stp_stage lossy;
	struct stp_report rep;
	struct stat st;
	double t0 = now();
	int fd = 1, rc;

	if (nin == 0)
		return cli_usage("compress: no input");
	if (!o->out && !o->to_stdout) {
		if (nin > 1 || strcmp(in[0], "-") == 0)
			return cli_usage("compress: name the output with -o or use -c");
		if (default_stz(out, sizeof out, in[0]) < 0)
			return cli_usage("compress: name too long");
		o->out = out;
	}
	if (o->to_stdout || strcmp(o->out, "-") == 0) {
		if (isatty(1))
			return cli_usage("refusing to write a binary stream to a terminal");
		o->out = NULL;
	} else {
		if (!o->force && lstat(o->out, &st) == 0)
			return cli_fail(STP_EEXIST, o->out);
		if ((fd = stp_temp_create(tmp, sizeof tmp, o->out)) < 0)
			return cli_fail(fd, o->out);
	}
	if (o->quantize) {
		struct stp_quant_opts qo = {
			.kind = (enum stp_quant_kind)o->quantize,
			.sel = { .exclude = cli_lossy_exclude,
				 .nexclude = cli_nlossy_exclude },
			.options = "",  /* the bytes of a bare int8-quant */
		};

		if ((rc = stp_quant_open(&lossy, &qo)) < 0) {
			if (o->out)
				unlink(tmp);
			return cli_fail(rc, "");
		}
	}
	rc = stp_compress((const char *const *)in, nin, fd, o->threads,
			  o->model, o->quantize ? &lossy : NULL, progress,
			  "compress", &rep);
	if (rc == 0 && o->out) {
		if (fstat(fd, &st) < 0 || close(fd) < 0)
			rc = STP_EIO;
		else
			rc = stp_temp_place(tmp, o->out, o->force);
		fd = -1;
	}
	if (rc < 0) {
		if (o->out) {
			if (fd >= 0)
				close(fd);
			unlink(tmp);
		}
		return cli_fail(rc, rc == STP_EEXIST ? o->out : rep.where);
	}
	if (o->verbose > 0 && o->out)
		summary(o->out, rep.file_bytes, (uint64_t)st.st_size,
			now() - t0, 0);
	cli_progress_done();
	return o->out ? 0 : cli_close_stdout();
}

/* The default output of decompress: IN without .stz; a name with no
 * extension left is a folder. */
static int default_out(char *buf, size_t cap, const char *in)
{
	size_t n = strlen(in);
	const char *base;

	if (n < 5 || strcmp(in + n - 4, ".stz") != 0)
		return -1;
	if ((size_t)snprintf(buf, cap, "%.*s", (int)(n - 4), in) >= cap - 1)
		return -1;
	base = strrchr(buf, '/');
	if (!strchr(base ? base + 1 : buf, '.'))
		strcat(buf, "/");
	return 0;
}

static int cmd_decompress(struct opts *o, char **in, int nin)
{
	char out[8192];
	struct stp_sink *k = NULL;
	struct stp_report rep;
	double t0 = now();
	int fd = 0, rc;

	if (nin > 1)
		return cli_usage("decompress: one input at a time");
	if (nin == 1 && strcmp(in[0], "-") != 0) {
		if ((fd = open(in[0], O_RDONLY)) < 0)
			return cli_fail(STP_EIO, in[0]);
		if (!o->out && !o->to_stdout) {
			if (default_out(out, sizeof out, in[0]) < 0)
				return cli_usage("decompress: %s: unknown suffix (use -o)", in[0]);
			o->out = out;
		}
	}
	if (o->to_stdout)
		o->out = NULL;
	if ((rc = stp_sink_open(&k, o->out, o->force)) < 0) {
		stp_sink_abort(k);
		return cli_fail(rc, o->out);
	}
	rc = stp_decompress(fd, k, o->threads, progress, "decompress", &rep);
	if (rc < 0) {
		stp_sink_abort(k);
		return cli_fail(rc, rep.where);
	}
	if ((rc = stp_sink_finish(k)) < 0)
		return cli_fail(rc, o->out ? o->out : "stdout");
	if (o->verbose > 0 && fd > 0) {
		struct stat st;
		if (fstat(fd, &st) == 0)
			summary(in[0], rep.file_bytes, (uint64_t)st.st_size,
				now() - t0, 1);
	}
	cli_progress_done();
	return o->out ? 0 : cli_close_stdout();
}

static void shape_str(char *buf, size_t cap, const struct stp_tensor_stat *t)
{
	size_t at = (size_t)snprintf(buf, cap, "[");

	for (unsigned i = 0; i < t->ndim && at < cap; i++)
		at += (size_t)snprintf(buf + at, cap - at, "%s%" PRIu64,
				       i ? "," : "", t->shape[i]);
	if (at < cap)
		snprintf(buf + at, cap - at, "]");
}

static int print_tensor(void *ctx, const struct stp_tensor_stat *t)
{
	const struct opts *o = ctx;
	char shape[512];
	uint64_t count = 1;
	double bpw, ratio, ebits, eh0;

	for (unsigned i = 0; i < t->ndim; i++)
		count *= t->shape[i];
	shape_str(shape, sizeof shape, t);
	bpw = count ? 8.0 * (double)t->coded / (double)count : 0;
	ratio = t->coded ? (double)t->nbytes / (double)t->coded : 0;
	ebits = t->nexp ? 8.0 * (double)t->exp_coded / (double)t->nexp : 0;
	eh0 = t->nexp ? t->exp_h0 / (double)t->nexp : 0;
	if (o->tsv)
		printf("%s\t%s\t%s\t%s\t%" PRIu64 "\t%" PRIu64
		       "\t%.4f\t%.4f\t%.4f\t%.4f\t%.0f\n",
		       t->file, t->name, t->dtype, shape, t->nbytes, t->coded,
		       bpw, ratio, ebits, eh0, t->exp_bound / 8);
	else
		printf("%-40s %-7s %-14s %11" PRIu64 " %11" PRIu64
		       " %6.2f %6.3f %6.3f %6.3f\n",
		       t->name, t->dtype, shape, t->nbytes, t->coded, bpw,
		       ratio, ebits, eh0);
	return 0;
}

/* The LOSSY frames of the stream, said after the table. */
struct notes {
	struct opts *o;
	char **line;
	size_t n;
};

static int print_tensor_n(void *ctx, const struct stp_tensor_stat *t)
{
	return print_tensor(((struct notes *)ctx)->o, t);
}

static int keep_note(void *ctx, const char *file, const uint8_t *json,
		     size_t len)
{
	struct notes *ns = ctx;
	char what[2048], **l;
	int rc = stp_lossy_describe(json, len, what, sizeof what);

	if (rc < 0)
		return rc;
	if (!(l = realloc(ns->line, (ns->n + 1) * sizeof *l)) ||
	    asprintf(&l[ns->n], "lossy: %s: %s", file, what) < 0) {
		ns->line = l ? l : ns->line;
		return STP_ENOMEM;
	}
	ns->line = l;
	ns->n++;
	return 0;
}

static int cmd_info(struct opts *o, char **in, int nin)
{
	struct notes ns = { o, NULL, 0 };
	struct stp_stream_stat s;
	struct stp_report rep;
	int fd = 0, rc;

	if (nin > 1)
		return cli_usage("info: one input at a time");
	if (nin == 1 && strcmp(in[0], "-") != 0 &&
	    (fd = open(in[0], O_RDONLY)) < 0)
		return cli_fail(STP_EIO, in[0]);
	if (o->tsv)
		printf("file\tname\tdtype\tshape\torig_bytes\tcoded_bytes\t"
		       "bits_per_weight\tratio\texp_bits\texp_h0\t"
		       "exp_bound_bytes\n");
	else
		printf("%-40s %-7s %-14s %11s %11s %6s %6s %6s %6s\n", "tensor",
		       "dtype", "shape", "orig", "coded", "bits/w", "ratio",
		       "exp", "exp_h0");
	rc = stp_scan(fd, print_tensor_n, keep_note, &ns, &s, &rep);
	for (size_t i = 0; i < ns.n; i++) {
		if (rc >= 0 && !o->tsv)
			puts(ns.line[i]);
		free(ns.line[i]);
	}
	free(ns.line);
	if (rc < 0)
		return cli_fail(rc, rep.where);
	if (!o->tsv)
		printf("total: %" PRIu64 " files, %" PRIu64 " tensors, %" PRIu64
		       " -> %" PRIu64 " bytes (%.4fx); order-0 bound %.0f "
		       "bytes, coded/bound %.5f\n",
		       s.files, s.tensors, s.orig, s.coded,
		       s.coded ? (double)s.orig / (double)s.coded : 0,
		       s.bound / 8, s.bound > 0 ? 8 * s.coded / s.bound : 0);
	return cli_close_stdout();
}

static int cmd_extract(struct opts *o, char **in, int nin)
{
	struct stp_report rep;
	char tmp[8300];
	int fd, out = 1, rc;

	if (nin != 2)
		return cli_usage("extract: give IN.stz and a tensor name");
	if ((fd = open(in[0], O_RDONLY)) < 0)
		return cli_fail(STP_EIO, in[0]);
	if (o->out && strcmp(o->out, "-") != 0) {
		struct stat st;
		if (!o->force && lstat(o->out, &st) == 0)
			return cli_fail(STP_EEXIST, o->out);
		if ((out = stp_temp_create(tmp, sizeof tmp, o->out)) < 0)
			return cli_fail(out, o->out);
	} else if (isatty(1)) {
		return cli_usage("refusing to write tensor bytes to a terminal");
	}
	rc = stp_extract(fd, o->file, in[1], out, &rep);
	if (out != 1) {
		if (close(out) < 0 && rc == 0)
			rc = STP_EIO;
		if (rc == 0)
			rc = stp_temp_place(tmp, o->out, o->force);
		if (rc < 0)
			unlink(tmp);
	}
	if (rc < 0)
		return cli_fail(rc, rc == STP_EIO ? "output" : rep.where);
	return out == 1 ? cli_close_stdout() : 0;
}

static int cmd_verify(struct opts *o, char **in, int nin)
{
	int status = 0;

	if (nin == 0)
		return cli_usage("verify: no input");
	for (int i = 0; i < nin; i++) {
		struct stp_sink *k = NULL;
		struct stp_report rep;
		int fd = strcmp(in[i], "-") ? open(in[i], O_RDONLY) : 0, rc;
		char where[8400];

		if (fd < 0) {
			status = cli_fail(STP_EIO, in[i]);
			continue;
		}
		rc = stp_sink_open_null(&k);
		if (rc == 0)
			rc = stp_decompress(fd, k, o->threads, NULL, NULL, &rep);
		stp_sink_abort(k);
		if (fd > 0)
			close(fd);
		if (rc < 0) {
			snprintf(where, sizeof where, "%s: %s", in[i], rep.where);
			status = cli_fail(rc, where);
		} else if (o->verbose >= 0) {
			printf("%s: OK\n", in[i]);
		}
	}
	if (cli_close_stdout() != 0 && status == 0)
		status = EXIT_SYSTEM;
	return status;
}

/* stpipe batch is a script over GNU parallel (share/batch/stpipe-batch,
 * installed as PREFIX/lib/stpipe/stpipe-batch): found beside this program,
 * it runs with this program's folder first in PATH. */
static int run_batch(int argc, char **argv)
{
	static char self[4096], script[4200], path[8400];
	const char *env = getenv("STPIPE_BATCH");
	const char *const tries[] = { "/../lib/stpipe/stpipe-batch",
				      "/../share/batch/stpipe-batch" };
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	char **args;
	char *slash;

	if (n > 0) {
		self[n] = '\0';
	} else if (strchr(argv[0], '/')) {
		snprintf(self, sizeof self, "%s", argv[0]);   /* no /proc */
	} else {
		/* no /proc, started through PATH: the first stpipe there */
		const char *p = getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin";

		self[0] = '\0';
		while (*p && !self[0]) {
			size_t len = strcspn(p, ":");

			snprintf(self, sizeof self, "%.*s/stpipe", (int)len, p);
			if (access(self, X_OK) != 0)
				self[0] = '\0';
			p += len + (p[len] == ':');
		}
		if (!self[0])
			return cli_fail(STP_EIO, "stpipe: cannot find itself");
	}
	if ((slash = strrchr(self, '/')))
		*slash = '\0';
	script[0] = '\0';
	if (env && *env)
		snprintf(script, sizeof script, "%s", env);
	for (size_t i = 0; !script[0] && i < 2; i++) {
		snprintf(script, sizeof script, "%s%s", self, tries[i]);
		if (access(script, R_OK) != 0)
			script[0] = '\0';
	}
	if (!script[0])
		return cli_fail(STP_EIO, "stpipe-batch (not installed beside stpipe)");
	snprintf(path, sizeof path, "%s:%s", self,
		 getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	setenv("PATH", path, 1);
	if (!(args = calloc((size_t)argc + 2, sizeof *args)))
		return cli_fail(STP_ENOMEM, "batch");
	args[0] = "bash";
	args[1] = script;
	for (int i = 2; i < argc; i++)
		args[i] = argv[i];
	execv("/bin/bash", args);
	return cli_fail(STP_EIO, "/bin/bash");
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "stdout", no_argument, NULL, 'c' },
		{ "force", no_argument, NULL, 'f' },
		{ "keep", no_argument, NULL, 'k' },
		{ "model", required_argument, NULL, 'm' },
		{ "threads", required_argument, NULL, 'T' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "progress", no_argument, NULL, 'P' },
		{ "tsv", no_argument, NULL, 1 },
		{ "file", required_argument, NULL, 2 },
		{ "quantize", required_argument, NULL, 3 },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	static const struct {
		const char *name;
		int (*run)(struct opts *, char **, int);
	} cmds[] = {
		{ "compress", cmd_compress }, { "decompress", cmd_decompress },
		{ "info", cmd_info }, { "extract", cmd_extract },
		{ "verify", cmd_verify },
	};
	struct opts o = { .threads = 1 };
	const char *cmd = argc > 1 ? argv[1] : "";
	int c, t;

	cli_init("stpipe");
	cli_model_fitted = 1;
	if (strcmp(cmd, "batch") == 0)
		return run_batch(argc, argv);
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
		fputs(usage, stdout);
		return cli_close_stdout();
	}
	if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0)
		return cli_version();
	/* Options may come before or after the operands of the command. */
	while ((c = getopt_long(argc - 1, argv + 1, "o:cfkm:T:qvPhV", longs,
				NULL)) != -1) {
		switch (c) {
		case 'o': o.out = optarg; break;
		case 'c': o.to_stdout = 1; break;
		case 'f': o.force = 1; break;
		case 'k': break;
		case 'm':
			if ((t = cli_model(optarg)) < 0)
				return EXIT_USAGE;
			o.model = (unsigned)t;
			break;
		case 'T':
			if ((t = cli_threads(optarg)) < 0)
				return EXIT_USAGE;
			o.threads = (unsigned)t;
			break;
		case 'q': o.verbose = -1; cli_progress_mode = -1; break;
		case 'v': o.verbose = 1; break;
		case 'P': cli_progress_mode = 1; break;
		case 1: o.tsv = 1; break;
		case 2: o.file = optarg; break;
		case 3:
			if (strcmp(optarg, "int8") == 0)
				o.quantize = STP_QUANT_INT8;
			else if (strcmp(optarg, "fp8") == 0)
				o.quantize = STP_QUANT_FP8;
			else
				return cli_usage("--quantize: int8 or fp8, not "
						 "'%s'", optarg);
			break;
		case 'h': fputs(usage, stdout); return cli_close_stdout();
		case 'V': return cli_version();
		default: return cli_usage("invalid option");
		}
	}
	if (cli_check_impl())
		return EXIT_USAGE;
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		if (strcmp(cmd, cmds[i].name) == 0)
			return cmds[i].run(&o, argv + 1 + optind,
					   argc - 1 - optind);
	return cli_usage(*cmd ? "unknown command '%s'" : "no command%s", cmd);
}
