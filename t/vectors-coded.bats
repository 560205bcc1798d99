#!/usr/bin/env bats
# The test vectors of the plane, coded, residual and index frames
# (formats/planes.md, formats/rans.md, formats/predict.md) in
# t/vectors/coded/, through the specs' second reader, t/stz-read.tcl, and
# through the C decoding pipeline (rans-dec | predict -d | fp8-exp -d |
# st-join) and stpipe verify: both must restore every good vector's
# files and reject every bad one.  Then the C writer against the reader:
# what stpipe compress writes, the reader must decode byte for byte.  Each
# vector test walks all the vectors of its kind and names every one that
# fails, so one run shows every disagreement.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup_file() {
	export ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
	export VEC="$ROOT/t/vectors/coded"
	export BIN="$ROOT/bin"
	export FIX="$BATS_FILE_TMPDIR/fixtures"
	export WEIGHTS="${STP_WEIGHTS:-$ROOT/../shared/weights}"
	tclsh "$ROOT/t/mkfixtures.tcl" "$FIX"
}

setup() {
	cd "$BATS_TEST_TMPDIR"
	failures=()
}

reader() {
	tclsh "$ROOT/t/stz-read.tcl" "$@"
}

# Vector names without .stp: good, bad (the C programs check their rule
# too) or bad-index (only a reader that checks the index does), as $1 says.
vectors() {
	local f n
	for f in "$VEC"/*.stp; do
		n=$(basename "$f" .stp)
		case "$1:$n" in
		good:good-* | bad-index:bad-index-*) echo "$n" ;;
		bad:bad-index-*) ;;
		bad:bad-*) echo "$n" ;;
		esac
	done
}

note() {
	failures+=("$*")
}

# Fail listing every note, or pass when there is none.
report() {
	if [ "${#failures[@]}" -gt 0 ]; then
		printf '%s\n' "${failures[@]}" >&2
		return 1
	fi
}

# The variants of the coder this CPU runs.
impls() {
	echo scalar
	grep -qw avx2 /proc/cpuinfo && echo avx2
	grep -qw avx512bw /proc/cpuinfo && echo avx512
	true
}

# Check a one-line "PROG: ..." message on stderr file $2, status $3 = 1.
check_reject() { # NAME STDERR-FILE STATUS PROG WHAT
	local lines
	lines=$(wc -l < "$2")
	if [ "$3" != 1 ]; then
		note "$1: $5 exit status $3, expected 1: $(head -c 200 "$2")"
	elif [ "$lines" != 1 ] || ! grep -q "^$4: ." "$2"; then
		note "$1: $5 stderr is not one '$4: ...' line: $(head -c 200 "$2")"
	fi
}

# The C decoding pipeline from vector $1 into folder $2, one stage at a
# time through files, so that each stage's status and stderr are its own.
# Prints the first stage that fails, with its status and stderr file.
decode_stages() { # VECTOR DIR
	local rc=0
	"$BIN/rans-dec" < "$1" > s1 2> e1 || rc=$?
	[ "$rc" = 0 ] || { echo "rans-dec $rc e1"; return; }
	"$BIN/predict" -d < s1 > s2 2> e2 || rc=$?
	[ "$rc" = 0 ] || { echo "predict $rc e2"; return; }
	"$BIN/fp8-exp" -d < s2 > s3 2> e3 || rc=$?
	[ "$rc" = 0 ] || { echo "fp8-exp $rc e3"; return; }
	"$BIN/st-join" -q -o "$2/" < s3 2> e4 || rc=$?
	[ "$rc" = 0 ] || { echo "st-join $rc e4"; return; }
}

@test "the coded vector set holds every case the specs' rules call for" {
	for n in bf16-methods e4m3-methods coded-dtypes coded-data index \
		planes-bf16 planes-f16 planes-f32 planes-f64 planes-f8_e4m3 \
		planes-f8_e5m2 residual coded-residual; do
		[ -f "$VEC/good-$n.stp" ] && [ -f "$VEC/good-$n.out" ] &&
			[ -d "$VEC/good-$n.expect" ] || note "missing good-$n"
	done
	for n in body-table-sum body-table-zero-freq body-table-runs-not-maximal \
		body-table-past-255 body-table-one-symbol body-table-pb-13 \
		body-table-freq-noncanonical body-final-state body-wrong-n \
		body-trailing-word body-trailing-byte body-words-truncated \
		body-state-below-2-15 body-method-4 body-raw-long body-run-long \
		body-x4-over-16384 coded-x4-over-16384 coded-plane-short \
		coded-layout-1-bf16 coded-layout-2 coded-layout-1-second-body \
		coded-e4m3-exponent-16 coded-padding-nibble coded-planes-over-cap \
		planes-length planes-rowlen planes-column planes-dtype-mismatch \
		planes-outside-tensor planes-e4m3-exponent-16 planes-padding-nibble \
		planes-e5m2-nibble-8 planes-f16-plane-2 coded-data-n-mismatch \
		coded-data-n-zero index-offset index-name index-shared \
		index-varint-long index-trailing index-loc-offset index-loc-not-last \
		residual-predictor-6 residual-predictor-255 residual-length-short \
		residual-length-long residual-reserved-13 residual-reserved-14 \
		residual-dtype-code-0 residual-dtype-code-3 residual-dtype-mismatch \
		residual-count-zero residual-chunk-zero residual-nchunks residual-rowlen \
		residual-column residual-offset residual-outside-tensor \
		residual-in-bf16-tensor residual-past-tensor residual-outside-file \
		coded-residual-no-body coded-residual-body-short coded-residual-body-long \
		coded-residual-predictor-6 coded-residual-reserved-13 \
		coded-residual-column coded-residual-over-cap; do
		[ -f "$VEC/bad-$n.stp" ] || note "missing bad-$n"
	done
	for f in "$VEC"/*.stp; do
		[ "$(stat -c %s "$f")" -lt 4096 ] || note "$(basename "$f") is 4 KiB or more"
	done
	report
}

@test "t/mkvectors.tcl regenerates the coded vectors byte for byte" {
	run tclsh "$ROOT/t/mkvectors.tcl" "$BATS_TEST_TMPDIR/v"
	assert_success
	run diff -r "$BATS_TEST_TMPDIR/v/coded" "$VEC"
	assert_success
}

@test "the reader decodes every good coded vector, listing and files" {
	for n in $(vectors good); do
		rm -rf x y
		if ! reader --extract x "$VEC/$n.stp" > out 2> err; then
			note "$n: stz-read rejects it: $(cat err)"
			continue
		fi
		cmp -s out "$VEC/$n.out" && [ ! -s err ] ||
			note "$n: stz-read listing differs: $(diff out "$VEC/$n.out") $(cat err)"
		diff -r "$VEC/$n.expect" x > /dev/null || note "$n: stz-read --extract restores other files"
		reader --extract y - < "$VEC/$n.stp" > out 2> err ||
			note "$n: stz-read --extract from stdin fails: $(cat err)"
		diff -r "$VEC/$n.expect" y > /dev/null || note "$n: stz-read --extract - restores other files"
	done
	report
}

@test "rans-dec | predict -d | fp8-exp -d | st-join restores every good coded vector, with every decoder variant" {
	for n in $(vectors good); do
		for impl in $(impls); do
			rm -rf o
			STP_IMPL=$impl bash -o pipefail -c \
				'"$BIN/rans-dec" | "$BIN/predict" -d | "$BIN/fp8-exp" -d | "$BIN/st-join" -q -o o/' \
				< "$VEC/$n.stp" 2> err ||
				note "$n: STP_IMPL=$impl: the C pipeline rejects it: $(cat err)"
			[ ! -s err ] || note "$n: STP_IMPL=$impl: the C pipeline writes to stderr: $(cat err)"
			diff -r "$VEC/$n.expect" o > /dev/null 2>&1 ||
				note "$n: STP_IMPL=$impl: the C pipeline restores other files"
		done
	done
	report
}

@test "stpipe verify accepts every good coded vector" {
	for n in $(vectors good); do
		"$BIN/stpipe" verify "$VEC/$n.stp" > out 2> err ||
			note "$n: stpipe verify rejects it: $(cat err)"
		[ "$(cat out)" = "$VEC/$n.stp: OK" ] || note "$n: stpipe verify prints: $(cat out)"
	done
	report
}

@test "the reader rejects every bad coded vector with one line and no listing" {
	for n in $(vectors bad) $(vectors bad-index); do
		rm -rf x
		rc=0
		reader --extract x "$VEC/$n.stp" > out 2> err || rc=$?
		check_reject "$n" err $rc stz-read "stz-read"
		grep -q '^stz-read: offset [0-9][0-9]*: ' err ||
			note "$n: stz-read message names no offset: $(cat err)"
		[ ! -s out ] || note "$n: stz-read prints a listing"
		[ ! -e x ] || note "$n: stz-read --extract leaves x behind"
	done
	report
}

@test "the C decoding pipeline rejects every bad coded vector and leaves nothing" {
	for n in $(vectors bad); do
		rm -rf o
		failed=$(decode_stages "$VEC/$n.stp" o)
		if [ -z "$failed" ]; then
			note "$n: every C stage accepts it"
		else
			read -r prog rc errfile <<< "$failed"
			check_reject "$n" "$errfile" "$rc" "$prog" "$prog (stage by stage)"
		fi
		[ ! -e o ] || note "$n: st-join leaves o/ behind"
		rm -rf o
		rc=0
		bash -o pipefail -c \
			'"$BIN/rans-dec" | "$BIN/predict" -d | "$BIN/fp8-exp" -d | "$BIN/st-join" -q -o o/' \
			< "$VEC/$n.stp" 2> err || rc=$?
		[ "$rc" = 1 ] || note "$n: the C pipeline exits $rc, expected 1"
		if grep -qv '^\(rans-dec\|predict\|fp8-exp\|st-join\): .' err; then
			note "$n: the C pipeline writes other lines: $(cat err)"
		fi
		[ ! -e o ] || note "$n: the C pipeline leaves o/ behind"
	done
	report
}

@test "stpipe verify rejects every bad coded vector with one line" {
	for n in $(vectors bad); do
		rc=0
		"$BIN/stpipe" verify "$VEC/$n.stp" > out 2> err || rc=$?
		check_reject "$n" err $rc stpipe "stpipe verify"
	done
	report
}

# The index is skippable metadata: the final stage ignores it and rans-dec
# drops it, so a bad one changes nothing the C pipeline restores.
@test "rans-dec drops bad INDEX frames, and the C pipeline restores their files" {
	for n in $(vectors bad-index); do
		rm -rf o
		bash -o pipefail -c '"$BIN/rans-dec" | "$BIN/predict" -d | "$BIN/fp8-exp" -d | "$BIN/st-join" -q -o o/' \
			< "$VEC/$n.stp" 2> err || note "$n: the C pipeline rejects it: $(cat err)"
		"$BIN/rans-dec" < "$VEC/$n.stp" | reader - > out 2> err ||
			note "$n: rans-dec keeps a frame the reader rejects: $(cat err)"
		if grep -q '^INDEX' out; then
			note "$n: rans-dec keeps an index frame"
		fi
	done
	report
}

# planes.md: a reader that follows an index checks the frame it lands on
# "and falls back to reading the stream in order otherwise".
@test "stpipe extract falls back to reading in order when the index misleads" {
	for n in $(vectors bad-index); do
		rc=0
		"$BIN/stpipe" extract "$VEC/$n.stp" model.a > out 2> err || rc=$?
		[ "$rc" = 0 ] && [ "$(od -An -tx1 out)" = " 80 3f 00 40" ] ||
			note "$n: stpipe extract model.a exits $rc: $(cat err)"
	done
	# model.norm is in the first segment, which the last one's index lacks
	rc=0
	"$BIN/stpipe" extract "$VEC/good-index.stp" model.norm > out 2> err || rc=$?
	[ "$rc" = 0 ] && [ "$(od -An -tx1 out)" = " 80 3f 00 40" ] ||
		note "good-index: stpipe extract model.norm exits $rc: $(cat err)"
	report
}

# Compress $1 (a file or folder) with stpipe and restore it with the
# reader alone; note any difference.
compress_and_read() {
	local name
	name=$(basename "$1")
	rm -rf x c.stz
	if ! "$BIN/stpipe" compress -q "$1" -o c.stz 2> err; then
		note "$1: stpipe compress fails: $(cat err)"
	elif ! reader --extract x c.stz > /dev/null 2> err; then
		note "$1: stz-read rejects what stpipe compress writes: $(cat err)"
	elif [ -d "$1" ]; then
		diff -r "$1" x > /dev/null || note "$1: stz-read restores other files"
	else
		cmp -s "$1" "x/$name" || note "$1: stz-read restores other bytes"
	fi
}

@test "what stpipe compress writes of every fixture, the reader restores byte for byte" {
	checked=0
	while IFS= read -r f; do
		checked=$((checked + 1))
		compress_and_read "$f"
	done < <(find "$FIX" -name '*.safetensors' ! -name 'bad-*' | sort)
	[ "$checked" -ge 15 ] || note "only $checked fixtures"
	compress_and_read "$FIX/model"
	compress_and_read "$FIX/fp8"
	# two inputs in one stream, so one index lists two files
	rm -rf x
	"$BIN/stpipe" compress -q -f "$FIX/dtype-F16.safetensors" "$FIX/dtype-I8.safetensors" -o c.stz
	reader --extract x c.stz > out 2> err || note "two files: stz-read rejects it: $(cat err)"
	cmp -s "$FIX/dtype-I8.safetensors" x/dtype-I8.safetensors || note "two files: other bytes"
	grep -q '^INDEX 14 F:16:dtype-F16.safetensors ' out || note "two files: no index of both"
	report
}

@test "what rans-enc writes of every good coded vector, the reader restores" {
	for n in $(vectors good); do
		rm -rf x
		"$BIN/rans-dec" < "$VEC/$n.stp" | "$BIN/rans-enc" > c.stz 2> err ||
			note "$n: rans-dec | rans-enc fails: $(cat err)"
		reader --extract x c.stz > /dev/null 2> err ||
			note "$n: stz-read rejects what rans-enc writes: $(cat err)"
		diff -r "$VEC/$n.expect" x > /dev/null 2>&1 || note "$n: other files"
	done
	report
}

@test "what predict -a writes of the integer fixtures, plain and through rans-enc, the reader restores" {
	for d in I8 U8; do
		f="$FIX/dtype-$d.safetensors"
		for enc in cat "$BIN/rans-enc"; do
			rm -rf x
			bash -o pipefail -c '"$BIN/st-split" "$1" | "$BIN/predict" -a | "$2"' \
				- "$f" "$enc" > p.stp 2> err || note "$d $enc: the C writer fails: $(cat err)"
			reader --extract x p.stp > out 2> err ||
				note "$d $enc: stz-read rejects what predict -a writes: $(cat err)"
			grep -q '^\(CODED_\)\?RESIDUAL ' out || note "$d $enc: no residual frame"
			cmp -s "$f" "x/dtype-$d.safetensors" || note "$d $enc: other bytes"
		done
	done
	report
}

@test "what stpipe compress writes of small real weights, the reader restores byte for byte" {
	[ -d "$WEIGHTS" ] || skip "no real weights at $WEIGHTS"
	for m in llama32-3b-norms stories260K gpt2-lora; do
		compress_and_read "$WEIGHTS/$m"
	done
	report
}
