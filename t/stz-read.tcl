#!/usr/bin/env tclsh
# stz-read.tcl -- a second reader of the stpipe stream, written only from
# formats/stream.md, formats/planes.md, formats/rans.md and (through
# t/predict-read.tcl) formats/predict.md, so that the
# specs and the C code cannot drift apart.
#
# Usage: tclsh t/stz-read.tcl [--extract DIR] FILE
#
# Reads the stream in FILE (- for standard input) as the whole decoding
# pipeline would (rans-dec | fp8-exp -d | st-join): PLANES, CODED and
# CODED_DATA frames are decoded (by t/rans-read.tcl) into the bytes of the
# DATA frames they replace, and INDEX and INDEX_LOC frames are checked
# against the frames they point at.  It checks every rule the specs give a
# reader, and prints the listing that they define (stream.md "Listing",
# planes.md "Listing"), one line per frame.  With --extract it also writes
# the files the stream holds below DIR.
#
# The index is skippable metadata that the final stage ignores, and the
# specs do not say whether a wrong one makes a stream invalid; this reader
# rejects it, so that what the C writer indexes is checked too (the
# vectors t/vectors/coded/bad-index-* say so).
#
# The listing and the files appear only when the whole stream is valid.
# On the first violation it prints one line "stz-read: offset N: what"
# to stderr, N being the input offset of the stream header or frame at
# fault (or where the input ends), and exits 1.  Exit status, as for every
# stpipe program: 0 valid, 1 bad input, 100 usage error, 111 I/O failure.
#
# The whole input and every file it holds stay in memory: this is a test
# tool for small vectors, not a stage.

source [file join [file dirname [info script]] rans-read.tcl]
source [file join [file dirname [info script]] predict-read.tcl]

namespace eval stz {
    # Stream header and frame constants ("Stream header", "Frames").
    variable MAGIC [binary format H* 895354500D0A1A0A]
    variable MAX_PAYLOAD 8388608
    variable UNKNOWN_SIZE 0xFFFFFFFFFFFFFFFF
    variable U64_MAX 0xFFFFFFFFFFFFFFFF

    # Element sizes ("TENSOR (0x02)").
    variable ESIZE {
        F64 8 F32 4 F16 2 BF16 2 F8_E4M3 1 F8_E5M2 1 F8_E8M0 1
        I64 8 I32 4 I16 2 I8 1 U8 1 BOOL 1 U64 8 U32 4 U16 2
    }

    variable input ""      ;# the whole stream
    variable listing {}    ;# lines to print when the stream is valid
    variable files {}      ;# {path bytes mode mtime} of each verified file
    variable seg           ;# state of the segment being read
    variable file          ;# state of the open file, "" between files
    variable tensor        ;# state of the tensor whose DATA is due
}

# Reject the stream if script throws a body or plane error (STZ-BODY): the
# message names the frame at off and what part of it.
proc stz::checked {off what script} {
    try {
        return [uplevel 1 $script]
    } trap STZ-BODY {msg} {
        fail $off "$what: $msg"
    }
}

# Reject the stream: the message names the offset of the culprit.
proc stz::fail {offset what} {
    throw [list STZ $offset] $what
}

# Return the CRC-32 of bytes ("Conventions"), continuing from crc.
proc stz::crc32 {bytes {crc 0}} {
    return [zlib crc32 $bytes $crc]
}

# Render path or name bytes for the listing: bytes 0x21..0x7E but the
# backslash stand for themselves, every other byte is \xHH.
proc stz::esc {bytes} {
    set out ""
    binary scan $bytes cu* codes
    foreach c $codes {
        if {$c >= 0x21 && $c <= 0x7E && $c != 0x5C} {
            append out [format %c $c]
        } else {
            append out [format \\x%02x $c]
        }
    }
    return $out
}

# Read the stream and its files; fail on the first violation ("Overall
# structure").  Segments follow each other until the input ends.
proc stz::read_stream {} {
    variable input
    set len [string length $input]
    if {$len == 0} {
        fail 0 "empty input is not a stream"
    }
    set off 0
    set first 1
    while {$off < $len} {
        stream_header $off $first
        set off [segment $off]
        set first 0
    }
}

# Check the stream header at off ("Stream header").  After an END (first is 0) only a stream header may follow:
# anything that does not start like one is trailing garbage.
proc stz::stream_header {off first} {
    variable input
    variable MAGIC
    set avail [expr {[string length $input] - $off}]
    set head [string range $input $off [expr {$off + min($avail, 8) - 1}]]
    if {$head ne [string range $MAGIC 0 [string length $head]-1]} {
        if {$first} {
            fail $off "bad magic"
        }
        fail $off "trailing garbage after END frame"
    }
    if {$avail < 16} {
        fail $off "truncated stream header"
    }
    binary scan $input @[expr {$off + 8}]susuiu version flags crc
    if {[crc32 [string range $input $off [expr {$off + 11}]]] != $crc} {
        fail $off "stream header CRC mismatch"
    }
    if {$version != 1} {
        fail $off "unsupported version $version"
    }
    if {$flags != 0} {
        fail $off [format "reserved stream header flags 0x%04x set" $flags]
    }
}

# Read the frames of the segment whose stream header is at start, up to and
# including its END frame; return the offset after the END frame.
proc stz::segment {start} {
    variable seg
    variable file
    variable tensor
    set seg [dict create start $start frames 0 files 0 paths {} \
        targets {} indexes {} loc 0]
    set file ""
    set tensor ""
    set off [expr {$start + 16}]
    while 1 {
        lassign [frame $off] type payload next
        if {$type == 0x0F} {
            frame_end $off $payload
            return $next
        }
        if {[dict get $seg loc]} {
            fail $off [format "frame type 0x%02x after INDEX_LOC, which must be the last before END" $type]
        }
        switch -- $type {
            1 { frame_file $off $payload }
            2 { frame_tensor $off $payload }
            3 { frame_data $off $payload }
            4 { frame_file_end $off $payload }
            16 { frame_planes $off $payload }
            17 { frame_residual $off $payload }
            48 { frame_coded $off $payload }
            49 { frame_coded_data $off $payload }
            50 { frame_coded_residual $off $payload }
            240 { frame_index $off $payload }
            241 { frame_index_loc $off $payload }
            default { frame_other $off $type $payload }
        }
        dict incr seg frames
        set off $next
    }
}

# Check the frame header and CRC at off ("Frames"); return {type payload
# next-offset}.  The length is checked before the payload is touched.
proc stz::frame {off} {
    variable input
    variable MAX_PAYLOAD
    set avail [expr {[string length $input] - $off}]
    if {$avail == 0} {
        fail $off "input ends without an END frame (truncated)"
    }
    if {$avail < 8} {
        fail $off "truncated frame header"
    }
    binary scan $input @${off}cucusuiu type flags reserved len
    if {$type == 0} {
        fail $off "frame type 0 is invalid"
    }
    if {$flags != 0} {
        fail $off [format "frame type 0x%02x: reserved flags 0x%02x set" $type $flags]
    }
    if {$reserved != 0} {
        fail $off [format "frame type 0x%02x: reserved field is 0x%04x" $type $reserved]
    }
    if {$len > $MAX_PAYLOAD} {
        fail $off [format "frame type 0x%02x: length %u over the 8 MiB cap" $type $len]
    }
    if {$avail < 8 + $len + 4} {
        fail $off [format "frame type 0x%02x: truncated frame" $type]
    }
    set end [expr {$off + 8 + $len}]
    binary scan $input @${end}iu crc
    if {[crc32 [string range $input $off $end-1]] != $crc} {
        fail $off [format "frame type 0x%02x: CRC mismatch" $type]
    }
    return [list $type [string range $input $off+8 $end-1] [expr {$end + 4}]]
}

# FILE (0x01): begin a file ("Files", "FILE (0x01)").
proc stz::frame_file {off payload} {
    variable seg
    variable file
    variable UNKNOWN_SIZE
    if {$file ne ""} {
        fail $off "FILE inside file [esc [dict get $file path]]"
    }
    set len [string length $payload]
    if {$len < 24} {
        fail $off "FILE payload of $len bytes, needs at least 24"
    }
    binary scan $payload cucusuiuwwu kind reserved pathlen mode mtime size
    if {$kind != 1 && $kind != 2} {
        fail $off "FILE kind $kind is neither 1 nor 2"
    }
    if {$reserved != 0} {
        fail $off "FILE reserved byte is $reserved"
    }
    if {$pathlen < 1 || $pathlen > 4095} {
        fail $off "FILE path length $pathlen outside 1..4095"
    }
    if {$len != 24 + $pathlen} {
        fail $off "FILE payload of $len bytes, path length $pathlen needs [expr {24 + $pathlen}]"
    }
    if {$mode > 07777} {
        fail $off [format "FILE mode 0%o has bits above 07777" $mode]
    }
    set path [string range $payload 24 end]
    check_path $off $path
    if {$path in [dict get $seg paths]} {
        fail $off "FILE path [esc $path] repeats within the segment"
    }
    dict lappend seg paths $path
    dict incr seg files
    dict set seg targets [expr {$off - [dict get $seg start]}] [list 1 $path $path]
    set file [dict create path $path kind $kind mode $mode mtime $mtime \
        size $size pos 0 crc 0 bytes "" tensors 0]
    set kindname [expr {$kind == 1 ? "safetensors" : "other"}]
    set sizetext [expr {$size == $UNKNOWN_SIZE ? "-" : $size}]
    emit [format "FILE %s %04o %s %s %s" $kindname $mode $mtime $sizetext [esc $path]]
}

# Fail unless path is safe to create below any directory ("FILE (0x01)").
proc stz::check_path {off path} {
    set shown [esc $path]
    if {[string index $path 0] eq "/"} {
        fail $off "FILE path $shown is absolute"
    }
    if {[string first \x00 $path] >= 0} {
        fail $off "FILE path $shown contains a NUL byte"
    }
    if {[string first \\ $path] >= 0} {
        fail $off "FILE path $shown contains a backslash"
    }
    foreach part [split $path /] {
        if {$part in {"" . ..}} {
            fail $off "FILE path $shown has a component \"$part\""
        }
    }
}

# TENSOR (0x02): describe the tensor whose DATA follows ("TENSOR (0x02)").
proc stz::frame_tensor {off payload} {
    variable seg
    variable file
    variable tensor
    variable ESIZE
    variable U64_MAX
    variable UNKNOWN_SIZE
    if {$file eq ""} {
        fail $off "TENSOR outside a file"
    }
    if {$tensor ne ""} {
        fail $off "TENSOR before tensor [esc [dict get $tensor name]] has all its DATA"
    }
    set len [string length $payload]
    if {$len < 24} {
        fail $off "TENSOR payload of $len bytes, needs at least 24"
    }
    binary scan $payload wuwuiucucusu offset nbytes index dtypelen ndim namelen
    if {$dtypelen < 1 || $dtypelen > 31} {
        fail $off "TENSOR dtype length $dtypelen outside 1..31"
    }
    if {$ndim > 32} {
        fail $off "TENSOR rank $ndim over 32"
    }
    set want [expr {24 + 8 * $ndim + $dtypelen + $namelen}]
    if {$len != $want} {
        fail $off "TENSOR payload of $len bytes, its lengths need $want"
    }
    binary scan $payload @24wu$ndim shape
    set at [expr {24 + 8 * $ndim}]
    set dtype [string range $payload $at [expr {$at + $dtypelen - 1}]]
    set name [string range $payload [expr {$at + $dtypelen}] end]
    set shown [esc $name]
    if {![dict exists $ESIZE $dtype]} {
        fail $off "TENSOR $shown: unknown dtype [esc $dtype]"
    }
    set esize [dict get $ESIZE $dtype]
    set want [expr {$esize}]
    foreach d $shape {
        set want [expr {$want * $d}]
    }
    if {$want > $U64_MAX} {
        fail $off "TENSOR $shown: shape times element size overflows 64 bits"
    }
    if {$nbytes != $want} {
        fail $off "TENSOR $shown: nbytes $nbytes, dtype and shape give $want"
    }
    if {$index != [dict get $file tensors]} {
        fail $off "TENSOR $shown: index $index, expected [dict get $file tensors]"
    }
    if {$offset != [dict get $file pos]} {
        fail $off "TENSOR $shown: offset $offset, the file's next byte is [dict get $file pos]"
    }
    set size [dict get $file size]
    if {$size != $UNKNOWN_SIZE && $offset + $nbytes > $size} {
        fail $off "TENSOR $shown: ends past the FILE size $size"
    }
    dict incr file tensors
    dict set seg targets [expr {$off - [dict get $seg start]}] \
        [list 2 $name [dict get $file path]]
    if {$nbytes > 0} {
        set rowlen [expr {$ndim == 0 ? 1 : [lindex $shape end]}]
        set tensor [dict create name $name esize $esize dtype $dtype \
            begin $offset end [expr {$offset + $nbytes}] rowlen $rowlen]
    }
    emit [format "TENSOR %u %s %s \[%s\] %s %s" \
        $index $shown $dtype [join $shape ,] $offset $nbytes]
}

# DATA (0x03): the file's next bytes ("Files", "DATA (0x03)").
proc stz::frame_data {off payload} {
    variable file
    if {$file eq ""} {
        fail $off "DATA outside a file"
    }
    set len [string length $payload]
    if {$len < 9} {
        fail $off "DATA payload of $len bytes, needs at least 9"
    }
    binary scan $payload wu offset
    file_bytes $off DATA $offset [string range $payload 8 end]
    emit "DATA $offset [expr {$len - 8}]"
}

# Add bytes at file offset to the open file, as the DATA frame that a
# frame of type what (DATA or one that replaces a DATA frame) holds
# ("DATA (0x03)"; element boundaries from "TENSOR (0x02)").
proc stz::file_bytes {off what offset bytes} {
    variable file
    variable tensor
    variable UNKNOWN_SIZE
    if {$file eq ""} {
        fail $off "$what outside a file"
    }
    set n [string length $bytes]
    set pos [dict get $file pos]
    if {$offset != $pos} {
        fail $off "$what offset $offset, the file's next byte is $pos"
    }
    set end [expr {$pos + $n}]
    set size [dict get $file size]
    if {$size != $UNKNOWN_SIZE && $end > $size} {
        fail $off "$what ends at $end, past the FILE size $size"
    }
    if {$tensor ne ""} {
        set shown [esc [dict get $tensor name]]
        if {$end > [dict get $tensor end]} {
            fail $off "$what ends at $end, past the end of tensor $shown"
        }
        if {$n % [dict get $tensor esize] != 0} {
            fail $off "$what of $n bytes splits an element of tensor $shown"
        }
        if {$end == [dict get $tensor end]} {
            set tensor ""
        }
    }
    dict set file pos $end
    dict set file crc [crc32 $bytes [dict get $file crc]]
    dict append file bytes $bytes
}

# ---------------------------------------------------------------------------
# Plane, coded and index frames (formats/planes.md, formats/rans.md)

# Read the header that PLANES and CODED share ("PLANES (0x10)", "CODED
# (0x30)") and check what it says alone: return a dict of its fields, the
# plane or body lengths and the planes or bodies themselves (parts).  The
# u16 at offset 14 comes back as field14: reserved in PLANES, the layout
# in CODED.
proc stz::planes_header {off what payload} {
    set len [string length $payload]
    if {$len < 32} {
        fail $off "$what payload of $len bytes, needs at least 32"
    }
    binary scan $payload wuiucucusuwuwu offset count code nplanes field14 rowlen column
    if {$count < 1} {
        fail $off "$what count 0, must be at least 1"
    }
    lassign [checked $off $what {planes::dtype $code}] dtype width want
    if {$nplanes != $want} {
        fail $off "$what of $dtype has $nplanes planes, must be $want"
    }
    set at [expr {32 + 4 * $nplanes}]
    if {$len < $at} {
        fail $off "$what payload of $len bytes, needs $at for its $nplanes lengths"
    }
    binary scan $payload @32iu$nplanes lengths
    set total [tcl::mathop::+ $at {*}$lengths]
    if {$len != $total} {
        fail $off "$what payload of $len bytes, its lengths need $total"
    }
    set parts {}
    foreach n $lengths {
        lappend parts [string range $payload $at [expr {$at + $n - 1}]]
        incr at $n
    }
    return [dict create offset $offset count $count code $code dtype $dtype \
        width $width field14 $field14 rowlen $rowlen column $column \
        lengths $lengths parts $parts]
}

# Fail unless the PLANES or CODED frame whose header is h may replace the
# next DATA frame of the open tensor: same file offset, the tensor's dtype,
# its row length (last dimension, 1 for a scalar) and the first value's
# position in its row ("PLANES (0x10)").
proc stz::planes_place {off what h} {
    variable file
    variable tensor
    if {$file eq ""} {
        fail $off "$what outside a file"
    }
    if {$tensor eq ""} {
        fail $off "$what outside a tensor's DATA frames"
    }
    set shown [esc [dict get $tensor name]]
    set offset [dict get $h offset]
    set pos [dict get $file pos]
    if {$offset != $pos} {
        fail $off "$what offset $offset, the file's next byte is $pos"
    }
    if {[dict get $h dtype] ne [dict get $tensor dtype]} {
        fail $off "$what of [dict get $h dtype] in tensor $shown of [esc [dict get $tensor dtype]]"
    }
    set rowlen [dict get $tensor rowlen]
    if {[dict get $h rowlen] != $rowlen} {
        fail $off "$what rowlen [dict get $h rowlen], tensor $shown has rows of $rowlen"
    }
    set index [expr {($offset - [dict get $tensor begin]) / [dict get $h width]}]
    set column [expr {$index % $rowlen}]
    if {[dict get $h column] != $column} {
        fail $off "$what column [dict get $h column], its first value is at column $column"
    }
}

# Fail unless the plane lengths of header h are those its count and dtype
# imply.
proc stz::check_plane_lengths {off what h} {
    dict with h {}
    set i 0
    foreach got $lengths want [planes::lengths $code $count] {
        if {$got != $want} {
            fail $off "$what plane $i of $got bytes, $count values of $dtype need $want"
        }
        incr i
    }
}

# Return a coded body as the listing shows it: method ":" length, or "-"
# for no body.
proc stz::body_text {body} {
    if {$body eq ""} {
        return -
    }
    return "[rans::method_name $body]:[string length $body]"
}

# PLANES (0x10): the values of a DATA frame, split into planes.
proc stz::frame_planes {off payload} {
    set h [planes_header $off PLANES $payload]
    dict with h {}
    if {$field14 != 0} {
        fail $off "PLANES reserved field is $field14"
    }
    planes_place $off PLANES $h
    check_plane_lengths $off PLANES $h
    set bytes [checked $off PLANES {planes::merge $code $count $parts}]
    file_bytes $off PLANES $offset $bytes
    emit "PLANES $offset $count $dtype $rowlen $column [join $lengths ,]"
}

# CODED (0x30): the planes of a PLANES frame, each a coded body (layout
# 0), or the values of a 1-byte dtype as one body (layout 1).
proc stz::frame_coded {off payload} {
    variable MAX_PAYLOAD
    set h [planes_header $off CODED $payload]
    dict with h {}
    set layout $field14
    planes_place $off CODED $h
    set want [planes::lengths $code $count]
    set planes_len [tcl::mathop::+ [expr {32 + 4 * [llength $want]}] {*}$want]
    if {$planes_len > $MAX_PAYLOAD} {
        fail $off "CODED of $count values: its PLANES payload of $planes_len bytes is over the 8 MiB cap"
    }
    switch -- $layout {
        0 {
            set planelist {}
            set i 0
            foreach body $parts n $want {
                lappend planelist [checked $off "CODED body $i" {rans::decode $body $n}]
                incr i
            }
            set bytes [checked $off CODED {planes::merge $code $count $planelist}]
        }
        1 {
            if {$width != 1} {
                fail $off "CODED layout 1 for $dtype, a dtype of $width bytes"
            }
            foreach n [lrange $lengths 1 end] {
                if {$n != 0} {
                    fail $off "CODED layout 1 with a body of $n bytes after body 0"
                }
            }
            set bytes [checked $off "CODED body 0" {rans::decode [lindex $parts 0] $count}]
        }
        default {
            fail $off "CODED layout $layout is neither 0 nor 1"
        }
    }
    file_bytes $off CODED $offset $bytes
    set bodies {}
    foreach body $parts {
        lappend bodies [body_text $body]
    }
    emit "CODED $offset $count $dtype $rowlen $column $layout [join $bodies ,]"
}

# CODED_DATA (0x31): the bytes of a DATA frame as one coded body.
proc stz::frame_coded_data {off payload} {
    variable file
    variable MAX_PAYLOAD
    if {$file eq ""} {
        fail $off "CODED_DATA outside a file"
    }
    set len [string length $payload]
    if {$len < 13} {
        fail $off "CODED_DATA payload of $len bytes, needs at least 13"
    }
    binary scan $payload wuiu offset n
    if {$n < 1 || $n > $MAX_PAYLOAD - 8} {
        fail $off "CODED_DATA n = $n, outside 1..[expr {$MAX_PAYLOAD - 8}]"
    }
    set body [string range $payload 12 end]
    set bytes [checked $off CODED_DATA {rans::decode $body $n}]
    file_bytes $off CODED_DATA $offset $bytes
    emit "CODED_DATA $offset $n [body_text $body]"
}

# Read the unsigned LEB128 varint at pos of an INDEX payload; return
# {value next-pos}.
proc stz::varint {off payload pos} {
    variable U64_MAX
    set len [string length $payload]
    set value 0
    for {set i 0} {$i < 10} {incr i} {
        if {$pos >= $len} {
            fail $off "INDEX ends inside a varint"
        }
        binary scan $payload @${pos}cu b
        incr pos
        set value [expr {$value | (($b & 0x7F) << (7 * $i))}]
        if {$b < 0x80} {
            if {$value > $U64_MAX} {
                fail $off "INDEX varint over 64 bits"
            }
            return [list $value $pos]
        }
    }
    fail $off "INDEX varint longer than 10 bytes"
}

# INDEX (0xF0): the segment offsets of FILE and TENSOR frames, which must
# be the frames the entries name ("INDEX (0xF0) and INDEX_LOC (0xF1)").
proc stz::frame_index {off payload} {
    variable seg
    set len [string length $payload]
    if {$len < 4} {
        fail $off "INDEX payload of $len bytes, needs at least 4"
    }
    binary scan $payload iu count
    set pos 4
    set name ""
    set at 0
    set owner ""
    set shown {}
    for {set i 0} {$i < $count} {incr i} {
        if {$pos + 2 > $len} {
            fail $off "INDEX ends inside entry $i of $count"
        }
        binary scan $payload @${pos}cucu kind shared
        incr pos 2
        if {$kind != 1 && $kind != 2} {
            fail $off "INDEX entry $i: kind $kind is neither 1 nor 2"
        }
        if {$shared > [string length $name]} {
            fail $off "INDEX entry $i shares $shared bytes of a name of [string length $name]"
        }
        lassign [varint $off $payload $pos] suffix pos
        lassign [varint $off $payload $pos] delta pos
        if {$pos + $suffix > $len} {
            fail $off "INDEX entry $i: name ends past the payload"
        }
        if {$i > 0 && $delta == 0} {
            fail $off "INDEX entry $i: offset delta 0, entries go in stream order"
        }
        set name "[string range $name 0 $shared-1][string range $payload $pos [expr {$pos + $suffix - 1}]]"
        incr pos $suffix
        incr at $delta
        set owner [index_target $off $i $kind $name $at $owner]
        lappend shown "[expr {$kind == 1 ? "F" : "T"}]:$at:[esc $name]"
    }
    if {$pos != $len} {
        fail $off "INDEX has [expr {$len - $pos}] bytes after its $count entries"
    }
    dict set seg indexes [expr {$off - [dict get $seg start]}] 1
    emit [string trimright "INDEX $count [join $shown " "]"]
}

# Fail unless entry i of an INDEX (kind, name, segment offset at) lands on
# the FILE or TENSOR frame it names, and a TENSOR on one of the file that
# the last FILE entry (owner) named.  Return the owner for the next entry.
proc stz::index_target {off i kind name at owner} {
    variable seg
    set what [expr {$kind == 1 ? "FILE" : "TENSOR"}]
    if {![dict exists $seg targets $at]} {
        fail $off "INDEX entry $i: segment offset $at holds no FILE or TENSOR frame"
    }
    lassign [dict get $seg targets $at] tkind tname tfile
    if {$tkind != $kind || $tname ne $name} {
        fail $off "INDEX entry $i: $what [esc $name] at segment offset $at, the frame there is another"
    }
    if {$kind == 1} {
        return $name
    }
    if {$tfile ne $owner} {
        fail $off "INDEX entry $i: tensor [esc $name] is not in the file of the last FILE entry"
    }
    return $owner
}

# INDEX_LOC (0xF1): where the segment's INDEX is; the last frame before
# END.
proc stz::frame_index_loc {off payload} {
    variable seg
    set len [string length $payload]
    if {$len != 8} {
        fail $off "INDEX_LOC payload of $len bytes, must be 8"
    }
    binary scan $payload wu at
    if {![dict exists $seg indexes $at]} {
        fail $off "INDEX_LOC points at segment offset $at, which holds no INDEX frame"
    }
    dict set seg loc 1
    emit "INDEX_LOC $at"
}

# FILE_END (0x04): verify and close the file ("FILE_END (0x04)").
proc stz::frame_file_end {off payload} {
    variable file
    variable tensor
    variable files
    variable UNKNOWN_SIZE
    if {$file eq ""} {
        fail $off "FILE_END without FILE"
    }
    set len [string length $payload]
    if {$len != 16} {
        fail $off "FILE_END payload of $len bytes, must be 16"
    }
    if {$tensor ne ""} {
        fail $off "FILE_END before tensor [esc [dict get $tensor name]] has all its DATA"
    }
    binary scan $payload wuiuiu size crc tensors
    set path [esc [dict get $file path]]
    set pos [dict get $file pos]
    if {$size != $pos} {
        fail $off "FILE_END of $path: size $size, DATA carried $pos bytes"
    }
    if {$crc != [dict get $file crc]} {
        fail $off [format "FILE_END of %s: CRC %08x, DATA gives %08x" \
            $path $crc [dict get $file crc]]
    }
    if {$tensors != [dict get $file tensors]} {
        fail $off "FILE_END of $path: $tensors tensors, TENSOR frames were [dict get $file tensors]"
    }
    set known [dict get $file size]
    if {$known != $UNKNOWN_SIZE && $known != $pos} {
        fail $off "FILE_END of $path: FILE said size $known, DATA carried $pos bytes"
    }
    lappend files [dict get $file path] [dict get $file bytes] \
        [dict get $file mode] [dict get $file mtime]
    set file ""
    emit [format "FILE_END %s %08x %u" $size $crc $tensors]
}

# END (0x0F): check the segment's totals ("END (0x0F)").
proc stz::frame_end {off payload} {
    variable seg
    variable file
    if {$file ne ""} {
        fail $off "END inside file [esc [dict get $file path]]"
    }
    set len [string length $payload]
    if {$len != 24} {
        fail $off "END payload of $len bytes, must be 24"
    }
    binary scan $payload wuwuiuiu frames bytes nfiles reserved
    set seen [dict get $seg frames]
    set before [expr {$off - [dict get $seg start]}]
    if {$frames != $seen} {
        fail $off "END counts $frames frames, the segment has $seen"
    }
    if {$bytes != $before} {
        fail $off "END counts $bytes bytes, the segment has $before"
    }
    if {$nfiles != [dict get $seg files]} {
        fail $off "END counts $nfiles files, the segment has [dict get $seg files]"
    }
    if {$reserved != 0} {
        fail $off "END reserved field is $reserved"
    }
    emit "END $frames $bytes $nfiles"
}

# Any other type ("Frame types"): the final stage skips metadata frames
# (0xF2..0xFE here: INDEX and INDEX_LOC have their own procs) and fails on
# the rest, which a missing stage should have decoded.
proc stz::frame_other {off type payload} {
    if {$type >= 0xF0 && $type <= 0xFE} {
        emit [format "SKIP %02x %u" $type [string length $payload]]
        return
    }
    fail $off [format "frame type 0x%02x is not decoded by this stage" $type]
}

proc stz::emit {line} {
    variable listing
    lappend listing $line
}

# Write the verified files below dir, with their mode (permission bits
# only) and mtime where the stream knows them.  Paths repeated across
# segments, or a file where another needs a folder, fail as bad input.
proc stz::extract {dir} {
    variable files
    # Path bytes go to the file system as they are, whatever the locale.
    set dir [encoding convertto [encoding system] $dir]
    encoding system iso8859-1
    set written {}
    foreach {path bytes mode mtime} $files {
        set shown [esc $path]
        if {$path in $written} {
            throw {STZ-OUT} "$shown: path repeats an earlier segment's file"
        }
        lappend written $path
        set target [file join $dir {*}[split $path /]]
        if {[catch {file mkdir [file dirname $target]}]} {
            throw {STZ-OUT} "$shown: a file stands where a folder is needed"
        }
        if {[file isdirectory $target]} {
            throw {STZ-OUT} "$shown: a folder stands where the file goes"
        }
        set f [open $target wb]
        puts -nonewline $f $bytes
        close $f
        if {$mode != 0} {
            file attributes $target -permissions [expr {$mode & 0777}]
        }
        if {$mtime != 0} {
            file mtime $target $mtime
        }
    }
}

proc stz::usage {} {
    puts stderr "usage: tclsh stz-read.tcl \[--extract DIR\] FILE"
    exit 100
}

proc stz::main {argv} {
    variable input
    variable listing
    set dir ""
    if {[lindex $argv 0] eq "--extract"} {
        if {[llength $argv] != 3} {
            usage
        }
        set dir [lindex $argv 1]
        set argv [lrange $argv 2 end]
    }
    if {[llength $argv] != 1 || [string match -?* [lindex $argv 0]]} {
        usage
    }
    set name [lindex $argv 0]
    try {
        if {$name eq "-"} {
            fconfigure stdin -translation binary
            set input [read stdin]
        } else {
            set f [open $name rb]
            set input [read $f]
            close $f
        }
    } on error msg {
        puts stderr "stz-read: $name: $msg"
        exit 111
    }
    try {
        read_stream
        if {$dir ne ""} {
            extract $dir
        }
    } trap STZ {msg opts} {
        set offset [lindex [dict get $opts -errorcode] 1]
        puts stderr "stz-read: offset $offset: $msg"
        exit 1
    } trap STZ-OUT {msg} {
        puts stderr "stz-read: $dir: $msg"
        exit 1
    } trap POSIX {msg} {
        puts stderr "stz-read: $dir: $msg"
        exit 111
    }
    fconfigure stdout -translation lf
    foreach line $listing {
        puts $line
    }
    flush stdout
}

stz::main $argv
