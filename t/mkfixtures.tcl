#!/usr/bin/env tclsh
# mkfixtures.tcl -- write small, deterministic safetensors test fixtures.
#
# Usage: tclsh t/mkfixtures.tcl OUTDIR
#
# Writes, under OUTDIR (created if needed), byte-identical on every run and
# machine:
#
#   dtype-<DTYPE>.safetensors   one file per dtype in DTYPE_FILES, tensors
#                               w2d [64,96], vec [96], scalar [], empty [0,8],
#                               w3d [4,5,6], odd [3,7]; floats are normal
#                               with std 0.02 (vec: mean 1, std 0.05, like a
#                               norm weight); float "odd" starts with +0,
#                               -0, smallest subnormal, max finite, then
#                               inf, -inf, NaN where the format has them;
#                               integers are uniform in [-100,100] (U8
#                               [0,200], BOOL 0/1) and integer "odd" starts
#                               with 0, min, max
#   all.safetensors             one tensor per dtype in DTYPE_SIZE, with
#                               __metadata__ {"format":"pt","note":"fixture"}
#   padded.safetensors          extra header padding, JSON order unlike the
#                               data order, and gap bytes (nonzero) before,
#                               between and after the tensors' data
#   model/                      a two-shard Hugging Face style BF16 model with
#                               its index, config.json, tokenizer.json and
#                               sub/notes.txt
#   fp8/fp8-block.safetensors   DeepSeek-V3 layout: an F8_E4M3 weight
#                               [256,384] and its F32 weight_scale_inv [2,3],
#                               one scale per 128x128 block
#   bad-*.safetensors           files a reader must reject, one defect each
#
# Values come from our own xorshift128 generator, seeded from each tensor's
# name, and normals are sums of uniforms: no libm transcendental is used, so
# no platform's rounding can change a byte.

# Every dtype a fixture uses, with its element size in bytes.
set DTYPE_SIZE {
    F64 8 F32 4 F16 2 BF16 2 F8_E4M3 1 F8_E5M2 1
    I64 8 I32 4 I16 2 I8 1 U8 1 BOOL 1 U16 2 U32 4 U64 8
}
set DTYPE_FILES {F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I64 I32 I16 I8 U8 BOOL}
set FLOAT_DTYPES {F64 F32 F16 BF16 F8_E4M3 F8_E5M2}

# ---------------------------------------------------------------------------
# Random numbers

# Seed the generator from a string (FNV-1a, then an LCG fills the four
# words), so a tensor's values depend only on its key, not on call order.
proc rng_seed {key} {
    set h 2166136261
    foreach c [split $key ""] {
        set h [expr {(($h ^ [scan $c %c]) * 16777619) & 0xFFFFFFFF}]
    }
    set s {}
    for {set i 0} {$i < 4} {incr i} {
        set h [expr {($h * 1664525 + 1013904223) & 0xFFFFFFFF}]
        lappend s [expr {$h | 1}]
    }
    set ::rng_state $s
}

# Return the next 32-bit value of Marsaglia's xorshift128; shifts stay
# below 2^63, so Tcl never falls back to bignums.
proc rng_next {} {
    lassign $::rng_state x y z w
    set t [expr {$x ^ (($x << 11) & 0xFFFFFFFF)}]
    set w2 [expr {$w ^ ($w >> 19) ^ $t ^ ($t >> 8)}]
    set ::rng_state [list $y $z $w $w2]
    return $w2
}

# Return n normal deviates with the given mean and std.  Each is the sum of
# twelve 16-bit uniforms (Irwin-Hall, variance 1) plus a 32-bit dither so
# that low mantissa bits are as noisy as in real weights.  The generator
# loop is inlined because this is where the run time goes.
proc normals {n std {mean 0.0}} {
    lassign $::rng_state x y z w
    set out {}
    for {set i 0} {$i < $n} {incr i} {
        set sum 0
        for {set k 0} {$k < 7} {incr k} {
            set t [expr {$x ^ (($x << 11) & 0xFFFFFFFF)}]
            set x $y; set y $z; set z $w
            set w [expr {$w ^ ($w >> 19) ^ $t ^ ($t >> 8)}]
            if {$k < 6} {
                incr sum [expr {($w & 0xFFFF) + ($w >> 16)}]
            } else {
                set dither [expr {($w + 0.5) / 4294967296.0}]
            }
        }
        set z01 [expr {($sum + $dither - 393210.5) / 65536.0}]
        lappend out [expr {$mean + $std * $z01}]
    }
    set ::rng_state [list $x $y $z $w]
    return $out
}

# Return n integers drawn uniformly from [lo, hi] (modulo bias is harmless
# for fixtures).
proc uniform_ints {n lo hi} {
    set span [expr {$hi - $lo + 1}]
    set out {}
    for {set i 0} {$i < $n} {incr i} {
        lappend out [expr {$lo + [rng_next] % $span}]
    }
    return $out
}

# ---------------------------------------------------------------------------
# Number formats

# Encode double x as a small binary float with ebits exponent bits, mbits
# mantissa bits and the given bias, rounding to nearest, ties to even, with
# subnormals.  flavor "ieee" has inf and NaN as IEEE 754; "fn" (F8_E4M3) has
# no inf, only the all-ones pattern is NaN, and overflow gives NaN.  The
# rounding works on the double's integer significand, so it is exact.
proc mini_encode {x ebits mbits bias flavor} {
    set signpos [expr {$ebits + $mbits}]
    set expall [expr {(1 << $ebits) - 1}]
    if {$flavor eq "fn"} {
        set nan [expr {(1 << $signpos) - 1}]
        set inf $nan
    } else {
        set inf [expr {$expall << $mbits}]
        set nan [expr {$inf | (1 << ($mbits - 1))}]
    }
    binary scan [binary format q $x] w bits
    set sign [expr {$bits < 0 ? 1 << $signpos : 0}]
    set dexp [expr {($bits >> 52) & 0x7FF}]
    set frac [expr {$bits & 0xFFFFFFFFFFFFF}]
    if {$dexp == 0x7FF} {
        return [expr {$frac ? $nan : $sign | $inf}]
    }
    if {$dexp == 0} {
        # zero or a double subnormal: far below any target's subnormals
        return $sign
    }
    # |x| = sig * 2^(dexp - 1023 - 52).  The result keeps the bits of sig
    # worth at least 2^(e - mbits), where e is x's exponent raised to the
    # target's smallest normal exponent, so subnormals lose bits too.
    set sig [expr {$frac | (1 << 52)}]
    set e [expr {max($dexp - 1023, 1 - $bias)}]
    set shift [expr {52 - $mbits + $e - ($dexp - 1023)}]
    if {$shift > 60} {
        return $sign
    }
    set n [expr {$sig >> $shift}]
    set rem [expr {$sig & ((1 << $shift) - 1)}]
    set half [expr {1 << ($shift - 1)}]
    if {$rem > $half || ($rem == $half && ($n & 1))} {
        incr n
    }
    if {$n == (1 << ($mbits + 1))} {
        incr e
        set n [expr {1 << $mbits}]
    }
    if {$n >= (1 << $mbits)} {
        set biased [expr {$e + $bias}]
        set mant [expr {$n - (1 << $mbits)}]
    } else {
        set biased 0
        set mant $n
    }
    set code [expr {($biased << $mbits) | $mant}]
    if {$flavor eq "fn" ? $code >= $nan : $biased >= $expall} {
        return [expr {$sign | $inf}]
    }
    return [expr {$sign | $code}]
}

# Return the BF16 codes of a list of doubles: each is first rounded to F32,
# then the F32 bits are rounded to their top 16 bits, nearest-even; NaN
# stays a quiet NaN.
proc bf16_codes {values} {
    binary scan [binary format r* $values] iu* words
    set out {}
    foreach b $words {
        if {($b & 0x7FFFFFFF) > 0x7F800000} {
            lappend out [expr {($b >> 16) | 0x40}]
        } else {
            lappend out [expr {(($b + 0x7FFF + (($b >> 16) & 1)) >> 16) & 0xFFFF}]
        }
    }
    return $out
}

# Return the little-endian bytes of integer codes (bit patterns or integer
# values) for dtype; only the low size bytes of each code are kept.
proc pack_codes {dtype codes} {
    set fmt [dict get {8 w* 4 i* 2 s* 1 c*} [dict get $::DTYPE_SIZE $dtype]]
    return [binary format $fmt $codes]
}

# Return the little-endian bytes of a list of doubles encoded as float dtype.
# F16 and F8 round straight from the double; BF16 rounds via F32.
proc encode_floats {dtype values} {
    switch -- $dtype {
        F64 { return [binary format q* $values] }
        F32 { return [binary format r* $values] }
        BF16 { return [pack_codes BF16 [bf16_codes $values]] }
    }
    set params [dict get {
        F16 {5 10 15 ieee} F8_E5M2 {5 2 15 ieee} F8_E4M3 {4 3 7 fn}
    } $dtype]
    set codes {}
    foreach v $values {
        lappend codes [mini_encode $v {*}$params]
    }
    return [pack_codes $dtype $codes]
}

# Bit patterns of +0, -0, smallest subnormal, max finite, and then inf,
# -inf, NaN where the format has them, for the "odd" tensor.
proc float_specials {dtype} {
    return [dict get {
        F64 {0 0x8000000000000000 1 0x7FEFFFFFFFFFFFFF
             0x7FF0000000000000 0xFFF0000000000000 0x7FF8000000000000}
        F32 {0 0x80000000 1 0x7F7FFFFF 0x7F800000 0xFF800000 0x7FC00000}
        F16 {0 0x8000 1 0x7BFF 0x7C00 0xFC00 0x7E00}
        BF16 {0 0x8000 1 0x7F7F 0x7F80 0xFF80 0x7FC0}
        F8_E4M3 {0 0x80 1 0x7E 0x7F 0xFF}
        F8_E5M2 {0 0x80 1 0x7B 0x7C 0xFC 0x7E}
    } $dtype]
}

# Return {min max} of an integer dtype.
proc int_limits {dtype} {
    set bits [expr {8 * [dict get $::DTYPE_SIZE $dtype]}]
    switch -glob -- $dtype {
        BOOL { return {0 1} }
        U* { return [list 0 [expr {(1 << $bits) - 1}]] }
        default {
            return [list [expr {-(1 << ($bits - 1))}] [expr {(1 << ($bits - 1)) - 1}]]
        }
    }
}

# Return the bytes of n weight-like values for any dtype: normals of the
# given std and mean for floats, small uniform integers (0/1 for BOOL).
proc random_bytes {dtype n {std 0.02} {mean 0.0}} {
    if {$dtype in $::FLOAT_DTYPES} {
        return [encode_floats $dtype [normals $n $std $mean]]
    }
    switch -glob -- $dtype {
        BOOL { set codes [uniform_ints $n 0 1] }
        U* { set codes [uniform_ints $n 0 200] }
        default { set codes [uniform_ints $n -100 100] }
    }
    return [pack_codes $dtype $codes]
}

# ---------------------------------------------------------------------------
# safetensors writing

# Number of elements of a shape ([] is a scalar: one element).
proc numel {shape} {
    set n 1
    foreach d $shape {
        set n [expr {$n * $d}]
    }
    return $n
}

# Return a tensor's JSON entry (without its name).
proc tensor_json {dtype shape begin end} {
    return "{\"dtype\":\"$dtype\",\"shape\":\[[join $shape ,]\],\"data_offsets\":\[$begin,$end\]}"
}

# Return a JSON object of string keys to raw JSON values, in the order given.
proc json_object {pairs} {
    set parts {}
    foreach {key value} $pairs {
        lappend parts "\"$key\":$value"
    }
    return "{[join $parts ,]}"
}

# Return a JSON object of string keys to string values.
proc json_strings {pairs} {
    set raw {}
    foreach {key value} $pairs {
        lappend raw $key "\"$value\""
    }
    return [json_object $raw]
}

# Return a whole safetensors file: the u64 header length, the header padded
# with spaces so the data starts at a multiple of 8 (plus extra spaces on
# request), then the data section.
proc st_blob {header data {extra 0}} {
    set len [expr {[string length $header] + $extra}]
    set len [expr {$len + (8 - (8 + $len) % 8) % 8}]
    set header [format %-*s $len $header]
    return "[binary format w $len]$header$data"
}

# Write bytes to path exactly as given.
proc write_bytes {path bytes} {
    set f [open $path w]
    fconfigure $f -translation binary
    puts -nonewline $f $bytes
    close $f
}

# Build a tensor record {name dtype shape bytes}, refusing a byte count
# that disagrees with dtype x shape: good fixtures must be good.
proc tensor {name dtype shape bytes} {
    set want [expr {[numel $shape] * [dict get $::DTYPE_SIZE $dtype]}]
    if {[string length $bytes] != $want} {
        error "$name: $dtype $shape needs $want bytes, got [string length $bytes]"
    }
    return [list $name $dtype $shape $bytes]
}

# Return a valid safetensors file holding the tensor records back to back
# in list order, with an optional __metadata__ string map first.
proc st_file {tensors {meta {}}} {
    set pairs {}
    if {[llength $meta]} {
        lappend pairs __metadata__ [json_strings $meta]
    }
    set data ""
    foreach t $tensors {
        lassign $t name dtype shape bytes
        set begin [string length $data]
        append data $bytes
        lappend pairs $name [tensor_json $dtype $shape $begin [string length $data]]
    }
    return [st_blob [json_object $pairs] $data]
}

# ---------------------------------------------------------------------------
# Good fixtures

# Return the "odd" tensor's bytes: special values first, random after.
proc odd_bytes {dtype n} {
    if {$dtype in $::FLOAT_DTYPES} {
        set head [float_specials $dtype]
        return "[pack_codes $dtype $head][random_bytes $dtype [expr {$n - [llength $head]}]]"
    }
    set head [list 0 {*}[int_limits $dtype]]
    return "[pack_codes $dtype $head][random_bytes $dtype [expr {$n - 3}]]"
}

# Write dtype-<DTYPE>.safetensors: the same six tensor shapes in one dtype.
proc make_dtype_file {dir dtype} {
    set tensors {}
    foreach {name shape std mean} {
        w2d {64 96} 0.02 0.0
        vec {96} 0.05 1.0
        scalar {} 0.02 0.0
        empty {0 8} 0.02 0.0
        w3d {4 5 6} 0.02 0.0
    } {
        rng_seed "dtype-$dtype/$name"
        lappend tensors [tensor $name $dtype $shape \
            [random_bytes $dtype [numel $shape] $std $mean]]
    }
    rng_seed "dtype-$dtype/odd"
    lappend tensors [tensor odd $dtype {3 7} [odd_bytes $dtype 21]]
    write_bytes [file join $dir dtype-$dtype.safetensors] [st_file $tensors]
}

# Write all.safetensors: one [2,3] tensor per dtype, named after it, plus
# __metadata__.  Wider dtypes come first, as the safetensors writer orders
# them, so every tensor starts at a multiple of its element size.
proc make_all {dir} {
    set tensors {}
    set bysize [lsort -stride 2 -index 1 -integer -decreasing $::DTYPE_SIZE]
    foreach dtype [dict keys $bysize] {
        rng_seed "all/$dtype"
        lappend tensors [tensor [string tolower $dtype] $dtype {2 3} \
            [random_bytes $dtype 6]]
    }
    write_bytes [file join $dir all.safetensors] \
        [st_file $tensors {format pt note fixture}]
}

# Write padded.safetensors: 40 extra header spaces, tensors listed in the
# JSON in another order than their data, __metadata__ last, and runs of
# nonzero filler (0xA5, 0xA6, ... one value per run) before the first
# tensor, between tensors and after the last one.
proc make_padded {dir} {
    set layout {
        gap 3
        a F32 {4 4}
        gap 5
        c I8 {5}
        gap 7
        b BF16 {8}
        gap 1
        d F16 {3}
        gap 4
    }
    set data ""
    set fill 0xA5
    set entry [dict create]
    set i 0
    while {$i < [llength $layout]} {
        set name [lindex $layout $i]
        if {$name eq "gap"} {
            append data [string repeat [binary format c $fill] [lindex $layout $i+1]]
            incr fill
            incr i 2
            continue
        }
        lassign [lrange $layout $i+1 $i+2] dtype shape
        rng_seed "padded/$name"
        set bytes [random_bytes $dtype [numel $shape]]
        set begin [string length $data]
        append data $bytes
        dict set entry $name [tensor_json $dtype $shape $begin [string length $data]]
        incr i 3
    }
    set pairs {}
    foreach name {d b a c} {
        lappend pairs $name [dict get $entry $name]
    }
    lappend pairs __metadata__ [json_strings {format pt note padded}]
    write_bytes [file join $dir padded.safetensors] [st_blob [json_object $pairs] $data 40]
}

# Return the model's tensors for one decoder layer: {name shape} pairs.
proc layer_shapes {i} {
    set p model.layers.$i
    return [list \
        $p.input_layernorm.weight {64} \
        $p.self_attn.q_proj.weight {64 64} \
        $p.self_attn.k_proj.weight {16 64} \
        $p.self_attn.v_proj.weight {16 64} \
        $p.self_attn.o_proj.weight {64 64} \
        $p.post_attention_layernorm.weight {64} \
        $p.mlp.gate_proj.weight {128 64} \
        $p.mlp.up_proj.weight {128 64} \
        $p.mlp.down_proj.weight {64 128}]
}

# Return a BF16 shard holding the named tensors; norm weights sit near 1,
# the others are 0.02-std weights.
proc model_shard {shapes} {
    set tensors {}
    foreach {name shape} $shapes {
        rng_seed "model/$name"
        if {[string match *norm.weight $name]} {
            set bytes [random_bytes BF16 [numel $shape] 0.05 1.0]
        } else {
            set bytes [random_bytes BF16 [numel $shape]]
        }
        lappend tensors [tensor $name BF16 $shape $bytes]
    }
    return [st_file $tensors {format pt}]
}

# Write model/: two BF16 shards, their index, config, tokenizer and a note
# in a subfolder, as a Hugging Face checkout of a tiny Llama-like model.
proc make_model {dir} {
    set dir [file join $dir model]
    file mkdir [file join $dir sub]
    set shards [list \
        model-00001-of-00002.safetensors \
        [list model.embed_tokens.weight {32 64} {*}[layer_shapes 0]] \
        model-00002-of-00002.safetensors \
        [list {*}[layer_shapes 1] model.norm.weight {64} lm_head.weight {32 64}]]
    set total 0
    set map {}
    foreach {file shapes} $shards {
        write_bytes [file join $dir $file] [model_shard $shapes]
        foreach {name shape} $shapes {
            incr total [expr {2 * [numel $shape]}]
            lappend map $name $file
        }
    }
    set lines {}
    foreach {name file} [lsort -stride 2 $map] {
        lappend lines "    \"$name\": \"$file\""
    }
    write_bytes [file join $dir model.safetensors.index.json] [string cat \
        "\{\n  \"metadata\": \{\n    \"total_size\": $total\n  \},\n" \
        "  \"weight_map\": \{\n[join $lines ,\n]\n  \}\n\}\n"]
    write_bytes [file join $dir config.json] [model_config]
    write_bytes [file join $dir tokenizer.json] [model_tokenizer]
    write_bytes [file join $dir sub notes.txt] \
        "Fixture model for stpipe tests.\nNot a real model: weights are random.\n"
}

# Return config.json for the tiny model.
proc model_config {} {
    return {{
  "architectures": [
    "LlamaForCausalLM"
  ],
  "hidden_size": 64,
  "intermediate_size": 128,
  "max_position_embeddings": 128,
  "model_type": "llama",
  "num_attention_heads": 4,
  "num_hidden_layers": 2,
  "num_key_value_heads": 1,
  "rms_norm_eps": 1e-05,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "vocab_size": 32
}
}
}

# Return a small tokenizer.json: a 32-token BPE vocabulary (3 special
# tokens and 29 characters) with two merges.
proc model_tokenizer {} {
    set vocab {"<s>": 0, "</s>": 1, "<unk>": 2}
    set id 3
    foreach c [split "abcdefghijklmnopqrstuvwxyz .," ""] {
        append vocab ", \"$c\": $id"
        incr id
    }
    return [string cat "\{\"version\": \"1.0\", \"added_tokens\": \[\], " \
        "\"model\": \{\"type\": \"BPE\", \"vocab\": \{$vocab\}, " \
        "\"merges\": \[\"a b\", \"c d\"\]\}\}\n"]
}

# Write fp8/fp8-block.safetensors: an F8_E4M3 weight [256,384] quantized
# in 128x128 blocks, DeepSeek-V3 style.  Each block's fp8 values have their
# own std (100 / 2^k, k differing per block, so the exponent histogram
# moves by one binade from block to block), saturated at +-448; its F32
# weight_scale_inv is 0.02 / that std, so dequantized weights have std 0.02.
proc make_fp8 {dir} {
    set dir [file join $dir fp8]
    file mkdir $dir
    set rows 256
    set cols 384
    set block 128
    set shift {{0 3 1} {5 2 4}}
    set scales {}
    set codes {}
    rng_seed fp8/weight
    for {set br 0} {$br < $rows / $block} {incr br} {
        set stds {}
        for {set bc 0} {$bc < $cols / $block} {incr bc} {
            set std [expr {100.0 / (1 << [lindex $shift $br $bc])}]
            lappend stds $std
            lappend scales [expr {0.02 / $std}]
        }
        for {set r 0} {$r < $block} {incr r} {
            foreach std $stds {
                foreach v [normals $block $std] {
                    set v [expr {min(448.0, max(-448.0, $v))}]
                    lappend codes [mini_encode $v 4 3 7 fn]
                }
            }
        }
    }
    set p model.layers.0.mlp.down_proj
    set tensors [list \
        [tensor $p.weight F8_E4M3 [list $rows $cols] [pack_codes F8_E4M3 $codes]] \
        [tensor $p.weight_scale_inv F32 {2 3} [encode_floats F32 $scales]]]
    write_bytes [file join $dir fp8-block.safetensors] [st_file $tensors {format pt}]
}

# ---------------------------------------------------------------------------
# Bad fixtures

# Return a file with one tensor entry per {name dtype shape begin end} and
# a data section of datalen bytes (0x11 each); the header is padded as a
# writer would, whatever the entries claim.
proc st_raw {entries datalen} {
    set pairs {}
    foreach e $entries {
        lassign $e name dtype shape begin end
        lappend pairs $name [tensor_json $dtype $shape $begin $end]
    }
    return [st_blob [json_object $pairs] [string repeat \x11 $datalen]]
}

# Write the bad-*.safetensors files, each with exactly the defect its name
# gives, everything else as a valid file would have it.
proc make_bad {dir} {
    set ok [st_raw {{x F32 {4} 0 16}} 16]
    set entry [list x [tensor_json F32 {4} 0 16]]
    set bad [dict create \
        empty "" \
        short [string range $ok 0 4] \
        hdrlen "[binary format w 4096][string range $ok 8 end]" \
        json [st_blob [string range [json_object $entry] 0 end-1] \
            [string repeat \x11 16]] \
        notobject [st_blob {[{"dtype":"F32","shape":[4],"data_offsets":[0,16]}]} \
            [string repeat \x11 16]] \
        range [st_raw {{x F32 {1000000000} 0 4000000000}} 16] \
        overlap [st_raw {{x F32 {4} 0 16} {y F32 {4} 8 24}} 24] \
        size [st_raw {{x F32 {4} 0 12}} 12] \
        dtype [st_raw {{x F7_XYZ {4} 0 4}} 4] \
        offsets [st_raw {{x F32 {4} 16 0}} 16] \
        truncdata [string range [st_raw {{x F32 {4} 0 16} {y I32 {4} 16 32}} 32] 0 end-5]]
    dict for {name bytes} $bad {
        write_bytes [file join $dir bad-$name.safetensors] $bytes
    }
}

# ---------------------------------------------------------------------------

# Write every fixture under the directory named on the command line.
proc main {argv} {
    if {[llength $argv] != 1} {
        puts stderr "usage: tclsh mkfixtures.tcl OUTDIR"
        exit 100
    }
    set dir [lindex $argv 0]
    file mkdir $dir
    foreach dtype $::DTYPE_FILES {
        make_dtype_file $dir $dtype
    }
    make_all $dir
    make_padded $dir
    make_model $dir
    make_fp8 $dir
    make_bad $dir
}

main $argv
