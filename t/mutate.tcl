# mutate.tcl: damage one frame of an stpipe stream and mend its CRC, so
# that a test reaches the checks behind the CRC (formats/stream.md).
# Usage: tclsh t/mutate.tcl IN OUT TYPE NTH OFFSET XOR
#   TYPE    frame type, decimal or 0x.. (e.g. 0x30 for CODED)
#   NTH     which frame of that type, from 0
#   OFFSET  payload byte to change; negative counts from the payload's end
#   XOR     value to XOR into it (decimal or 0x..)
# Exits 1 if the stream has no such frame.
if {[llength $argv] != 6} {
	puts stderr "usage: mutate.tcl IN OUT TYPE NTH OFFSET XOR"
	exit 100
}
lassign $argv in out type nth off xor
set f [open $in rb]
set data [read $f]
close $f

set pos 0
set seen 0
set len [string length $data]
while {$pos < $len} {
	if {[string range $data $pos [expr {$pos + 3}]] eq "\x89STP"} {
		incr pos 16
		continue
	}
	binary scan $data @${pos}cucusui t flags res plen
	if {$t == $type && $seen == $nth} {
		set at [expr {$off < 0 ? $plen + $off : $off}]
		if {$at < 0 || $at >= $plen} {
			puts stderr "mutate.tcl: offset $off outside the payload"
			exit 1
		}
		set p [expr {$pos + 8 + $at}]
		binary scan $data @${p}cu b
		set data [string replace $data $p $p \
			[binary format cu [expr {$b ^ $xor}]]]
		set crc [zlib crc32 [string range $data $pos \
			[expr {$pos + 8 + $plen - 1}]]]
		set c [expr {$pos + 8 + $plen}]
		set data [string replace $data $c [expr {$c + 3}] \
			[binary format iu $crc]]
		set f [open $out wb]
		puts -nonewline $f $data
		close $f
		exit 0
	}
	if {$t == $type} {incr seen}
	incr pos [expr {8 + $plen + 4}]
}
puts stderr "mutate.tcl: no frame $nth of type $type"
exit 1
