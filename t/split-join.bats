#!/usr/bin/env bats
# st-split and st-join: round trips, bad input, exit codes, no partial output.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup_file() {
	export ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
	export PATH="$ROOT/bin:$PATH"
	export FIX="$ROOT/t/fixtures"
	export WEIGHTS="${STP_WEIGHTS:-$ROOT/../shared/weights}"
	[ -f "$FIX/all.safetensors" ] || tclsh "$ROOT/t/mkfixtures.tcl" "$FIX"
}

setup() {
	cd "$BATS_TEST_TMPDIR"
}

# Files whose names match, as a bats-friendly list.
good_files() {
	ls "$FIX"/dtype-*.safetensors "$FIX/all.safetensors" \
		"$FIX/padded.safetensors" "$FIX/fp8/fp8-block.safetensors"
}

@test "--help and --version exit 0 and print to stdout" {
	for p in st-split st-join; do
		run "$p" --help
		assert_success
		assert_output --partial "Usage: $p"
		assert_output --partial "Exit status"
		run "$p" --version
		assert_success
		assert_output --regexp "^$p \(stpipe\) [0-9]+\.[0-9]+\.[0-9]+$"
	done
}

@test "an unknown option is a usage error (100)" {
	run st-split --bogus
	assert_failure 100
	run st-join --bogus
	assert_failure 100
	run st-join extra-arg
	assert_failure 100
	assert_output --partial "unexpected argument"
}

@test "every dtype, scalar and zero-size tensor round-trips byte for byte" {
	for f in $(good_files); do
		st-split "$f" > s.stp
		st-join < s.stp > out
		cmp "$f" out
	done
}

@test "standard input is split as a stream, padding and gaps included" {
	st-split < "$FIX/padded.safetensors" | st-join > out
	cmp "$FIX/padded.safetensors" out
	st-split - < "$FIX/all.safetensors" | st-join -o all.out
	cmp "$FIX/all.safetensors" all.out
}

@test "a model folder round-trips, subfolders and other files included" {
	st-split "$FIX/model" | st-join -o restored/
	diff -r "$FIX/model" restored
	# and into an existing folder
	mkdir existing
	st-split "$FIX/model" | st-join -o existing
	diff -r "$FIX/model" existing
}

@test "file modes and times survive a folder round trip" {
	cp -r "$FIX/model" m
	chmod 640 m/config.json
	touch -d '2020-01-02 03:04:05' m/config.json
	st-split m | st-join -o r/
	[ "$(stat -c %a r/config.json)" = 640 ]
	[ "$(stat -c %Y r/config.json)" = "$(stat -c %Y m/config.json)" ]
}

@test "tar, tar.gz and zip archives are read, and written" {
	tar -C "$FIX" -cf m.tar model
	tar -C "$FIX" -czf m.tgz model
	st-split m.tar | st-join -o a/
	diff -r "$FIX/model" a/model
	st-split m.tgz | st-join -o b/
	diff -r "$FIX/model" b/model
	st-split < m.tar | st-join -o c/
	diff -r "$FIX/model" c/model
	st-split m.tar | st-join -o out.zip
	st-split out.zip | st-join -o d/
	diff -r "$FIX/model" d/model
	st-split m.tar | st-join -o out.tar.xz
	mkdir e && tar -C e -xf out.tar.xz
	diff -r "$FIX/model" e/model
}

@test "concatenated streams are one stream holding both" {
	st-split "$FIX/all.safetensors" > a.stp
	st-split "$FIX/padded.safetensors" > b.stp
	cat a.stp b.stp | st-join -o both/
	cmp "$FIX/all.safetensors" both/all.safetensors
	cmp "$FIX/padded.safetensors" both/padded.safetensors
}

@test "several inputs go into one stream" {
	st-split "$FIX/all.safetensors" "$FIX/model" | st-join -o r/
	cmp "$FIX/all.safetensors" r/all.safetensors
	cmp "$FIX/model/config.json" r/config.json
}

bad_split() { # FILE EXPECTED-MESSAGE
	run st-split "$FIX/$1"
	assert_failure 1
	assert_equal "${#lines[@]}" 1
	assert_output --partial "st-split: $FIX/$1"
	assert_output --partial "$2"
}

@test "bad safetensors files are rejected with one line naming the problem" {
	bad_split bad-empty.safetensors "empty input"
	bad_split bad-short.safetensors "truncated"
	bad_split bad-hdrlen.safetensors "header length beyond the end of the file"
	bad_split bad-json.safetensors "invalid JSON"
	bad_split bad-notobject.safetensors "invalid safetensors header"
	bad_split bad-range.safetensors "tensor 'x': offsets out of range"
	bad_split bad-overlap.safetensors "overlapping tensors"
	bad_split bad-size.safetensors "size does not match dtype and shape"
	bad_split bad-dtype.safetensors "unknown dtype"
	bad_split bad-offsets.safetensors "offsets out of range"
	bad_split bad-truncdata.safetensors "offsets out of range"
}

@test "a truncated file on standard input is detected" {
	head -c 140 "$FIX/bad-truncdata.safetensors" > cut
	run bash -c 'st-split < cut | st-join -o out.safetensors'
	assert_failure 1
	assert_output --partial "truncated"
	[ ! -e out.safetensors ]
	[ -z "$(ls -A)" ] || [ "$(ls -A)" = cut ]
}

@test "a missing input is a system error (111)" {
	run st-split no-such-file.safetensors
	assert_failure 111
	assert_output "st-split: no-such-file.safetensors: No such file or directory"
}

@test "an input that is neither safetensors nor an archive is rejected" {
	echo "just text" > notes.txt
	run st-split notes.txt
	assert_failure 1
	assert_output --partial "st-split: notes.txt"
}

corrupt_at() { # OFFSET: flip one byte of s.stp into c.stp
	cp s.stp c.stp
	printf '\xff' | dd of=c.stp bs=1 seek="$1" conv=notrunc status=none
}

@test "a flipped byte is caught by CRC and no output is left behind" {
	st-split "$FIX/dtype-F32.safetensors" > s.stp
	for off in 20 100 2000 20000; do
		corrupt_at "$off"
		run bash -c 'st-join -o out.safetensors < c.stp'
		assert_failure 1
		assert_equal "${#lines[@]}" 1
		assert_output --partial "st-join: stdin: offset"
		[ ! -e out.safetensors ]
	done
	run bash -c 'ls -A | grep -v -e "^s.stp$" -e "^c.stp$"'
	assert_output ""
}

@test "a truncated stream is rejected and leaves nothing" {
	st-split "$FIX/model" > s.stp
	size=$(stat -c %s s.stp)
	for cut in 0 10 16 100 $((size / 2)) $((size - 1)); do
		head -c "$cut" s.stp > t.stp
		run bash -c 'st-join -o out/ < t.stp'
		assert_failure 1
		[ ! -e out ]
	done
	run bash -c 'ls -A | grep -v -e "^s.stp$" -e "^t.stp$"'
	assert_output ""
}

@test "trailing garbage after the end frame is rejected" {
	st-split "$FIX/all.safetensors" > s.stp
	{ cat s.stp; printf 'x'; } > g.stp
	run bash -c 'st-join -o out.safetensors < g.stp'
	assert_failure 1
	assert_output --partial "trailing garbage"
	[ ! -e out.safetensors ]
}

@test "existing output is refused without -f (100) and replaced with it" {
	st-split "$FIX/all.safetensors" > s.stp
	echo old > out.safetensors
	run bash -c 'st-join -o out.safetensors < s.stp'
	assert_failure 100
	assert_output --partial "exists"
	[ "$(cat out.safetensors)" = old ]
	st-join -f -o out.safetensors < s.stp
	cmp "$FIX/all.safetensors" out.safetensors
}

@test "a stream of several files cannot go to stdout or a single file" {
	st-split "$FIX/model" > s.stp
	run bash -c 'st-join < s.stp > /dev/null'
	assert_failure 1
	assert_output --partial "more than one file"
	run bash -c 'st-join -o one.safetensors < s.stp'
	assert_failure 1
	[ ! -e one.safetensors ]
}

@test "a closed pipe downstream is a system error (111), not a crash" {
	mkdir big
	head -c 8000000 /dev/zero > big/blob.bin   # more than a pipe holds
	run bash -c 'st-split big | head -c 10 > /dev/null; exit ${PIPESTATUS[0]}'
	assert_failure 111
	assert_output --partial "st-split: stdout: Broken pipe"
}

@test "the real weights round-trip byte for byte" {
	[ -d "$WEIGHTS" ] || skip "no real weights at $WEIGHTS"
	st-split "$WEIGHTS" | st-join -o w/
	diff -r "$WEIGHTS" w
	for f in "$WEIGHTS"/tinylm-7m/bf16/*.safetensors \
		 "$WEIGHTS"/tinylm-7m/fp8/*.safetensors \
		 "$WEIGHTS"/stories260K/*.safetensors; do
		st-split "$f" | st-join > one
		cmp "$f" one
	done
}
