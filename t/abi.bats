#!/usr/bin/env bats
# ABI hygiene of libstpipe.so: only stp_ symbols are exported, exactly the
# functions stpipe.h declares and lib/libstpipe.map lists; the soname is
# libstpipe.so.SOVERSION; the header matches the fingerprint recorded for
# that SOVERSION in lib/stpipe.abi, so an ABI change cannot go in without
# a decision about the soname.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup_file() {
	export ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
	export SOV=$(sed -n 's/^SOVERSION = //p' "$ROOT/GNUmakefile")
	export SO="$ROOT/lib/libstpipe.so.$SOV"
}

exported() {
	nm -D --defined-only "$SO" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' | sort
}

@test "libstpipe.so exports only stp_ symbols" {
	run exported
	assert_success
	[ -n "$output" ]
	run bash -c "nm -D --defined-only '$SO' | awk '\$2 != \"A\"' | grep -v ' stp_'"
	assert_failure     # nothing but stp_ symbols
	assert_output ""
}

@test "exported symbols = functions of stpipe.h = lib/libstpipe.map" {
	header=$(grep -v '^#include' "$ROOT/lib/stpipe.h" | cc -E -P -x c - |
		grep -oE '\bstp_[a-z0-9_]+ *\(' | tr -d ' (' | sort -u)
	map=$(sed -n '/global:/,/local:/p' "$ROOT/lib/libstpipe.map" |
		grep -oE 'stp_[a-z0-9_]+' | sort -u)
	assert_equal "$(exported)" "$header"
	assert_equal "$map" "$header"
}

@test "every symbol has the version node STPIPE_$SOV" {
	run bash -c "nm -D --defined-only '$SO' | awk '\$2 != \"A\"' | grep -vc '@@STPIPE_$SOV\$'"
	assert_output 0
}

@test "soname is libstpipe.so.$SOV" {
	run bash -c "readelf -d '$SO' | grep SONAME"
	assert_output --partial "[libstpipe.so.$SOV]"
}

@test "the public header matches the ABI record of its soname" {
	run cat "$ROOT/lib/stpipe.abi"
	assert_line "soversion $SOV"
	fp=$("$ROOT/t/abi-fingerprint" "$ROOT/lib/stpipe.h")
	assert_line "header $fp" ||
		fail "stpipe.h changed: if the ABI changed incompatibly, bump SOVERSION (GNUmakefile) and the map's node; then make abi-record"
}

@test "the library links with nothing undefined (-z defs) and needs only its packages" {
	run bash -c "readelf -d '$SO' | grep NEEDED | grep -oE '\[[^]]+\]' | sort"
	assert_success
	for lib in $output; do
		case "$lib" in
		'[libarchive.so'* | '[libjansson.so'* | '[libz.so'* | '[libopenblas.so'* | '[liblapacke.so'* | '[libm.so'* | '[libc.so'* | '[libpthread.so'* | '[ld-linux'* | '[libasan.so'* | '[libubsan.so'*) ;;
		*) fail "unexpected NEEDED $lib" ;;
		esac
	done
}
