#!/usr/bin/env python3
"""Fixtures and checks of t/lowrank.bats, in numpy only.

  mk OUT                 the fixture file (below)
  tensors FILE           one line per tensor: name dtype shape
  lossy FILE             the header's stpipe.lossy record, as JSON
  err ORIG OUT NAME      ||W - A.B|| / ||W|| of NAME's factors in OUT
  same ORIG OUT NAME     exit 0 if NAME has the same bytes in both
  rel ORIG OUT NAME      ||W - W'|| / ||W|| of NAME in both
"""
import json
import struct
import sys

import numpy as np

DT = {"F32": np.float32, "F16": np.float16, "I8": np.int8}


def read(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    out = {}
    for k, v in h.items():
        lo, hi = v["data_offsets"]
        raw = b[8 + n + lo:8 + n + hi]
        out[k] = (v["dtype"], v["shape"], raw)
    return meta, out


def values(t):
    dtype, shape, raw = t
    if dtype == "BF16":
        u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        a = u.view(np.float32)
    else:
        a = np.frombuffer(raw, dtype=np.dtype(DT[dtype]).newbyteorder("<"))
    return a.astype(np.float64).reshape(shape)


def bf16(x):
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
    return r.tobytes()


def write(path, tensors):
    h, blobs, at = {"__metadata__": {"format": "pt"}}, [], 0
    for name, dtype, arr in tensors:
        raw = bf16(arr) if dtype == "BF16" else \
            np.ascontiguousarray(arr, dtype=DT[dtype]).astype(
                np.dtype(DT[dtype]).newbyteorder("<")).tobytes()
        h[name] = {"dtype": dtype, "shape": list(arr.shape),
                   "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    j = json.dumps(h).encode()
    j += b" " * ((8 - len(j) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(j)) + j + b"".join(blobs))


def orth(rng, n, k):
    q, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return q


def mk(out):
    rng = np.random.default_rng(7)
    lr8 = rng.standard_normal((64, 8)) @ rng.standard_normal((8, 96))
    sv = orth(rng, 40, 4) @ np.diag([4.0, 3.0, 2.0, 1.0]) @ \
        orth(rng, 50, 4).T
    write(out, [
        ("model.embed_tokens.weight", "F32", rng.standard_normal((32, 16))),
        ("lr8.weight", "F32", lr8),
        ("norm.weight", "F32", rng.standard_normal(64)),
        ("sv.weight", "F32", sv),
        ("bf.weight", "BF16", rng.standard_normal((48, 64)) / 8),
        ("tiny.weight", "F32", rng.standard_normal((8, 8))),
        ("a.k_proj.weight", "F32", rng.standard_normal((32, 40))),
        ("b.k_proj.weight", "F32", rng.standard_normal((32, 40))),
        ("b.v_proj.weight", "F32", rng.standard_normal((32, 40))),
    ])


def factors(t, name):
    a, b = values(t[name + "_lr_a"]), values(t[name + "_lr_b"])
    if t[name + "_lr_a"][0] == "I8":
        a = a * values(t[name + "_lr_a_scale"])[:, None]
        b = b * values(t[name + "_lr_b_scale"])[:, None]
    return a @ b


def main(argv):
    cmd = argv[1]
    if cmd == "mk":
        mk(argv[2])
    elif cmd == "tensors":
        for k, (d, s, _) in read(argv[2])[1].items():
            print(k, d, "x".join(map(str, s)))
    elif cmd == "lossy":
        print(read(argv[2])[0].get("stpipe.lossy", "[]"))
    elif cmd in ("err", "rel"):
        w = values(read(argv[2])[1][argv[4]])
        t = read(argv[3])[1]
        y = factors(t, argv[4]) if cmd == "err" else values(t[argv[4]])
        print("%.6g" % (np.linalg.norm(w - y) / np.linalg.norm(w)))
    elif cmd == "same":
        return 0 if read(argv[2])[1][argv[4]] == read(argv[3])[1][argv[4]] \
            else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
