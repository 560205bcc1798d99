#!/usr/bin/python3
# int8-weights.py IN.safetensors OUT.safetensors: quantizes each 2-D BF16,
# F16 or F32 tensor of IN per row (scale = max|row| / 127, q = rint(x /
# scale) clamped to [-127, 127]) into an I8 tensor NAME and an F32 tensor
# NAME_scale of shape [rows]; other tensors are copied as they are.
# int8-weights.py --smooth ROWS COLS OUT.safetensors: one smooth I8 tensor
# "image" (a sum of slow waves, with a little noise from a fixed LCG),
# which prediction must code far smaller than the values themselves.
# Pure Python (numpy where it is installed is not needed): the output
# bytes depend only on the input.
import array, json, math, struct, sys


def write(path, tensors):
    """tensors: list of (name, dtype, shape, bytes), in order."""
    header, data, off = {}, [], 0
    for name, dtype, shape, b in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [off, off + len(b)]}
        data.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in data:
            f.write(b)


def floats(dtype, b):
    if dtype == "BF16":
        h = array.array("H", b)
        if sys.byteorder != "little":
            h.byteswap()
        w = array.array("I", (x << 16 for x in h))
        return array.array("f", w.tobytes())
    if dtype == "F32":
        f = array.array("f", b)
        if sys.byteorder != "little":
            f.byteswap()
        return f
    if dtype == "F16":
        return array.array("f", (struct.unpack("<e", b[i:i + 2])[0]
                                 for i in range(0, len(b), 2)))
    return None


def quantize(src, dst):
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        body = f.read()
    out = []
    items = sorted(((k, v) for k, v in hdr.items() if k != "__metadata__"),
                   key=lambda kv: kv[1]["data_offsets"][0])
    for name, t in items:
        b = body[t["data_offsets"][0]:t["data_offsets"][1]]
        x = floats(t["dtype"], b) if len(t["shape"]) == 2 else None
        if x is None:
            out.append((name, t["dtype"], t["shape"], b))
            continue
        rows, cols = t["shape"]
        q = array.array("b")
        scales = array.array("f")
        for r in range(rows):
            row = x[r * cols:(r + 1) * cols]
            m = max((abs(v) for v in row), default=0.0)
            s = m / 127 if m > 0 else 1.0
            scales.append(s)
            q.extend(max(-127, min(127, round(v / s))) for v in row)
        if sys.byteorder != "little":
            scales.byteswap()
        out.append((name, "I8", [rows, cols], q.tobytes()))
        out.append((name + "_scale", "F32", [rows], scales.tobytes()))
    write(dst, out)


def smooth(rows, cols, dst):
    seed = 12345
    q = array.array("b")
    for r in range(rows):
        for c in range(cols):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            v = (60 * math.sin(r / 23.0) * math.cos(c / 31.0) +
                 40 * math.sin((r + c) / 47.0) + (seed >> 16) % 3 - 1)
            q.append(max(-127, min(127, int(round(v)))))
    write(dst, [("image", "I8", [rows, cols], q.tobytes())])


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--smooth":
        smooth(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) == 3:
        quantize(sys.argv[1], sys.argv[2])
    else:
        sys.exit("usage: int8-weights.py IN OUT | --smooth ROWS COLS OUT")
