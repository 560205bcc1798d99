# rans-read.tcl -- decoders for the coded bodies of formats/rans.md and the
# planes of formats/planes.md, written only from those specs.  Sourced by
# t/stz-read.tcl, which owns the frames; these procs turn bytes into bytes.
#
# Every proc here treats its input as hostile and checks every rule its spec
# lists before it uses a value.  On the first violation it throws errorcode
# STZ-BODY with a message naming the rule; the caller adds where it was.

namespace eval rans {
    # Limits and constants of formats/rans.md ("stpipe rANS body", "States").
    variable MAX_N 8388608
    variable MAX_N_X4 16384
    variable L 32768
    variable STATE_END 2147483648
    variable METHOD {0 raw 1 order0 2 run 3 order0x4 5 deflate 6 order0s}
}

namespace eval planes {
    # formats/planes.md, "Dtype codes and plane layouts": code -> dtype
    # name, value width in bytes, number of planes.
    variable DTYPE {
        1 {BF16 2 2}
        2 {F16 2 3}
        3 {F32 4 4}
        4 {F64 8 8}
        5 {F8_E4M3 1 2}
        6 {F8_E5M2 1 2}
    }
}

# Reject the body: the caller names the frame and the body.
proc rans::reject {what} {
    throw STZ-BODY $what
}

# Return the name of body's method for the listing, "?" for a reserved
# one (which decode rejects).
proc rans::method_name {body} {
    variable METHOD
    binary scan $body cu method
    if {![info exists method] || ![dict exists $METHOD $method]} {
        return ?
    }
    return [dict get $METHOD $method]
}

# Decode body ("Layout") to exactly n symbols and return them as bytes.
proc rans::decode {body n} {
    variable MAX_N
    if {$n > $MAX_N} {
        reject "n = $n over 8388608"
    }
    set len [string length $body]
    if {$len < 1} {
        reject "empty body"
    }
    binary scan $body cu method
    switch -- $method {
        0 { return [decode_raw $body $n] }
        1 { return [decode_order0 $body $n 32] }
        2 { return [decode_run $body $n] }
        3 { return [decode_order0 $body $n 4] }
        5 { return [decode_deflate $body $n] }
        6 { return [decode_striped $body $n] }
    }
    reject "reserved method $method"
}

# Method 0: the symbols as they are.
proc rans::decode_raw {body n} {
    set len [string length $body]
    if {$len != $n + 1} {
        reject "raw body of $len bytes for n = $n, needs [expr {$n + 1}]"
    }
    return [string range $body 1 end]
}

# Method 5: a raw deflate stream (RFC 1951) that ends with its final block
# exactly at the end of the body and holds exactly n bytes.  A stream
# ends in the byte holding the last bit of its final block, so the body
# less its last byte must not be a whole stream.
proc rans::inflate_whole {data} {
    set s [zlib stream inflate]
    try {
        $s put -finalize $data
        set out [$s get]
        set done [$s eof]
    } on error {} {
        set out ""
        set done -1
    } finally {
        $s close
    }
    return [list $done $out]
}

proc rans::decode_deflate {body n} {
    set len [string length $body]
    if {$len < 2} {
        reject "deflate body of $len bytes"
    }
    lassign [inflate_whole [string range $body 1 end]] done out
    if {$done < 0} {
        reject "invalid deflate data"
    }
    if {!$done} {
        reject "deflate stream without its final block"
    }
    if {[string length $out] != $n} {
        reject "deflate body of [string length $out] bytes for n = $n"
    }
    if {[lindex [inflate_whole [string range $body 1 end-1]] 0] == 1} {
        reject "bytes after the final deflate block"
    }
    return $out
}

# Method 2: one symbol repeated n times.
proc rans::decode_run {body n} {
    set len [string length $body]
    if {$len != 2} {
        reject "run body of $len bytes, must be 2"
    }
    if {$n < 1} {
        reject "run body for n = 0"
    }
    return [string repeat [string index $body 1] $n]
}

# Read the table of a method 1 or 3 body ("Methods 1 and 3": runs and
# frequencies).  Return {end pb symbols freqs}: the offset after the last
# frequency byte, then the present symbols and their frequencies in
# increasing symbol order.
proc rans::read_table {body} {
    set len [string length $body]
    if {$len < 3} {
        reject "body of $len bytes ends inside the table"
    }
    binary scan $body @1cucu pb runs
    if {$pb < 1 || $pb > 12} {
        reject "prob_bits $pb outside 1..12"
    }
    if {$runs < 1 || $runs > 128} {
        reject "$runs runs, outside 1..128"
    }
    set pos 3
    if {$pos + 2 * $runs > $len} {
        reject "body of $len bytes ends inside the table"
    }
    binary scan $body @${pos}cu[expr {2 * $runs}] pairs
    incr pos [expr {2 * $runs}]
    set symbols {}
    set s 0
    set r 0
    foreach {skip countm1} $pairs {
        if {$r > 0 && $skip < 1} {
            reject "run $r has skip 0: runs are not maximal"
        }
        incr s $skip
        set last [expr {$s + $countm1}]
        if {$last > 255} {
            reject "run $r reaches symbol $last, past 255"
        }
        for {} {$s <= $last} {incr s} {
            lappend symbols $s
        }
        incr r
    }
    if {[llength $symbols] < 2} {
        reject "table of one symbol (that is method 2)"
    }
    set m [expr {1 << $pb}]
    set freqs {}
    set sum 0
    foreach s $symbols {
        if {$pos >= $len} {
            reject "body of $len bytes ends inside the table"
        }
        binary scan $body @${pos}cu b0
        incr pos
        if {$b0 < 0x80} {
            set f $b0
        } else {
            if {$pos >= $len} {
                reject "body of $len bytes ends inside the table"
            }
            binary scan $body @${pos}cu b1
            incr pos
            if {$b1 == 0} {
                reject [format "symbol 0x%02x: two-byte frequency with second byte 0" $s]
            }
            set f [expr {($b0 & 0x7F) | ($b1 << 7)}]
        }
        if {$f < 1 || $f > $m - 1} {
            reject [format "symbol 0x%02x: frequency %u outside 1..%u" $s $f [expr {$m - 1}]]
        }
        lappend freqs $f
        incr sum $f
    }
    if {$sum != $m} {
        reject "frequencies sum to $sum, not 2^$pb = $m"
    }
    return [list $pos $pb $symbols $freqs]
}

# Return FNV-1a-32 of bytes, continuing from h ("Decoding").
proc rans::fnv1a {bytes {h 2166136261}} {
    binary scan $bytes cu* codes
    foreach b $codes {
        set h [expr {(($h ^ $b) * 16777619) & 0xFFFFFFFF}]
    }
    return $h
}

# Return the K start states x0[first..first+K-1] for a table (its bytes)
# and n.
proc rans::start_states {table n k {first 0}} {
    set h [fnv1a "$table[binary format iu $n]"]
    set x0 {}
    for {set j $first} {$j < $first + $k} {incr j} {
        lappend x0 [expr {0x8000 | (((($h ^ $j) * 16777619) & 0xFFFFFFFF) >> 17)}]
    }
    return $x0
}

# Per slot of a table: its symbol, that symbol's frequency and the slot's
# distance from the symbol's first slot ("Slots").  Returns the three
# lists.
proc rans::slots {symbols freqs} {
    set slotsym {}
    set slotf {}
    set slotoff {}
    foreach s $symbols f $freqs {
        for {set i 0} {$i < $f} {incr i} {
            lappend slotsym $s
            lappend slotf $f
            lappend slotoff $i
        }
    }
    return [list $slotsym $slotf $slotoff]
}

# Read k initial states at pos of body and check their range.
proc rans::read_states {body pos k} {
    variable L
    variable STATE_END
    binary scan $body @${pos}iu$k x
    foreach xj $x {
        if {$xj < $L || $xj >= $STATE_END} {
            reject [format "initial state 0x%08x outside \[2^15, 2^31)" $xj]
        }
    }
    return $x
}

# Decode cnt symbols with the k states x reading words ("Decoding"), and
# check the end: every word read, every final state back at x0.  what
# names the stream in messages.  Returns the symbols as a list.
proc rans::run_states {x words cnt k pb slots x0 what} {
    variable L
    lassign $slots slotsym slotf slotoff
    set nwords [llength $words]
    set mask [expr {(1 << $pb) - 1}]
    set out {}
    set p 0
    for {set i 0} {$i < $cnt} {incr i} {
        set j [expr {$i % $k}]
        set xj [lindex $x $j]
        set slot [expr {$xj & $mask}]
        lappend out [lindex $slotsym $slot]
        set xj [expr {[lindex $slotf $slot] * ($xj >> $pb) + [lindex $slotoff $slot]}]
        if {$xj < $L} {
            if {$p >= $nwords} {
                reject "${what}symbol $i needs a word past the end of the body"
            }
            set xj [expr {($xj << 16) | [lindex $words $p]}]
            incr p
        }
        lset x $j $xj
    }
    if {$p != $nwords} {
        reject "$what[expr {$nwords - $p}] words left unread"
    }
    for {set j 0} {$j < $k} {incr j} {
        if {[lindex $x $j] != [lindex $x0 $j]} {
            reject [format "%sfinal state %u is 0x%08x, the start value is 0x%04x" \
                $what $j [lindex $x $j] [lindex $x0 $j]]
        }
    }
    return $out
}

# Method 6: order0s, rANS order-0 in segments of 32 states ("Method 6").
proc rans::decode_striped {body n} {
    if {$n < 1} {
        reject "order0s body for n = 0"
    }
    lassign [read_table $body] pos pb symbols freqs
    set table [string range $body 1 $pos-1]
    set len [string length $body]
    if {$pos >= $len} {
        reject "body of $len bytes ends before its segment count"
    }
    binary scan $body @${pos}cu segs
    incr pos
    if {$segs < 2 || $segs > 16} {
        reject "$segs segments, outside 2..16"
    }
    set m [expr {($n + 32 * $segs - 1) / (32 * $segs) * 32}]
    if {($segs - 1) * $m >= $n} {
        reject "n = $n leaves the last of $segs segments empty"
    }
    if {$pos + 4 * ($segs - 1) + 128 * $segs > $len} {
        reject "body of $len bytes ends inside the lengths or states"
    }
    binary scan $body @${pos}iu[expr {$segs - 1}] lens
    incr pos [expr {4 * ($segs - 1)}]
    set wpos [expr {$pos + 128 * $segs}]
    set slots [slots $symbols $freqs]
    set out {}
    for {set k 0} {$k < $segs} {incr k} {
        set x [read_states $body [expr {$pos + 128 * $k}] 32]
        if {$k == $segs - 1} {
            set lk [expr {$len - $wpos}]
            set cnt [expr {$n - $k * $m}]
        } else {
            set lk [lindex $lens $k]
            set cnt $m
        }
        if {$lk > $len - $wpos} {
            reject "segment $k: $lk bytes of words past the end of the body"
        }
        if {$lk % 2 != 0} {
            reject "segment $k: an odd byte after its last whole word"
        }
        binary scan $body @${wpos}su[expr {$lk / 2}] words
        incr wpos $lk
        lappend out {*}[run_states $x $words $cnt 32 $pb $slots \
            [start_states $table $n 32 [expr {32 * $k}]] "segment $k: "]
    }
    return [binary format cu* $out]
}

# Methods 1 and 3: rANS order-0 with k interleaved states ("Decoding").
proc rans::decode_order0 {body n k} {
    variable MAX_N_X4
    if {$k == 4 && ($n < 1 || $n > $MAX_N_X4)} {
        reject "order0x4 body for n = $n, outside 1..16384"
    }
    if {$k == 32 && $n < 1} {
        reject "order0 body for n = 0"
    }
    lassign [read_table $body] pos pb symbols freqs
    set len [string length $body]
    if {$pos + 4 * $k > $len} {
        reject "body of $len bytes ends inside the $k states"
    }
    set x [read_states $body $pos $k]
    set wpos [expr {$pos + 4 * $k}]
    if {($len - $wpos) % 2 != 0} {
        reject "odd byte after the last whole word"
    }
    binary scan $body @${wpos}su* words
    set x0 [start_states [string range $body 1 $pos-1] $n $k]
    return [binary format cu* [run_states $x $words $n $k $pb \
        [slots $symbols $freqs] $x0 ""]]
}

# ---------------------------------------------------------------------------
# Planes (formats/planes.md)

# Reject the planes: the caller names the frame.
proc planes::reject {what} {
    throw STZ-BODY $what
}

# Return {name width nplanes} of a dtype code, failing on an unknown code.
proc planes::dtype {code} {
    variable DTYPE
    if {![dict exists $DTYPE $code]} {
        reject "unknown dtype code $code"
    }
    return [dict get $DTYPE $code]
}

# Return the byte length of each plane of count values of dtype code:
# nibble planes hold ceil(count/2) bytes, every other plane count.
proc planes::lengths {code count} {
    lassign [dtype $code] name width nplanes
    set lengths [list $count]
    for {set i 1} {$i < $nplanes} {incr i} {
        lappend lengths [expr {$width == 1 ? ($count + 1) / 2 : $count}]
    }
    return $lengths
}

# Fail unless every byte of plane (bytes) is below limit.
proc planes::check_below {plane limit what} {
    binary scan $plane cu* codes
    if {[llength $codes] > 0 && [tcl::mathfunc::max {*}$codes] >= $limit} {
        reject "$what holds [tcl::mathfunc::max {*}$codes], must be below $limit"
    }
}

# Return the count nibbles of a nibble plane, checking that each is below
# limit and that the padding nibble of an odd count is 0.
proc planes::nibbles {plane count limit} {
    binary scan $plane cu* codes
    set out {}
    foreach b $codes {
        lappend out [expr {$b & 0xF}] [expr {$b >> 4}]
    }
    if {$count % 2 == 1 && [lindex $out end] != 0} {
        reject "padding nibble is [lindex $out end], must be 0"
    }
    set out [lrange $out 0 $count-1]
    if {[llength $out] > 0 && [tcl::mathfunc::max {*}$out] >= $limit} {
        reject "plane 1 holds nibble [tcl::mathfunc::max {*}$out], must be below $limit"
    }
    return $out
}

# Merge the planes (a list of byte strings, lengths already checked) of
# count values of dtype code back into the values' bytes, checking every
# plane's range ("Dtype codes and plane layouts").
proc planes::merge {code count planelist} {
    lassign [dtype $code] name
    binary scan [lindex $planelist 0] cu* e
    set out {}
    switch -- $name {
        BF16 {
            binary scan [lindex $planelist 1] cu* p1
            foreach ei $e m $p1 {
                lappend out [expr {(($m >> 7) << 15) | ($ei << 7) | ($m & 0x7F)}]
            }
            return [binary format su* $out]
        }
        F16 {
            check_below [lindex $planelist 0] 32 "plane 0"
            check_below [lindex $planelist 2] 8 "plane 2"
            binary scan [lindex $planelist 1] cu* p1
            binary scan [lindex $planelist 2] cu* p2
            foreach ei $e a $p1 b $p2 {
                lappend out [expr {(($b >> 2) << 15) | ($ei << 10) | (($b & 3) << 8) | $a}]
            }
            return [binary format su* $out]
        }
        F32 {
            binary scan [lindex $planelist 1] cu* p1
            binary scan [lindex $planelist 2] cu* p2
            binary scan [lindex $planelist 3] cu* p3
            foreach ei $e a $p1 b $p2 c $p3 {
                lappend out [expr {(($c >> 7) << 31) | ($ei << 23) | (($c & 0x7F) << 16) | ($b << 8) | $a}]
            }
            return [binary format iu* $out]
        }
        F64 {
            foreach i {1 2 3 4 5 6 7} {
                binary scan [lindex $planelist $i] cu* p$i
            }
            foreach ei $e b0 $p1 b1 $p2 b2 $p3 b3 $p4 b4 $p5 b5 $p6 t $p7 {
                lappend out $b0 $b1 $b2 $b3 $b4 $b5 \
                    [expr {(($ei & 1) << 7) | ($t & 0x7F)}] \
                    [expr {($t & 0x80) | ($ei >> 1)}]
            }
            return [binary format cu* $out]
        }
        F8_E4M3 {
            check_below [lindex $planelist 0] 16 "plane 0"
            foreach ei $e nb [nibbles [lindex $planelist 1] $count 16] {
                lappend out [expr {(($nb >> 3) << 7) | ($ei << 3) | ($nb & 7)}]
            }
            return [binary format cu* $out]
        }
        F8_E5M2 {
            check_below [lindex $planelist 0] 32 "plane 0"
            foreach ei $e nb [nibbles [lindex $planelist 1] $count 8] {
                lappend out [expr {(($nb >> 2) << 7) | ($ei << 2) | ($nb & 3)}]
            }
            return [binary format cu* $out]
        }
    }
}
