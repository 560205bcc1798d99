#!/usr/bin/env bats
# st-eval and st-diff: the forward pass against a numpy reference on tiny
# random Llama models (t/mkllama.py), every stored representation of a
# weight (BF16, F32, shards, INT8 with row scales, FP8 with block scales,
# low-rank factors), the comparison of two models, the reference
# perplexities of the real weights, and bad input and usage refused.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup_file() {
	export ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
	export PATH="$ROOT/bin:$PATH"
	export WEIGHTS="${STP_WEIGHTS:-$ROOT/../shared/weights}"
	export M="$BATS_FILE_TMPDIR/m"
	if /usr/bin/python3 -c 'import numpy' 2> /dev/null; then
		/usr/bin/python3 "$ROOT/t/mkllama.py" "$M"
	fi
}

setup() {
	cd "$BATS_TEST_TMPDIR"
}

need_models() {
	[ -f "$M/text" ] || skip "no /usr/bin/python3 with numpy (apt-get install python3-numpy) to write the test models"
}

need_weights() {
	[ -d "$WEIGHTS/tinylm-7m" ] || skip "no real weights at $WEIGHTS/tinylm-7m"
}

# The value of KEY in "key: value" output.
val() {
	sed -n "s/^$1: //p"
}

# Succeeds when |a - b| <= tol.
close() {
	awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'
}

@test "--help and --version for st-eval and st-diff" {
	for p in st-eval st-diff; do
		run "$p" --help
		assert_success
		assert_output --partial "Usage: $p"
		assert_output --partial "Exit status"
		run "$p" --version
		assert_success
		assert_output --regexp "^$p \(stpipe\) [0-9]"
	done
}

@test "usage errors exit 100 with a one-line message and a hint" {
	for args in "" "a b c" "--bogus m" "-n 0 m" "-n 70000 m" "-n x m" \
		    "--text a --tokens b m"; do
		run st-eval $args
		assert_equal "$status" 100
		assert_line --index 0 --regexp '^st-eval: '
		assert_equal "${lines[-1]}" "Try 'st-eval --help' for more information."
	done
	for args in "" "a" "a b c" "--bogus a b"; do
		run st-diff $args
		assert_equal "$status" 100
		assert_line --index 0 --regexp '^st-diff: '
		assert_equal "${lines[-1]}" "Try 'st-diff --help' for more information."
	done
}

@test "st-eval's bits per token match the numpy reference for every layout" {
	need_models
	for m in f32 bf16 tied lossy perturbed; do
		ref=$(/usr/bin/python3 "$ROOT/t/mkllama.py" --ref "$M/$m" "$M/text" 64 | val bits_per_token)
		run st-eval -n 64 -t "$M/text" "$M/$m"
		assert_success
		got=$(echo "$output" | val bits_per_token)
		close "$got" "$ref" 1e-4 || fail "$m: st-eval $got, numpy $ref"
	done
	# The layouts change the result: the test can tell them apart.
	a=$(st-eval -n 64 -t "$M/text" "$M/f32" | val bits_per_token)
	b=$(st-eval -n 64 -t "$M/text" "$M/lossy" | val bits_per_token)
	! close "$a" "$b" 1e-3
}

@test "st-eval cuts windows of N+1 tokens, a shorter one at the end" {
	need_models
	run st-eval -n 64 -t "$M/text" "$M/f32"
	assert_success
	assert_line --index 0 "model: $M/f32"
	assert_line "windows: 10"
	assert_line "tokens_scored: 590"
	assert_line --regexp '^perplexity: [0-9]+\.[0-9]{6}$'
	run st-eval -t "$M/text" "$M/f32"
	assert_line "windows: 3"
	assert_line "tokens_scored: 597"
	refute_line --partial "seconds"
	run st-eval --time -t "$M/text" "$M/f32"
	assert_line --regexp '^seconds: [0-9]+\.[0-9]{3}$'
}

@test "st-eval reads the text on stdin, and u32 token ids with --tokens" {
	need_models
	a=$(st-eval -n 64 -t "$M/text" "$M/f32")
	run st-eval -n 64 "$M/f32" < "$M/text"
	assert_success
	assert_output "$a"
	/usr/bin/python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); sys.stdout.buffer.write(b"".join(bytes([c, 0, 0, 0]) for c in d))' \
		"$M/text" > tok
	run st-eval -n 64 --tokens tok "$M/f32"
	assert_success
	assert_equal "$(echo "$output" | val bits_per_token)" "$(echo "$a" | val bits_per_token)"
	head -c 401 tok > odd
	run st-eval --tokens odd "$M/f32"
	assert_equal "$status" 1
	assert_output "st-eval: odd: size does not match dtype and shape"
	printf '\001\000\000\000\000\001\000\000' > big
	run st-eval --tokens big "$M/f32"
	assert_equal "$status" 1
	assert_output --regexp '^st-eval: token id not below the vocabulary size: '
}

@test "st-eval refuses bytes for a vocabulary other than 256" {
	need_models
	sed 's/"vocab_size": 256/"vocab_size": 300/' "$M/f32/config.json" > config.json
	run st-eval -c config.json -t "$M/text" "$M/f32"
	assert_equal "$status" 1
	assert_output "st-eval: $M/f32: vocabulary of 300 tokens, not the 256 bytes: give --tokens FILE"
	sed 's/"rope_theta"/"rope_scaling": {"type": "llama3"}, "rope_theta"/' "$M/f32/config.json" > config.json
	run st-eval -c config.json -t "$M/text" "$M/f32"
	assert_equal "$status" 1
	assert_output "st-eval: config.json: rope_scaling: unsupported feature"
}

@test "st-eval of two identical models: cosine 1, agreement 1, MSE 0" {
	need_models
	run st-eval -n 64 -t "$M/text" "$M/f32" "$M/f32"
	assert_success
	assert_line "model_a: $M/f32"
	assert_line "model_b: $M/f32"
	assert_line "logits_mse: 0"
	assert_line "top1_agreement: 1.000000"
	close "$(echo "$output" | val logits_cosine_mean)" 1 1e-7
	close "$(echo "$output" | val logits_cosine_min)" 1 1e-7
	assert_equal "$(echo "$output" | val bits_per_token_a)" "$(echo "$output" | val bits_per_token_b)"
}

@test "st-eval of a perturbed model: cosine below 1, MSE above 0" {
	need_models
	run st-eval -n 64 -t "$M/text" "$M/f32" "$M/perturbed"
	assert_success
	cmean=$(echo "$output" | val logits_cosine_mean)
	cmin=$(echo "$output" | val logits_cosine_min)
	awk -v c="$cmean" -v m="$cmin" 'BEGIN { exit !(c < 0.9999999 && c > 0.99 && m <= c) }' ||
		fail "cosine mean $cmean min $cmin"
	awk -v e="$(echo "$output" | val logits_mse)" 'BEGIN { exit !(e > 0) }'
	[ "$(echo "$output" | val bits_per_token_a)" != "$(echo "$output" | val bits_per_token_b)" ]
}

@test "st-eval --tsv: a line of keys and a line of values" {
	need_models
	run st-eval --tsv -n 64 -t "$M/text" "$M/f32" "$M/bf16"
	assert_success
	assert_equal "${#lines[@]}" 2
	assert_line --index 0 "$(printf 'model_a\tmodel_b\twindows\ttokens_scored\tbits_per_token_a\tperplexity_a\tbits_per_token_b\tperplexity_b\tlogits_cosine_mean\tlogits_cosine_min\tlogits_mse\ttop1_agreement')"
	assert_line --index 1 --regexp "^$M/f32	$M/bf16	10	590	"
}

@test "st-eval: a missing weight, a bad scale, a truncated file: exit 1, one line" {
	need_models
	run st-eval -t "$M/text" "$M/missing"
	assert_equal "$status" 1
	assert_output "st-eval: $M/missing: model.layers.1.mlp.up_proj.weight: no such weight"
	run st-eval -t "$M/text" "$M/badscale"
	assert_equal "$status" 1
	assert_output "st-eval: $M/badscale: model.layers.0.self_attn.q_proj.weight_scale: size does not match dtype and shape"
	cp "$M/f32/config.json" .
	head -c 3000 "$M/f32/model.safetensors" > cut.safetensors
	run st-eval -t "$M/text" cut.safetensors
	assert_equal "$status" 1
	assert_output "st-eval: cut.safetensors: truncated input"
	printf '\377\377\377\377\000\000\000\000{}' > huge.safetensors
	run st-eval -t "$M/text" huge.safetensors
	assert_equal "$status" 1
	assert_output "st-eval: huge.safetensors: invalid safetensors header"
	run st-eval -t "$M/text" nowhere
	assert_equal "$status" 111
	assert_output "st-eval: nowhere: No such file or directory"
}

@test "st-diff of identical models: every weight bit-exact" {
	need_models
	run st-diff "$M/f32" "$M/f32"
	assert_success
	assert_line --index 0 --regexp '^name +dtype_a +dtype_b +shape +exact +max_abs +rel_fro +cosine$'
	assert_line --regexp '^model\.embed_tokens\.weight +F32 +F32 +256x32 +yes +0 +0 +1$'
	assert_equal "${#lines[@]}" 23
	assert_line --index 22 "summary: compared 21, bit-exact 21, differ 0, shape-mismatch 0, only-A 0, only-B 0, worst-rel-fro 0 (-)"
	run st-diff --exact "$M/f32" "$M/f32"
	assert_success
}

@test "st-diff of a perturbed model: the weight that differs, and --exact" {
	need_models
	run st-diff "$M/f32" "$M/perturbed"
	assert_success
	assert_line --regexp '^model\.layers\.1\.mlp\.down_proj\.weight +F32 +F32 +32x48 +no +[0-9.e-]+ +0\.00999[0-9]* +1$'
	assert_line --index 22 --partial "summary: compared 21, bit-exact 20, differ 1,"
	assert_line --index 22 --partial "(model.layers.1.mlp.down_proj.weight)"
	run st-diff -e "$M/f32" "$M/perturbed"
	assert_equal "$status" 1
}

@test "st-diff: weights on one side only, shapes that differ" {
	need_models
	run st-diff "$M/f32" "$M/missing"
	assert_success
	assert_line --regexp '^model\.layers\.1\.mlp\.up_proj\.weight +F32 +- +48x32 +only-A +- +- +-$'
	assert_line --partial "only-A 1, only-B 0"
	run st-diff "$M/missing" "$M/f32"
	assert_success
	assert_line --regexp '^model\.layers\.1\.mlp\.up_proj\.weight +- +F32 +48x32 +only-B'
	run st-diff --exact "$M/missing" "$M/f32"
	assert_equal "$status" 1
	run st-diff "$M/f32" "$M/reshaped"
	assert_success
	assert_line --regexp '^lm_head\.weight +F32 +F32 +256x32\|128x32 +shape +- +- +-$'
	assert_line --partial "shape-mismatch 1,"
}

@test "st-diff compares logical weights: shards, INT8, FP8 and low rank" {
	need_models
	run st-diff "$M/f32" "$M/bf16"
	assert_success
	assert_line --regexp '^model\.norm\.weight +F32 +BF16 +32 +no +'
	assert_line --partial "bit-exact 0, differ 21"
	run st-diff "$M/f32" "$M/lossy"
	assert_success
	assert_line --regexp '^model\.layers\.0\.self_attn\.q_proj\.weight +F32 +I8/row +32x32 +no +[0-9.e-]+ +0\.00[0-9]+ +0\.9999'
	assert_line --regexp '^model\.layers\.0\.mlp\.down_proj\.weight +F32 +F8_E4M3/128 +32x48 +no +'
	assert_line --regexp '^model\.layers\.0\.self_attn\.o_proj\.weight +F32 +lr8:F32 +32x32 +no +'
	assert_line --regexp '^model\.layers\.1\.mlp\.up_proj\.weight +F32 +lr4:I8/row +48x32 +no +'
	refute_output --partial "_scale"
	refute_output --partial "_lr_"
	assert_line --partial "compared 21, bit-exact 13, differ 8, shape-mismatch 0, only-A 0, only-B 0"
}

@test "st-diff: a truncated file or a bad index is refused with one line" {
	need_models
	head -c 3000 "$M/f32/model.safetensors" > cut.safetensors
	run st-diff cut.safetensors "$M/f32"
	assert_equal "$status" 1
	assert_output "st-diff: cut.safetensors: truncated input"
	mkdir bad
	cp "$M/bf16"/* bad/
	sed -i 's/model-00002-of-00002/..\/elsewhere/' bad/model.safetensors.index.json
	run st-diff "$M/bf16" bad
	assert_equal "$status" 1
	assert_output --regexp '^st-diff: bad: .*: unsafe or invalid path$'
	cp "$M/bf16/model.safetensors.index.json" bad/
	sed -i 's/"lm_head.weight"/"lm_head.weigh"/' bad/model.safetensors.index.json
	run st-diff "$M/bf16" bad
	assert_equal "$status" 1
	assert_output "st-diff: bad: lm_head.weigh: invalid safetensors header"
}

@test "st-eval reproduces the reference perplexities of tinylm-7m" {
	need_weights
	run st-eval -t "$WEIGHTS/tinylm-7m/val.txt" "$WEIGHTS/tinylm-7m/bf16"
	assert_success
	assert_line "windows: 64"
	assert_line "tokens_scored: 16384"
	assert_line --regexp '^bits_per_token: 2\.5240[0-9]*$'
	run st-eval -t "$WEIGHTS/tinylm-7m/val.txt" "$WEIGHTS/tinylm-7m/fp8"
	assert_success
	assert_line --regexp '^bits_per_token: 2\.5248[0-9]*$'
	run st-eval -t "$WEIGHTS/tinylm-7m/val.txt" "$WEIGHTS/tinylm-7m/bf16" "$WEIGHTS/tinylm-7m/fp8"
	assert_success
	awk -v c="$(echo "$output" | val logits_cosine_mean)" 'BEGIN { exit !(c > 0.9999 && c < 1) }'
}

@test "st-diff of tinylm-7m in BF16 and FP8: the layers' linear weights differ" {
	need_weights
	run st-diff "$WEIGHTS/tinylm-7m/bf16" "$WEIGHTS/tinylm-7m/fp8"
	assert_success
	assert_line --regexp '^model\.layers\.0\.self_attn\.q_proj\.weight +BF16 +F8_E4M3/128 +320x320 +no +'
	assert_line --partial "summary: compared 57, bit-exact 15, differ 42, shape-mismatch 0, only-A 0, only-B 0"
	run st-diff --exact "$WEIGHTS/tinylm-7m/bf16" "$WEIGHTS/tinylm-7m/bf16"
	assert_success
}
