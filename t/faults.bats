#!/usr/bin/env bats
# Pipeline faults and resource limits (issue: hostile input and faults):
# a stage whose reader goes away exits 111 with one line, the end stage
# of a stream cut off by a dying stage exits 1 and leaves no file, a full
# disk is a system error, a stream that declares huge sizes does not
# make a stage allocate them, and a stage killed by a signal leaves no
# temporary file.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup_file() {
	export ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
	export PATH="$ROOT/bin:$PATH"
	export FIX="$ROOT/t/fixtures"
	[ -f "$FIX/all.safetensors" ] || tclsh "$ROOT/t/mkfixtures.tcl" "$FIX"
	[ -x "$ROOT/t/mkstructured" ] || make -C "$ROOT" t/mkstructured > /dev/null
	export BIG="$BATS_FILE_TMPDIR/big.safetensors"
	# 8 MB: more than a pipe holds, so writers block and see the reader go
	"$ROOT/t/mkstructured" -l 1 -t bf16 -S 2 > "$BIG"
}

setup() {
	cd "$BATS_TEST_TMPDIR"
}

@test "a stage whose reader goes away exits 111 with one line (EPIPE)" {
	for stage in "st-split '$BIG'" "st-split '$BIG' | fp8-exp" \
		"st-split '$BIG' | fp8-exp | rans-enc" "stpipe compress -c '$BIG'"; do
		run bash -c "$stage 2> err | head -c 1000 > /dev/null; echo \${PIPESTATUS[*]}"
		last=$(echo "$output" | tail -1)
		# the stage writing into head: its status is the last but one
		set -- $last
		eval "rc=\${$(( $# - 1 ))}"
		[ "$rc" = 111 ] || { echo "$stage: status $last"; false; }
		[ "$(wc -l < err)" -ge 1 ]
		grep -q "Broken pipe" err
	done
}

@test "a stream cut off by a stage that dies: exit 1, one line, no output file" {
	stpipe compress -q "$BIG" -o m.stz
	size=$(stat -c %s m.stz)
	for cut in 17 4096 $((size / 2)) $((size - 3)); do
		rm -rf out.safetensors
		run bash -c "head -c $cut m.stz | rans-dec | fp8-exp -d | st-join -q -o out.safetensors"
		assert_failure
		[ ! -e out.safetensors ]
		ls -a | grep -q '\.stp-' && { echo "temporary left behind"; false; }
		run bash -c "head -c $cut m.stz | stpipe decompress -q -o out.safetensors"
		assert_failure 1
		[ "${#lines[@]}" -eq 1 ]
		[ ! -e out.safetensors ]
	done
	# a killed upstream process (as a dropped ssh): the same
	run bash -c "(head -c $((size / 2)) m.stz; kill -9 \$BASHPID) | stpipe decompress -q -o out.safetensors"
	assert_failure 1
	[ ! -e out.safetensors ]
}

@test "a full disk is a system error: exit 111, one line" {
	run bash -c "stpipe decompress -q -c '$FIX/../vectors/good-plain.stp' > /dev/full"
	stpipe compress -q "$BIG" -o m.stz
	run bash -c "stpipe decompress -q -c m.stz > /dev/full"
	assert_failure 111
	[ "${#lines[@]}" -eq 1 ]
	assert_output --partial "No space left on device"
	run bash -c "st-split '$BIG' > /dev/full"
	assert_failure 111
	# a file system that fills up: st-join leaves nothing behind
	mkdir -p small
	if mount -t tmpfs -o size=1m tmpfs small 2> /dev/null; then
		run stpipe decompress -q m.stz -o small/out.safetensors
		ls -a small > listing
		umount small
		assert_failure 111
		[ "$(grep -vc '^\.\.\?$' listing)" -eq 0 ]
	else
		echo "# (cannot mount a small tmpfs here: the file-system case is skipped)" >&3
	fi
}

@test "a stream declaring huge sizes makes no stage allocate them" {
	stpipe compress -q "$FIX/dtype-BF16.safetensors" -o m.stz
	# the FILE frame's size (payload bytes 16..23) and a TENSOR frame's
	# byte count (8..15) set near 2^63, CRCs mended
	tclsh "$ROOT/t/mutate.tcl" m.stz a.stz 0x01 0 23 0x40
	tclsh "$ROOT/t/mutate.tcl" m.stz b.stz 0x02 0 15 0x40
	for f in a.stz b.stz; do
		# rans-dec passes the core frames on (st-join checks them)
		for cmd in "stpipe decompress -q -c $f" "stpipe info $f" \
			"rans-dec < $f | fp8-exp -d | st-join -q" "rans-dec < $f"; do
			run /usr/bin/time -f '%M' -o rss bash -o pipefail -c "$cmd > /dev/null"
			[ "$cmd" = "rans-dec < $f" ] || assert_failure 1
			[ "$(tail -1 rss)" -lt 65536 ] || { echo "$cmd: $(tail -1 rss) KiB"; false; }
		done
	done
}

# Runs CMD (which writes OUT under a temporary name first) with its input
# the first half of IN, then stalled, so it is caught midway; kills it with
# each of SIGINT, SIGTERM, SIGHUP: nothing may be left beside OUT.
killed_midway() {
	local in="$1" out="$2" cmd="$3" sig half
	half=$(( $(stat -c %s "$in") / 2 ))
	for sig in INT TERM HUP; do
		rm -rf d && mkdir d
		mkfifo d/fifo
		( head -c "$half" "$in"; exec sleep 30 ) > d/fifo 2> /dev/null &
		feeder=$!
		bash -c "cd d && exec $cmd < fifo" 2> err &
		pid=$!
		# wait until it has made its temporary file
		for _ in $(seq 200); do
			[ -n "$(find d -name '.*stp-*' -print -quit)" ] && break
			sleep 0.02
		done
		[ -n "$(find d -name '.*stp-*' -print -quit)" ] ||
			fail "$cmd made no temporary file ($sig)"
		kill -"$sig" "$pid"
		wait "$pid" && st=0 || st=$?
		kill "$feeder" 2> /dev/null || true
		wait "$feeder" 2> /dev/null || true
		[ "$st" -ge 128 ] || fail "$cmd survived SIG$sig (status $st)"
		run ls -A d
		assert_output "fifo"
	done
}

@test "a stage killed by SIGINT, SIGTERM or SIGHUP midway leaves no file behind" {
	st-split "$BIG" > big.stp
	stpipe compress -q "$BIG" -o big.stz
	killed_midway big.stp out.safetensors "st-join -o out.safetensors"
	killed_midway big.stz out.safetensors "stpipe decompress -q -o out.safetensors -"
	killed_midway "$BIG" out.stz "stpipe compress -q -o out.stz -"
}
