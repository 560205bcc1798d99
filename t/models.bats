#!/usr/bin/env bats
# Exponent models (formats/model.md): ctx, lstm and the online lstm through
# rans-enc, lstm-model and the front end; bit-exact round trips, the same
# bytes for every thread count, variant, compiler optimisation level and
# the pipeline of programs, and damaged or mismatched MODEL frames refused.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup_file() {
	export ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
	export PATH="$ROOT/bin:$PATH"
	export FIX="$ROOT/t/fixtures"
	[ -f "$FIX/all.safetensors" ] || tclsh "$ROOT/t/mkfixtures.tcl" "$FIX"
	[ -x "$ROOT/t/mkstructured" ] || make -C "$ROOT" t/mkstructured > /dev/null
	# Small structured sets (row and column scales, FP8 block scales):
	# a layer of 4 weights of up to 704 x 256, about 490,000 values.
	export SET="$BATS_FILE_TMPDIR/set"
	mkdir -p "$SET"
	"$ROOT/t/mkstructured" -S 4 -l 1 -r 1 -c 1 > "$SET/f8.safetensors"
	"$ROOT/t/mkstructured" -S 4 -l 1 -r 1 -c 1 -t bf16 -s 2 > "$SET/bf16.safetensors"
	# Quicker fits for tests: the defaults train twice on a million
	# exponents.
	export LM="lstm-model -n 4096 -t 100000 --epochs 2"
}

setup() {
	cd "$BATS_TEST_TMPDIR"
}

# The variants this CPU runs.
impls() {
	echo scalar
	grep -qw avx2 /proc/cpuinfo && echo avx2
	grep -qw avx512bw /proc/cpuinfo && echo avx512
	true
}

@test "lstm-model --help, --version, man page; usage errors exit 100; --gpu exits 111" {
	run lstm-model --help
	assert_success
	assert_output --partial "Usage: lstm-model"
	assert_output --partial "Exit status"
	run lstm-model --version
	assert_output --regexp "^lstm-model \(stpipe\) [0-9.]+$"
	[ -f "$ROOT/share/man/man1/lstm-model.1" ]
	run lstm-model -H 65
	assert_failure 100
	run lstm-model --kind nosuch
	assert_failure 100
	run lstm-model extra
	assert_failure 100
	run bash -c 'lstm-model --gpu < /dev/null > out'
	assert_failure 111
	assert_output --partial "no usable GPU"
	[ ! -s out ]
	run rans-enc -m lstm
	assert_failure 100
}

# Round trip of FILE with the pipeline PIPE (the coding half); prints the
# size.
roundtrip() {
	local file=$1 pipe=$2 name
	name=$(basename "$file")
	bash -o pipefail -c "st-split '$file' | fp8-exp | $pipe > c.stz"
	rans-dec < c.stz | fp8-exp -d | st-join -q -f -o "r-$name"
	cmp "$file" "r-$name"
	stat -c %s c.stz
}

@test "-m ctx: every dtype and the structured sets round-trip, smaller than order0 on the sets" {
	for f in "$FIX"/dtype-*.safetensors "$FIX/all.safetensors" "$SET"/*.safetensors; do
		roundtrip "$f" "rans-enc -m ctx" > /dev/null
	done
	for f in "$SET"/*.safetensors; do
		o0=$(roundtrip "$f" "rans-enc")
		cx=$(roundtrip "$f" "rans-enc -m ctx")
		echo "# $(basename "$f"): order0 $o0, ctx $cx" >&3
		[ "$cx" -lt "$o0" ]
	done
}

@test "lstm-model | rans-enc: round trip, MODEL frames used, smaller than order0 on the FP8 set" {
	o0=$(roundtrip "$SET/f8.safetensors" "rans-enc")
	lm=$(roundtrip "$SET/f8.safetensors" "$LM | rans-enc")
	echo "# f8: order0 $o0, lstm $lm" >&3
	[ "$lm" -lt "$o0" ]
	# the model family frame is there: st-join refuses the stream undecoded
	run bash -c 'st-join -q > /dev/null < c.stz'
	assert_failure 1
	# without rans-enc, MODEL_FIT and MODEL_USE are skippable metadata
	st-split "$SET/f8.safetensors" | fp8-exp | $LM | fp8-exp -d | st-join -q | cmp - "$SET/f8.safetensors"
	for f in "$SET/bf16.safetensors" "$FIX/all.safetensors"; do
		roundtrip "$f" "$LM -O 12 | rans-enc -m ctx" > /dev/null
	done
}

@test "the same bytes for every thread count, and the front end writes what the pipeline writes" {
	st-split "$SET/f8.safetensors" "$SET/bf16.safetensors" | fp8-exp > p.stp
	for m in ctx adaptive0; do
		rans-enc -m $m < p.stp > a.stz
		for t in 2 3; do
			rans-enc -m $m -T $t < p.stp | cmp a.stz -
		done
		stpipe compress -q -f -m $m "$SET/f8.safetensors" "$SET/bf16.safetensors" -o f.stz
		cmp a.stz f.stz
		for t in 1 2; do
			rm -rf out$t
			stpipe decompress -q -T $t f.stz -o out$t/
			cmp "$SET/f8.safetensors" out$t/f8.safetensors
			cmp "$SET/bf16.safetensors" out$t/bf16.safetensors
		done
	done
	# lstm and auto (fits with the front end's defaults) on the FP8 set
	st-split "$SET/f8.safetensors" | fp8-exp > q.stp
	lstm-model < q.stp | rans-enc > l.stz
	lstm-model -O 12 -a ctx < q.stp | rans-enc -m ctx > u.stz
	stpipe compress -q -f -T 2 -m lstm "$SET/f8.safetensors" -o lt.stz
	cmp l.stz lt.stz
	stpipe compress -q -f -T 2 -m auto "$SET/f8.safetensors" -o ut.stz
	cmp u.stz ut.stz
	stpipe decompress -q -T 2 u.stz -o uo/
	cmp "$SET/f8.safetensors" uo/f8.safetensors
}

@test "every variant and a scalar -O0 build decode what the -O3 build writes, and write the same" {
	# Two more builds of the whole tree: -O3 (AVX-512 where the CPU has
	# it) and -O0 run with STP_IMPL=scalar (the reference paths of every
	# model: predict and update, and the scalar rANS).
	for o in O3 O0; do
		mkdir -p "$o"
		cp -r "$ROOT/GNUmakefile" "$ROOT/lib" "$ROOT/bin" "$o/"
		mkdir -p "$o/cuda"
		make -C "$o" -s clean > /dev/null
		make -C "$o" -s -j2 CFLAGS="-$o" NVCC= bin/st-split bin/fp8-exp bin/lstm-model \
			bin/rans-enc bin/rans-dec bin/st-join > /dev/null
	done
	st-split "$SET/f8.safetensors" | fp8-exp > p.stp
	O3/bin/$LM -O 12 < p.stp > m3.stp
	STP_IMPL=scalar O0/bin/$LM -O 12 < p.stp > m0.stp
	cmp m3.stp m0.stp
	for m in "-m ctx" "" "-m adaptive0"; do
		O3/bin/rans-enc $m < m3.stp > e3.stz
		STP_IMPL=scalar O0/bin/rans-enc $m < m3.stp > e0.stz
		cmp e3.stz e0.stz
		O3/bin/rans-dec < e3.stz > d3.stp
		STP_IMPL=scalar O0/bin/rans-dec < e3.stz | cmp - d3.stp
		for v in $(impls); do
			STP_IMPL=$v rans-dec < e3.stz | cmp - d3.stp
			STP_IMPL=$v rans-enc $m < m3.stp | cmp - e3.stz
		done
		fp8-exp -d < d3.stp | st-join -q | cmp - "$SET/f8.safetensors"
	done
}

@test "a damaged or mismatched MODEL frame is refused with one line and exit 1" {
	st-split "$SET/f8.safetensors" | fp8-exp | $LM | rans-enc > m.stz
	# a weight of the lstm changed (CRC mended): the final states disagree
	tclsh "$ROOT/t/mutate.tcl" m.stz bad1.stz 0x20 0 40 0x01
	run stpipe decompress -q -c bad1.stz
	assert_failure 1
	assert_output --partial "corrupt coded data"
	[ "${#lines[@]}" -eq 1 ]
	# another id: the bodies name a model the stream lacks
	tclsh "$ROOT/t/mutate.tcl" m.stz bad2.stz 0x20 0 0 0x01
	run bash -c 'rans-dec < bad2.stz > /dev/null'
	assert_failure 1
	[ "${#lines[@]}" -eq 1 ]
	# a reserved params byte set
	tclsh "$ROOT/t/mutate.tcl" m.stz bad3.stz 0x20 0 21 0x01
	run bash -c 'rans-dec < bad3.stz > /dev/null'
	assert_failure 1
	assert_output --partial "reserved"
	# damage the CRC does not mend
	cp m.stz bad4.stz
	printf '\xff' | dd of=bad4.stz bs=1 seek=200 conv=notrunc 2> /dev/null
	run stpipe decompress -q bad4.stz -o r/
	assert_failure 1
	[ ! -e r ]
}
