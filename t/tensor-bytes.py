#!/usr/bin/python3
# tensor-bytes.py DIR < LIST: for each line "FILE<TAB>NAME<TAB>..." of
# LIST (what stz-load prints), writes the bytes of tensor NAME as the
# original safetensors file DIR/FILE holds them, read straight from that
# file's header and data section, to standard output.
import json, struct, sys

root = sys.argv[1]
headers = {}
out = sys.stdout.buffer
for line in sys.stdin:
    f = line.rstrip("\n").split("\t")
    if len(f) < 5:
        continue
    path = root + "/" + f[0] if root else f[0]
    if path not in headers:
        with open(path, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            headers[path] = (json.loads(fh.read(n)), 8 + n)
    h, base = headers[path]
    b, e = h[f[1]]["data_offsets"]
    with open(path, "rb") as fh:
        fh.seek(base + b)
        out.write(fh.read(e - b))
