#!/usr/bin/env bats
# The lossy quantizers int8-quant and fp8-quant (formats/lossy.md): their
# bytes against an independent numpy implementation (t/quant.py), the
# round trip back to floats, untouched files passed byte for byte, the
# records in the header and the stream, the index, and bad input.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup_file() {
	export ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
	export PATH="$ROOT/bin:$PATH"
	export WEIGHTS="${STP_WEIGHTS:-$ROOT/../shared/weights}"
	export PY=/usr/bin/python3
	export Q="$ROOT/t/quant.py"
	export FIX="$BATS_FILE_TMPDIR/q"
	if "$PY" -c 'import numpy' 2> /dev/null; then
		"$PY" "$Q" mk "$FIX"
	fi
}

setup() {
	cd "$BATS_TEST_TMPDIR"
	"$PY" -c 'import numpy' 2> /dev/null ||
		skip "no numpy for $PY (apt-get install python3-numpy)"
}

@test "int8-quant and fp8-quant: --help, --version, man pages, usage errors exit 100" {
	for p in int8-quant fp8-quant; do
		run "$p" --help
		assert_success
		assert_output --partial "LOSSY"
		run "$p" --version
		assert_success
		assert_output --regexp "^$p \(stpipe\) "
		[ -f "$ROOT/share/man/man1/$p.1" ]
		run "$p" --bogus
		[ "$status" -eq 100 ]
		run "$p" --dtype I8 < /dev/null
		[ "$status" -eq 100 ]
		assert_line -n 0 "$p: --dtype: BF16, F16 or F32, not 'I8'"
		run "$p" --min-dim x < /dev/null
		[ "$status" -eq 100 ]
		run "$p" extra
		[ "$status" -eq 100 ]
	done
}

@test "int8-quant writes the bytes formats/lossy.md defines, for BF16, F16 and F32" {
	st-split "$FIX/one.safetensors" | int8-quant | st-join -o i8.safetensors
	run "$PY" "$Q" int8 "$FIX/one.safetensors" i8.safetensors
	assert_success
	assert_output ok
}

@test "fp8-quant writes the bytes formats/lossy.md defines (E4M3, 128x128 blocks, ragged edges)" {
	st-split "$FIX/one.safetensors" | fp8-quant | st-join -o f8.safetensors
	run "$PY" "$Q" fp8 "$FIX/one.safetensors" f8.safetensors
	assert_success
	assert_output ok
}

@test "-d dequantizes to the recorded dtypes, or --dtype" {
	for k in int8 fp8; do
		st-split "$FIX/one.safetensors" | $k-quant > q.stp
		st-join -o q.safetensors -f < q.stp
		$k-quant -d < q.stp | st-join -o d.safetensors -f
		run "$PY" "$Q" deq $k q.safetensors d.safetensors record
		assert_success
		assert_output "ok 3"
		# the record keeps both steps and the file's own metadata
		run "$PY" "$Q" record d.safetensors
		assert_output "$k-quant:quantize $k-quant:dequantize kept"
	done
	# without a record, --dtype decides
	st-split "$FIX/one.safetensors" | int8-quant | st-join -o q.safetensors -f
	"$PY" -c "
exec(open('$Q').read().split('\nmain()')[0])
m, t, o = read('q.safetensors')
write('norec.safetensors', t, {})"
	st-split norec.safetensors | int8-quant -d --dtype F16 | st-join -o d16.safetensors
	run "$PY" "$Q" deq int8 norec.safetensors d16.safetensors F16
	assert_success
	assert_output "ok 3"
}

@test "files with nothing to quantize pass byte for byte; other frames pass" {
	st-split "$FIX/norms.safetensors" | int8-quant | st-join -o n.safetensors
	cmp n.safetensors "$FIX/norms.safetensors"
	st-split "$FIX/norms.safetensors" > a.stp
	int8-quant < a.stp | cmp - a.stp
	# a pattern that matches nothing leaves the file alone too
	st-split "$FIX/one.safetensors" > b.stp
	fp8-quant -p 'nothing*' < b.stp | cmp - b.stp
}

@test "patterns choose the tensors; the defaults leave embeddings and 1-D tensors" {
	st-split "$FIX/one.safetensors" | int8-quant -p '*up_proj*' |
		st-join -o p.safetensors
	run "$PY" -c "
exec(open('$Q').read().split('\nmain()')[0])
m, t, order = read('p.safetensors')
print(' '.join(k + ':' + v[0] for k, v in t.items()))"
	assert_output "model.embed_tokens.weight:BF16 model.layers.0.input_layernorm.weight:BF16 model.layers.0.mlp.up_proj.weight:I8 model.layers.0.mlp.up_proj.weight_scale:F32 model.layers.0.mlp.down_proj.weight:F32 model.layers.0.self_attn.q_proj.weight:F16 model.layers.0.counts:I32"
	# -x replaces the default exclusions: the embedding is taken, unless
	# --min-dim leaves it (16 x 8)
	for md in 1 16; do
		st-split "$FIX/one.safetensors" | int8-quant -x '*mlp*' --min-dim $md |
			st-join -o x$md.safetensors
	done
	run "$PY" -c "
exec(open('$Q').read().split('\nmain()')[0])
for f in ('x1', 'x16'):
    m, t, order = read(f + '.safetensors')
    print(' '.join(k + ':' + v[0] for k, v in t.items() if v[0] == 'I8'))"
	assert_line -n 0 "model.embed_tokens.weight:I8 model.layers.0.self_attn.q_proj.weight:I8"
	assert_line -n 1 "model.layers.0.self_attn.q_proj.weight:I8"
}

@test "a folder: shards rewritten, index weight_map and total_size follow, config untouched" {
	for k in int8 fp8; do
		rm -rf out
		st-split "$FIX/folder" | $k-quant | st-join -o out/
		run "$PY" "$Q" index out
		assert_success
		assert_output "ok 9"
		cmp out/config.json "$FIX/folder/config.json"
		for s in model-00001-of-00002 model-00002-of-00002; do
			run "$PY" "$Q" $k "$FIX/folder/$s.safetensors" out/$s.safetensors
			assert_output ok
		done
		# and back: the index loses the scales again
		st-split out | $k-quant -d | st-join -o back/ -f
		run "$PY" "$Q" index back
		assert_output "ok 6"
	done
}

@test "stpipe info says a model was quantized, with its errors; LOSSY frames survive the codec" {
	st-split "$FIX/one.safetensors" | int8-quant -p '*proj*' | fp8-exp | rans-enc > q.stz
	run stpipe info q.stz
	assert_success
	assert_output --regexp "lossy: one.safetensors: int8-quant quantize \(-p \*proj\*\): 3 tensors, relative error mean [0-9.e-]+ max [0-9.e-]+"
	# the stream still decodes (st-join skips the record) to the quantized file
	rans-dec < q.stz | fp8-exp -d | st-join -o back.safetensors
	st-split "$FIX/one.safetensors" | int8-quant -p '*proj*' | st-join -o direct.safetensors
	cmp back.safetensors direct.safetensors
	# a quantized file compressed later still says so (st-split reads
	# the header's record), and the .stz still loads
	stpipe compress -q back.safetensors -o later.stz
	run stpipe info later.stz
	assert_output --regexp "lossy: back.safetensors: int8-quant quantize \(-p \*proj\*\): 3 tensors \(recorded in the file's header\)"
	stpipe decompress -c later.stz | cmp - back.safetensors
	# an untouched stream says nothing of the kind
	st-split "$FIX/norms.safetensors" | fp8-exp | rans-enc > n.stz
	run stpipe info n.stz
	refute_output --partial "lossy:"
}

@test "errors are measured: INT8 relative error per tensor in the LOSSY frame, non-finite values counted" {
	st-split "$FIX/nonfinite.safetensors" | int8-quant > nf.stp
	run grep -ao '"nonfinite":[0-9]*' nf.stp
	assert_output '"nonfinite":2'
	st-join -o nf.safetensors < nf.stp
	run "$PY" -c "
exec(open('$Q').read().split('\nmain()')[0])
import numpy as np
m, t, o = read('nf.safetensors')
print(np.frombuffer(t['x.weight'][2], np.int8)[[0, 9]].tolist())"
	# NaN -> 0, +Inf -> the row's largest value, 127
	assert_output "[0, 127]"
}

@test "bad input: after fp8-exp, a garbled stream, a truncated one: exit 1, one line" {
	st-split "$FIX/one.safetensors" | fp8-exp > p.stp
	run int8-quant < p.stp
	[ "$status" -eq 1 ]
	assert_output --regexp "^int8-quant: one.safetensors: tensor '[^']+': frame at offset [0-9]+: frame must be decoded by an earlier stage$"
	st-split "$FIX/one.safetensors" > a.stp
	head -c 5000 a.stp > t.stp
	run fp8-quant < t.stp
	[ "$status" -eq 1 ]
	[ "${#lines[@]}" -eq 1 ]
	run fp8-quant < /dev/null
	[ "$status" -eq 1 ]
	assert_output --partial "empty input"
}

@test "the real weights: INT8 and FP8 of tinylm match numpy byte for byte; the DeepSeek layout dequantizes" {
	[ -d "$WEIGHTS/tinylm-7m" ] || skip "no real weights at $WEIGHTS"
	for s in model-00001-of-00002 model-00002-of-00002; do
		f="$WEIGHTS/tinylm-7m/bf16/$s.safetensors"
		st-split "$f" | int8-quant | st-join -o i8.safetensors -f
		run "$PY" "$Q" int8 "$f" i8.safetensors
		assert_output ok
		st-split "$f" | fp8-quant | st-join -o f8.safetensors -f
		run "$PY" "$Q" fp8 "$f" f8.safetensors
		assert_output ok
	done
	f="$WEIGHTS/tinylm-7m/fp8/model.safetensors"
	st-split "$f" | fp8-quant -d | st-join -o d.safetensors
	run "$PY" "$Q" deq fp8 "$f" d.safetensors BF16
	assert_success
	assert_output "ok 42"
}

@test "stpipe compress --quantize int8|fp8 writes the pipeline's bytes; bad values exit 100" {
	for k in int8 fp8; do
		stpipe compress -q --quantize $k "$FIX/folder" -o f.stz -f
		st-split "$FIX/folder" | $k-quant | fp8-exp | rans-enc | cmp - f.stz
		run stpipe info f.stz
		assert_output --partial "lossy: model-00001-of-00002.safetensors: $k-quant quantize: "
	done
	run stpipe compress --quantize int4 "$FIX/folder" -o g.stz
	[ "$status" -eq 100 ]
	assert_line -n 0 "stpipe: --quantize: int8 or fp8, not 'int4'"
	[ ! -e g.stz ]
}
