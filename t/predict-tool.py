#!/usr/bin/python3
# predict-tool.py: helpers of t/predict.bats.
#   mk OUT NAME:DTYPE:SHAPE:PATTERN...   a safetensors file of I8/U8
#       tensors; SHAPE is d0xd1x... ("-" for rank 0), PATTERN smooth,
#       noise (a fixed LCG) or ramp
#   types < STREAM        the frame types of a stream, one hex a line
#   mutate FIELD < STREAM > STREAM   changes one field of the first
#       RESIDUAL (0x11) or, with FIELD c:..., CODED_RESIDUAL (0x32)
#       frame, keeping its length and fixing its CRC
import json, math, struct, sys, zlib


def mk(out, specs):
    header, data, off, seed = {}, [], 0, 7
    for spec in specs:
        name, dtype, shape, pat = spec.split(":")
        dims = [] if shape == "-" else [int(d) for d in shape.split("x")]
        rows = 1
        for d in dims[:-1]:
            rows *= d
        cols = dims[-1] if dims else 1
        b = bytearray(rows * cols)
        for r in range(rows):
            for c in range(cols):
                seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
                if pat == "smooth":
                    v = int(round(50 * math.sin(r / 9.0) +
                                  40 * math.cos(c / 13.0))) + (seed >> 16) % 3 - 1
                elif pat == "ramp":
                    v = (r + c) % 200 - 100
                else:
                    v = (seed >> 16) % 256 - 128
                b[r * cols + c] = (v + 128) & 0xFF if dtype == "U8" else v & 0xFF
        header[name] = {"dtype": dtype, "shape": dims,
                        "data_offsets": [off, off + len(b)]}
        data.append(bytes(b))
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(data))


def frames(s):
    at = 0
    while at < len(s):
        at += 16
        while True:
            t, _, _, n = struct.unpack_from("<BBHI", s, at)
            yield t, at, n
            at += 12 + n
            if t == 0x0F:
                break


def mutate(field, s):
    s = bytearray(s)
    want = 0x32 if field.startswith("c:") else 0x11
    field = field[2:] if field.startswith("c:") else field
    for t, at, n in frames(bytes(s)):
        if t != want:
            continue
        p = at + 8
        nchunks = struct.unpack_from("<I", s, p + 36)[0]
        if field == "id":
            s[p + 40] = 6
        elif field == "lastid":
            s[p + 40 + nchunks - 1] = 255
        elif field == "count":
            struct.pack_into("<I", s, p + 8, struct.unpack_from("<I", s, p + 8)[0] + 1)
        elif field == "nchunks":
            struct.pack_into("<I", s, p + 36, nchunks + 1)
        elif field == "chunk":
            struct.pack_into("<I", s, p + 32, 0)
        elif field == "reserved":
            s[p + 13] = 1
        elif field == "reserved16":
            s[p + 15] = 0x80
        elif field == "dtype":
            s[p + 12] = 3
        elif field == "wrongdtype":
            s[p + 12] = 3 - s[p + 12]
        elif field == "column":
            s[p + 24:p + 32] = s[p + 16:p + 24]
        elif field == "rowlen":
            struct.pack_into("<Q", s, p + 16, struct.unpack_from("<Q", s, p + 16)[0] + 1)
        elif field == "offset":
            struct.pack_into("<Q", s, p, struct.unpack_from("<Q", s, p)[0] + 1)
        else:
            sys.exit("unknown field " + field)
        struct.pack_into("<I", s, at + 8 + n, zlib.crc32(bytes(s[at:at + 8 + n])))
        return bytes(s)
    sys.exit("no frame of type %#x" % want)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "mk":
        mk(sys.argv[2], sys.argv[3:])
    elif cmd == "types":
        for t, _, _ in frames(sys.stdin.buffer.read()):
            print("%02x" % t)
    elif cmd == "mutate":
        sys.stdout.buffer.write(mutate(sys.argv[2], sys.stdin.buffer.read()))
