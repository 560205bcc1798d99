#!/usr/bin/python3
"""An independent implementation of formats/lossy.md's quantizers, in
numpy, for t/quant.bats.

  quant.py mk DIR                  writes the fixtures
  quant.py int8 IN OUT             OUT must be int8-quant of IN, byte for byte
  quant.py fp8 IN OUT              the same for fp8-quant
  quant.py deq KIND IN OUT DTYPE   OUT must be KIND-quant -d of IN
                                   (DTYPE 'record': what IN's record says)
  quant.py index DIR               DIR's index names exactly its tensors
  quant.py record FILE             prints the ops of FILE's stpipe.lossy
"""
import json
import os
import struct
import sys

import numpy as np


def read(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop('__metadata__', {})
    t = {}
    for k, v in h.items():
        s, e = v['data_offsets']
        t[k] = (v['dtype'], v['shape'], b[8 + n + s:8 + n + e])
    return meta, t, list(h)


def write(path, tensors, meta=None):
    h, off, blobs = {}, 0, []
    if meta is not None:
        h['__metadata__'] = meta
    for k, (dt, shape, b) in tensors.items():
        h[k] = {'dtype': dt, 'shape': shape, 'data_offsets': [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    j = json.dumps(h).encode()
    j += b' ' * ((8 - (8 + len(j)) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(j)) + j + b''.join(blobs))


def bf16_bits(x):
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def to_f32(dt, shape, b):
    if dt == 'BF16':
        return (np.frombuffer(b, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
    if dt == 'F16':
        return np.frombuffer(b, np.float16).astype(np.float32).reshape(shape)
    if dt == 'F32':
        return np.frombuffer(b, np.float32).reshape(shape)
    if dt == 'I8':
        return np.frombuffer(b, np.int8).astype(np.float32).reshape(shape)
    if dt == 'F8_E4M3':
        return E4M3[np.frombuffer(b, np.uint8)].reshape(shape)
    raise ValueError(dt)


def from_f32(dt, x):
    x = np.ascontiguousarray(x, np.float32)
    if dt == 'BF16':
        return bf16_bits(x).tobytes()
    if dt == 'F16':
        return x.astype(np.float16).tobytes()
    return x.tobytes()


def e4m3_value(c):
    s, e, m = c >> 7, (c >> 3) & 15, c & 7
    v = m * 2.0 ** -9 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7)
    return -v if s else v


E4M3 = np.array([np.nan if c & 0x7F == 0x7F else e4m3_value(c)
                 for c in range(256)], np.float32)
POS = E4M3[:127].astype(np.float64)          # codes 0..126, increasing


def e4m3(x):
    """Nearest E4M3 code, ties to the even code, saturating at 448."""
    a = np.minimum(np.abs(x.astype(np.float64)), 448.0)
    hi = np.clip(np.searchsorted(POS, a), 0, 126)
    lo = np.maximum(hi - 1, 0)
    dlo, dhi = a - POS[lo], POS[hi] - a
    code = np.where(dlo < dhi, lo, hi)
    code = np.where(dlo == dhi, np.where(lo % 2 == 0, lo, hi), code)
    return (code | np.where(np.signbit(x), 0x80, 0)).astype(np.uint8)


def int8_ref(x):
    amax = np.abs(x).max(axis=1)
    scale = (amax / np.float32(127)).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(x / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def fp8_ref(x):
    r, c = x.shape
    br, bc = -(-r // 128), -(-c // 128)
    q = np.zeros((r, c), np.uint8)
    s = np.zeros((br, bc), np.float32)
    for i in range(br):
        for j in range(bc):
            blk = x[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
            amax = np.float32(np.abs(blk).max())
            s[i, j] = amax / np.float32(448) if amax / np.float32(448) > 0 else np.float32(1)
            q[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = e4m3(blk / s[i, j])
    return q, s


def selected(name, shape):
    return (len(shape) == 2 and min(shape) > 0 and 'embed' not in name
            and 'lm_head' not in name)


def fail(msg):
    print('quant.py:', msg)
    sys.exit(1)


def check_quant(kind, src, dst):
    _, a, _ = read(src)
    meta, b, _ = read(dst)
    suffix = '_scale' if kind == 'int8' else '_scale_inv'
    for k, (dt, shape, raw) in a.items():
        if not (dt in ('BF16', 'F16', 'F32') and selected(k, shape)):
            if b.get(k) != (dt, shape, raw):
                fail('%s changed' % k)
            continue
        x = to_f32(dt, shape, raw)
        q, s = int8_ref(x) if kind == 'int8' else fp8_ref(x)
        want = 'I8' if kind == 'int8' else 'F8_E4M3'
        if b[k][0] != want or b[k][2] != q.tobytes():
            fail('%s: quantized bytes differ' % k)
        if b[k + suffix][0] != 'F32' or b[k + suffix][2] != s.tobytes() \
                or b[k + suffix][1] != list(s.shape):
            fail('%s: scales differ' % k)
    steps = json.loads(meta['stpipe.lossy'])
    if steps[-1]['stage'] != kind + '-quant' or steps[-1]['op'] != 'quantize':
        fail('no record')
    print('ok')


def check_deq(kind, src, dst, dtype):
    """dtype 'record': the one the quantizing step recorded."""
    meta, a, _ = read(src)
    rec = {}
    for st in json.loads(meta.get('stpipe.lossy', '[]')):
        if st['stage'] == kind + '-quant' and st['op'] == 'quantize':
            rec.update(st['tensors'])
    _, b, _ = read(dst)
    suffix = '_scale' if kind == 'int8' else '_scale_inv'
    n = 0
    for k, (dt, shape, raw) in a.items():
        if k.endswith(suffix):
            if k in b:
                fail('%s kept' % k)
            continue
        if dt in ('I8', 'F8_E4M3') and k + suffix in a:
            q = to_f32(dt, shape, raw)
            s = to_f32('F32', a[k + suffix][1], a[k + suffix][2])
            if kind == 'int8':
                x = q * s.reshape(-1, 1)
            else:
                x = q * np.repeat(np.repeat(s, 128, 0), 128, 1)[:shape[0], :shape[1]]
            want = rec.get(k, 'BF16') if dtype == 'record' else dtype
            if b[k][0] != want or b[k][2] != from_f32(want, x):
                fail('%s: dequantized bytes differ' % k)
            n += 1
        elif b.get(k) != (dt, shape, raw):
            fail('%s changed' % k)
    print('ok', n)


def check_index(d):
    ix = json.load(open(os.path.join(d, 'model.safetensors.index.json')))
    names, total = {}, 0
    for f in os.listdir(d):
        if f.endswith('.safetensors'):
            _, t, _ = read(os.path.join(d, f))
            for k, v in t.items():
                names[k] = f
                total += len(v[2])
    if ix['weight_map'] != names:
        fail('weight_map differs')
    if ix['metadata']['total_size'] != total:
        fail('total_size %d, tensors %d' % (ix['metadata']['total_size'], total))
    print('ok', len(names))


def mk(d):
    os.makedirs(d, exist_ok=True)
    g = np.random.default_rng(7)
    w = g.standard_normal((200, 300)).astype(np.float32) * 0.02
    w[3] = 0                                    # a zero row: scale 1
    w[5, 7] = 0.5                               # an outlier
    t = {
        'model.embed_tokens.weight': ('BF16', [16, 8], bf16_bits(g.standard_normal((16, 8))).tobytes()),
        'model.layers.0.input_layernorm.weight': ('BF16', [300], bf16_bits(np.ones(300)).tobytes()),
        'model.layers.0.mlp.up_proj.weight': ('BF16', [200, 300], bf16_bits(w).tobytes()),
        'model.layers.0.mlp.down_proj.weight': ('F32', [130, 129], (g.standard_normal((130, 129)) * 3).astype(np.float32).tobytes()),
        'model.layers.0.self_attn.q_proj.weight': ('F16', [64, 32], (g.standard_normal((64, 32)) * 1e-3).astype(np.float16).tobytes()),
        'model.layers.0.counts': ('I32', [4, 4], np.arange(16, dtype=np.int32).tobytes()),
    }
    write(os.path.join(d, 'one.safetensors'), t, {'format': 'pt', 'note': 'kept'})
    # a sharded folder: two shards, an index, a config
    f = os.path.join(d, 'folder')
    os.makedirs(f, exist_ok=True)
    names = list(t)
    shards = {'model-00001-of-00002.safetensors': names[:3],
              'model-00002-of-00002.safetensors': names[3:]}
    wm, total = {}, 0
    for s, ks in shards.items():
        write(os.path.join(f, s), {k: t[k] for k in ks}, {'format': 'pt'})
        for k in ks:
            wm[k] = s
            total += len(t[k][2])
    json.dump({'metadata': {'total_size': total}, 'weight_map': wm},
              open(os.path.join(f, 'model.safetensors.index.json'), 'w'), indent=2)
    open(os.path.join(f, 'config.json'), 'w').write('{"model_type": "llama"}\n')
    # nothing to quantize: must pass byte for byte
    write(os.path.join(d, 'norms.safetensors'),
          {'a.weight': ('BF16', [8], bf16_bits(np.arange(8)).tobytes())})
    # non-finite values
    bad = g.standard_normal((4, 8)).astype(np.float32)
    bad[0, 0], bad[1, 1] = np.nan, np.inf
    write(os.path.join(d, 'nonfinite.safetensors'), {'x.weight': ('F32', [4, 8], bad.tobytes())})


def main():
    cmd = sys.argv[1]
    if cmd == 'mk':
        mk(sys.argv[2])
    elif cmd in ('int8', 'fp8'):
        check_quant(cmd, sys.argv[2], sys.argv[3])
    elif cmd == 'deq':
        check_deq(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    elif cmd == 'index':
        check_index(sys.argv[2])
    elif cmd == 'record':
        meta, _, _ = read(sys.argv[2])
        print(' '.join(s['stage'] + ':' + s['op'] for s in json.loads(meta['stpipe.lossy'])),
              meta.get('note', '-'))


main()
