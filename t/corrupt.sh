#!/bin/bash
# corrupt.sh: damages real compressed streams and checks that every
# damaged copy is refused cleanly.  Each stream (stpipe compress of a
# fixture or, when ../shared/weights exists, of real weights; -m order0
# and -m ctx; and of a small structured set, t/mkstructured, with -m
# lstm, auto, adaptive0 and ctx, whose planes are model-coded) gets single bits flipped and single bytes changed at
# positions spread over its whole length, and is cut short at many
# lengths; each mutant is decoded by `stpipe decompress -o DIR/` (one
# thread and two) and by `rans-dec | fp8-exp -d | st-join -o DIR/`.
# A mutant must be rejected: the front end exits 1 with exactly one line
# on stderr (each program of the pipeline 1, or 111 after a closed pipe,
# with one line), leaves nothing in the output's folder, never crashes
# (a signal or a status >= 128), never runs past the timeout, and never
# exits 0 with output different from the original (undetected).
#
# Usage: t/corrupt.sh [-q | -s] [-b BINDIR] [-k KEEPDIR] [-t SECONDS]
#   -q          the quick version `make check` runs (t/corrupt.bats)
#   -s          four mutants of one stream, decoded by stpipe: for testing
#               the checks themselves with stand-in programs (-b)
#   -b BINDIR   decode with the programs in BINDIR (default: bin/)
#   -k KEEPDIR  copy every mutant that fails a check into KEEPDIR
#   -t SECONDS  timeout of one decode (default 20)
# Positions come from a fixed seed: every run makes the same mutants.
# Prints one line per failing mutant and a summary line; exits 0 when
# every mutant was rejected, 1 otherwise.
set -euo pipefail
# The whole script is one block, read before it runs: editing this file
# cannot disturb a run.
{

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/bin"
keep=
quick=0
timeout=20
while getopts qsb:k:t: o; do
	case $o in
	q) quick=1 ;;
	s) quick=2 ;;
	b) bin="$(cd "$OPTARG" && pwd)" ;;
	k) keep="$OPTARG"; mkdir -p "$keep" ;;
	t) timeout="$OPTARG" ;;
	*) echo "usage: t/corrupt.sh [-q | -s] [-b BINDIR] [-k KEEPDIR] [-t SECONDS]" >&2
	   exit 100 ;;
	esac
done
fix="$root/t/fixtures"
weights="${STP_WEIGHTS:-$root/../shared/weights}"
[ -f "$fix/all.safetensors" ] || tclsh "$root/t/mkfixtures.tcl" "$fix"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The mutator and checker: one process makes every mutant of a stream
# and runs the decoders on it, so that a mutant costs little more than
# its decode.
cat > "$tmp/corrupt.c" <<'EOF'
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { REJECTED, UNDETECTED, CRASHED, HUNG, ACCEPTED, STATUS, STDERR,
       LEFTOVER, NKINDS };
static const char *const kind_name[NKINDS] = {
	"rejected", "undetected", "crashed", "hung", "accepted unchanged",
	"wrong exit status", "not one line on stderr", "output left behind",
};
static unsigned long count[NKINDS];

static const char *bindir, *ref, *work, *label, *keep, *threads = "1";
static char detail[256];	/* exit statuses and stderr lines of a case */
static int pipe_mode;
static unsigned timeout_s = 20;
static volatile sig_atomic_t alarmed;

static void on_alarm(int sig)
{
	(void)sig;
	alarmed = 1;
}

static void die(const char *what)
{
	fprintf(stderr, "corrupt: %s: %s\n", what, strerror(errno));
	exit(111);
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		die(path);
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0)
			die(path);
		p += w;
		n -= (size_t)w;
	}
	if (close(fd) < 0)
		die(path);
}

/* Lines in a file: newlines, and a last line without one. */
static long lines(const char *path)
{
	FILE *f = fopen(path, "rb");
	long n = 0;
	int c, last = '\n';

	if (!f)
		return -1;
	while ((c = getc(f)) != EOF) {
		n += c == '\n';
		last = c;
	}
	fclose(f);
	return n + (last != '\n');
}

/* 1 if dir holds nothing (the decoders' output folder and temporaries
 * would be created there). */
static int empty_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int empty = 1;

	if (!d)
		die(dir);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			empty = 0;
	closedir(d);
	return empty;
}

static void sh(const char *fmt, const char *a, const char *b)
{
	char cmd[16384];

	snprintf(cmd, sizeof cmd, fmt, a, b);
	if (system(cmd) == -1)
		die("system");
}

struct stage {
	pid_t pid;
	int status;
	char err[4096];
};

/* Starts argv with stdin from in_fd, stdout to out_fd, stderr to err,
 * in process group *pgid (0: a new one, set to its id). */
static pid_t start(char *const argv[], int in_fd, int out_fd,
		   const char *err, pid_t *pgid)
{
	pid_t pid = fork();

	if (pid < 0)
		die("fork");
	if (pid == 0) {
		/* every other descriptor is close-on-exec */
		int e = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			     0644);
		setpgid(0, *pgid);
		if (e < 0 || dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 ||
		    dup2(e, 2) < 0)
			_exit(127);
		execv(argv[0], argv);
		_exit(127);
	}
	setpgid(pid, *pgid);
	if (*pgid == 0)
		*pgid = pid;
	return pid;
}

/* Decodes work/m.stz into work/o/d/; returns the worst finding. */
static int run_case(void)
{
	char m[4096], out[4096], o[4096], prog[3][4096];
	struct stage st[3];
	int nst = pipe_mode ? 3 : 1, kind = REJECTED, all_ok = 1;
	int in = -1, dn, p1[2], p2[2];
	pid_t pgid = 0;

	snprintf(m, sizeof m, "%s/m.stz", work);
	snprintf(o, sizeof o, "%s/o", work);
	snprintf(out, sizeof out, "%s/o/d/", work);
	for (int i = 0; i < nst; i++)
		snprintf(st[i].err, sizeof st[i].err, "%s/e%d", work, i);
	if ((dn = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
		die("/dev/null");
	alarmed = 0;
	if (!pipe_mode) {
		snprintf(prog[0], sizeof prog[0], "%s/stpipe", bindir);
		char *argv[] = { prog[0], "decompress", "-T", (char *)threads,
				 "-o", out, m, NULL };
		st[0].pid = start(argv, dn, dn, st[0].err, &pgid);
	} else {
		snprintf(prog[0], sizeof prog[0], "%s/rans-dec", bindir);
		snprintf(prog[1], sizeof prog[1], "%s/fp8-exp", bindir);
		snprintf(prog[2], sizeof prog[2], "%s/st-join", bindir);
		char *a0[] = { prog[0], NULL };
		char *a1[] = { prog[1], "-d", NULL };
		char *a2[] = { prog[2], "-o", out, NULL };
		if ((in = open(m, O_RDONLY | O_CLOEXEC)) < 0 ||
		    pipe2(p1, O_CLOEXEC) < 0 || pipe2(p2, O_CLOEXEC) < 0)
			die("pipe");
		st[0].pid = start(a0, in, p1[1], st[0].err, &pgid);
		close(p1[1]);
		st[1].pid = start(a1, p1[0], p2[1], st[1].err, &pgid);
		close(p1[0]);
		close(p2[1]);
		st[2].pid = start(a2, p2[0], dn, st[2].err, &pgid);
		close(p2[0]);
		close(in);
	}
	close(dn);
	alarm(timeout_s);
	for (int i = 0; i < nst; i++)
		while (waitpid(st[i].pid, &st[i].status, 0) < 0) {
			if (errno != EINTR)
				die("waitpid");
			if (alarmed)
				kill(-pgid, SIGKILL);
		}
	alarm(0);
	detail[0] = '\0';
	for (int i = 0; i < nst; i++) {
		size_t at = strlen(detail);
		int s = st[i].status;
		snprintf(detail + at, sizeof detail - at, "%s%s %d, %ld line(s)",
			 i ? "; " : "", strrchr(prog[i], '/') + 1,
			 WIFSIGNALED(s) ? -WTERMSIG(s) : WEXITSTATUS(s),
			 lines(st[i].err));
	}
	for (int i = 0; i < nst; i++) {
		int s = st[i].status;
		if (alarmed)
			return HUNG;
		if (WIFSIGNALED(s) || WEXITSTATUS(s) >= 128)
			return CRASHED;
		if (WEXITSTATUS(s) != 0)
			all_ok = 0;
	}
	if (all_ok) {
		/* exit 0: the output must be the original's */
		char cmd[16384];
		int same;
		snprintf(cmd, sizeof cmd, "diff -r -q '%s' '%s' >/dev/null 2>&1",
			 ref, out);
		same = system(cmd) == 0;
		sh("rm -rf '%s'/* '%s'/.[!.]*", o, o);
		return same ? ACCEPTED : UNDETECTED;
	}
	if (!empty_dir(o)) {
		kind = LEFTOVER;
		sh("rm -rf '%s'/* '%s'/.[!.]*", o, o);
	}
	for (int i = 0; i < nst && kind == REJECTED; i++) {
		int code = WEXITSTATUS(st[i].status);
		long nl = lines(st[i].err);
		/* the front end and the last program exit 1; a program before
		 * them 1 too, or 111 when the next one closed the pipe */
		int ok = code == 1 || (code == 111 && i + 1 < nst) ||
			 (code == 0 && pipe_mode);
		if (!ok)
			kind = STATUS;
		else if (nl != (code == 0 ? 0 : 1))
			kind = STDERR;
	}
	return kind;
}

static uint64_t rng_state;

static uint32_t rnd(void)
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (uint32_t)(rng_state >> 33);
}

/* Position i of n spread over [0, len), at a random place of its share. */
static size_t spread(size_t i, size_t n, size_t len)
{
	return (size_t)(((unsigned __int128)i * len +
			 (unsigned __int128)rnd() * len / 4294967296u) / n);
}

static void one(const uint8_t *p, size_t n, const char *what, size_t at,
		unsigned v)
{
	char m[4096], desc[256];
	int kind;

	snprintf(m, sizeof m, "%s/m.stz", work);
	write_file(m, p, n);
	kind = run_case();
	count[kind]++;
	if (kind == REJECTED)
		return;
	snprintf(desc, sizeof desc, "%s-%zu-%u", what, at, v);
	printf("corrupt: %s %s: %s at %zu (%u): %s (%s)\n", label,
	       pipe_mode ? "pipeline" : "stpipe", what, at, v,
	       kind_name[kind], detail);
	if (keep) {
		char path[8192];
		snprintf(path, sizeof path, "%s/%s-%s-%s.stz", keep, label,
			 pipe_mode ? "pipeline" : "stpipe", desc);
		write_file(path, p, n);
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	size_t flips = 0, bytes = 0, cuts = 0, len = 0, cap = 1 << 20;
	const char *stream = NULL;
	uint8_t *orig, *buf;
	struct sigaction sa;
	int c, fd;
	ssize_t got;

	rng_state = 1;
	while ((c = getopt(argc, argv, "s:r:w:b:l:k:pT:t:f:x:c:S:")) != -1) {
		switch (c) {
		case 's': stream = optarg; break;
		case 'r': ref = optarg; break;
		case 'w': work = optarg; break;
		case 'b': bindir = optarg; break;
		case 'l': label = optarg; break;
		case 'k': keep = optarg; break;
		case 'p': pipe_mode = 1; break;
		case 'T': threads = optarg; break;
		case 't': timeout_s = (unsigned)atoi(optarg); break;
		case 'f': flips = strtoul(optarg, NULL, 10); break;
		case 'x': bytes = strtoul(optarg, NULL, 10); break;
		case 'c': cuts = strtoul(optarg, NULL, 10); break;
		case 'S': rng_state = strtoull(optarg, NULL, 10); break;
		default: return 100;
		}
	}
	if (!stream || !ref || !work || !bindir || !label)
		return 100;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);   /* no SA_RESTART: waitpid stops */
	if ((fd = open(stream, O_RDONLY)) < 0)
		die(stream);
	orig = malloc(cap);
	while (orig && (got = read(fd, orig + len, cap - len)) > 0) {
		len += (size_t)got;
		if (len == cap && !(orig = realloc(orig, cap *= 2)))
			break;
	}
	if (!orig || !(buf = malloc(len ? len : 1)))
		die("malloc");
	close(fd);
	memcpy(buf, orig, len);
	for (size_t i = 0; i < flips && len; i++) {
		size_t at = spread(i, flips, len);
		unsigned bit = rnd() % 8;
		buf[at] ^= (uint8_t)(1u << bit);
		one(buf, len, "bit", at, bit);
		buf[at] = orig[at];
	}
	for (size_t i = 0; i < bytes && len; i++) {
		size_t at = spread(i, bytes, len);
		unsigned x = 1 + rnd() % 255;
		buf[at] ^= (uint8_t)x;
		one(buf, len, "byte", at, x);
		buf[at] = orig[at];
	}
	/* cuts spread over the stream, the last one a byte short of it */
	for (size_t i = 0; i < cuts && len; i++) {
		size_t at = i + 1 == cuts ? len - 1 : spread(i, cuts, len);
		one(orig, at, "cut", at, 0);
	}
	for (int k = 0; k < NKINDS; k++)
		printf("%s%lu", k ? " " : "counts ", count[k]);
	printf("\n");
	return 0;
}
EOF
cc -O2 -std=c11 -Wall -Wextra -o "$tmp/corrupt" "$tmp/corrupt.c"

# STREAM LABEL FLIPS BYTES CUTS DECODERS...: one helper run per decoder
# (stpipe1, stpipe2, pipeline), counts added to $tmp/counts.
mutate() {
	local stream="$1" label="$2" f="$3" x="$4" c="$5" d
	shift 5
	for d in "$@"; do
		local args=() work="$tmp/work-$label-$d"
		case $d in
		stpipe1) args=(-T 1) ;;
		stpipe2) args=(-T 2) ;;
		pipeline) args=(-p) ;;
		esac
		mkdir -p "$work/o"
		"$tmp/corrupt" -s "$stream" -r "$tmp/ref-$label" -w "$work" \
			-b "$bin" -l "$label" ${keep:+-k "$keep"} -t "$timeout" \
			-f "$f" -x "$x" -c "$c" -S "$(cksum <<< "$label$d" | cut -d' ' -f1)" \
			"${args[@]}" | tee -a "$tmp/out" | grep -v '^counts ' || true
		rm -rf "$work"
	done
}

# INPUT MODEL LABEL FLIPS BYTES CUTS DECODERS...: compresses INPUT and
# restores it with the project's own programs (the reference output,
# checked against INPUT), then mutates the stream for the decoders.
stream() {
	local input="$1" model="$2" label="$3"
	shift 3
	"$root/bin/stpipe" compress -q -m "$model" -o "$tmp/$label.stz" "$input"
	"$root/bin/stpipe" decompress -q -o "$tmp/ref-$label/" "$tmp/$label.stz"
	if [ -d "$input" ]; then
		diff -r "$input" "$tmp/ref-$label"
	else
		cmp "$input" "$tmp/ref-$label/$(basename "$input")"
	fi
	mutate "$tmp/$label.stz" "$label" "$@"
	rm -rf "$tmp/ref-$label" "$tmp/$label.stz"
}

# The structured set (t/mkstructured, small): weights with row and column
# scales, whose planes lstm-model and ctx code with models.
[ -x "$root/t/mkstructured" ] || make -s -C "$root" t/mkstructured
"$root/t/mkstructured" -S 4 -l 1 -r 1 -c 1 > "$tmp/s-f8.safetensors"
"$root/t/mkstructured" -S 4 -l 1 -r 1 -c 1 -t bf16 -s 2 > "$tmp/s-bf16.safetensors"

start=$SECONDS
: > "$tmp/out"
if [ "$quick" = 2 ]; then
	stream "$fix/dtype-BF16.safetensors" order0 bf16-order0 2 1 1 stpipe1
elif [ "$quick" = 1 ]; then
	all3="stpipe1 pipeline"
	stream "$fix/dtype-BF16.safetensors" order0 bf16-order0 24 12 12 $all3
	stream "$fix/dtype-F32.safetensors" ctx f32-ctx 24 12 12 $all3
	stream "$fix/dtype-I32.safetensors" order0 i32-order0 12 6 6 $all3
	stream "$fix/fp8/fp8-block.safetensors" ctx fp8-ctx 24 12 12 $all3
	stream "$fix/model" order0 model-order0 24 12 12 stpipe1 stpipe2
	stream "$fix/model" ctx model-ctx 12 6 6 pipeline
	stream "$tmp/s-f8.safetensors" lstm s-f8-lstm 6 3 3 stpipe1
else
	all3="stpipe1 stpipe2 pipeline"
	for m in order0 ctx; do
		for f in BF16 F16 F32 F64 F8_E4M3 F8_E5M2 I32 BOOL; do
			stream "$fix/dtype-$f.safetensors" $m "$f-$m" 60 40 40 $all3
		done
		stream "$fix/all.safetensors" $m "all-$m" 60 40 40 $all3
		stream "$fix/padded.safetensors" $m "padded-$m" 40 20 20 $all3
		stream "$fix/fp8/fp8-block.safetensors" $m "fp8-$m" 80 40 40 $all3
		stream "$fix/model" $m "model-$m" 100 60 60 $all3
	done
	# planes that models code: the structured set, every model kind
	for m in lstm auto adaptive0 ctx; do
		for t in f8 bf16; do
			stream "$tmp/s-$t.safetensors" $m "s-$t-$m" 40 20 20 \
				stpipe1 pipeline
		done
	done
	if [ -d "$weights" ]; then
		for m in order0 ctx; do
			for w in llama32-3b-norms stories260K gpt2-lora \
				tinylm-7m/bf16 tinylm-7m/fp8; do
				[ -e "$weights/$w" ] || continue
				stream "$weights/$w" $m "${w//\//-}-$m" 40 20 20 \
					stpipe1 pipeline
			done
		done
	else
		echo "corrupt: no $weights: real weights skipped"
	fi
fi

# the sum of every helper's counts line
read -r rejected undetected crashed hung accepted status stderr leftover \
	< <(awk '/^counts / { for (i = 2; i <= 9; i++) s[i] += $i }
		END { for (i = 2; i <= 9; i++) printf "%d ", s[i]; print "" }' \
		"$tmp/out")
total=$((rejected + undetected + crashed + hung + accepted + status + stderr + leftover))
echo "corrupt: total $total, rejected $rejected, undetected $undetected," \
	"crashed $crashed, hung $hung; accepted unchanged $accepted," \
	"wrong status $status, not one stderr line $stderr," \
	"output left $leftover ($((SECONDS - start)) s)"
[ "$total" -gt 0 ] && [ "$rejected" -eq "$total" ]
exit
}
