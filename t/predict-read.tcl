# predict-read.tcl -- RESIDUAL (0x11) and CODED_RESIDUAL (0x32) frames for
# t/stz-read.tcl, written only from formats/predict.md.

namespace eval stz {}
namespace eval predict {
    variable NAMES {none left up avg grad med}
}

# The value of byte x of dtype in -128..127 ("Layout").
proc predict::sval {x dtype} {
    if {$dtype eq "I8"} {
        return [expr {$x >= 128 ? $x - 256 : $x}]
    }
    return [expr {$x - 128}]
}

# Prediction p of predictor id from neighbours a, b, c ("Predictors").
proc predict::pred {id a b c} {
    switch -- $id {
        0 { return 0 }
        1 { return $a }
        2 { return $b }
        3 { return [expr {($a + $b) / 2}] }
        4 {
            set g [expr {$a + $b - $c}]
            return [expr {$g < -128 ? -128 : $g > 127 ? 127 : $g}]
        }
        5 {
            set lo [expr {min($a, $b)}]
            set hi [expr {max($a, $b)}]
            if {$c >= $hi} { return $lo }
            if {$c <= $lo} { return $hi }
            return [expr {$a + $b - $c}]
        }
    }
}

# The values (bytes) of a frame from its header fields, ids and residuals.
proc predict::inverse {dtype rowlen column chunk ids resid} {
    binary scan $resid cu* r
    set v {}
    set n [llength $r]
    for {set i 0} {$i < $n} {incr i} {
        set id [lindex $ids [expr {$i / $chunk}]]
        set col [expr {($column + $i) % $rowlen}]
        set hasl [expr {$col > 0 && $i >= 1}]
        set hasu [expr {$i >= $rowlen}]
        set hasul [expr {$hasl && $i >= $rowlen + 1}]
        if {$hasl} {
            set a [lindex $v [expr {$i - 1}]]
        } elseif {$hasu} {
            set a [lindex $v [expr {$i - $rowlen}]]
        } else {
            set a 0
        }
        set b [expr {$hasu ? [lindex $v [expr {$i - $rowlen}]] : $a}]
        set c [expr {$hasul ? [lindex $v [expr {$i - $rowlen - 1}]] : $b}]
        set p [pred $id $a $b $c]
        lappend v [expr {(([lindex $r $i] + $p + 128) % 256) - 128}]
    }
    set out {}
    foreach x $v {
        lappend out [expr {$dtype eq "I8" ? $x & 0xFF : $x + 128}]
    }
    return [binary format cu* $out]
}

# Header of a RESIDUAL or CODED_RESIDUAL payload, checked alone: a dict of
# its fields, the ids and the rest of the payload.
proc stz::resid_header {off what payload} {
    variable tensor
    set len [string length $payload]
    if {$len < 40} {
        fail $off "$what payload of $len bytes, needs at least 40"
    }
    binary scan $payload wuiucucusuwuwuiuiu offset count code r8 r16 rowlen \
        column chunk nchunks
    if {$r8 != 0 || $r16 != 0} {
        fail $off "$what reserved field is not zero"
    }
    switch -- $code {
        1 { set dtype I8 }
        2 { set dtype U8 }
        default { fail $off "$what dtype code $code, must be 1 or 2" }
    }
    if {$count < 1} {
        fail $off "$what count 0, must be at least 1"
    }
    if {$offset + $count > 0xFFFFFFFFFFFFFFFF} {
        fail $off "$what offset + count overflows"
    }
    if {$rowlen < 1 || $column >= $rowlen} {
        fail $off "$what column $column, rowlen $rowlen"
    }
    if {$chunk < 1} {
        fail $off "$what chunk 0, must be at least 1"
    }
    if {$nchunks != ($count + $chunk - 1) / $chunk} {
        fail $off "$what nchunks $nchunks, $count values in chunks of $chunk need [expr {($count + $chunk - 1) / $chunk}]"
    }
    if {$len < 40 + $nchunks} {
        fail $off "$what payload of $len bytes, needs [expr {40 + $nchunks}] for its ids"
    }
    binary scan $payload @40cu$nchunks ids
    set names {}
    foreach id $ids {
        if {$id > 5} {
            fail $off "$what predictor id $id, must be 0..5"
        }
        lappend names [lindex $::predict::NAMES $id]
    }
    set h [dict create offset $offset count $count dtype $dtype width 1 \
        rowlen $rowlen column $column chunk $chunk ids $ids names $names \
        rest [string range $payload 40+$nchunks end]]
    planes_place $off $what $h
    set left [expr {[dict get $tensor end] - $offset}]
    if {$count > $left} {
        fail $off "$what count $count, the tensor has $left bytes left"
    }
    return $h
}

# RESIDUAL (0x11): the values of a DATA frame as residuals.
proc stz::frame_residual {off payload} {
    set h [resid_header $off RESIDUAL $payload]
    dict with h {}
    if {[string length $rest] != $count} {
        fail $off "RESIDUAL of [string length $rest] residual bytes, count is $count"
    }
    file_bytes $off RESIDUAL $offset \
        [predict::inverse $dtype $rowlen $column $chunk $ids $rest]
    emit "RESIDUAL $offset $count $dtype $rowlen $column $chunk [join $names ,]"
}

# CODED_RESIDUAL (0x32): the residuals as one coded body.
proc stz::frame_coded_residual {off payload} {
    variable MAX_PAYLOAD
    set h [resid_header $off CODED_RESIDUAL $payload]
    dict with h {}
    if {$rest eq ""} {
        fail $off "CODED_RESIDUAL without a body"
    }
    if {40 + [llength $ids] + $count > $MAX_PAYLOAD} {
        fail $off "CODED_RESIDUAL decodes to a frame over the 8 MiB cap"
    }
    set resid [checked $off CODED_RESIDUAL {rans::decode $rest $count}]
    file_bytes $off CODED_RESIDUAL $offset \
        [predict::inverse $dtype $rowlen $column $chunk $ids $resid]
    emit "CODED_RESIDUAL $offset $count $dtype $rowlen $column $chunk [join $names ,] [body_text $rest]"
}
