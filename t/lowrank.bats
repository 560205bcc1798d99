#!/usr/bin/env bats
# lowrank: truncated SVD factors of 2-D weights (lib/lowrank.c), checked
# in numpy (t/lowrank-tool.py): exact low rank comes back exactly, ranks by
# --rank, --energy and a policy file, INT8 factors, --merge, the records,
# untouched tensors byte for byte, the index, and bad input.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup_file() {
	export ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
	export PATH="$ROOT/bin:$PATH"
	export WEIGHTS="${STP_WEIGHTS:-$ROOT/../shared/weights}"
	export PY=/usr/bin/python3
	export T="$ROOT/t/lowrank-tool.py"
	export F="$BATS_FILE_TMPDIR/f.safetensors"
	if "$PY" -c 'import numpy' 2> /dev/null; then
		"$PY" "$T" mk "$F"
	fi
}

setup() {
	cd "$BATS_TEST_TMPDIR"
	"$PY" -c 'import numpy' 2> /dev/null ||
		skip "no numpy for $PY (apt-get install python3-numpy)"
}

# lowrank ARGS... on the fixture, into out.safetensors.
lr() {
	st-split "$F" | lowrank "$@" | st-join -o out.safetensors -f
}

# name dtype shape of tensor $1 in $2 (default out.safetensors).
tensor() {
	"$PY" "$T" tensors "${2:-out.safetensors}" | grep "^$1 "
}

@test "lowrank: --help, --version, man page" {
	run lowrank --help
	assert_success
	assert_output --partial "Usage: lowrank"
	assert_output --partial "LOSSY"
	assert_output --partial "Exit status"
	run lowrank --version
	assert_success
	assert_output --regexp "^lowrank \(stpipe\) [0-9]+\.[0-9]+\.[0-9]+$"
	[ -f "$ROOT/share/man/man1/lowrank.1" ]
}

@test "usage errors exit 100 with one message" {
	run lowrank < /dev/null
	assert_failure 100
	assert_line --index 0 "lowrank: give --rank, --energy or --policy"
	for a in "--rank 0" "--rank x" "--rank -3" "--energy 0" "--energy 1.5" \
		 "--energy x" "--min-dim 0 -r 4" "-r 4 extra" \
		 "--merge -r 4" "--merge --dtype I8" "-r 4 --dtype F32"; do
		run lowrank $a < /dev/null
		[ "$status" -eq 100 ] || { echo "$a: $status $output"; false; }
		[ "${#lines[@]}" -eq 2 ]
	done
	run lowrank --bogus < /dev/null
	assert_failure 100
	run lowrank --policy /nonexistent < /dev/null
	assert_failure 111
	assert_output --partial "/nonexistent"
}

@test "bad policy files exit 100 naming the line" {
	for bad in "rank=4" "* rank=0" "* rank=x" "* energy=2" "* energy=" \
		   "* size=3" "* skip rank=4" "* skip=1" "*" "* min-dim=8"; do
		printf '# a comment\n\na.* rank=4\n%s\n' "$bad" > pol
		run lowrank --policy pol < /dev/null
		[ "$status" -eq 100 ] || { echo "$bad: $status"; false; }
		assert_line --index 0 --regexp "^lowrank: pol:4: "
	done
	# with --rank a line may give min-dim alone
	printf '* min-dim=8\n' > pol
	st-split "$F" | lowrank --policy pol --rank 2 > /dev/null
}

@test "an exactly rank-8 matrix comes back at rank 8; larger factors are not written" {
	lr --rank 8
	run tensor lr8.weight_lr_a
	assert_output "lr8.weight_lr_a F32 64x8"
	run tensor lr8.weight_lr_b
	assert_output "lr8.weight_lr_b F32 8x96"
	run tensor lr8.weight
	assert_failure
	e=$("$PY" "$T" err "$F" out.safetensors lr8.weight)
	"$PY" -c "import sys; sys.exit(not $e < 1e-6)" || { echo "$e"; false; }
	# 8 x (8 + 8) >= 8 x 8: kept as it is, byte for byte
	run tensor tiny.weight
	assert_output "tiny.weight F32 8x8"
	"$PY" "$T" same "$F" out.safetensors tiny.weight
	# 1-D and the default exclusions pass untouched
	"$PY" "$T" same "$F" out.safetensors norm.weight
	"$PY" "$T" same "$F" out.safetensors model.embed_tokens.weight
	# factors keep the weight's dtype
	run tensor bf.weight_lr_a
	assert_output "bf.weight_lr_a BF16 48x8"
}

@test "the record names options, ranks, dtypes, shapes and errors" {
	lr --rank 8 -p 'lr8*' -p 'bf*'
	run "$PY" "$T" lossy out.safetensors
	assert_output --partial '"stage":"lowrank","version":1,"op":"factorize","options":"--rank 8 -p lr8* -p bf*"'
	assert_output --partial '"lr8.weight":{"rank":8,"dtype":"F32","shape":[64,96]}'
	assert_output --partial '"bf.weight":{"rank":8,"dtype":"BF16","shape":[48,64]}'
	run stpipe info <(st-split "$F" | lowrank --rank 8 -p 'lr8*')
	assert_success
	assert_output --partial "lowrank factorize (--rank 8 -p lr8*): 1 tensors"
	# same input, same bytes
	a=$(st-split "$F" | lowrank --rank 8 | cksum)
	b=$(st-split "$F" | lowrank --rank 8 | cksum)
	[ "$a" = "$b" ]
}

@test "--energy keeps the fewest singular values that reach it" {
	# sv.weight has singular values 4 3 2 1: 16 9 4 1 of 30
	for eq in 0.5:1 0.8:2 0.84:3 0.9:3 0.99:4 0.999:4; do
		lr --energy "${eq%:*}" -p sv.weight
		run tensor sv.weight_lr_b
		assert_output "sv.weight_lr_b F32 ${eq#*:}x50"
	done
	# --rank caps it
	lr --energy 0.99 --rank 2 -p sv.weight
	run tensor sv.weight_lr_b
	assert_output "sv.weight_lr_b F32 2x50"
	e=$("$PY" "$T" err "$F" out.safetensors sv.weight)
	# what is left is sqrt((4 + 1) / 30)
	"$PY" -c "import sys; sys.exit(not abs($e - (5/30)**.5) < 1e-5)" ||
		{ echo "$e"; false; }
}

@test "a policy file: the first matching line wins, skip leaves a tensor" {
	cat > pol <<-'EOF'
	# block a first, then every k_proj; v_proj stays
	a.* rank=4
	*v_proj* skip   # never
	*k_proj.weight rank=2
	sv.weight energy=0.9
	*.weight rank=3 min-dim=16
	EOF
	st-split "$F" | lowrank --policy pol | st-join -o out.safetensors
	run tensor a.k_proj.weight_lr_b
	assert_output "a.k_proj.weight_lr_b F32 4x40"
	run tensor b.k_proj.weight_lr_b
	assert_output "b.k_proj.weight_lr_b F32 2x40"
	run tensor sv.weight_lr_b
	assert_output "sv.weight_lr_b F32 3x50"
	run tensor lr8.weight_lr_b
	assert_output "lr8.weight_lr_b F32 3x96"
	"$PY" "$T" same "$F" out.safetensors b.v_proj.weight
	# min-dim 16 leaves tiny (8x8); the embedding matches *.weight
	"$PY" "$T" same "$F" out.safetensors tiny.weight
	run tensor model.embed_tokens.weight_lr_a
	assert_output "model.embed_tokens.weight_lr_a F32 32x3"
}

@test "--int8 writes I8 factors with F32 row scales, as int8-quant" {
	lr --rank 8 --int8 -p 'lr8*'
	run "$PY" "$T" tensors out.safetensors
	assert_line "lr8.weight_lr_a I8 64x8"
	assert_line "lr8.weight_lr_a_scale F32 64"
	assert_line "lr8.weight_lr_b I8 8x96"
	assert_line "lr8.weight_lr_b_scale F32 8"
	e=$("$PY" "$T" err "$F" out.safetensors lr8.weight)
	"$PY" -c "import sys; sys.exit(not $e < 0.02)" || { echo "$e"; false; }
}

@test "--merge multiplies the factors back, in the recorded dtype or --dtype" {
	st-split "$F" | lowrank --rank 8 | lowrank --merge |
		st-join -o out.safetensors
	run tensor lr8.weight
	assert_output "lr8.weight F32 64x96"
	run tensor bf.weight
	assert_output "bf.weight BF16 48x64"
	e=$("$PY" "$T" rel "$F" out.safetensors lr8.weight)
	"$PY" -c "import sys; sys.exit(not $e < 1e-6)" || { echo "$e"; false; }
	st-split "$F" | lowrank --rank 8 --int8 | lowrank --merge --dtype F32 |
		st-join -o out.safetensors -f
	run tensor bf.weight
	assert_output "bf.weight F32 48x64"
	run "$PY" "$T" lossy out.safetensors
	assert_output --partial '"op":"merge","options":"--merge --dtype F32"'
}

@test "a stream after fp8-exp is refused (exit 1)" {
	for a in "--rank 8" "--energy 0.9"; do
		run bash -c "st-split '$F' | fp8-exp | lowrank $a > /dev/null"
		assert_failure 1
		assert_output --partial "frame must be decoded by an earlier stage"
		[ "${#lines[@]}" -eq 1 ]
	done
}

@test "tinylm: k_proj factors at rank 64 and the index that names them" {
	d="$WEIGHTS/tinylm-7m/bf16"
	[ -d "$d" ] || skip "no real weights at $d"
	st-split "$d" | lowrank --rank 64 -p '*k_proj.weight' | st-join -o out/
	run "$PY" -c "
import json
m = json.load(open('out/model.safetensors.index.json'))['weight_map']
ks = sorted(k for k in m if 'k_proj' in k)
print(len(ks), all(k.endswith(('_lr_a', '_lr_b')) for k in ks))
print(m['model.layers.0.self_attn.k_proj.weight_lr_a'])"
	assert_output "12 True
model-00001-of-00002.safetensors"
	run tensor model.layers.0.self_attn.k_proj.weight_lr_a \
		out/model-00001-of-00002.safetensors
	assert_output "model.layers.0.self_attn.k_proj.weight_lr_a BF16 320x64"
	"$PY" "$T" same "$d/model-00001-of-00002.safetensors" \
		out/model-00001-of-00002.safetensors \
		model.layers.0.self_attn.q_proj.weight
}
