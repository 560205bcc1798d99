#!/usr/bin/env tclsh
# mkvectors.tcl -- write the test vectors of the stream format
# (formats/stream.md) with a writer of its own, made from the spec alone.
#
# Usage: tclsh t/mkvectors.tcl [DIR]
#
# Removes every good-* and bad-* entry of DIR (default: t/vectors beside
# this script) and writes, byte-identical on every run and machine:
#
#   good-NAME.stp       a stream every reader must accept
#   good-NAME.out       its listing, as the spec's "Test vectors" defines it
#   good-NAME.expect/   the files it holds, at their paths; absent when it
#                       holds none (git keeps no empty folder)
#   bad-NAME.stp        a stream that breaks exactly one rule, named by NAME
#   coded/              the same for the frames of formats/planes.md and
#                       formats/rans.md, written by t/mkvectors-coded.tcl
#
# The listing comes from what this writer put in the stream, not from a
# reader, so a reader's listing is checked against an independent one.

namespace eval vec {
    variable MAGIC [binary format H* 895354500D0A1A0A]
    variable UNKNOWN_SIZE 0xFFFFFFFFFFFFFFFF
    variable ESIZE {
        F64 8 F32 4 F16 2 BF16 2 F8_E4M3 1 F8_E5M2 1 F8_E8M0 1
        I64 8 I32 4 I16 2 I8 1 U8 1 BOOL 1 U64 8 U32 4 U16 2
    }
    # Fixed file metadata, so the vectors do not depend on the clock.
    variable MODE 0644
    variable MTIME 1700000000

    variable dir       ;# where the vectors go
    variable buf       ;# the stream being built
    variable lines     ;# its expected listing
    variable files     ;# expected files: path bytes ...
    variable seg       ;# dict: start frames files of the open segment
    variable cur       ;# dict of the open file: content pos crc tensors
}

# ---------------------------------------------------------------------------
# Encoding

# Return opts (a dict of -name value pairs) merged over defaults, refusing
# an option the caller does not know: a typo must not make a good vector.
proc vec::opts {defaults given} {
    foreach key [dict keys $given] {
        if {![dict exists $defaults $key]} {
            error "unknown option $key, expected one of [dict keys $defaults]"
        }
    }
    return [dict merge $defaults $given]
}

# Render path or name bytes as the listing does.
proc vec::esc {bytes} {
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

# Return the element size of dtype, 1 for a dtype the spec does not know
# (only bad vectors use one).
proc vec::esize {dtype} {
    variable ESIZE
    if {[dict exists $ESIZE $dtype]} {
        return [dict get $ESIZE $dtype]
    }
    return 1
}

# Return a safetensors file: the u64 header length, the JSON header padded
# with spaces so the data starts at a multiple of 8, then the data.
proc vec::st_blob {json data} {
    set len [string length $json]
    set len [expr {$len + (8 - (8 + $len) % 8) % 8}]
    return "[binary format w $len][format %-*s $len $json]$data"
}

# Return a safetensors header entry.
proc vec::st_entry {name dtype shape begin end} {
    return "\"$name\":{\"dtype\":\"$dtype\",\"shape\":\[[join $shape ,]\],\"data_offsets\":\[$begin,$end\]}"
}

# ---------------------------------------------------------------------------
# The stream writer.  Each proc appends one structure to the vector being
# built, keeps the segment's totals, and adds the listing line a reader
# must print for it.  Options override a field to make a bad vector.

# Start a new vector.
proc vec::begin {} {
    variable buf ""
    variable lines {}
    variable files {}
    variable cur ""
}

# Append bytes that belong to no frame (garbage, or a cut stream).
proc vec::raw {bytes} {
    variable buf
    append buf $bytes
}

# Append a stream header ("Stream header") and open a segment.
proc vec::header {args} {
    variable MAGIC
    variable buf
    variable seg
    set o [opts {-magic {} -version 1 -flags 0 -crcxor 0} $args]
    set magic [expr {[dict get $o -magic] eq "" ? $MAGIC : [dict get $o -magic]}]
    set head "$magic[binary format ss [dict get $o -version] [dict get $o -flags]]"
    set crc [expr {[zlib crc32 $head] ^ [dict get $o -crcxor]}]
    set seg [dict create start [string length $buf] frames 0 files 0]
    append buf $head [binary format i $crc]
}

# Append a frame ("Frames"); -length replaces the length field only.
proc vec::frame {type payload args} {
    variable buf
    variable seg
    set o [opts {-flags 0 -reserved 0 -length {} -crcxor 0} $args]
    set len [dict get $o -length]
    if {$len eq ""} {
        set len [string length $payload]
    }
    set bytes [binary format cucusuiu $type [dict get $o -flags] \
        [dict get $o -reserved] $len]
    append bytes $payload
    set crc [expr {[zlib crc32 $bytes] ^ [dict get $o -crcxor]}]
    append buf $bytes [binary format iu $crc]
    dict incr seg frames
}

proc vec::line {text} {
    variable lines
    lappend lines $text
}

# Append a FILE frame ("FILE (0x01)") for a file holding content; path is
# UTF-8 bytes.  -size unknown writes the unknown-size marker.
proc vec::file_begin {path kind content args} {
    variable seg
    variable cur
    variable MODE
    variable MTIME
    variable UNKNOWN_SIZE
    set o [opts [list -size [string length $content] -mode $MODE -mtime $MTIME \
        -reserved 0 -pathlen [string length $path] -extra "" -flags 0] $args]
    set size [dict get $o -size]
    if {$size eq "unknown"} {
        set size $UNKNOWN_SIZE
    }
    set payload [binary format cucusuiuwwu $kind [dict get $o -reserved] \
        [dict get $o -pathlen] [dict get $o -mode] [dict get $o -mtime] $size]
    append payload $path [dict get $o -extra]
    frame 1 $payload -flags [dict get $o -flags]
    dict incr seg files
    set cur [dict create path $path content $content pos 0 crc 0 tensors 0]
    set kindname [expr {$kind == 1 ? "safetensors" : "other"}]
    set sizetext [expr {$size == $UNKNOWN_SIZE ? "-" : $size}]
    line [format "FILE %s %04o %s %s %s" $kindname [dict get $o -mode] \
        [dict get $o -mtime] $sizetext [esc $path]]
}

# Append a DATA frame ("DATA (0x03)") carrying the open file's next n
# bytes; -skip leaves bytes out before them, -offset lies about where
# they start.
proc vec::data {n args} {
    variable cur
    set o [opts {-offset {} -skip 0 -crcxor 0 -reserved 0} $args]
    dict incr cur pos [dict get $o -skip]
    set pos [dict get $cur pos]
    set offset [dict get $o -offset]
    if {$offset eq ""} {
        set offset $pos
    }
    set bytes [string range [dict get $cur content] $pos [expr {$pos + $n - 1}]]
    frame 3 "[binary format wu $offset]$bytes" \
        -crcxor [dict get $o -crcxor] -reserved [dict get $o -reserved]
    dict set cur pos [expr {$pos + $n}]
    dict set cur crc [zlib crc32 $bytes [dict get $cur crc]]
    line "DATA $offset $n"
}

# Append a TENSOR frame ("TENSOR (0x02)") for a tensor at the open file's
# next byte.  Its DATA frames are left to the caller.
proc vec::tensor {name dtype shape args} {
    variable cur
    set nbytes [esize $dtype]
    foreach d $shape {
        set nbytes [expr {($nbytes * $d) & 0xFFFFFFFFFFFFFFFF}]
    }
    set o [opts [list -nbytes $nbytes -index [dict get $cur tensors] \
        -offset [dict get $cur pos] -dtypelen [string length $dtype] \
        -extra ""] $args]
    set payload [binary format wuwuiucucusu [dict get $o -offset] \
        [dict get $o -nbytes] [dict get $o -index] [dict get $o -dtypelen] \
        [llength $shape] [string length $name]]
    append payload [binary format wu* $shape] $dtype $name [dict get $o -extra]
    frame 2 $payload
    dict incr cur tensors
    line [format "TENSOR %u %s %s \[%s\] %s %s" [dict get $o -index] [esc $name] \
        $dtype [join $shape ,] [dict get $o -offset] [dict get $o -nbytes]]
}

# Append a FILE_END frame ("FILE_END (0x04)") closing the open file, and
# record the file as expected output.
proc vec::file_end {args} {
    variable cur
    variable files
    set o [opts [list -size [dict get $cur pos] -crc [dict get $cur crc] \
        -tensors [dict get $cur tensors] -extra ""] $args]
    frame 4 "[binary format wuiuiu [dict get $o -size] [dict get $o -crc] \
        [dict get $o -tensors]][dict get $o -extra]"
    lappend files [dict get $cur path] [dict get $cur content]
    set cur ""
    line [format "FILE_END %s %08x %u" [dict get $o -size] [dict get $o -crc] \
        [dict get $o -tensors]]
}

# Append a frame of another type: a skippable one, or one a stage should
# have decoded.
proc vec::other {type payload args} {
    frame $type $payload {*}$args
    line [format "SKIP %02x %u" $type [string length $payload]]
}

# Append an END frame ("END (0x0F)") with the segment's true totals, or
# the ones the options give.
proc vec::end {args} {
    variable buf
    variable seg
    set o [opts [list -frames [dict get $seg frames] \
        -bytes [expr {[string length $buf] - [dict get $seg start]}] \
        -files [dict get $seg files] -reserved 0 -extra ""] $args]
    frame 15 "[binary format wuwuiuiu [dict get $o -frames] [dict get $o -bytes] \
        [dict get $o -files] [dict get $o -reserved]][dict get $o -extra]"
    line "END [dict get $o -frames] [dict get $o -bytes] [dict get $o -files]"
}

# A whole plain file in one DATA frame (none when it is empty).
proc vec::plain {path content args} {
    file_begin $path 2 $content {*}$args
    if {[string length $content] > 0} {
        data [string length $content]
    }
    file_end
}

# ---------------------------------------------------------------------------
# Output

proc vec::write_bytes {path bytes} {
    set f [open $path wb]
    puts -nonewline $f $bytes
    close $f
}

# Write good-NAME.stp, its listing and the files it holds.
proc vec::good {name} {
    variable dir
    variable buf
    variable lines
    variable files
    write_bytes [file join $dir good-$name.stp] $buf
    write_bytes [file join $dir good-$name.out] "[join $lines \n]\n"
    foreach {path content} $files {
        set target [file join $dir good-$name.expect {*}[split $path /]]
        file mkdir [file dirname $target]
        write_bytes $target $content
    }
}

# Write bad-NAME.stp.
proc vec::bad {name} {
    variable dir
    variable buf
    write_bytes [file join $dir bad-$name.stp] $buf
}

# ---------------------------------------------------------------------------
# File contents

# A safetensors file with a BF16 scalar (1.0) and an F32 [0,4] tensor with
# no bytes, which sits at the very end of the file.
proc vec::tiny_st {} {
    set json "{[st_entry s BF16 {} 0 2],[st_entry empty F32 {0 4} 2 2]}"
    return [st_blob $json [binary format s 0x3F80]]
}

# An I8 [2,3] tensor "w".
proc vec::small_st {} {
    return [st_blob "{[st_entry w I8 {2 3} 0 6]}" [binary format c* {1 -2 3 -4 5 -6}]]
}

# An F32 [4,3] "w" and an F16 [5] "b", with 4 gap bytes before w, 2
# between and 3 after.
proc vec::split_st {} {
    set w [binary format r* {0.5 -0.25 1 2 3 4 5 6 7 8 9 10}]
    set b [binary format s* {0x3C00 0xBC00 0 0x7C00 1}]
    set json "{\"__metadata__\":{\"format\":\"pt\"},[st_entry w F32 {4 3} 4 52],[st_entry b F16 {5} 54 64]}"
    return [st_blob $json "\xA5\xA5\xA5\xA5$w\xA6\xA6$b\xA7\xA7\xA7"]
}

# One [2] tensor per dtype the spec lists, wider ones first so that each
# starts on a multiple of its element size; element i is the byte i+1
# repeated.
proc vec::dtypes_st {} {
    variable ESIZE
    set entries {}
    set data ""
    foreach dtype [dict keys [lsort -stride 2 -index 1 -integer -decreasing $ESIZE]] {
        set begin [string length $data]
        set size [dict get $ESIZE $dtype]
        append data [string repeat \x01 $size] [string repeat \x02 $size]
        lappend entries [st_entry [string tolower $dtype] $dtype {2} $begin [string length $data]]
    }
    return [st_blob "{[join $entries ,]}" $data]
}

# Bytes 0..n-1 of a counter, NUL and high bytes included.
proc vec::counter {n} {
    set out ""
    for {set i 0} {$i < $n} {incr i} {
        append out [binary format c [expr {($i * 37) & 0xFF}]]
    }
    return $out
}

# Return the header length (8 + N) of a safetensors blob.
proc vec::st_head {blob} {
    binary scan $blob wu n
    return [expr {8 + $n}]
}

# Append a whole safetensors file cut as st-split does: the header in one
# DATA frame, then each tensor {name dtype shape} (in offset order, packed
# back to back) with its bytes in one DATA frame.
proc vec::st_file {path blob tensors} {
    file_begin $path 1 $blob
    data [st_head $blob]
    foreach t $tensors {
        lassign $t name dtype shape
        tensor $name $dtype $shape
        set n [expr {[esize $dtype] * [tcl::mathop::* 1 {*}$shape]}]
        if {$n > 0} {
            data $n
        }
    }
    file_end
}

# ---------------------------------------------------------------------------
# Good vectors

proc vec::make_good {} {
    variable ESIZE
    set text "Hello from stpipe.\n"

    # A segment with no files.
    begin; header; end
    good empty

    # One safetensors file: a scalar and a tensor with no bytes.
    begin; header
    st_file tiny.safetensors [tiny_st] {{s BF16 {}} {empty F32 {0 4}}}
    end
    good safetensors

    # One plain file.
    begin; header
    plain notes.txt $text
    end
    good plain

    # A plain file and a safetensors file in a subfolder.
    begin; header
    plain config.json "{\"model_type\": \"llama\"}\n"
    st_file sub/dir/model.safetensors [small_st] {{w I8 {2 3}}}
    end
    good two-files

    # Two segments, as `cat a b` of two streams.
    begin
    header; plain first.txt "first\n"; end
    header; plain second/part.txt "second\n"; end
    good two-segments

    # Skippable metadata frames before, inside and after a file.
    begin; header
    other 0xF2 "comment: notes.txt"
    file_begin notes.txt 2 $text
    data 6
    other 0xF2 "between DATA frames"
    data [expr {[string length $text] - 6}]
    file_end
    other 0xFE ""
    end
    good skippable

    # A tensor over several DATA frames (two rows, one, one), the header
    # over two, gap bytes before, between and after the tensors.
    set blob [split_st]
    begin; header
    file_begin split.safetensors 1 $blob
    data 8
    data [expr {[st_head $blob] - 8}]
    data 4
    tensor w F32 {4 3}
    data 24; data 12; data 12
    data 2
    tensor b F16 {5}
    data 10
    data 3
    file_end
    end
    good split-tensor

    # A file whose size the writer did not know (read from a pipe).
    begin; header
    file_begin stdin.bin 2 [counter 40] -size unknown -mode 0 -mtime 0
    data 25; data 15
    file_end
    end
    good unknown-size

    # Every dtype of the spec's table.
    begin; header
    set tensors {}
    foreach dtype [dict keys [lsort -stride 2 -index 1 -integer -decreasing $ESIZE]] {
        lappend tensors [list [string tolower $dtype] $dtype {2}]
    }
    st_file dtypes.safetensors [dtypes_st] $tensors
    end
    good dtypes

    # A file of zero bytes: no DATA frame at all.
    begin; header
    plain empty.txt ""
    end
    good empty-file

    # A path with a space and UTF-8, a mode other than 0644, and an mtime
    # before 1970.
    begin; header
    plain [encoding convertto utf-8 "sp ace/\u00fcn\u00ef.txt"] $text \
        -mode 0600 -mtime -86400
    end
    good odd-path
}

# ---------------------------------------------------------------------------
# Bad vectors: each one valid but for the rule its name gives.

# A valid segment holding one plain file, for vectors that break what comes
# before or after it.
proc vec::plain_segment {args} {
    header {*}$args
    plain a.txt "abc\n"
    end
}

# A segment with one file of unknown size whose first 8 bytes are a DATA
# frame of their own; body writes the tensors and the rest of its DATA.
proc vec::tensor_file {body} {
    header
    file_begin t.safetensors 1 "HEADER..[counter 64]" -size unknown
    data 8
    uplevel 1 $body
    file_end
    end
}

proc vec::make_bad {} {
    variable MAGIC
    set cases {
        empty-input {}
        magic {plain_segment -magic [string replace $MAGIC 1 1 s]}
        header-crc {plain_segment -crcxor 1}
        version {plain_segment -version 2}
        header-flags {plain_segment -flags 1}
        truncated-in-stream-header {plain_segment; cut 10}
        frame-crc {
            header
            file_begin a.txt 2 "abc\n"; data 4 -crcxor 0x80000000; file_end
            end
        }
        frame-type-zero {header; frame 0 ""; end}
        frame-flags {header; plain a.txt "abc\n" -flags 1; end}
        frame-reserved {
            header
            file_begin a.txt 2 "abc\n"; data 4 -reserved 0x100; file_end
            end
        }
        length-over-cap {
            header
            file_begin a.txt 2 "abc\n"
            frame 3 "[binary format w 0]abc\n" -length 8388609
        }
        truncated-in-header {header; plain a.txt "abc\n"; set m [mark]; end; cut [expr {$m + 5}]}
        truncated-in-payload {
            header
            file_begin a.txt 2 "abc\n"; set m [mark]; data 4; file_end
            end
            cut [expr {$m + 8 + 5}]
        }
        truncated-in-crc {plain_segment; cut -2}
        truncated-no-end {header; plain a.txt "abc\n"}
        truncated-second-segment {plain_segment; header}
        trailing-garbage {plain_segment; raw \n}
        second-header-crc {plain_segment; header -crcxor 1; end}
        end-frames {header; plain a.txt "abc\n"; end -frames [expr {[seg_total frames] + 1}]}
        end-bytes {header; plain a.txt "abc\n"; end -bytes [expr {[seg_total bytes] - 1}]}
        end-files {header; plain a.txt "abc\n"; end -files 2}
        end-reserved {header; plain a.txt "abc\n"; end -reserved 1}
        end-length {header; plain a.txt "abc\n"; end -extra [binary format i 0]}
        end-inside-file {header; file_begin a.txt 2 "abc\n"; data 4; end}
        data-outside-file {
            header
            frame 3 "[binary format w 0]abc\n"
            end
        }
        file-inside-file {
            header
            file_begin a.txt 2 "abc\n"; data 4
            set outer $cur; plain b.txt "def\n"; set cur $outer
            file_end
            end
        }
        file-end-without-file {
            header
            frame 4 [binary format wuiuiu 0 0 0]
            end
        }
        tensor-outside-file {
            header
            frame 2 "[binary format wuwuiucucusu 0 4 0 3 0 1]F32x"
            end
        }
        undecoded-frame {header; other 0x20 "model"; plain a.txt "abc\n"; end}
        frame-type-core-reserved {header; other 0x05 "later"; end}
        frame-type-40 {header; other 0x40 "later"; end}
        frame-type-ff {header; other 0xFF "later"; end}
        file-kind {header; file_begin a.txt 3 "abc\n"; data 4; file_end; end}
        file-reserved {header; plain a.txt "abc\n" -reserved 1; end}
        file-length {header; plain a.txt "abc\n" -extra x; end}
        file-mode {header; plain a.txt "abc\n" -mode 010000; end}
        path-empty {header; plain "" "abc\n"; end}
        path-dotdot {header; plain ../a.txt "abc\n"; end}
        path-absolute {header; plain /tmp/a.txt "abc\n"; end}
        path-empty-component {header; plain a//b.txt "abc\n"; end}
        path-trailing-slash {header; plain dir/ "abc\n"; end}
        path-dot {header; plain ./a.txt "abc\n"; end}
        path-backslash {header; plain a\\b.txt "abc\n"; end}
        path-nul {header; plain a\x00b.txt "abc\n"; end}
        path-duplicate {header; plain a.txt "abc\n"; plain a.txt "def\n"; end}
        data-empty {
            header
            file_begin a.txt 2 "abc\n"; data 0; data 4; file_end
            end
        }
        data-first-offset {
            header
            file_begin a.txt 2 "abc\n" -size unknown; data 4 -offset 1; file_end
            end
        }
        data-gap {
            header
            file_begin a.txt 2 [counter 20] -size unknown
            data 10; data 8 -skip 2 -offset 12
            file_end
            end
        }
        file-size-mismatch {header; plain a.txt "abc\n" -size 12; end}
        file-size-exceeded {header; plain a.txt "abc\n" -size 2; end}
        file-end-size {
            header
            file_begin a.txt 2 "abc\n" -size unknown; data 4; file_end -size 5
            end
        }
        file-end-crc {
            header
            file_begin a.txt 2 "abc\n"; data 4
            file_end -crc [expr {[zlib crc32 "abc\n"] ^ 1}]
            end
        }
        file-end-tensors {
            header
            file_begin a.txt 2 "abc\n"; data 4; file_end -tensors 1
            end
        }
        file-end-length {
            header
            file_begin a.txt 2 "abc\n"; data 4; file_end -extra [binary format i 0]
            end
        }
        tensor-size-mismatch {tensor_file {tensor x F32 {2 3} -nbytes 20; data 20; data 4}}
        tensor-unknown-dtype {tensor_file {tensor x F7_XYZ {4}; data 4}}
        tensor-misaligned-data {tensor_file {tensor x F32 {4}; data 6; data 10}}
        tensor-index {tensor_file {tensor x F32 {4} -index 1; data 16}}
        tensor-offset {tensor_file {tensor x F32 {4} -offset 12; data 16}}
        tensor-incomplete {tensor_file {tensor x F32 {4}; data 8}}
        tensor-interrupted {tensor_file {tensor x F32 {4}; data 8; tensor y F32 {2}; data 8}}
        data-past-tensor {tensor_file {tensor x F32 {2}; data 12}}
        tensor-rank {tensor_file {tensor x F32 [lrepeat 33 1]; data 4}}
        tensor-dtypelen {tensor_file {tensor x "" {4} -nbytes 4; data 4}}
        tensor-length {tensor_file {tensor x F32 {4} -extra y; data 16}}
        tensor-overflow {tensor_file {tensor x F64 {2305843009213693952 8}}}
    }
    foreach {name body} $cases {
        begin
        namespace eval ::vec $body
        bad $name
    }
}

# Return the length of the vector so far, to cut it there later.
proc vec::mark {} {
    variable buf
    return [string length $buf]
}

# Return the open segment's true count of frames or bytes so far.
proc vec::seg_total {what} {
    variable buf
    variable seg
    if {$what eq "bytes"} {
        return [expr {[string length $buf] - [dict get $seg start]}]
    }
    return [dict get $seg $what]
}

# Cut the vector: keep its first n bytes, or drop its last -n.
proc vec::cut {n} {
    variable buf
    if {$n >= 0} {
        set buf [string range $buf 0 [expr {$n - 1}]]
    } else {
        set buf [string range $buf 0 end-[expr {-$n}]]
    }
}

# ---------------------------------------------------------------------------

proc vec::main {argv} {
    variable dir
    if {[llength $argv] > 1} {
        puts stderr "usage: tclsh mkvectors.tcl \[DIR\]"
        exit 100
    }
    if {[llength $argv] == 1} {
        set dir [lindex $argv 0]
    } else {
        set dir [file join [file dirname [file normalize [info script]]] vectors]
    }
    # Paths are bytes: let them reach the file system as they are.
    set dir [encoding convertto [encoding system] $dir]
    encoding system iso8859-1
    file mkdir $dir
    file delete -force {*}[glob -nocomplain -directory $dir good-* bad-*]
    make_good
    make_bad
    make_coded
}

source [file join [file dirname [info script]] mkvectors-coded.tcl]
vec::main $argv
