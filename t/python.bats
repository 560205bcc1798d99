#!/usr/bin/env bats
# The Python module (python/stpipe) over the in-tree library: every tensor
# of the fixtures and the real weights, by name and in one pass, byte-exact
# against the original safetensors files; compress() from numpy arrays
# through stpipe decompress; failures as stpipe.Error; torch tensors where
# PyTorch is installed.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup_file() {
	export ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
	export PATH="$ROOT/bin:$PATH"
	export FIX="$ROOT/t/fixtures"
	export WEIGHTS="${STP_WEIGHTS:-$BATS_TEST_DIRNAME/../../shared/weights}"
	[ -f "$FIX/all.safetensors" ] || tclsh "$ROOT/t/mkfixtures.tcl" "$FIX"
	export STPIPE_LIBRARY="$ROOT/lib/libstpipe.so.0"
	export PYTHONPATH="$ROOT/python:$BATS_FILE_TMPDIR"
	export PYTHONDONTWRITEBYTECODE=1
	if [ ! -x /usr/bin/python3 ]; then
		export NOPY="no /usr/bin/python3 (apt-get install python3)"
	elif ! /usr/bin/python3 -c 'import numpy' 2> /dev/null; then
		export NOPY="no numpy for /usr/bin/python3 (apt-get install python3-numpy)"
	fi
	# A library built with AddressSanitizer (make check-asan) loads only
	# into a process that has its runtime first; Python's own allocations
	# outlive it by design, so leaks are not looked for there.
	export ASAN_RT="$(readelf -d "$STPIPE_LIBRARY" 2> /dev/null |
		sed -n 's/.*NEEDED.*\[\(libasan[^]]*\)\].*/\1/p')"
	cat > "$BATS_FILE_TMPDIR/stcheck.py" <<-'EOF'
		"""Checks what stpipe gives against the original safetensors files,
		read here from their bytes (8-byte little-endian header length, JSON
		header, data section) and nothing else."""
		import json, os, struct
		import numpy as np
		import stpipe

		NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
		         "F8_E4M3": "u1", "F8_E5M2": "u1", "F8_E8M0": "u1",
		         "I8": "i1", "I16": "<i2", "I32": "<i4", "I64": "<i8",
		         "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8",
		         "BOOL": "?"}

		def read_st(path):
		    """{name: (dtype, shape, bytes)} of a safetensors file."""
		    with open(path, "rb") as f:
		        b = f.read()
		    (n,) = struct.unpack_from("<Q", b, 0)
		    hdr = json.loads(b[8:8 + n])
		    hdr.pop("__metadata__", None)
		    data = b[8 + n:]
		    return {k: (v["dtype"], tuple(v["shape"]),
		                data[v["data_offsets"][0]:v["data_offsets"][1]])
		            for k, v in hdr.items()}

		def originals(root, names=None):
		    """{path as stored: tensors} for root, a .safetensors file or a
		    folder (its .safetensors files, or those in names)."""
		    if os.path.isfile(root):
		        return {os.path.basename(root): read_st(root)}
		    out = {}
		    for d, _, fs in os.walk(root):
		        for f in fs:
		            p = os.path.relpath(os.path.join(d, f), root)
		            if f.endswith(".safetensors") and (names is None
		                                               or p in names):
		                out[p] = read_st(os.path.join(root, p))
		    return out

		def same(a, want, what):
		    dt, shape, raw = want
		    assert a.dtype == np.dtype(NUMPY[dt]), (what, a.dtype, dt)
		    assert a.shape == shape, (what, a.shape, shape)
		    assert a.tobytes() == raw, (what, "bytes differ")

		def check(m, orig):
		    """m holds exactly the tensors of orig, each byte for byte, by
		    name, by (file, name) and through load_all(); returns how many."""
		    tfiles = [f for f in m.files if orig.get(f)]
		    assert sorted(tfiles) == sorted(f for f in orig if orig[f]), \
		        (m.files, sorted(orig))
		    first = {}
		    for f in tfiles:
		        for name in orig[f]:
		            first.setdefault(name, f)
		    assert sorted(m) == sorted(first) and len(m) == len(first)
		    n = 0
		    for f in tfiles:
		        for name, want in orig[f].items():
		            same(m.load(name, file=f), want, (f, name))
		            n += 1
		    for name, f in first.items():
		        assert name in m
		        assert m.file(name) == f, (name, m.file(name), f)
		        assert m.dtype(name) == orig[f][name][0], name
		        assert m.shape(name) == orig[f][name][1], name
		        same(m[name], orig[f][name], name)
		    everything = m.load_all(threads=2)
		    assert list(everything) == list(m)
		    for name, a in everything.items():
		        same(a, orig[first[name]][name], ("load_all", name))
		    assert "no such tensor" not in m
		    return n
	EOF
}

setup() {
	[ -z "$NOPY" ] || skip "$NOPY"
	cd "$BATS_TEST_TMPDIR"
}

py() {
	if [ -n "$ASAN_RT" ]; then
		LD_PRELOAD="$ASAN_RT" ASAN_OPTIONS=detect_leaks=0 /usr/bin/python3 "$@"
	else
		/usr/bin/python3 "$@"
	fi
}

@test "every fixture tensor, by name and in one pass, is the original's bytes, dtype and shape" {
	for f in "$FIX"/dtype-*.safetensors "$FIX/all.safetensors" \
		"$FIX/padded.safetensors" "$FIX/fp8/fp8-block.safetensors" \
		"$FIX/model"; do
		stpipe compress -q "$f" -o x.stz -f
		run py - "$f" <<-'EOF'
			import sys, stcheck, stpipe
			with stpipe.open("x.stz") as m:
			    n = stcheck.check(m, stcheck.originals(sys.argv[1]))
			    print("ok", n, repr(m))
			assert m.closed
		EOF
		assert_success
		assert_output --regexp "^ok [1-9][0-9]* <stpipe.Stz 'x.stz': [0-9]+ files?, [0-9]+ tensors?>$"
	done
}

@test "a name two files hold maps to the first; load(name, file=) reaches the other" {
	stpipe compress -q "$FIX/dtype-F32.safetensors" "$FIX/dtype-F16.safetensors" -o dup.stz
	run py - "$FIX" <<-'EOF'
		import sys, stcheck, stpipe
		orig = {f: stcheck.read_st(sys.argv[1] + "/" + f)
		        for f in ["dtype-F32.safetensors", "dtype-F16.safetensors"]}
		with stpipe.open("dup.stz", threads=2) as m:
		    assert m.files == list(orig), m.files
		    assert len(m) == 6 and m.file("w2d") == "dtype-F32.safetensors"
		    assert m.dtype("w2d") == "F32" and m["w2d"].dtype == "float32"
		    stcheck.same(m.load("w2d", file="dtype-F16.safetensors", threads=0),
		                 orig["dtype-F16.safetensors"]["w2d"], "second")
		    assert {k: a.dtype.name for k, a in m.load_all().items()}["w2d"] \
		        == "float32"
		    print("ok", stcheck.check(m, orig), repr(m))
		    try:
		        m.load("w2d", file="nosuch.safetensors")
		        raise AssertionError("found w2d in nosuch")
		    except KeyError:
		        pass
	EOF
	assert_success
	assert_output "ok 12 <stpipe.Stz 'dup.stz': 2 files, 6 tensors>"
}

@test "the real weights, file by file, folder by folder and shard by shard, are byte-exact" {
	[ -d "$WEIGHTS" ] || skip "no real weights at $WEIGHTS"
	i=0
	while IFS= read -r f; do
		i=$((i + 1))
		stpipe compress -q -T 2 "$f" -o "one$i.stz"
		echo "$f one$i.stz"
	done < <(find "$WEIGHTS" -name '*.safetensors' | sort) > files.lst
	[ "$i" -gt 0 ]
	for d in tinylm-7m/bf16 tinylm-7m/fp8 llama32-3b-norms; do
		stpipe compress -q -T 2 "$WEIGHTS/$d" -o "${d//\//-}.stz"
		mkdir -p "shards/${d//\//-}"
		for s in "$WEIGHTS/$d"/*.safetensors; do
			stpipe compress -q "$s" -o "shards/${d//\//-}/$(basename "$s" .safetensors).stz"
		done
		# an uncompressed index beside the shards is ignored
		cp "$WEIGHTS/$d"/*.index.json "shards/${d//\//-}/" 2> /dev/null || true
	done
	[ -f shards/llama32-3b-norms/model.safetensors.index.json ]
	run py - "$WEIGHTS" <<-'EOF'
		import sys, stcheck, stpipe
		w = sys.argv[1]
		n = 0
		for line in open("files.lst"):
		    orig, stz = line.split()
		    with stpipe.open(stz) as m:
		        n += stcheck.check(m, stcheck.originals(orig))
		for d in ["tinylm-7m/bf16", "tinylm-7m/fp8", "llama32-3b-norms"]:
		    orig = stcheck.originals(w + "/" + d)
		    stz = d.replace("/", "-") + ".stz"
		    with stpipe.open(stz) as m:
		        n += stcheck.check(m, orig)
		        # every file of the folder, JSON too, whole and exact
		        import os
		        want = sorted(os.path.relpath(os.path.join(a, f), w + "/" + d)
		                      for a, _, fs in os.walk(w + "/" + d) for f in fs)
		        assert sorted(m.files) == want, (m.files, want)
		        for f in m.files:
		            assert m.read_file(f) == open(w + "/" + d + "/" + f,
		                                          "rb").read(), f
		    with stpipe.load_folder(stz) as m:
		        n += stcheck.check(m, orig)
		    with stpipe.load_folder("shards/" + d.replace("/", "-")) as m:
		        n += stcheck.check(m, orig)
		        print(d, repr(m))
		print("ok", n)
	EOF
	assert_success
	assert_line --regexp "^llama32-3b-norms <stpipe.Stz 'shards/llama32-3b-norms': 11 files, 11 tensors>$"
	assert_line --regexp "^ok [0-9]+$"
	echo "# ${lines[-1]} tensors checked" >&3
}

@test "compress() from numpy arrays restores through stpipe decompress, and open() gives them back" {
	run py - <<-'EOF'
		import json, struct
		import numpy as np
		import stpipe
		rng = np.random.default_rng(7)
		f32 = rng.standard_normal((33, 70)).astype(np.float32)
		arrays = {
		    "f32": f32,
		    "f16": rng.standard_normal((5, 6, 7)).astype(np.float16),
		    "bf16": (f32.view(np.uint32) >> 16).astype(np.uint16),
		    "i32": rng.integers(-2**31, 2**31, (40,), dtype=np.int32),
		    "scalar": np.float64(3.25),
		    "t": f32[:, ::3],
		}
		tensors = dict(arrays)
		tensors["bf16"] = (arrays["bf16"], "BF16")
		stpipe.compress("n.stz", tensors, metadata={"format": "pt"},
		                file_name="w.safetensors", threads=2)
		dtypes = {"f32": "F32", "f16": "F16", "bf16": "BF16", "i32": "I32",
		          "scalar": "F64", "t": "F32"}
		with stpipe.open("n.stz") as m:
		    assert list(m) == list(arrays), list(m)
		    assert m.files == ["w.safetensors"]
		    for k, a in arrays.items():
		        assert m.dtype(k) == dtypes[k], k
		        assert m[k].shape == np.shape(a), k
		        assert m[k].tobytes() == np.ascontiguousarray(a).tobytes(), k
		        assert m.file(k) == "w.safetensors"
		    assert m["scalar"].shape == () and m["scalar"] == 3.25
		for bad in [{"c": np.zeros(3, np.complex64)},
		            {"b": (np.zeros(3, np.float32), "BF16")}]:
		    try:
		        stpipe.compress("bad.stz", bad)
		        raise AssertionError("compress took %r" % bad)
		    except TypeError as e:
		        print("refused:", e)
		for kw, code in [({"metadata": "[1]"}, stpipe.EJSON),
		                 ({"model": "nosuch"}, stpipe.EUNSUPPORTED),
		                 ({"file_name": "../up.safetensors"}, stpipe.EPATH)]:
		    try:
		        stpipe.compress("bad.stz", {"x": f32}, **kw)
		        raise AssertionError("compress took %r" % kw)
		    except stpipe.Error as e:
		        assert e.code == code, (kw, e)
		        print("refused:", e)
		print("ok")
	EOF
	assert_success
	assert_line "ok"
	assert_line "refused: bad.stz: invalid JSON"
	assert_line "refused: bad.stz: unsupported feature"
	assert_line "refused: bad.stz: unsafe or invalid path"
	assert_line --partial "refused: stpipe: tensor 'c': numpy dtype complex64"
	assert_line --partial "refused: stpipe: tensor 'b': BF16 needs an array of 2-byte elements"
	[ ! -e bad.stz ]
	[ -z "$(ls -A | grep '\.tmp$')" ]
	stpipe decompress n.stz -o out/
	run py - <<-'EOF'
		import json, struct
		b = open("out/w.safetensors", "rb").read()
		(n,) = struct.unpack_from("<Q", b, 0)
		assert n % 8 == 0
		hdr = json.loads(b[8:8 + n])
		assert hdr.pop("__metadata__") == {"format": "pt"}
		print(" ".join("%s:%s:%s:%d" % (k, v["dtype"], v["shape"],
		               v["data_offsets"][1] - v["data_offsets"][0])
		               for k, v in hdr.items()))
	EOF
	assert_success
	assert_output "f32:F32:[33, 70]:9240 f16:F16:[5, 6, 7]:420 bf16:BF16:[33, 70]:4620 i32:I32:[40]:160 scalar:F64:[]:8 t:F32:[33, 24]:3168"
	stpipe compress -q out/w.safetensors -o again.stz
	run py - <<-'EOF'
		import numpy as np, stcheck, stpipe
		with stpipe.open("again.stz") as m:
		    print("ok", stcheck.check(m, stcheck.originals("out/w.safetensors")))
		    assert m["bf16"].dtype == np.uint16
	EOF
	assert_success
	assert_output "ok 6"
}

@test "damaged or missing .stz files raise stpipe.Error with the library's code; unknown names KeyError" {
	stpipe compress -q "$FIX/dtype-F32.safetensors" -o good.stz
	run py - <<-'EOF'
		import os, stpipe
		b = bytearray(open("good.stz", "rb").read())
		b[len(b) // 2] ^= 0x40
		open("bad.stz", "wb").write(b)
		try:
		    with stpipe.open("bad.stz") as m:
		        for k in m:
		            m[k]
		    raise AssertionError("the damage went unseen")
		except stpipe.Error as e:
		    assert isinstance(e, OSError)
		    assert e.code < 0 and e.message != "unknown error", e.code
		    assert e.message == stpipe.Error(e.code).message
		    print("damaged:", e.code, e.message)
		try:
		    stpipe.open("nosuch.stz")
		    raise AssertionError("opened a missing file")
		except stpipe.Error as e:
		    assert e.code == stpipe.EIO, e.code
		    print("missing:", e)
		os.mkdir("empty")
		try:
		    stpipe.load_folder("empty")
		    raise AssertionError("loaded an empty folder")
		except stpipe.Error as e:
		    assert e.code == stpipe.EEMPTY
		    print("folder:", e)
		with stpipe.open("good.stz") as m:
		    try:
		        m["nosuch"]
		        raise AssertionError("found nosuch")
		    except KeyError:
		        pass
		    assert m.get("nosuch") is None and "nosuch" not in m
		    name = next(iter(m))
		m.close()
		assert m.shape(name)
		try:
		    m[name]
		    raise AssertionError("decoded after close")
		except ValueError as e:
		    print("closed:", e)
		print("ok")
	EOF
	assert_success
	assert_line --regexp "^damaged: -[0-9]+ .+"
	assert_line "missing: nosuch.stz: input/output error"
	assert_line "folder: empty: no .stz file in this folder: empty input"
	assert_line "closed: stpipe: good.stz is closed"
	assert_line "ok"
}

@test "the Python list of error codes is lib/stpipe.h's, and messages come from stp_strerror" {
	run py - "$ROOT/lib/stpipe.h" <<-'EOF'
		import re, sys, stpipe
		h = open(sys.argv[1]).read()
		body = h[h.index("#define STP_ERRORS(X)"):]
		body = body[:body.index("\n\n")]
		codes = re.findall(r'X\((\w+),\s*\d+,\s*"([^"]*)"\)', body)
		assert codes, "no codes in the header"
		for i, (name, msg) in enumerate(codes):
		    e = stpipe.Error(getattr(stpipe, "E" + name))
		    assert e.code == -(i + 1) and e.message == msg, (name, e.code, e)
		mine = [k for k in stpipe.__all__ if re.fullmatch("E[A-Z]+", k)]
		assert mine == ["E" + n for n, _ in codes], mine
		print(stpipe.version(), len(codes))
	EOF
	assert_success
	assert_output --regexp "^[0-9]+\.[0-9]+\.[0-9]+ [0-9]+$"
	[ "${output%% *}" = "$(stpipe --version | sed 's/.* //')" ]
}

@test "installed layout: the module finds PREFIX/lib/libstpipe.so.0 without STPIPE_LIBRARY" {
	mkdir -p p/lib/python3/dist-packages/stpipe
	cp "$STPIPE_LIBRARY" p/lib/libstpipe.so.0
	cp "$ROOT/python/stpipe/__init__.py" p/lib/python3/dist-packages/stpipe/
	cat > where.py <<-'EOF'
		import stpipe
		print(stpipe.__file__)
		print([l.split()[-1] for l in open("/proc/self/maps")
		       if "libstpipe" in l][0])
	EOF
	unset STPIPE_LIBRARY
	export PYTHONPATH="$PWD/p/lib/python3/dist-packages"
	run py where.py
	assert_success
	assert_line "$PWD/p/lib/python3/dist-packages/stpipe/__init__.py"
	assert_line --regexp "^$PWD/p/lib/(python3/dist-packages/stpipe/\.\./\.\./\.\./)?libstpipe\.so\.0$"
	run env STPIPE_LIBRARY="$PWD/nosuch.so" /usr/bin/python3 -c 'import stpipe'
	assert_failure
	assert_output --partial "ImportError: stpipe: cannot load libstpipe: tried $PWD/nosuch.so"
	assert_output --partial "(STPIPE_LIBRARY is set)"
}

@test "tensor() gives torch.bfloat16 with the same bits, where PyTorch is installed" {
	py -c 'import torch' 2> /dev/null ||
		skip "PyTorch does not import in /usr/bin/python3 (apt-get install python3-torch)"
	stpipe compress -q "$FIX/dtype-BF16.safetensors" -o b.stz
	run py - <<-'EOF'
		import numpy as np, torch, stpipe
		with stpipe.open("b.stz") as m:
		    for k in m:
		        t = m.tensor(k)
		        assert t.dtype == torch.bfloat16, t.dtype
		        assert tuple(t.shape) == m.shape(k)
		        assert t.view(torch.int16).numpy().tobytes() == m[k].tobytes()
		        f = t.float().numpy()
		        assert np.array_equal(f.view(np.uint32) >> 16, m[k].astype(np.uint32))
		print("ok", torch.__version__)
	EOF
	assert_success
	assert_line --regexp "^ok "
}
