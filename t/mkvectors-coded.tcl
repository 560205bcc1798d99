# mkvectors-coded.tcl -- the test vectors of the plane, coded, residual and
# index frames (formats/planes.md, formats/rans.md, formats/predict.md),
# with a writer of their own made from those specs alone: its own plane
# split, its own rANS encoder (rans.md, "Encoding"), its own predictors,
# its own front-coded index.
#
# Sourced by t/mkvectors.tcl, whose stream writer (vec::header, vec::frame,
# vec::file_begin, vec::tensor, vec::data, vec::file_end, vec::end,
# vec::good, vec::bad) it extends; vec::make_coded writes the vectors into
# the folder coded/ beside the core ones, with the same naming:
#
#   good-NAME.stp, good-NAME.out, good-NAME.expect/   accepted, as in core
#   bad-NAME.stp        breaks exactly one rule of planes.md, rans.md or
#                       predict.md (bad-residual-*, bad-coded-residual-*),
#                       which the C decoding pipeline checks too
#   bad-index-NAME.stp  breaks one rule of an INDEX or INDEX_LOC frame;
#                       t/stz-read.tcl rejects it, while the final stage
#                       ignores these skippable frames (stream.md)
#
# Good vectors hold the frames that the C encoders write (CODED of every
# method and layout, CODED_DATA, INDEX) and some they never write but a
# decoder must accept (PLANES of a row's middle, order0 bodies of a few
# symbols, raw bodies that do not pay).

namespace eval vec {
    # planes.md "Dtype codes and plane layouts": name -> code width nplanes.
    variable PLANE_DTYPE {
        BF16 {1 2 2} F16 {2 2 3} F32 {3 4 4} F64 {4 8 8}
        F8_E4M3 {5 1 2} F8_E5M2 {6 1 2}
    }
    variable METHOD_NAME {0 raw 1 order0 2 run 3 order0x4 5 deflate 6 order0s}
    variable ten ""      ;# the open tensor: name dtype begin rowlen
    variable idx {}      ;# index entries of the open segment: kind name offset
    variable rng 1       ;# state of the value generator
}

# ---------------------------------------------------------------------------
# Values

# Return n bytes of a fixed pseudo-random sequence (a 32-bit LCG, top byte).
proc vec::noise {n} {
    variable rng
    set out {}
    for {set i 0} {$i < $n} {incr i} {
        set rng [expr {($rng * 1103515245 + 12345) & 0xFFFFFFFF}]
        lappend out [expr {$rng >> 24}]
    }
    return [binary format cu* $out]
}

# Return n values of dtype (1- or 2-byte widths) as bytes: exponent fields
# drawn from a skewed list (as in trained weights), sign and mantissa from
# noise.  -mantissa fixes the sign and mantissa bits; -exponent fixes the
# exponent field.
proc vec::values {dtype n args} {
    set o [opts {-mantissa {} -exponent {}} $args]
    switch -- $dtype {
        BF16 { set eshift 7; set emask 0xFF; set skew {124 124 124 124 123 123 125 122 126 121 127 118} }
        F8_E4M3 { set eshift 3; set emask 0xF; set skew {6 6 6 6 5 5 7 4 8 3 9 1} }
        default { error "vec::values takes BF16 or F8_E4M3, not $dtype" }
    }
    variable PLANE_DTYPE
    set width [lindex [dict get $PLANE_DTYPE $dtype] 1]
    set sm [expr {((1 << (8 * $width)) - 1) & ~($emask << $eshift)}]
    binary scan [noise [expr {2 * $n}]] cu* r
    set out {}
    for {set i 0} {$i < $n} {incr i} {
        set e [dict get $o -exponent]
        if {$e eq ""} {
            set e [lindex $skew [expr {[lindex $r [expr {2 * $i}]] % [llength $skew]}]]
        }
        set m [dict get $o -mantissa]
        if {$m eq ""} {
            set m [expr {[lindex $r [expr {2 * $i + 1}]] * 0x0101}]
        }
        lappend out [expr {($e << $eshift) | ($m & $sm)}]
    }
    return [binary format [expr {$width == 1 ? "cu*" : "su*"}] $out]
}

# ---------------------------------------------------------------------------
# Planes (planes.md "Dtype codes and plane layouts"): the writer's split.

# Return the planes (a list of byte strings) of the values in bytes.
proc vec::split_planes {dtype bytes} {
    variable PLANE_DTYPE
    lassign [dict get $PLANE_DTYPE $dtype] code width nplanes
    set planes [lrepeat $nplanes {}]
    switch -- $width {
        1 { binary scan $bytes cu* xs }
        2 { binary scan $bytes su* xs }
        4 { binary scan $bytes iu* xs }
        8 { binary scan $bytes wu* xs }
    }
    foreach x $xs {
        set s [expr {$x >> (8 * $width - 1)}]
        switch -- $dtype {
            BF16 { set p [list [expr {($x >> 7) & 0xFF}] [expr {($s << 7) | ($x & 0x7F)}]] }
            F16 {
                set p [list [expr {($x >> 10) & 0x1F}] [expr {$x & 0xFF}] \
                    [expr {($s << 2) | (($x >> 8) & 3)}]]
            }
            F32 {
                set p [list [expr {($x >> 23) & 0xFF}] [expr {$x & 0xFF}] \
                    [expr {($x >> 8) & 0xFF}] [expr {($s << 7) | (($x >> 16) & 0x7F)}]]
            }
            F64 {
                set p [list [expr {($x >> 55) & 0xFF}]]
                for {set b 0} {$b < 6} {incr b} {
                    lappend p [expr {($x >> (8 * $b)) & 0xFF}]
                }
                lappend p [expr {($s << 7) | ((($x >> 52) & 7) << 4) | (($x >> 48) & 0xF)}]
            }
            F8_E4M3 { set p [list [expr {($x >> 3) & 0xF}] [expr {($s << 3) | ($x & 7)}]] }
            F8_E5M2 { set p [list [expr {($x >> 2) & 0x1F}] [expr {($s << 2) | ($x & 3)}]] }
        }
        for {set i 0} {$i < $nplanes} {incr i} {
            lset planes $i end+1 [lindex $p $i]
        }
    }
    set out {}
    foreach plane $planes {
        lappend out [binary format cu* $plane]
    }
    if {$width == 1} {
        lset out 1 [pack_nibbles [lindex $planes 1]]
    }
    return $out
}

# Pack nibbles two a byte, the first in the low half; an odd count leaves
# a high nibble of 0.
proc vec::pack_nibbles {nibbles} {
    set out {}
    foreach {lo hi} $nibbles {
        if {$hi eq ""} {
            set hi 0
        }
        lappend out [expr {$lo | ($hi << 4)}]
    }
    return [binary format cu* $out]
}

# ---------------------------------------------------------------------------
# rANS bodies (rans.md): the writer's encoder.

# Return FNV-1a-32 of bytes.
proc vec::fnv {bytes} {
    set h 2166136261
    binary scan $bytes cu* codes
    foreach b $codes {
        set h [expr {(($h ^ $b) * 16777619) & 0xFFFFFFFF}]
    }
    return $h
}

# Return the encoding of one frequency: one byte below 0x80, else two.
proc vec::freq_bytes {f} {
    if {$f < 0x80} {
        return [binary format cu $f]
    }
    return [binary format cucu [expr {0x80 | ($f & 0x7F)}] [expr {$f >> 7}]]
}

# Return a table {pb runs freqs} for the symbols in bytes: maximal runs of
# the present symbols, frequencies scaled to 2^pb, at least 1 each; the
# rounding error is given to the first most frequent symbol, or taken from
# the largest frequencies one by one.
proc vec::make_table {bytes pb} {
    binary scan $bytes cu* syms
    foreach s $syms {
        dict incr count $s
    }
    set present [lsort -integer [dict keys $count]]
    set m [expr {1 << $pb}]
    set n [llength $syms]
    set freqs {}
    set top 0
    foreach s $present {
        set c [dict get $count $s]
        lappend freqs [expr {max(1, ($c * $m + $n / 2) / $n)}]
        if {$c > [dict get $count [lindex $present $top]]} {
            set top [expr {[llength $freqs] - 1}]
        }
    }
    while {[tcl::mathop::+ {*}$freqs] > $m} {
        set big [lsearch -exact $freqs [tcl::mathfunc::max {*}$freqs]]
        lset freqs $big [expr {[lindex $freqs $big] - 1}]
    }
    lset freqs $top [expr {[lindex $freqs $top] + $m - [tcl::mathop::+ {*}$freqs]}]
    set runs {}
    set next 0
    foreach s $present {
        if {[llength $runs] > 0 && $s == $next} {
            lset runs end [expr {[lindex $runs end] + 1}]
        } else {
            lappend runs [expr {$s - $next}] 1
        }
        set next [expr {$s + 1}]
    }
    return [list $pb $runs $freqs]
}

# Return the table bytes of {pb runs freqs}: runs is a flat list of skip
# and count; -runs and -nfreq replace the run-count byte or a frequency's
# bytes ({index bytes}) to make bad tables.
proc vec::table_bytes {table args} {
    lassign $table pb runs freqs
    set o [opts [list -runs [expr {[llength $runs] / 2}] -nfreq {}] $args]
    set out [binary format cucu $pb [dict get $o -runs]]
    foreach {skip count} $runs {
        append out [binary format cucu $skip [expr {$count - 1}]]
    }
    set i 0
    foreach f $freqs {
        if {[lindex [dict get $o -nfreq] 0] eq $i} {
            append out [lindex [dict get $o -nfreq] 1]
        } else {
            append out [freq_bytes $f]
        }
        incr i
    }
    return $out
}

# Return the body of method (0..3, 5) for the symbols in bytes, written as the
# spec's informative encoder does.  For methods 1 and 3: -pb picks the
# table's scale, -table gives {pb runs freqs} outright, -tableopts are
# passed to table_bytes, -n is the n the start states are hashed with,
# -startxor changes start state 0, -states replaces the stored states.
# -extra appends bytes to any body, -cut drops its last bytes.
proc vec::body {method bytes args} {
    set o [opts {-pb 8 -table {} -tableopts {} -n {} -startxor 0 -states {} \
        -extra "" -cut 0 -segs 2 -lens {}} $args]
    set n [string length $bytes]
    switch -- $method {
        0 { set out "\x00$bytes" }
        2 { set out "\x02[string index $bytes 0]" }
        5 { set out "\x05[zlib deflate $bytes 9]" }
        6 {
            # -segs segments of 32 states; -lens replaces the stored
            # lengths; -startxor changes state 0 of the last segment.
            set table [dict get $o -table]
            if {$table eq ""} {
                set table [make_table $bytes [dict get $o -pb]]
            }
            set tb [table_bytes $table {*}[dict get $o -tableopts]]
            set hn [dict get $o -n]
            set hn [expr {$hn eq "" ? $n : $hn}]
            set segs [dict get $o -segs]
            set m [expr {($n + 32 * $segs - 1) / (32 * $segs) * 32}]
            set lens {}
            set states ""
            set words ""
            for {set k 0} {$k < $segs} {incr k} {
                set sub [string range $bytes [expr {$k * $m}] [expr {($k + 1) * $m - 1}]]
                set r [order0 $sub 32 $table $tb $hn \
                    [expr {$k == $segs - 1 ? [dict get $o -startxor] : 0}] {} [expr {32 * $k}]]
                append states [string range $r 0 127]
                set w [string range $r 128 end]
                lappend lens [string length $w]
                append words $w
            }
            if {[dict get $o -lens] ne ""} {
                set lens [dict get $o -lens]
            }
            set out "\x06$tb[binary format cu $segs][binary format iu* [lrange $lens 0 end-1]]$states$words"
        }
        1 - 3 {
            set k [expr {$method == 1 ? 32 : 4}]
            set table [dict get $o -table]
            if {$table eq ""} {
                set table [make_table $bytes [dict get $o -pb]]
            }
            set tb [table_bytes $table {*}[dict get $o -tableopts]]
            set hn [dict get $o -n]
            set out "[binary format cu $method]$tb[order0 $bytes $k $table $tb \
                [expr {$hn eq "" ? $n : $hn}] [dict get $o -startxor] \
                [dict get $o -states]]"
        }
        default { set out [binary format cu $method] }
    }
    append out [dict get $o -extra]
    return [string range $out 0 end-[dict get $o -cut]]
}

# Return the states and words of an order-0 body with k states coding the
# symbols in bytes with table {pb runs freqs}, whose bytes tb (with n) give
# the start states ("Decoding", "Encoding").
proc vec::order0 {bytes k table tb n startxor states {first 0}} {
    lassign $table pb runs freqs
    set s 0
    set start 0
    set i 0
    foreach {skip count} $runs {
        incr s $skip
        for {set c 0} {$c < $count} {incr c} {
            set f [lindex $freqs $i]
            dict set fs $s $f
            dict set st $s $start
            incr start $f
            incr s
            incr i
        }
    }
    set h [fnv "$tb[binary format iu $n]"]
    set x {}
    for {set j $first} {$j < $first + $k} {incr j} {
        lappend x [expr {0x8000 | (((($h ^ $j) * 16777619) & 0xFFFFFFFF) >> 17)}]
    }
    lset x 0 [expr {[lindex $x 0] ^ $startxor}]
    binary scan $bytes cu* syms
    set words {}
    for {set i [expr {[llength $syms] - 1}]} {$i >= 0} {incr i -1} {
        set sym [lindex $syms $i]
        set j [expr {$i % $k}]
        set xj [lindex $x $j]
        set f [dict get $fs $sym]
        if {$xj >= ($f << (31 - $pb))} {
            lappend words [expr {$xj & 0xFFFF}]
            set xj [expr {$xj >> 16}]
        }
        lset x $j [expr {(($xj / $f) << $pb) + $xj % $f + [dict get $st $sym]}]
    }
    if {$states ne ""} {
        set x $states
    }
    return "[binary format iu* $x][binary format su* [lreverse $words]]"
}

# Return a body as the listing shows it.
proc vec::body_text {body} {
    variable METHOD_NAME
    if {$body eq ""} {
        return -
    }
    binary scan $body cu m
    set name [expr {[dict exists $METHOD_NAME $m] ? [dict get $METHOD_NAME $m] : "?"}]
    return "$name:[string length $body]"
}

# ---------------------------------------------------------------------------
# The stream writer, continued: frames of planes.md.

# Append a stream header and forget the previous segment's index.
proc vec::cheader {args} {
    variable idx {}
    header {*}$args
}

# Return the open segment's offset of the next frame.
proc vec::seg_offset {} {
    variable buf
    variable seg
    return [expr {[string length $buf] - [dict get $seg start]}]
}

# Append a FILE frame and note it for the index.
proc vec::cfile {path kind content args} {
    variable idx
    lappend idx [list 1 $path [seg_offset]]
    file_begin $path $kind $content {*}$args
}

# Append a TENSOR frame, note it for the index and open it for planes.
proc vec::ctensor {name dtype shape args} {
    variable idx
    variable ten
    variable cur
    lappend idx [list 2 $name [seg_offset]]
    set rowlen [expr {[llength $shape] == 0 ? 1 : [lindex $shape end]}]
    set ten [dict create name $name dtype $dtype begin [dict get $cur pos] rowlen $rowlen]
    tensor $name $dtype $shape {*}$args
}

# Take the open file's next n bytes for a frame that replaces DATA; return
# {offset bytes}.
proc vec::take {n} {
    variable cur
    set pos [dict get $cur pos]
    set bytes [string range [dict get $cur content] $pos [expr {$pos + $n - 1}]]
    dict set cur pos [expr {$pos + $n}]
    dict set cur crc [zlib crc32 $bytes [dict get $cur crc]]
    return [list $pos $bytes]
}

# Return the 32 header bytes of PLANES and CODED for count values of the
# open tensor at offset, the field at 14 zero; options in o (-offset,
# -count, -code, -nplanes, -field14, -rowlen, -column) override fields.
proc vec::planes_head {offset count o} {
    variable ten
    variable PLANE_DTYPE
    lassign [dict get $PLANE_DTYPE [dict get $ten dtype]] code width nplanes
    set index [expr {($offset - [dict get $ten begin]) / $width}]
    set h [dict merge [dict create -offset $offset -count $count -code $code \
        -nplanes $nplanes -field14 0 -rowlen [dict get $ten rowlen] \
        -column [expr {$index % [dict get $ten rowlen]}]] $o]
    return [binary format wuiucucusuwuwu [dict get $h -offset] [dict get $h -count] \
        [dict get $h -code] [dict get $h -nplanes] [dict get $h -field14] \
        [dict get $h -rowlen] [dict get $h -column]]
}

# Return {dtype rowlen column} of a frame whose header is head, for the
# listing.
proc vec::head_text {head} {
    variable PLANE_DTYPE
    binary scan $head wuiucucusuwuwu offset count code nplanes f14 rowlen column
    set dtype ?
    dict for {name d} $PLANE_DTYPE {
        if {[lindex $d 0] == $code} {
            set dtype $name
        }
    }
    return "$offset $count $dtype $rowlen $column"
}

# Apply -poke {plane index value ...} to a list of planes.
proc vec::poke {planes pokes} {
    foreach {p i v} $pokes {
        lset planes $p [string replace [lindex $planes $p] $i $i [binary format cu $v]]
    }
    return $planes
}

# Append a PLANES frame ("PLANES (0x10)") of the open tensor's next count
# values.  -as splits them as another dtype of the same width, -poke
# changes plane bytes, -lengths cuts or pads the planes to other lengths,
# -extra appends bytes; the header options of planes_head override its
# fields.
proc vec::planes {count args} {
    variable ten
    variable PLANE_DTYPE
    set o [opts {-as {} -poke {} -lengths {} -extra "" -offset {} -count {} \
        -code {} -nplanes {} -field14 {} -rowlen {} -column {}} $args]
    set dtype [dict get $ten dtype]
    if {[dict get $o -as] ne ""} {
        set dtype [dict get $o -as]
        dict set o -code [lindex [dict get $PLANE_DTYPE $dtype] 0]
    }
    set width [lindex [dict get $PLANE_DTYPE $dtype] 1]
    lassign [take [expr {$count * $width}]] offset bytes
    set planes [poke [split_planes $dtype $bytes] [dict get $o -poke]]
    set lengths [dict get $o -lengths]
    if {$lengths eq ""} {
        foreach p $planes {
            lappend lengths [string length $p]
        }
    }
    set i 0
    foreach p $planes n $lengths {
        lset planes $i [string range "$p[string repeat \x00 $n]" 0 $n-1]
        incr i
    }
    set head [planes_head $offset $count [head_opts $o]]
    frame 16 "$head[binary format iu* $lengths][join $planes ""][dict get $o -extra]"
    line "PLANES [head_text $head] [join $lengths ,]"
}

# Return the header options of o that are set.
proc vec::head_opts {o} {
    set h {}
    foreach key {-offset -count -code -nplanes -field14 -rowlen -column} {
        if {[dict get $o $key] ne ""} {
            dict set h $key [dict get $o $key]
        }
    }
    return $h
}

# Append a CODED frame ("CODED (0x30)") of the open tensor's next count
# values.  Layout 0: methods gives each plane's method, or {method
# body-options...}.  Layout 1 (-layout 1 with one method): one body of the
# values.  -poke changes planes before coding, -bodies replaces the bodies,
# -field14 the layout field alone, -extra appends bytes; header options as
# for planes.
proc vec::coded {count methods args} {
    variable ten
    variable PLANE_DTYPE
    set o [opts {-layout 0 -poke {} -bodies {} -extra "" -offset {} -count {} \
        -code {} -nplanes {} -field14 {} -rowlen {} -column {}} $args]
    set dtype [dict get $ten dtype]
    lassign [dict get $PLANE_DTYPE $dtype] code width nplanes
    lassign [take [expr {$count * $width}]] offset bytes
    set bodies [dict get $o -bodies]
    if {$bodies eq "" && [dict get $o -layout] == 1} {
        set m [lindex $methods 0]
        set bodies [list [body [lindex $m 0] $bytes {*}[lrange $m 1 end]] \
            {*}[lrepeat [expr {$nplanes - 1}] ""]]
    } elseif {$bodies eq ""} {
        set planes [poke [split_planes $dtype $bytes] [dict get $o -poke]]
        foreach m $methods plane $planes {
            lassign $m method
            lappend bodies [body $method $plane {*}[lrange $m 1 end]]
        }
    }
    set h [head_opts $o]
    if {![dict exists $h -field14]} {
        dict set h -field14 [dict get $o -layout]
    }
    set head [planes_head $offset $count $h]
    set lengths {}
    set texts {}
    foreach b $bodies {
        lappend lengths [string length $b]
        lappend texts [body_text $b]
    }
    binary scan $head @14su layout
    frame 48 "$head[binary format iu* $lengths][join $bodies ""][dict get $o -extra]"
    line "CODED [head_text $head] $layout [join $texts ,]"
}

# Append a CODED_DATA frame ("CODED_DATA (0x31)") of the open file's next
# n bytes, coded with method ({method body-options...}); -n and -offset
# override those fields, -body the body.
proc vec::cdata {n method args} {
    set o [opts {-n {} -offset {} -body {}} $args]
    lassign [take $n] offset bytes
    set body [dict get $o -body]
    if {$body eq ""} {
        set body [body [lindex $method 0] $bytes {*}[lrange $method 1 end]]
    }
    foreach key {n offset} {
        if {[dict get $o -$key] ne ""} {
            set $key [dict get $o -$key]
        }
    }
    frame 49 "[binary format wuiu $offset $n]$body"
    line "CODED_DATA $offset $n [body_text $body]"
}

# ---------------------------------------------------------------------------
# The stream writer, continued: frames of predict.md, with the writer's
# own predictors.

namespace eval vec {
    variable PRED_NAME {none left up avg grad med}
}

# Return the prediction of predictor id from neighbours a, b, c
# (predict.md "Predictors").
proc vec::predict_one {id a b c} {
    switch -- $id {
        0 { return 0 }
        1 { return $a }
        2 { return $b }
        3 { return [expr {int(floor(($a + $b) / 2.0))}] }
        4 { return [expr {max(-128, min(127, $a + $b - $c))}] }
        5 {
            if {$c >= max($a, $b)} { return [expr {min($a, $b)}] }
            if {$c <= min($a, $b)} { return [expr {max($a, $b)}] }
            return [expr {$a + $b - $c}]
        }
    }
    error "no predictor $id"
}

# Return the residual bytes of the values in bytes of dtype (I8 or U8), a
# frame starting at column of rows of rowlen, with chunks of chunk values
# predicted by ids in turn (predict.md "Layout", "Predictors").
proc vec::residuals {dtype bytes rowlen column chunk ids} {
    binary scan $bytes cu* xs
    set v {}
    foreach x $xs {
        lappend v [expr {$dtype eq "I8" ? ($x ^ 0x80) - 128 : $x - 128}]
    }
    set out {}
    set i 0
    foreach x $v {
        set col [expr {($column + $i) % $rowlen}]
        set left [expr {$col > 0 && $i >= 1}]
        set up [expr {$i >= $rowlen}]
        set a [expr {$left ? [lindex $v $i-1] : $up ? [lindex $v $i-$rowlen] : 0}]
        set b [expr {$up ? [lindex $v $i-$rowlen] : $a}]
        set ul [expr {$i - $rowlen - 1}]
        set c [expr {$left && $i >= $rowlen + 1 ? [lindex $v $ul] : $b}]
        set p [predict_one [lindex $ids [expr {$i / $chunk}]] $a $b $c]
        lappend out [expr {($x - $p) & 0xFF}]
        incr i
    }
    return [binary format cu* $out]
}

# Append a RESIDUAL frame ("RESIDUAL (0x11)") of the open tensor's next
# count values, its chunks predicted by ids in turn (chunk: as many values
# as that needs, or -chunk); with -coded method ({method body-options...})
# a CODED_RESIDUAL frame ("CODED_RESIDUAL (0x32)") instead.  -as codes the
# values as another dtype; -offset -count -code -r13 -r14 -rowlen -column
# -chunk -nchunks override header fields (the residuals follow -rowlen,
# -column and -chunk), -ids the id bytes, -body the coded body, -resid the
# residuals; -extra appends bytes, -cut drops the last ones.
proc vec::residual {count ids args} {
    variable ten
    variable PRED_NAME
    set o [opts {-coded {} -as {} -offset {} -count {} -code {} -r13 0 -r14 0 \
        -rowlen {} -column {} -chunk {} -nchunks {} -ids {} -body {} -resid {} \
        -extra "" -cut 0} $args]
    set dtype [dict get $ten dtype]
    if {[dict get $o -as] ne ""} {
        set dtype [dict get $o -as]
    }
    lassign [take $count] offset bytes
    set f [dict create offset $offset count $count code [expr {$dtype eq "I8" ? 1 : 2}] \
        rowlen [dict get $ten rowlen] \
        column [expr {($offset - [dict get $ten begin]) % [dict get $ten rowlen]}] \
        chunk [expr {[llength $ids] ? ($count + [llength $ids] - 1) / [llength $ids] : 1}]]
    foreach key {offset count code rowlen column chunk} {
        if {[dict get $o -$key] ne ""} {
            dict set f $key [dict get $o -$key]
        }
    }
    dict with f {}
    set nchunks [dict get $o -nchunks]
    if {$nchunks eq ""} {
        set nchunks [llength $ids]
    }
    set resid [dict get $o -resid]
    if {$resid eq ""} {
        set resid [residuals $dtype $bytes $rowlen $column [expr {$chunk ? $chunk : $count}] $ids]
    }
    set idbytes [dict get $o -ids]
    if {$idbytes eq ""} {
        set idbytes [binary format cu* $ids]
    }
    set names {}
    foreach id $ids {
        lappend names [lindex $PRED_NAME $id]
    }
    set head [binary format wuiucucusuwuwuiuiu $offset $count $code [dict get $o -r13] \
        [dict get $o -r14] $rowlen $column $chunk $nchunks]
    set text "$offset $count [expr {$code == 1 ? "I8" : "U8"}] $rowlen $column $chunk [join $names ,]"
    set m [dict get $o -coded]
    if {$m eq ""} {
        set payload "$head$idbytes$resid[dict get $o -extra]"
        set type 17
        line "RESIDUAL $text"
    } else {
        set body [dict get $o -body]
        if {$body eq ""} {
            set body [body [lindex $m 0] $resid {*}[lrange $m 1 end]]
        }
        set payload "$head$idbytes$body[dict get $o -extra]"
        set type 50
        line "CODED_RESIDUAL $text [body_text $body]"
    }
    frame $type [string range $payload 0 end-[dict get $o -cut]]
}

# Return the LEB128 bytes of value; -pad adds continuation bytes of zero
# bits (as an 11-byte varint needs).
proc vec::varint {value {pad 0}} {
    set value [expr {$value & 0xFFFFFFFFFFFFFFFF}]
    set out {}
    while 1 {
        set b [expr {$value & 0x7F}]
        set value [expr {$value >> 7}]
        if {$value == 0 && $pad == 0} {
            lappend out $b
            break
        }
        lappend out [expr {$b | 0x80}]
        if {$value == 0} {
            incr pad -1
        }
    }
    return [binary format cu* $out]
}

# Append an INDEX frame ("INDEX (0xF0)") of the entries noted since the
# segment began, or -entries {kind name offset ...}.  -count, -extra,
# -shared {entry value}, -kind {entry value} and -varpad {entry bytes}
# break it.  Return its segment offset.
proc vec::index {args} {
    variable idx
    set o [opts [list -entries $idx -count {} -extra "" -shared {} -kind {} \
        -varpad {}] $args]
    set at [seg_offset]
    set entries [dict get $o -entries]
    set count [dict get $o -count]
    if {$count eq ""} {
        set count [llength $entries]
    }
    set payload [binary format iu $count]
    set prev ""
    set prevoff 0
    set shown {}
    set i 0
    foreach e $entries {
        lassign $e kind name offset
        set shared 0
        while {$shared < 255 && $shared < [string length $prev] &&
               [string index $prev $shared] eq [string index $name $shared]} {
            incr shared
        }
        set suffix [string range $name $shared end]
        set skind $kind
        if {[lindex [dict get $o -kind] 0] eq $i} {
            set skind [lindex [dict get $o -kind] 1]
        }
        set sshared $shared
        if {[lindex [dict get $o -shared] 0] eq $i} {
            set sshared [lindex [dict get $o -shared] 1]
        }
        set pad 0
        if {[lindex [dict get $o -varpad] 0] eq $i} {
            set pad [lindex [dict get $o -varpad] 1]
        }
        append payload [binary format cucu $skind $sshared] \
            [varint [string length $suffix]] [varint [expr {$offset - $prevoff}] $pad] $suffix
        lappend shown "[expr {$kind == 1 ? "F" : "T"}]:$offset:[esc $name]"
        set prev $name
        set prevoff $offset
        incr i
    }
    append payload [dict get $o -extra]
    frame 240 $payload
    line [string trimright "INDEX $count [join $shown " "]"]
    set idx {}
    return $at
}

# Append an INDEX_LOC frame ("INDEX_LOC (0xF1)") pointing at segment
# offset at; -extra lengthens it.
proc vec::index_loc {at args} {
    set o [opts {-extra ""} $args]
    frame 241 "[binary format wu $at][dict get $o -extra]"
    line "INDEX_LOC $at"
}

# ---------------------------------------------------------------------------
# Contents

# Return a safetensors blob holding tensors {name dtype shape bytes} back
# to back, in order.
proc vec::st_of {tensors} {
    set entries {}
    set data ""
    foreach t $tensors {
        lassign $t name dtype shape bytes
        set begin [string length $data]
        append data $bytes
        lappend entries [st_entry $name $dtype $shape $begin [string length $data]]
    }
    return [st_blob "{[join $entries ,]}" $data]
}

# Open safetensors file path holding tensors {name dtype shape bytes}, and
# carry its header as DATA (or as CODED_DATA with -header method).
proc vec::st_open {path tensors args} {
    set o [opts {-header {}} $args]
    set blob [st_of $tensors]
    cfile $path 1 $blob
    if {[dict get $o -header] eq ""} {
        data [st_head $blob]
    } else {
        cdata [st_head $blob] [dict get $o -header]
    }
}

# ---------------------------------------------------------------------------
# Good vectors

proc vec::make_coded_good {} {
    variable rng
    variable PLANE_DTYPE

    # BF16 rows coded with every method on each plane, then a PLANES row
    # and a DATA row, as a stream mixing them may; a scalar as PLANES
    # (rows of 1).
    set rng 1
    set rows [values BF16 128]
    append rows [values BF16 64 -mantissa 0]
    append rows [values BF16 64 -exponent 124]
    append rows [values BF16 128]
    begin; cheader
    st_open bf16.safetensors [list [list w BF16 {6 64} $rows] [list s BF16 {} "\x49\x40"]]
    ctensor w BF16 {6 64}
    coded 64 {1 0}
    coded 64 {3 3}
    coded 64 {0 2}
    coded 64 {2 1}
    planes 64
    data 128
    ctensor s BF16 {}
    planes 1
    file_end
    end
    good bf16-methods

    # E4M3 rows of an odd length (a padding nibble in every plane 1):
    # layout 0 with every method on each plane, then layout 1 with the
    # two rANS methods.
    set rng 2
    set rows [values F8_E4M3 65]
    append rows [values F8_E4M3 65]
    append rows [values F8_E4M3 65 -exponent 7]
    append rows [values F8_E4M3 65 -mantissa 0]
    append rows [values F8_E4M3 130]
    begin; cheader
    st_open e4m3.safetensors [list [list w F8_E4M3 {6 65} $rows]]
    ctensor w F8_E4M3 {6 65}
    coded 65 {1 0}
    coded 65 {3 3}
    coded 65 {2 1}
    coded 65 {0 2}
    coded 65 {3} -layout 1
    coded 65 {1} -layout 1
    file_end
    end
    good e4m3-methods

    # A PLANES stream of each dtype: a [3,35] tensor of random bit
    # patterns (every exponent, infinities and NaNs included) in two
    # frames, the second starting at column 1 of row 2, with odd counts.
    set seed 10
    foreach dtype {BF16 F16 F32 F64 F8_E4M3 F8_E5M2} {
        set rng [incr seed]
        set width [lindex [dict get $PLANE_DTYPE $dtype] 1]
        begin; cheader
        st_open planes-[string tolower $dtype].safetensors \
            [list [list v $dtype {3 35} [noise [expr {105 * $width}]]]]
        ctensor v $dtype {3 35}
        planes 71
        planes 34
        file_end
        end
        good planes-[string tolower $dtype]
    }

    # One CODED frame per dtype, exponents in 4-state rANS, the rest raw
    # or 4-state.
    set rng 20
    set tensors {}
    foreach dtype {BF16 F16 F32 F64 F8_E4M3 F8_E5M2} {
        set width [lindex [dict get $PLANE_DTYPE $dtype] 1]
        lappend tensors [list [string tolower $dtype] $dtype {67} [noise [expr {67 * $width}]]]
    }
    begin; cheader
    st_open dtypes.safetensors $tensors -header 3
    foreach t $tensors {
        lassign $t name dtype shape
        ctensor $name $dtype $shape
        set nplanes [lindex [dict get $PLANE_DTYPE $dtype] 2]
        coded 67 [list {3 -pb 8} {*}[lrepeat [expr {$nplanes - 1}] 0]]
    }
    file_end
    end
    good coded-dtypes

    # CODED_DATA of every method: a safetensors header, an I8 tensor in
    # two frames, a U8 tensor of one repeated byte, a plain file raw.
    set rng 30
    binary scan [noise 100] cu* r
    set i8 {}
    foreach b $r {
        lappend i8 [expr {($b % 7) - 3}]
    }
    set i8 [binary format c* $i8]
    set text "CODED_DATA holds the bytes of a DATA frame as one coded body.\n"
    set json "{\"layers\": \[{\"name\": \"attn\"}, {\"name\": \"attn\"}, {\"name\": \"mlp\"}\]}\n"
    begin; cheader
    st_open data.safetensors [list [list i I8 {4 25} $i8] [list u U8 {80} [string repeat \x2a 80]]] \
        -header {3 -pb 7}
    ctensor i I8 {4 25}
    cdata 50 1
    cdata 50 {3 -pb 5}
    ctensor u U8 {80}
    cdata 80 2
    file_end
    cfile notes.txt 2 $text
    cdata [string length $text] 0
    file_end
    cfile config.json 2 $json
    cdata [string length $json] 5
    file_end
    # method 6 in 3 segments: 128, 128 and 44 symbols
    binary scan [noise 300] cu* r
    set rows ""
    foreach b $r {
        append rows [lindex {a a a a b b c d} [expr {$b % 8}]]
    }
    cfile rows.txt 2 $rows
    cdata 300 {6 -segs 3 -pb 6}
    file_end
    end
    good coded-data

    # Two segments with an index each: front-coded names (a shared prefix
    # over 255 bytes, where shared stops at 255), multi-byte deltas, a
    # plain file, a tensor with no bytes.
    set rng 40
    set long [string repeat "model.layers.0.block." 14]
    set a [values BF16 64]
    begin; cheader
    cfile config.json 2 "{\"hidden\": 64}\n"
    data 15
    file_end
    st_open model.safetensors [list [list ${long}attn BF16 {64} $a] \
        [list ${long}empty BF16 {0}] [list model.norm BF16 {2} "\x80\x3f\x00\x40"]]
    ctensor ${long}attn BF16 {64}
    coded 64 {3 0}
    ctensor ${long}empty BF16 {0}
    ctensor model.norm BF16 {2}
    data 4
    file_end
    index_loc [index]
    end
    cheader
    st_open more.safetensors [list [list model.head BF16 {64} [values BF16 64]]]
    ctensor model.head BF16 {64}
    coded 64 {3 3}
    file_end
    index_loc [index]
    end
    good index
}

# ---------------------------------------------------------------------------
# Bad vectors: each valid but for the rule its name gives.

# A segment holding one BF16 tensor "w" of the values in w (default 64 of
# them) with shape (default {count}), whose frames body writes.
proc vec::bf16_file {body {w ""} {shape ""}} {
    variable rng 50
    if {$w eq ""} {
        set w [values BF16 64]
    }
    if {$shape eq ""} {
        set shape [list [expr {[string length $w] / 2}]]
    }
    cheader
    st_open w.safetensors [list [list w BF16 $shape $w]]
    ctensor w BF16 $shape
    uplevel 1 $body
    file_end
    end
}

# A segment holding one tensor "w" of 65 random values of dtype, whose
# frames body writes.
proc vec::small_file {body {dtype F8_E4M3}} {
    variable rng 51
    variable PLANE_DTYPE
    set w [noise [expr {65 * [lindex [dict get $PLANE_DTYPE $dtype] 1]}]]
    cheader
    st_open w.safetensors [list [list w $dtype {65} $w]]
    ctensor w $dtype {65}
    uplevel 1 $body
    file_end
    end
}

# A segment holding a plain file t.txt, 60 bytes of the letters a..e
# unless content is given, whose frames body writes.
proc vec::text_file {body {content ""}} {
    variable rng 52
    if {$content eq ""} {
        binary scan [noise 60] cu* r
        foreach b $r {
            append content [lindex {a a a b b c d e} [expr {$b % 8}]]
        }
    }
    cheader
    cfile t.txt 2 $content
    uplevel 1 $body
    file_end
    end
}

proc vec::make_coded_bad {} {
    # Bodies of text_file's 60 letters: T is a valid table for them, the
    # others break one rule of "Methods 1 and 3" each.  The letters are
    # coded with the table as written, so only the rule named fails.
    set T {6 {97 5} {27 11 11 11 4}}
    set cases {
        body-table-sum {text_file {cdata 60 [list 3 -table $T -tableopts {-nfreq {4 \x05}}]}}
        body-table-zero-freq {text_file {cdata 60 {3 -table {6 {97 6} {27 11 11 11 4 0}}}}}
        body-table-runs-not-maximal {text_file {cdata 60 {3 -table {6 {97 2 0 3} {27 11 11 11 4}}}}}
        body-table-past-255 {text_file {cdata 60 {3 -table {6 {97 5 154 1} {27 11 11 11 3 1}}}}}
        body-table-one-symbol {text_file {cdata 60 {3 -pb 1}} [string repeat x 60]}
        body-table-pb-0 {text_file {cdata 60 x -body "\x03\x00[string range [body 3 [dict get $cur content] -table $T] 2 end]"}}
        body-table-pb-13 {text_file {cdata 60 {3 -table {13 {97 5} {2000 2000 2000 2000 192}}}}}
        body-table-runs-0 {text_file {cdata 60 [list 3 -table $T -tableopts {-runs 0}]}}
        body-table-runs-129 {text_file {cdata 60 [list 3 -table $T -tableopts {-runs 129}]}}
        body-table-freq-noncanonical {text_file {cdata 60 [list 3 -table $T -tableopts {-nfreq {4 \x84\x00}}]}}
        body-table-truncated {text_file {cdata 60 [list 3 -table $T] -body [string range [body 3 [dict get $cur content] -table $T] 0 6]}}
        body-states-truncated {text_file {cdata 60 [list 3 -table $T] -body [string range [body 3 [dict get $cur content] -table $T] 0 20]}}
        body-state-below-2-15 {text_file {cdata 60 [list 3 -table $T -states {0x7fff 0x8000 0x8000 0x8000}]}}
        body-state-2-31 {text_file {cdata 60 [list 3 -table $T -states {0x80000000 0x8000 0x8000 0x8000}]}}
        body-final-state {text_file {cdata 60 [list 3 -table $T -startxor 1]}}
        body-wrong-n {text_file {cdata 60 [list 3 -table $T -n 61]}}
        body-trailing-word {text_file {cdata 60 [list 3 -table $T -extra \x00\x00]}}
        body-trailing-byte {text_file {cdata 60 [list 3 -table $T -extra \x00]}}
        body-words-truncated {text_file {cdata 60 [list 3 -table $T -cut 2]}}
        body-order0-trailing-word {text_file {cdata 60 [list 1 -table $T -extra \x00\x00]}}
        body-order0-final-state {text_file {cdata 60 [list 1 -table $T -startxor 1]}}
        body-method-4 {text_file {cdata 60 4}}
        body-method-7 {text_file {cdata 60 7}}
        body-striped-segs-1 {text_file {cdata 60 [list 6 -table $T -segs 1]}}
        body-striped-segs-17 {text_file {cdata 60 x -body "\x06[table_bytes $T]\x11"}}
        body-striped-last-empty {text_file {cdata 60 [list 6 -table $T -segs 3]}}
        body-striped-lens-past-end {text_file {cdata 60 [list 6 -table $T -lens {4000 0}]}}
        body-striped-lens-odd {text_file {cdata 60 [list 6 -table $T -lens {1 0} -extra \x00]}}
        body-striped-final-state {text_file {cdata 60 [list 6 -table $T -startxor 1]}}
        body-striped-trailing-word {text_file {cdata 60 [list 6 -table $T -extra \x00\x00]}}
        body-striped-truncated {text_file {cdata 60 [list 6 -table $T -cut 2]}}
        body-deflate-trailing-byte {text_file {cdata 60 {5 -extra x}}}
        body-deflate-truncated {text_file {cdata 60 {5 -cut 1}}}
        body-deflate-empty {text_file {cdata 60 x -body \x05}}
        body-deflate-invalid {text_file {cdata 60 x -body \x05\xff\xff\xff\xff}}
        body-deflate-short {text_file {cdata 60 x -body "\x05[zlib deflate [string range [dict get $cur content] 1 end] 9]"}}
        body-deflate-long {text_file {cdata 60 x -body "\x05[zlib deflate "[dict get $cur content]x" 9]"}}
        body-raw-long {text_file {cdata 60 {0 -extra x}}}
        body-raw-short {text_file {cdata 60 {0 -cut 1}}}
        body-run-long {text_file {cdata 60 {2 -extra a}} [string repeat a 60]}
        body-x4-over-16384 {
            text_file {cdata 16385 {3 -table {12 {97 2} {4095 1}}}} "[string repeat a 16384]b"
        }
        coded-x4-over-16384 {
            bf16_file {coded 16385 {{3 -table {12 {124 2} {4095 1}}} 2}} \
                "[values BF16 16384 -exponent 124 -mantissa 0][values BF16 1 -exponent 125 -mantissa 0]"
        }
        coded-body-empty {bf16_file {coded 64 {3 0} -bodies [list "" [body 0 [string repeat x 64]]]}}
        coded-plane-short {bf16_file {coded 64 {0 0} -bodies [list [body 0 [string repeat \x7f 63]] [body 0 [string repeat x 64]]]}}
        coded-layout-1-bf16 {bf16_file {coded 64 {3} -layout 1}}
        coded-layout-2 {small_file {coded 65 {3} -layout 1 -field14 2}}
        coded-layout-1-second-body {small_file {coded 65 {3} -layout 1 -bodies [list [body 3 [string range [dict get $cur content] end-64 end]] [body 0 [string repeat \x00 33]]]}}
        coded-e4m3-exponent-16 {small_file {coded 65 {3 0} -poke {0 5 16}}}
        coded-padding-nibble {small_file {coded 65 {3 0} -poke {1 32 0x30}}}
        coded-nplanes {bf16_file {coded 64 {3 0} -nplanes 3}}
        coded-payload-extra {bf16_file {coded 64 {3 0} -extra x}}
        coded-planes-over-cap {
            bf16_file {coded 4194285 {2 2} -bodies {\x02\x7f \x02\x80}} \
                [string repeat \x80\x3f 4194285]
        }
        planes-length {bf16_file {planes 64 -lengths {64 63}}}
        planes-payload-extra {bf16_file {planes 64 -extra x}}
        planes-count-zero {bf16_file {planes 64 -count 0}}
        planes-nplanes {bf16_file {planes 64 -nplanes 3}}
        planes-dtype-code-7 {bf16_file {planes 64 -code 7}}
        planes-reserved {bf16_file {planes 64 -field14 1}}
        planes-dtype-mismatch {small_file {planes 65 -as F8_E5M2}}
        planes-rowlen {bf16_file {planes 64 -rowlen 64} "" {2 32}}
        planes-column {bf16_file {data 64; planes 32 -column 0}}
        planes-offset {bf16_file {planes 64 -offset 0}}
        planes-outside-tensor {
            cheader
            cfile w.safetensors 1 [st_blob "{}" [values BF16 64]] -size unknown
            data 16
            set ten [dict create name - dtype BF16 begin 16 rowlen 64]
            planes 64
            file_end
            end
        }
        planes-past-tensor {
            cheader
            st_open w.safetensors [list [list w BF16 {32} [values BF16 32]] \
                [list x BF16 {32} [values BF16 32]]]
            ctensor w BF16 {32}
            planes 64
            file_end
            end
        }
        planes-e4m3-exponent-16 {small_file {planes 65 -poke {0 5 16}}}
        planes-e5m2-exponent-32 {small_file {planes 65 -poke {0 5 32}} F8_E5M2}
        planes-e5m2-nibble-8 {small_file {planes 65 -poke {1 5 0x08}} F8_E5M2}
        planes-padding-nibble {small_file {planes 65 -poke {1 32 0x10}}}
        planes-f16-exponent-32 {small_file {planes 65 -poke {0 5 32}} F16}
        planes-f16-plane-2 {small_file {planes 65 -poke {2 5 8}} F16}
        coded-data-n-mismatch {text_file {cdata 60 {0} -n 59}}
        coded-data-n-zero {text_file {cdata 60 {0} -n 0 -body "\x00"}}
        coded-data-offset {text_file {cdata 60 [list 3 -table $T] -offset 1}}
        coded-data-outside-file {
            cheader
            frame 49 "[binary format wuiu 0 3]\x00abc"
            end
        }
        coded-data-splits-element {bf16_file {cdata 63 {3}; cdata 65 {3}}}
    }
    foreach {name body} $cases {
        begin
        namespace eval ::vec [list set T $T]
        namespace eval ::vec $body
        bad $name
    }
}

# Bad INDEX and INDEX_LOC frames in a segment of two files.
proc vec::index_segment {body} {
    variable rng 60
    cheader
    cfile a.txt 2 "abc\n"
    data 4
    file_end
    st_open m.safetensors [list [list model.a BF16 {2} "\x80\x3f\x00\x40"] \
        [list model.b BF16 {2} "\x00\x40\x80\x3f"]]
    ctensor model.a BF16 {2}
    data 4
    ctensor model.b BF16 {2}
    data 4
    file_end
    uplevel 1 $body
    end
}

proc vec::make_index_bad {} {
    set cases {
        count {index_loc [index -count 5]}
        trailing {index_loc [index -extra \x00]}
        kind {index_loc [index -kind {1 3}]}
        kind-swapped {index_loc [index -kind {1 2}]}
        shared {index_loc [index -shared {0 1}]}
        varint-long {index_loc [index -varpad {2 10}]}
        offset {index_loc [index -entries [lreplace $idx 2 2 [list 2 model.a [expr {[lindex $idx 2 2] + 1}]]]]}
        name {index_loc [index -entries [lreplace $idx 2 2 [list 2 model.x [lindex $idx 2 2]]]]}
        repeat {index_loc [index -entries [list [lindex $idx 0] [lindex $idx 0]]]}
        tensor-owner {index_loc [index -entries [list [lindex $idx 0] [lindex $idx 2]]]}
        loc-offset {index_loc [expr {[index] + 1}]}
        loc-length {index_loc [index] -extra \x00}
        loc-not-last {index_loc [index]; other 0xF2 ""}
        loc-without-index {index_loc 0}
    }
    foreach {name body} $cases {
        begin
        namespace eval ::vec [list index_segment $body]
        bad index-$name
    }
}

# ---------------------------------------------------------------------------
# Residual vectors (predict.md)

# Return rows x cols smooth values of dtype (I8 or U8) as bytes: a slope
# along rows and columns plus a little noise, clamped to the dtype.
proc vec::smooth {rows cols dtype {slope 3}} {
    binary scan [noise [expr {$rows * $cols}]] cu* r
    set out {}
    set k 0
    for {set i 0} {$i < $rows} {incr i} {
        for {set j 0} {$j < $cols} {incr j} {
            set v [expr {$slope * $i + 2 * $j - 40 + [lindex $r $k] % 5 - 2}]
            set v [expr {max(-128, min(127, $v))}]
            lappend out [expr {$dtype eq "I8" ? $v & 0xFF : $v + 128}]
            incr k
        }
    }
    return [binary format cu* $out]
}

proc vec::make_residual_good {} {
    variable rng

    # RESIDUAL frames of I8 and U8 tensors of every rank: every predictor,
    # chunks of several lengths (the last one shorter), a frame starting
    # in the middle of a row after a DATA frame, values at both ends of
    # the range (grad clamps, residuals wrap).
    set rng 70
    set i [smooth 6 20 I8]
    set u [smooth 4 33 U8 9]
    set r [smooth 1 10 U8]
    set e [binary format c* {127 127 -128 -128 127 -128 127 -128 0 1 -1 126
        -127 -128 127 127 -128 127 -128 127 5 -5 100 -100}]
    begin; cheader
    st_open resid.safetensors [list [list i I8 {6 20} $i] [list u U8 {4 33} $u] \
        [list r U8 {10} $r] [list s I8 {} \xfb] [list e I8 {2 3 4} $e]]
    ctensor i I8 {6 20}
    residual 50 {0 1 2 3 4 5 5}
    data 20
    residual 50 {5 4}
    ctensor u U8 {4 33}
    residual 132 {4 5 3 2 1 0}
    ctensor r U8 {10}
    residual 10 {1 2 3 0}
    ctensor s I8 {}
    residual 1 {5}
    ctensor e I8 {2 3 4}
    residual 24 {4 5}
    file_end
    end
    good residual

    # CODED_RESIDUAL frames with bodies of every method, beside a RESIDUAL
    # frame of the same tensor; the second frame starts in a row's middle.
    set rng 71
    set i [smooth 8 32 I8 4]
    binary scan [noise 300] cu* n
    set w {}
    foreach b $n {
        lappend w [expr {128 + [lindex {0 0 0 0 1 1 -1 2} [expr {$b % 8}]]}]
    }
    set w [binary format cu* $w]
    begin; cheader
    st_open cresid.safetensors [list [list i I8 {8 32} $i] \
        [list u U8 {3 30} [string repeat \x80 90]] [list w U8 {300} $w] \
        [list t U8 {2 40} [smooth 2 40 U8]]]
    ctensor i I8 {8 32}
    residual 100 {5 4} -coded {3 -pb 8}
    residual 100 {2} -coded 1
    residual 56 {0 3} -coded 0
    ctensor u U8 {3 30}
    residual 90 {1 2} -coded 2
    ctensor w U8 {300}
    residual 300 {1} -coded {6 -segs 2 -pb 7}
    ctensor t U8 {2 40}
    residual 40 {4} -coded 5
    residual 40 {5}
    file_end
    end
    good coded-residual
}

# A segment holding one I8 tensor "w" of shape (default {4 16}) with
# smooth values, whose frames body writes.
proc vec::i8_file {body {shape {4 16}}} {
    variable rng 72
    set n [tcl::mathop::* {*}$shape]
    cheader
    st_open w.safetensors [list [list w I8 $shape [smooth 1 $n I8]]]
    ctensor w I8 $shape
    uplevel 1 $body
    file_end
    end
}

proc vec::make_residual_bad {} {
    set cases {
        residual-predictor-6 {i8_file {residual 64 {1 2} -ids \x01\x06}}
        residual-predictor-255 {i8_file {residual 64 {1} -ids \xff}}
        residual-length-short {i8_file {residual 64 {1} -cut 1}}
        residual-length-long {i8_file {residual 64 {1} -extra x}}
        residual-reserved-13 {i8_file {residual 64 {1} -r13 1}}
        residual-reserved-14 {i8_file {residual 64 {1} -r14 0x100}}
        residual-dtype-code-0 {i8_file {residual 64 {1} -code 0}}
        residual-dtype-code-3 {i8_file {residual 64 {1} -code 3}}
        residual-dtype-mismatch {i8_file {residual 64 {1} -as U8}}
        residual-count-zero {i8_file {residual 0 {}; data 64}}
        residual-chunk-zero {i8_file {residual 64 {1} -chunk 0}}
        residual-nchunks {i8_file {residual 64 {1 2} -nchunks 3 -ids \x01\x02\x01}}
        residual-rowlen {i8_file {residual 64 {1 2} -rowlen 8}}
        residual-column {i8_file {data 5; residual 59 {5} -column 4}}
        residual-offset {i8_file {data 4; residual 60 {5} -offset [expr {[dict get $cur pos] + 16}]}}
        residual-outside-tensor {
            cheader
            cfile w.safetensors 1 [st_blob "{}" [smooth 1 64 I8]] -size unknown
            data 16
            set ten [dict create name - dtype I8 begin 16 rowlen 64]
            residual 64 {1}
            file_end
            end
        }
        residual-in-bf16-tensor {bf16_file {residual 64 {1} -as I8; data 64}}
        residual-past-tensor {
            cheader
            st_open w.safetensors [list [list w I8 {32} [smooth 1 32 I8]] \
                [list x I8 {32} [smooth 1 32 I8]]]
            ctensor w I8 {32}
            residual 64 {1}
            file_end
            end
        }
        residual-outside-file {
            cheader
            frame 17 "[binary format wuiucucusuwuwuiuiu 0 3 1 0 0 3 0 3 1]\x01abc"
            end
        }
        coded-residual-no-body {i8_file {residual 64 {1} -coded 0 -cut 65}}
        coded-residual-body-short {i8_file {residual 64 {1} -coded 0 -body "\x00[string repeat \x01 63]"}}
        coded-residual-body-long {i8_file {residual 64 {1} -coded 0 -body "\x00[string repeat \x01 65]"}}
        coded-residual-predictor-6 {i8_file {residual 64 {1} -coded 3 -ids \x06}}
        coded-residual-reserved-13 {i8_file {residual 64 {1} -coded 3 -r13 1}}
        coded-residual-column {i8_file {data 5; residual 59 {5} -coded 3 -column 4}}
        coded-residual-over-cap {
            cheader
            st_open w.safetensors [list [list w I8 {8388568} [string repeat \x00 8388568]]]
            ctensor w I8 {8388568}
            residual 8388568 {0} -coded 2 -resid \x00
            file_end
            end
        }
    }
    foreach {name body} $cases {
        begin
        namespace eval ::vec $body
        bad $name
    }
}

proc vec::make_coded {} {
    variable dir
    set top $dir
    set dir [file join $top coded]
    file delete -force $dir
    file mkdir $dir
    make_coded_good
    make_coded_bad
    make_residual_good
    make_residual_bad
    make_index_bad
    set dir $top
}
