#!/usr/bin/env bats
# make install / uninstall, pkg-config, and the example loader built from
# the installed files only: it loads every real model byte-exactly, as
# the original safetensors files hold each tensor.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup_file() {
	export ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
	export FIX="$ROOT/t/fixtures"
	export WEIGHTS="${STP_WEIGHTS:-$ROOT/../shared/weights}"
	[ -f "$FIX/all.safetensors" ] || tclsh "$ROOT/t/mkfixtures.tcl" "$FIX"
	export P="$BATS_FILE_TMPDIR/prefix"
	make -s -C "$ROOT" install PREFIX="$P" > "$BATS_FILE_TMPDIR/install.log" 2>&1
	export PATH="$P/bin:$PATH"
	export PKG_CONFIG_PATH="$P/lib/pkgconfig"
	export LD_LIBRARY_PATH="$P/lib"
	# the example, from the installed header and library alone
	cc ${STP_CFLAGS:--O2} -Wall -Wextra -Werror -o "$BATS_FILE_TMPDIR/stz-load" \
		"$ROOT/share/examples/stz-load.c" \
		$(pkg-config --cflags --libs stpipe) \
		> "$BATS_FILE_TMPDIR/cc.log" 2>&1 || true
	cc ${STP_CFLAGS:--O2} -o "$BATS_FILE_TMPDIR/stz-load-static" \
		"$ROOT/share/examples/stz-load.c" \
		$(pkg-config --cflags stpipe) "$P/lib/libstpipe.a" \
		$(pkg-config --libs libarchive jansson zlib) -lpthread -lm \
		> "$BATS_FILE_TMPDIR/cc-static.log" 2>&1 || true
	export LOAD="$BATS_FILE_TMPDIR/stz-load"
}

setup() {
	cd "$BATS_TEST_TMPDIR"
}

@test "make install puts programs, library, header, pkg-config file, man pages in PREFIX" {
	for f in bin/stpipe bin/st-split bin/st-join bin/fp8-exp bin/lstm-model \
		bin/rans-enc bin/rans-dec include/stpipe.h lib/libstpipe.a \
		lib/pkgconfig/stpipe.pc share/man/man1/stpipe.1 \
		share/man/man3/stpipe.3 share/man/man1/st-split.1 \
		lib/stpipe/stpipe-batch; do
		[ -f "$P/$f" ] || fail "no $P/$f"
	done
	[ -L "$P/lib/libstpipe.so" ] && [ -L "$P/lib/libstpipe.so.0" ]
	[ -f "$P/lib/$(readlink "$P/lib/libstpipe.so.0")" ]
	# the only header: nothing private goes out
	run ls "$P/include"
	assert_output "stpipe.h"
	run pkg-config --modversion stpipe
	assert_output "$(sed -n 's/.*STP_VERSION_STRING "\(.*\)"/\1/p' "$ROOT/lib/version.h")"
	assert_equal "$(pkg-config --cflags --libs stpipe | xargs)" \
		"-I$P/include -L$P/lib -lstpipe"
	run "$P/bin/stpipe" --version
	assert_success
	# stpipe batch finds its script in the installed tree
	run env STPIPE_BATCH= "$P/bin/stpipe" batch --help
	assert_success
	assert_output --partial "Usage: stpipe batch"
}

@test "the example builds from the installed files with pkg-config only" {
	run cat "$BATS_FILE_TMPDIR/cc.log"
	assert_output ""
	[ -x "$LOAD" ]
	run readelf -d "$LOAD"
	assert_output --partial "[libstpipe.so.0]"
	[ -x "$BATS_FILE_TMPDIR/stz-load-static" ] ||
		fail "static build: $(cat "$BATS_FILE_TMPDIR/cc-static.log")"
}

# Compresses $1 (file or folder), loads it with the example (per tensor,
# all at once, two threads), compares with the originals under $2.
check_model() {
	local in="$1" dir="$2" model="${3:-order0}"
	stpipe compress -q -m "$model" "$in" -o m.stz || return 1
	"$LOAD" m.stz > list || return 1
	[ "$(grep -c $'\t' list)" -gt 0 ] || return 1
	"$ROOT/t/tensor-bytes.py" "$dir" < list > want || return 1
	"$LOAD" -r m.stz > got 2> /dev/null || return 1
	cmp want got || return 1
	"$LOAD" -r -a -T 2 m.stz > got2 2> /dev/null || return 1
	cmp want got2 || return 1
	"$BATS_FILE_TMPDIR/stz-load-static" -r -a m.stz > got3 2> /dev/null ||
		return 1
	cmp want got3 || return 1
	rm -f m.stz got got2 got3 want list
}

@test "the example loads the fixtures byte-exactly" {
	[ -x /usr/bin/python3 ] || skip "no /usr/bin/python3 (apt-get install python3) to read the originals"
	for f in "$FIX"/dtype-*.safetensors "$FIX/all.safetensors" \
		"$FIX/padded.safetensors" "$FIX/fp8/fp8-block.safetensors"; do
		check_model "$f" "$(dirname "$f")" || fail "$f"
		check_model "$f" "$(dirname "$f")" ctx || fail "$f (ctx)"
	done
}

@test "the example loads every real model byte-exactly" {
	[ -d "$WEIGHTS" ] || skip "no real weights at $WEIGHTS"
	[ -x /usr/bin/python3 ] || skip "no /usr/bin/python3 (apt-get install python3) to read the originals"
	n=0
	while IFS= read -r f; do
		check_model "$f" "$(dirname "$f")" || fail "$f"
		n=$((n + 1))
	done < <(find "$WEIGHTS" -name '*.safetensors' | sort)
	[ "$n" -ge 5 ]
	for d in tinylm-7m/bf16 tinylm-7m/fp8 llama32-3b-norms gpt2-lora stories260K; do
		check_model "$WEIGHTS/$d" "$WEIGHTS/$d" || fail "$d"
	done
	check_model "$WEIGHTS/tinylm-7m/fp8" "$WEIGHTS/tinylm-7m/fp8" ctx || fail "fp8 ctx"
}

@test "the example: a named tensor, an unknown one, a damaged file" {
	stpipe compress -q "$FIX/all.safetensors" -o a.stz
	name=$("$LOAD" a.stz | head -1 | cut -f2)
	run "$LOAD" a.stz "$name"
	assert_success
	assert_line --partial "$name"
	run "$LOAD" a.stz no.such.tensor
	assert_failure 1
	assert_output --partial "no tensor 'no.such.tensor'"
	size=$(stat -c %s a.stz)
	printf '\377' | dd of=a.stz bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
	run "$LOAD" -a a.stz
	assert_failure 1
	run "$LOAD" none.stz
	assert_failure 111
	assert_output "stz-load: none.stz: input/output error"
}

@test "DESTDIR stages the install; uninstall removes every file it put there" {
	d="$BATS_TEST_TMPDIR/stage"
	make -s -C "$ROOT" install DESTDIR="$d" PREFIX=/usr LIBDIR=/usr/lib/x86_64-linux-gnu > log 2>&1
	[ -f "$d/usr/include/stpipe.h" ]
	[ -f "$d/usr/lib/x86_64-linux-gnu/libstpipe.a" ]
	run grep -x 'libdir=/usr/lib/x86_64-linux-gnu' "$d/usr/lib/x86_64-linux-gnu/pkgconfig/stpipe.pc"
	assert_success
	make -s -C "$ROOT" uninstall DESTDIR="$d" PREFIX=/usr LIBDIR=/usr/lib/x86_64-linux-gnu > log 2>&1
	run find "$d" -type f -o -type l
	assert_output ""
}
