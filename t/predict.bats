#!/usr/bin/env bats
# predict: residuals of I8/U8 tensors (formats/predict.md), coded by
# rans-enc and decoded by rans-dec: exact round trips for every shape,
# rejection of damaged frames, and what prediction gains.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup_file() {
	export ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
	export PATH="$ROOT/bin:$PATH"
	export WEIGHTS="${STP_WEIGHTS:-$ROOT/../shared/weights}"
	export TOOL="$ROOT/t/predict-tool.py"
	# every shape: one row, one column, odd sizes, rank 1 and 3, U8, a
	# scalar, and tensors beside them
	cd "$BATS_FILE_TMPDIR"
	python3 "$TOOL" mk shapes.safetensors row:I8:1x1000:smooth \
		col:I8:1000x1:smooth odd:I8:37x53:smooth r1:I8:5000:smooth \
		r3:I8:4x30x50:smooth u8:U8:64x64:ramp s:I8:-:ramp \
		tiny:I8:3x5:smooth noise:I8:40x70:noise
	# rows longer than a frame (st-split cuts 1 MiB pieces)
	python3 "$TOOL" mk long.safetensors long:I8:2x1100000:smooth
	python3 "$TOOL" mk noise.safetensors n:I8:300x200:noise
	python3 "$ROOT/share/bench/int8-weights.py" --smooth 256 384 \
		smooth.safetensors
}

setup() {
	cd "$BATS_TEST_TMPDIR"
	F="$BATS_FILE_TMPDIR"
}

# How many frames of type $1 (two hex digits) stream $2 holds.
count_type() {
	python3 "$TOOL" types < "$2" | grep -c "^$1\$"
}

@test "--help and --version" {
	run predict --help
	assert_success
	assert_output --partial "Usage: predict"
	assert_output --partial "Exit status"
	run predict --version
	assert_success
	assert_output --regexp "^predict \(stpipe\) [0-9]+\.[0-9]+\.[0-9]+$"
}

@test "usage errors exit 100" {
	run predict --bogus
	assert_failure 100
	run predict extra-arg
	assert_failure 100
	assert_output --partial "unexpected argument"
	run predict -d -a
	assert_failure 100
	assert_output --partial "-a"
}

@test "every shape round-trips byte for byte, with and without rans-enc" {
	for f in shapes long smooth; do
		st-split "$F/$f.safetensors" > s.stp
		for a in "" -a; do
			predict $a < s.stp > p.stp
			predict -d < p.stp | st-join -f -o out
			cmp "$F/$f.safetensors" out
			rans-enc < p.stp > p.stz
			rans-dec < p.stz > d.stp
			cmp p.stp d.stp
			predict -d < d.stp | st-join -f -o out
			cmp "$F/$f.safetensors" out
			rans-enc -T 3 < p.stp | cmp - p.stz
			rans-dec -T 3 < p.stz | cmp - d.stp
		done
	done
}

@test "-a predicts every frame of rank 2 and more, and no other" {
	st-split "$F/shapes.safetensors" | predict -a > p.stp
	# row, col, odd, r3, u8, noise; not r1, s, tiny (15 values)
	run count_type 11 p.stp
	assert_output 6
	rans-enc < p.stp > p.stz
	run count_type 32 p.stz
	assert_output 6
	st-split "$F/long.safetensors" | predict -a > l.stp
	run count_type 11 l.stp
	assert_output 3
}

@test "predict after and before fp8-exp, and the front end, decode it" {
	st-split "$F/shapes.safetensors" | predict -a | fp8-exp | rans-enc > p.stz
	rans-dec < p.stz | fp8-exp -d | predict -d | st-join -f -o out
	cmp "$F/shapes.safetensors" out
	stpipe decompress -c p.stz > out2
	cmp "$F/shapes.safetensors" out2
	run stpipe verify p.stz
	assert_success
	st-split "$F/shapes.safetensors" | fp8-exp | predict -a | rans-enc -T 2 |
		rans-dec | predict -d | fp8-exp -d | st-join -f -o out3
	cmp "$F/shapes.safetensors" out3
}

@test "st-join rejects an undecoded RESIDUAL frame" {
	st-split "$F/shapes.safetensors" | predict -a > p.stp
	run st-join -o out < p.stp
	assert_failure 1
	assert_output --regexp "^st-join: .*tensor 'row'.*frame must be decoded by an earlier stage$"
	[ ! -e out ]
	rans-enc < p.stp | rans-dec > d.stp
	run st-join -o out < d.stp
	assert_failure 1
}

@test "damaged RESIDUAL frames are rejected with one line and exit 1" {
	st-split "$F/shapes.safetensors" | predict -a > p.stp
	for field in id lastid count nchunks chunk reserved reserved16 dtype \
		     wrongdtype column rowlen offset; do
		python3 "$TOOL" mutate $field < p.stp > bad.stp
		for stage in "predict -d" rans-enc "stpipe decompress -c"; do
			run bash -c "$stage < bad.stp > /dev/null"
			assert_failure 1
			[ "${#lines[@]}" -eq 1 ] || { echo "$stage $field: $output"; false; }
			assert_output --regexp "^[a-z-]+: .*(malformed frame|reserved field is not zero)"
		done
	done
}

@test "damaged CODED_RESIDUAL frames are rejected by rans-dec" {
	st-split "$F/shapes.safetensors" | predict -a | rans-enc > p.stz
	for field in id count nchunks reserved dtype column; do
		python3 "$TOOL" mutate c:$field < p.stz > bad.stz
		for stage in rans-dec "stpipe decompress -c"; do
			run bash -c "$stage < bad.stz > /dev/null"
			assert_failure 1
			[ "${#lines[@]}" -eq 1 ] || { echo "$stage $field: $output"; false; }
		done
	done
}

@test "a smooth tensor codes much smaller with prediction" {
	st-split "$F/smooth.safetensors" > s.stp
	plain=$(rans-enc < s.stp | wc -c)
	pred=$(predict < s.stp | rans-enc | wc -c)
	echo "plain $plain predicted $pred"
	[ "$pred" -lt $((plain / 2)) ]
	predict < s.stp > p.stp
	run count_type 11 p.stp
	assert_output 1
}

@test "where prediction does not pay, the stream is left as it was" {
	st-split "$F/noise.safetensors" > s.stp
	predict < s.stp | cmp - s.stp
	# forced, it still round-trips and costs little more than its headers
	plain=$(rans-enc < s.stp | wc -c)
	forced=$(predict -a < s.stp | rans-enc | wc -c)
	echo "plain $plain forced $forced"
	[ "$forced" -le $((plain + 64)) ]
}

@test "INT8 real weights: prediction never costs more than it saves" {
	src="$WEIGHTS/tinylm-7m/bf16/model-00001-of-00002.safetensors"
	[ -f "$src" ] || skip "no real weights at $WEIGHTS/tinylm-7m/bf16"
	python3 "$ROOT/share/bench/int8-weights.py" "$src" q.safetensors
	st-split q.safetensors > s.stp
	rans-enc < s.stp > plain.stz
	predict < s.stp | rans-enc > pred.stz
	plain=$(wc -c < plain.stz)
	pred=$(wc -c < pred.stz)
	echo "plain $plain predicted $pred"
	[ "$pred" -le "$plain" ]
	rans-dec < pred.stz | predict -d | st-join -o out
	cmp q.safetensors out
	predict -a < s.stp | rans-enc -T 4 > all.stz
	stpipe decompress -c all.stz | cmp - q.safetensors
}

@test "the second reader (t/stz-read.tcl) restores predicted streams" {
	python3 "$TOOL" mk v.safetensors row:I8:1x300:smooth col:I8:300x1:smooth \
		odd:I8:37x53:smooth u8:U8:20x30:ramp n:I8:20x20:noise \
		r3:I8:2x3x50:smooth
	st-split v.safetensors | predict -a > v.stp
	rans-enc < v.stp > v.stz
	for s in v.stp v.stz; do
		rm -rf x
		run tclsh "$ROOT/t/stz-read.tcl" --extract x "$s"
		assert_success
		assert_output --regexp "(RESIDUAL|CODED_RESIDUAL) 984 1961 I8 53 0 4096 [a-z]+"
		cmp v.safetensors x/v.safetensors
	done
	python3 "$TOOL" mutate id < v.stp > bad.stp
	run tclsh "$ROOT/t/stz-read.tcl" bad.stp
	assert_failure 1
	assert_output --partial "predictor id 6"
}
