#!/usr/bin/env bats
# Damaged streams: t/corrupt.sh flips bits and bytes of real compressed
# streams and cuts them short, and every mutant must be refused cleanly
# by stpipe decompress and by rans-dec | fp8-exp -d | st-join.  Here the
# quick version (fixed positions, about 450 mutants), then the checks of
# corrupt.sh itself against stand-in programs that break each rule.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup_file() {
	export ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
	export FIX="$ROOT/t/fixtures"
	[ -f "$FIX/all.safetensors" ] || tclsh "$ROOT/t/mkfixtures.tcl" "$FIX"
}

setup() {
	cd "$BATS_TEST_TMPDIR"
}

# A stand-in stpipe that does what $1 says to every mutant.
fake_stpipe() {
	mkdir -p fake
	cat > fake/stpipe <<EOF
#!/bin/sh
# argv: decompress -T N -o OUT/ FILE
case "$1" in
accept) exit 0 ;;
crash) kill -SEGV \$\$ ;;
hang) sleep 30 ;;
noisy) echo "stpipe: one" >&2; echo "stpipe: two" >&2; exit 1 ;;
status) echo "stpipe: one" >&2; exit 111 ;;
leftover) mkdir -p "\$5"; echo x > "\$5/x"; echo "stpipe: one" >&2; exit 1 ;;
esac
EOF
	chmod +x fake/stpipe
}

@test "every damaged stream is rejected with status 1 and one line, nothing left" {
	run "$ROOT/t/corrupt.sh" -q
	assert_success
	assert_output --regexp "corrupt: total [0-9]+, rejected [0-9]+, undetected 0, crashed 0, hung 0; accepted unchanged 0, wrong status 0, not one stderr line 0, output left 0"
	# every mutant counted was rejected, and there were enough of them
	total=$(sed -n 's/^corrupt: total \([0-9]*\), rejected \([0-9]*\),.*/\1 \2/p' <<< "$output")
	read -r t r <<< "$total"
	[ "$t" -eq "$r" ]
	[ "$t" -ge 400 ]
}

@test "corrupt.sh catches a decoder that accepts damage" {
	fake_stpipe accept
	run "$ROOT/t/corrupt.sh" -s -b fake
	assert_failure 1
	assert_output --partial "total 4, rejected 0, undetected 4,"
	assert_output --regexp "bf16-order0 stpipe: cut at [0-9]+ \(0\): undetected"
}

@test "corrupt.sh catches a decoder that crashes or hangs" {
	fake_stpipe crash
	run "$ROOT/t/corrupt.sh" -s -b fake
	assert_failure 1
	assert_output --partial "total 4, rejected 0, undetected 0, crashed 4, hung 0;"
	fake_stpipe hang
	run "$ROOT/t/corrupt.sh" -s -b fake -t 1
	assert_failure 1
	assert_output --partial "crashed 0, hung 4;"
}

@test "corrupt.sh catches a wrong status, a second stderr line, output left" {
	fake_stpipe status
	run "$ROOT/t/corrupt.sh" -s -b fake
	assert_failure 1
	assert_output --partial "wrong status 4, not one stderr line 0, output left 0"
	fake_stpipe noisy
	run "$ROOT/t/corrupt.sh" -s -b fake
	assert_failure 1
	assert_output --partial "wrong status 0, not one stderr line 4, output left 0"
	fake_stpipe leftover
	mkdir tmp
	TMPDIR="$PWD/tmp" run "$ROOT/t/corrupt.sh" -s -b fake
	assert_failure 1
	assert_output --partial "wrong status 0, not one stderr line 0, output left 4"
	# and corrupt.sh removed its work, what the stand-in left included
	[ -z "$(ls -A tmp)" ]
}
