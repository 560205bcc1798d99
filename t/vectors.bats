#!/usr/bin/env bats
# The stream format's test vectors (formats/stream.md, "Test vectors")
# through the spec's second reader, t/stz-read.tcl, and through the C
# programs: both must accept every good vector with the same result and
# reject every bad one.  Each test walks all the vectors of its kind and
# names every one that fails, so one run shows every disagreement.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup_file() {
	export ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
	export VEC="$ROOT/t/vectors"
	export JOIN="$ROOT/bin/st-join"
	export SPLIT="$ROOT/bin/st-split"
	export FIX="$BATS_FILE_TMPDIR/fixtures"
	tclsh "$ROOT/t/mkfixtures.tcl" "$FIX"
}

setup() {
	cd "$BATS_TEST_TMPDIR"
	failures=()
}

reader() {
	tclsh "$ROOT/t/stz-read.tcl" "$@"
}

# Vector names without .stp, good or bad as $1 says.
vectors() {
	local f
	for f in "$VEC/$1"-*.stp; do
		[ -e "$f" ] && basename "$f" .stp
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

# The difference between a vector's expected files and folder $2; a vector
# with no files has no .expect folder, and then $2 must be empty or absent.
expect_diff() { # NAME DIR
	if [ -d "$VEC/$1.expect" ]; then
		diff -r "$VEC/$1.expect" "$2" 2>&1
	elif [ -e "$2" ]; then
		ls -A "$2"
	fi
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

@test "the vector set holds every case the spec's rules call for" {
	for n in empty safetensors plain two-files two-segments skippable \
		split-tensor unknown-size dtypes empty-file odd-path; do
		[ -f "$VEC/good-$n.stp" ] && [ -f "$VEC/good-$n.out" ] ||
			note "missing good-$n"
	done
	for n in magic header-crc version header-flags frame-crc \
		frame-type-zero frame-flags frame-reserved length-over-cap \
		truncated-in-header truncated-in-payload truncated-no-end \
		trailing-garbage end-frames end-bytes end-files end-reserved \
		data-outside-file file-inside-file end-inside-file path-dotdot \
		path-absolute path-empty-component data-gap tensor-size-mismatch \
		tensor-unknown-dtype tensor-misaligned-data file-end-crc \
		file-end-size file-end-tensors file-size-mismatch \
		undecoded-frame empty-input; do
		[ -f "$VEC/bad-$n.stp" ] || note "missing bad-$n"
	done
	for f in "$VEC"/*.stp; do
		[ "$(stat -c %s "$f")" -lt 4096 ] || note "$(basename "$f") is 4 KiB or more"
	done
	report
}

@test "t/mkvectors.tcl regenerates the committed vectors byte for byte" {
	run tclsh "$ROOT/t/mkvectors.tcl" "$BATS_TEST_TMPDIR/v"
	assert_success
	run diff -r "$BATS_TEST_TMPDIR/v" "$VEC"
	assert_success
}

@test "the reader accepts every good vector and prints its listing" {
	for n in $(vectors good); do
		if ! reader "$VEC/$n.stp" > out 2> err; then
			note "$n: stz-read rejects it: $(cat err)"
		elif ! cmp -s out "$VEC/$n.out" || [ -s err ]; then
			note "$n: stz-read listing differs: $(diff out "$VEC/$n.out") $(cat err)"
		fi
	done
	report
}

@test "the reader restores every good vector's files, also from stdin" {
	for n in $(vectors good); do
		rm -rf x y
		reader --extract x "$VEC/$n.stp" > /dev/null 2> err ||
			note "$n: stz-read --extract fails: $(cat err)"
		d=$(expect_diff "$n" x) && [ -z "$d" ] || note "$n: stz-read --extract: $d"
		reader --extract y - < "$VEC/$n.stp" > out 2> err ||
			note "$n: stz-read --extract from stdin fails: $(cat err)"
		cmp -s out "$VEC/$n.out" || note "$n: listing from stdin differs"
		d=$(expect_diff "$n" y) && [ -z "$d" ] || note "$n: stz-read --extract -: $d"
	done
	report
}

@test "st-join -o DIR/ restores every good vector's files" {
	for n in $(vectors good); do
		rm -rf o
		"$JOIN" -q -o o/ < "$VEC/$n.stp" 2> err ||
			note "$n: st-join rejects it: $(cat err)"
		d=$(expect_diff "$n" o) && [ -z "$d" ] || note "$n: st-join -o DIR/: $d"
	done
	report
}

@test "st-join to stdout restores every single-file good vector" {
	checked=0
	for n in $(vectors good); do
		[ -d "$VEC/$n.expect" ] || continue
		mapfile -t files < <(find "$VEC/$n.expect" -type f)
		[ "${#files[@]}" = 1 ] || continue
		checked=$((checked + 1))
		if ! "$JOIN" -q < "$VEC/$n.stp" > out 2> err; then
			note "$n: st-join to stdout rejects it: $(cat err)"
		elif ! cmp -s out "${files[0]}"; then
			note "$n: st-join to stdout writes other bytes"
		fi
	done
	[ "$checked" -ge 5 ] || note "only $checked single-file vectors"
	report
}

@test "the reader rejects every bad vector with one line and no listing" {
	for n in $(vectors bad); do
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

@test "st-join rejects every bad vector with one line and leaves nothing" {
	for n in $(vectors bad); do
		rm -rf o one
		rc=0
		"$JOIN" -q -o o/ < "$VEC/$n.stp" 2> err || rc=$?
		check_reject "$n" err $rc st-join "st-join -o DIR/"
		[ ! -e o ] || note "$n: st-join -o DIR/ leaves o/ behind"
		rc=0
		"$JOIN" -q -o one < "$VEC/$n.stp" 2> err || rc=$?
		check_reject "$n" err $rc st-join "st-join -o FILE"
		[ ! -e one ] || note "$n: st-join -o FILE leaves a file behind"
		rc=0
		"$JOIN" -q < "$VEC/$n.stp" > /dev/null 2> err || rc=$?
		check_reject "$n" err $rc st-join "st-join to stdout"
	done
	report
}

@test "st-split's streams of the fixtures restore byte for byte through the reader" {
	checked=0
	while IFS= read -r f; do
		checked=$((checked + 1))
		rm -rf x
		"$SPLIT" -q "$f" | reader --extract x - > /dev/null 2> err ||
			note "$f: stz-read rejects st-split's stream: $(cat err)"
		cmp -s "$f" "x/$(basename "$f")" ||
			note "$f: stz-read restores other bytes"
	done < <(find "$FIX" -name '*.safetensors' ! -name 'bad-*' | sort)
	[ "$checked" -ge 15 ] || note "only $checked fixtures"
	rm -rf x
	"$SPLIT" -q "$FIX/model" | reader --extract x - > /dev/null 2> err ||
		note "model/: stz-read rejects st-split's stream: $(cat err)"
	diff -r "$FIX/model" x > /dev/null || note "model/: stz-read restores other files"
	report
}
