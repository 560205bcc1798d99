#!/usr/bin/env tclsh
# stz-read.tcl -- a second reader of the stpipe stream, written only from
# formats/stream.md, so that the spec and the C code cannot drift apart.
#
# Usage: tclsh t/stz-read.tcl [--extract DIR] FILE
#
# Reads the stream in FILE (- for standard input) as the final stage would,
# checks every rule the spec gives a reader, and prints the listing that
# the spec defines ("Test vectors", "Listing"), one line per frame.  With
# --extract it also writes the files the stream holds below DIR.
#
# The listing and the files appear only when the whole stream is valid.
# On the first violation it prints one line "stz-read: offset N: what"
# to stderr, N being the input offset of the stream header or frame at
# fault (or where the input ends), and exits 1.  Exit status, as for every
# stpipe program: 0 valid, 1 bad input, 100 usage error, 111 I/O failure.
#
# The whole input and every file it holds stay in memory: this is a test
# tool for small vectors, not a stage.

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
    set seg [dict create start $start frames 0 files 0 paths {}]
    set file ""
    set tensor ""
    set off [expr {$start + 16}]
    while 1 {
        lassign [frame $off] type payload next
        if {$type == 0x0F} {
            frame_end $off $payload
            return $next
        }
        switch -- $type {
            1 { frame_file $off $payload }
            2 { frame_tensor $off $payload }
            3 { frame_data $off $payload }
            4 { frame_file_end $off $payload }
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
    if {$nbytes > 0} {
        set tensor [dict create name $name esize $esize end [expr {$offset + $nbytes}]]
    }
    emit [format "TENSOR %u %s %s \[%s\] %s %s" \
        $index $shown $dtype [join $shape ,] $offset $nbytes]
}

# DATA (0x03): the file's next bytes ("Files", "DATA (0x03)"; element
# boundaries from "TENSOR (0x02)").
proc stz::frame_data {off payload} {
    variable file
    variable tensor
    variable UNKNOWN_SIZE
    if {$file eq ""} {
        fail $off "DATA outside a file"
    }
    set len [string length $payload]
    if {$len < 9} {
        fail $off "DATA payload of $len bytes, needs at least 9"
    }
    binary scan $payload wu offset
    set n [expr {$len - 8}]
    set pos [dict get $file pos]
    if {$offset != $pos} {
        fail $off "DATA offset $offset, the file's next byte is $pos"
    }
    set end [expr {$pos + $n}]
    set size [dict get $file size]
    if {$size != $UNKNOWN_SIZE && $end > $size} {
        fail $off "DATA ends at $end, past the FILE size $size"
    }
    if {$tensor ne ""} {
        set shown [esc [dict get $tensor name]]
        if {$end > [dict get $tensor end]} {
            fail $off "DATA ends at $end, past the end of tensor $shown"
        }
        if {$n % [dict get $tensor esize] != 0} {
            fail $off "DATA of $n bytes splits an element of tensor $shown"
        }
        if {$end == [dict get $tensor end]} {
            set tensor ""
        }
    }
    set bytes [string range $payload 8 end]
    dict set file pos $end
    dict set file crc [crc32 $bytes [dict get $file crc]]
    dict append file bytes $bytes
    emit "DATA $offset $n"
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
# 0xF0..0xFE and fails on the rest, which a missing stage should have
# decoded.
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
