#!/usr/bin/env bats
# fp8-exp, rans-enc, rans-dec and the stpipe front end: bit-exact round
# trips, identical bytes across variants, thread counts and the front end,
# and rejection of damaged streams.

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

good_files() {
	ls "$FIX"/dtype-*.safetensors "$FIX/all.safetensors" \
		"$FIX/padded.safetensors" "$FIX/fp8/fp8-block.safetensors"
}

# The variants this CPU runs.
impls() {
	echo scalar
	grep -qw avx2 /proc/cpuinfo && echo avx2
	grep -qw avx512bw /proc/cpuinfo && echo avx512
	true
}

@test "--help and --version for fp8-exp, rans-enc, rans-dec, stpipe" {
	for p in fp8-exp rans-enc rans-dec stpipe; do
		run "$p" --help
		assert_success
		assert_output --partial "Usage: $p"
		assert_output --partial "Exit status"
		run "$p" --version
		assert_success
		assert_output --regexp "^$p \(stpipe\) [0-9.]+$"
		[ -f "$ROOT/share/man/man1/$p.1" ]
	done
}

@test "usage errors exit 100" {
	run fp8-exp -T 99
	assert_failure 100
	run rans-enc extra
	assert_failure 100
	run stpipe frobnicate
	assert_failure 100
	assert_output --partial "unknown command"
	run stpipe compress -m nosuch x
	assert_failure 100
	assert_output --partial "unknown model kind"
	run stpipe compress
	assert_failure 100
}

@test "fp8-exp splits every float dtype into planes and back, bit-exact" {
	for f in $(good_files); do
		st-split "$f" | fp8-exp > p.stp
		fp8-exp -d < p.stp | st-join > out
		cmp "$f" out
	done
	# float tensors became PLANES frames: the final stage refuses them
	st-split "$FIX/dtype-BF16.safetensors" | fp8-exp > p.stp
	run bash -c 'st-join < p.stp > /dev/null'
	assert_failure 1
	assert_output --partial "must be decoded by an earlier stage"
}

@test "the whole pipeline round-trips every dtype, file and folder" {
	for f in $(good_files) "$FIX/model"; do
		st-split "$f" | fp8-exp | rans-enc > c.stz
		rm -rf out
		rans-dec < c.stz | fp8-exp -d | st-join -o out/
		if [ -d "$f" ]; then diff -r "$f" out; else cmp "$f" "out/$(basename "$f")"; fi
	done
}

@test "every encoder variant writes the same bytes, every decoder reads them" {
	st-split "$FIX/model" "$FIX/fp8" "$FIX/dtype-F32.safetensors" |
		fp8-exp > p.stp
	for e in $(impls); do
		STP_IMPL=$e rans-enc < p.stp > "c.$e"
		cmp c.scalar "c.$e"
		for d in $(impls); do
			STP_IMPL=$d rans-dec < "c.$e" > "d.$e.$d"
			STP_IMPL=$d rans-dec < "c.$e" | fp8-exp -d |
				st-join -o "r.$e.$d/"
			diff -r "$FIX/model" "r.$e.$d"/ -x fp8-block.safetensors \
				-x dtype-F32.safetensors
			cmp "$FIX/fp8/fp8-block.safetensors" "r.$e.$d/fp8-block.safetensors"
		done
	done
}

@test "STP_IMPL naming a variant this CPU cannot run is a usage error" {
	for p in rans-dec rans-enc fp8-exp; do
		run bash -c "STP_IMPL=sse9 $p < /dev/null"
		assert_failure 100
		assert_output --partial "$p: STP_IMPL=sse9"
	done
	run bash -c 'STP_IMPL=sse9 stpipe verify /dev/null'
	assert_failure 100
	if ! grep -qw avx512bw /proc/cpuinfo; then
		run bash -c 'STP_IMPL=avx512 rans-enc < /dev/null'
		assert_failure 100
	fi
}

@test "output is identical for every thread count" {
	st-split "$FIX/model" "$FIX/fp8" | fp8-exp > p.stp
	rans-enc < p.stp > c1
	for t in 2 3 4 0; do
		rans-enc -T $t < p.stp | cmp c1 -
		fp8-exp -T $t -d < <(rans-dec -T $t < c1) | cmp <(fp8-exp -d < p.stp) -
	done
	stpipe compress -T 3 "$FIX/model" -o t3.stz
	stpipe compress -T 1 "$FIX/model" -o t1.stz
	cmp t1.stz t3.stz
}

@test "stpipe compress writes exactly what the pipeline writes" {
	for f in $(good_files) "$FIX/model"; do
		stpipe compress -q "$f" -o front.stz -f
		st-split "$f" | fp8-exp | rans-enc > pipe.stz
		cmp front.stz pipe.stz
	done
}

@test "stpipe names outputs like zstd, refuses to overwrite without -f" {
	cp "$FIX/dtype-BF16.safetensors" m.safetensors
	cp -r "$FIX/model" model
	stpipe compress m.safetensors
	[ -f m.safetensors.stz ]
	[ "$(stat -c %a m.safetensors.stz)" = "$(printf '%o' $((0666 & ~$(umask))))" ]
	stpipe compress model/
	[ -f model.stz ]
	run stpipe compress m.safetensors
	assert_failure 100
	assert_output --partial "exists"
	stpipe compress -f m.safetensors
	mkdir r && cd r
	stpipe decompress ../m.safetensors.stz -o m.safetensors
	cmp "$FIX/dtype-BF16.safetensors" m.safetensors
	cp ../model.stz .
	stpipe decompress model.stz
	diff -r "$FIX/model" model
	stpipe decompress -c ../m.safetensors.stz | cmp "$FIX/dtype-BF16.safetensors" -
	stpipe compress -c ../m.safetensors | stpipe decompress -c | cmp "$FIX/dtype-BF16.safetensors" -
}

@test "stpipe info reads every dtype, scalars and zero-size tensors included" {
	for f in $(good_files); do
		stpipe compress -q -f "$f" -o x.stz
		run stpipe info x.stz
		assert_success
		assert_output --partial "total: 1 files"
	done
}

@test "stpipe info prints a table and TSV with the documented columns" {
	stpipe compress -q "$FIX/model" -o m.stz
	run stpipe info m.stz --tsv
	assert_success
	assert_line --index 0 --regexp "^file	name	dtype	shape	orig_bytes	coded_bytes	.*exp_bits	exp_h0"
	# one row per tensor of the two shards: 10 + 11
	assert_equal "$(( ${#lines[@]} - 1 ))" 21
	assert_output --partial "model.layers.0.self_attn.q_proj.weight	BF16	[64,64]	8192	"
	run stpipe info m.stz
	assert_success
	assert_output --partial "total: 6 files, 21 tensors"
	assert_output --regexp "coded/bound [0-9.]+"
}

# The bytes of tensor $2 of safetensors file $1, via the spec reader's listing.
tensor_bytes() {
	local line off n
	line=$(st-split "$1" | tclsh "$ROOT/t/stz-read.tcl" - | awk -v t="$2" '$1 == "TENSOR" && $3 == t')
	off=$(echo "$line" | awk '{print $6}')
	n=$(echo "$line" | awk '{print $7}')
	tail -c +$((off + 1)) "$1" | head -c "$n"
}

@test "stpipe extract returns one tensor's bytes, through the index or a scan" {
	f="$FIX/model/model-00002-of-00002.safetensors"
	stpipe compress -q "$FIX/model" -o m.stz
	stpipe extract m.stz model.layers.1.mlp.up_proj.weight > up.bin
	tensor_bytes "$f" model.layers.1.mlp.up_proj.weight | cmp - up.bin
	stpipe extract m.stz lm_head.weight --file model-00002-of-00002.safetensors -o head.bin
	tensor_bytes "$f" lm_head.weight | cmp - head.bin
	# from a pipe there is no index: the same bytes by scanning
	cat m.stz | stpipe extract /dev/stdin lm_head.weight | cmp - head.bin
	run stpipe extract m.stz no.such.tensor
	assert_failure 1
	assert_output --partial "no.such.tensor"
}

@test "stpipe extract gives every tensor of every dtype, coded bytes too" {
	f="$FIX/all.safetensors"
	stpipe compress -q "$f" -o a.stz
	n=0
	for name in $(stpipe info --tsv a.stz | awk -F'\t' 'NR > 1 {print $2}'); do
		stpipe extract a.stz "$name" > got || fail "extract $name"
		tensor_bytes "$f" "$name" | cmp - got || fail "$name differs"
		n=$((n + 1))
	done
	[ "$n" -gt 10 ]
}

@test "stpipe verify passes good files and catches damage behind the CRC" {
	stpipe compress -q "$FIX/model" -o m.stz
	run stpipe verify m.stz
	assert_success
	assert_output "m.stz: OK"
	# a coded body changed and its frame CRC mended: rANS checks catch it
	tclsh "$ROOT/t/mutate.tcl" m.stz bad1.stz 0x30 2 100 0x55
	run stpipe verify bad1.stz
	assert_failure 1
	assert_output --partial "tensor '"
	# a raw byte changed: only the end-to-end file checksum can tell
	tclsh "$ROOT/t/mutate.tcl" m.stz bad2.stz 0x30 0 -1 0x01
	run stpipe verify bad2.stz
	assert_failure 1
	assert_output --partial "checksum mismatch"
	run bash -c 'rans-dec < bad1.stz > /dev/null'
	assert_failure 1
	run bash -c 'stpipe decompress bad1.stz -o out/'
	assert_failure 1
	[ ! -e out ]
}

@test "fp8-exp -d rejects a plane symbol out of its range" {
	st-split "$FIX/fp8/fp8-block.safetensors" | fp8-exp > p.stp
	# plane 0 of E4M3 holds 4-bit exponents: 0xF0 makes one invalid
	tclsh "$ROOT/t/mutate.tcl" p.stp bad.stp 0x10 0 40 0xF0
	run bash -c 'fp8-exp -d < bad.stp > /dev/null'
	assert_failure 1
	assert_output --partial "malformed frame"
}

@test "a truncated .stz is rejected by every decoder, leaving nothing" {
	stpipe compress -q "$FIX/model" -o m.stz
	size=$(stat -c %s m.stz)
	for cut in 100 $((size / 3)) $((size - 37)); do
		head -c $cut m.stz > t.stz
		run bash -c 'stpipe decompress t.stz -o out/'
		assert_failure 1
		[ ! -e out ]
		run bash -c 'rans-dec < t.stz > /dev/null'
		assert_failure 1
	done
}

@test "the real weights round-trip through stpipe and beat zstd -19" {
	[ -d "$WEIGHTS" ] || skip "no real weights at $WEIGHTS"
	for m in tinylm-7m/bf16 tinylm-7m/fp8 stories260K gpt2-lora; do
		stpipe compress -q -T 2 "$WEIGHTS/$m" -o m.stz -f
		rm -rf out
		stpipe decompress m.stz -o out/
		diff -r "$WEIGHTS/$m" out
		st-split "$WEIGHTS/$m" | fp8-exp | rans-enc | cmp m.stz -
		zsize=$(cat "$WEIGHTS/$m"/*.safetensors | zstd -19 -q -c | wc -c)
		ssize=$(stat -c %s m.stz)
		echo "$m: stpipe $ssize zstd-19 $zsize" >&3
		[ "$ssize" -lt "$zsize" ]
	done
}

@test "-m adaptive0 writes MODEL frames that rans-dec, info and extract use" {
	st-split "$FIX/model" "$FIX/fp8" | fp8-exp > p.stp
	rans-enc -m adaptive0 < p.stp > a.stz
	rans-enc -m adaptive0 -T 3 < p.stp | cmp a.stz -
	stpipe compress -q -m adaptive0 "$FIX/model" "$FIX/fp8" -o f.stz
	cmp a.stz f.stz
	rans-dec < a.stz | fp8-exp -d | st-join -o r/
	diff -r "$FIX/model" r -x fp8-block.safetensors
	cmp "$FIX/fp8/fp8-block.safetensors" r/fp8-block.safetensors
	# the model family frame is there and st-join refuses it undecoded
	run bash -c 'st-join -o x/ < a.stz'
	assert_failure 1
	run stpipe info a.stz
	assert_success
	stpipe extract a.stz model.layers.1.mlp.up_proj.weight > up.bin
	stpipe compress -q "$FIX/model" -o o.stz
	stpipe extract o.stz model.layers.1.mlp.up_proj.weight | cmp up.bin -
	run stpipe compress -m nosuch "$FIX/model" -o z.stz
	assert_failure 100
	assert_output --partial "unknown model kind"
}
