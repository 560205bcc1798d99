#!/usr/bin/python3
# mkllama.py DIR: writes tiny random Llama models for t/eval.bats (hidden
# 32, 2 layers, 2 heads, 1 KV head, vocabulary 256), each a folder with
# config.json:
#   f32/        one F32 file
#   bf16/       BF16, two shards and model.safetensors.index.json
#   perturbed/  f32/ with one weight changed
#   missing/    f32/ without model.layers.1.mlp.up_proj.weight
#   tied/       tied embeddings, no lm_head.weight
#   reshaped/   f32/ with lm_head.weight cut to 128 rows
#   badscale/   an INT8 weight whose _scale has one value too few
#   lossy/      the lossy stages' layouts: INT8 with row scales, low-rank
#               factors (one of them INT8), FP8 with 128x128 block scales
# and DIR/text, 600 bytes.
# mkllama.py --ref MODEL TEXT CTX: bits per token of MODEL on TEXT, by a
# forward pass in numpy (float64) written from Hugging Face's
# LlamaForCausalLM, with st-eval's windows of CTX + 1 tokens.
import json
import os
import struct
import sys

import numpy as np

CFG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
       "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
       "num_attention_heads": 2, "num_key_value_heads": 1,
       "hidden_act": "silu", "vocab_size": 256, "rms_norm_eps": 1e-5,
       "rope_theta": 10000.0, "tie_word_embeddings": False}

DT = {"F32": ("<f4", 4), "I8": ("i1", 1), "BF16": (None, 2), "F8_E4M3": (None, 1)}


def bf16_bytes(a):
    u = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
    return r.tobytes()


def e4m3_table():
    v = []
    for b in range(256):
        e, m = (b >> 3) & 15, b & 7
        x = np.nan if (e == 15 and m == 7) else (
            m * 2.0 ** -9 if e == 0 else (8 + m) * 2.0 ** (e - 10))
        v.append(-x if b & 0x80 else x)
    return np.array(v)


def e4m3_bytes(a):
    t = e4m3_table()
    ok = ~np.isnan(t)
    vals, codes = t[ok], np.arange(256)[ok]
    idx = np.abs(a.reshape(-1, 1) - vals.reshape(1, -1)).argmin(axis=1)
    return codes[idx].astype(np.uint8).tobytes()


def write_st(path, tensors):
    """tensors: list of (name, dtype, shape, bytes)."""
    head, off = {}, 0
    for name, dt, shape, data in tensors:
        head[name] = {"dtype": dt, "shape": list(shape),
                      "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(head).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for t in tensors:
            f.write(t[3])


def f32(name, a):
    return (name, "F32", a.shape, np.ascontiguousarray(a, "<f4").tobytes())


def int8(name, a):
    scale = np.abs(a).max(axis=1) / 127
    q = np.clip(np.rint(a / scale[:, None]), -127, 127).astype("i1")
    return [(name, "I8", a.shape, q.tobytes()), f32(name + "_scale", scale.astype("<f4"))]


def fp8(name, a):
    r, c = a.shape
    br, bc = -(-r // 128), -(-c // 128)
    s = np.ones((br, bc), dtype="<f4")
    for i in range(br):
        for j in range(bc):
            blk = a[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
            s[i, j] = np.abs(blk).max() / 448
    full = np.repeat(np.repeat(s, 128, 0), 128, 1)[:r, :c]
    return [(name, "F8_E4M3", a.shape, e4m3_bytes(a / full)),
            f32(name + "_scale_inv", s)]


def random_model(rng, cfg):
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = H // nh
    w = {"model.embed_tokens.weight": rng.standard_normal((V, H)),
         "model.norm.weight": 1 + 0.1 * rng.standard_normal(H)}
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = rng.standard_normal((V, H)) * 0.2
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        for n, shape in (("self_attn.q_proj", (nh * d, H)),
                         ("self_attn.k_proj", (nkv * d, H)),
                         ("self_attn.v_proj", (nkv * d, H)),
                         ("self_attn.o_proj", (H, nh * d)),
                         ("mlp.gate_proj", (I, H)), ("mlp.up_proj", (I, H)),
                         ("mlp.down_proj", (H, I))):
            w[p + n + ".weight"] = rng.standard_normal(shape) / np.sqrt(shape[1]) * 1.5
        w[p + "input_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(H)
        w[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(H)
    return {k: v.astype("<f4") for k, v in w.items()}


def save(folder, cfg, tensors, shards=1):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if shards == 1:
        write_st(os.path.join(folder, "model.safetensors"), tensors)
        return
    half = len(tensors) // 2
    wm = {}
    for k, part in enumerate((tensors[:half], tensors[half:])):
        name = "model-%05d-of-00002.safetensors" % (k + 1)
        write_st(os.path.join(folder, name), part)
        wm.update({t[0]: name for t in part})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": wm}, f, indent=2)


def make(out):
    rng = np.random.default_rng(7)
    w = random_model(rng, CFG)
    save(out + "/f32", CFG, [f32(k, v) for k, v in w.items()])
    save(out + "/bf16", CFG, [(k, "BF16", v.shape, bf16_bytes(v)) for k, v in w.items()], 2)
    p = dict(w)
    p["model.layers.1.mlp.down_proj.weight"] = p["model.layers.1.mlp.down_proj.weight"] * 1.01
    save(out + "/perturbed", CFG, [f32(k, v) for k, v in p.items()])
    save(out + "/missing", CFG, [f32(k, v) for k, v in w.items()
                                 if k != "model.layers.1.mlp.up_proj.weight"])
    r = dict(w)
    r["lm_head.weight"] = r["lm_head.weight"][:128]
    save(out + "/reshaped", CFG, [f32(k, v) for k, v in r.items()])
    bad = [f32(k, v) for k, v in w.items() if not k.endswith("layers.0.self_attn.q_proj.weight")]
    q = int8("model.layers.0.self_attn.q_proj.weight", w["model.layers.0.self_attn.q_proj.weight"])
    q[1] = f32(q[1][0], np.frombuffer(q[1][3], "<f4")[:-1])
    save(out + "/badscale", CFG, bad + q)
    tcfg = dict(CFG, tie_word_embeddings=True)
    tw = random_model(np.random.default_rng(8), tcfg)
    save(out + "/tied", tcfg, [f32(k, v) for k, v in tw.items()])
    lossy = []
    for k, v in w.items():
        if k.endswith("q_proj.weight") or k.endswith("gate_proj.weight"):
            lossy += int8(k, v)
        elif k == "model.layers.0.self_attn.o_proj.weight":
            lossy += [f32(k + "_lr_a", v[:, :8]), f32(k + "_lr_b", np.eye(8, v.shape[1]))]
        elif k == "model.layers.1.mlp.up_proj.weight":
            lossy += int8(k + "_lr_a", v[:, :4] * 3) + [f32(k + "_lr_b", v[:4, :] / 3)]
        elif k.endswith("down_proj.weight"):
            lossy += fp8(k, v)
        else:
            lossy.append(f32(k, v))
    save(out + "/lossy", CFG, lossy)
    text = (b"The quick brown fox jumps over the lazy dog. " * 20)[:400]
    text += bytes(rng.integers(32, 127, 200, dtype=np.uint8))
    with open(out + "/text", "wb") as f:
        f.write(text)


# ---- the reference forward pass ----

def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, t in head.items():
        if k == "__metadata__":
            continue
        b = data[t["data_offsets"][0]:t["data_offsets"][1]]
        if t["dtype"] == "BF16":
            a = (np.frombuffer(b, "<u2").astype("<u4") << 16).view("<f4")
        elif t["dtype"] == "F8_E4M3":
            a = e4m3_table()[np.frombuffer(b, np.uint8)]
        else:
            a = np.frombuffer(b, DT[t["dtype"]][0])
        out[k] = (t["dtype"], a.astype(np.float64).reshape(t["shape"]))
    return out


def load(folder):
    raw = {}
    for n in sorted(os.listdir(folder)):
        if n.endswith(".safetensors"):
            raw.update(read_st(os.path.join(folder, n)))
    w = {}
    for k, (dt, a) in raw.items():
        if k + "_scale" in raw and dt == "I8":
            a = a * raw[k + "_scale"][1].reshape(-1, *([1] * (a.ndim - 1)))
        if k + "_scale_inv" in raw and dt == "F8_E4M3":
            s = raw[k + "_scale_inv"][1]
            a = a * np.repeat(np.repeat(s, 128, 0), 128, 1)[:a.shape[0], :a.shape[1]]
        w[k] = a
    for k in list(w):
        if k.endswith("_lr_a") and k[:-5] not in w:
            w[k[:-5]] = w[k] @ w[k[:-5] + "_lr_b"]
    return w


def rmsnorm(x, g, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g


def forward(w, cfg, tokens):
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    d = cfg.get("head_dim") or H // nh
    eps, theta = cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    T = len(tokens)
    inv = 1.0 / theta ** (np.arange(0, d, 2) / d)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], 1)), np.sin(np.concatenate([ang, ang], 1))

    def rope(x):  # x: heads, T, d
        rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
        return x * cos + rot * sin

    x = w["model.embed_tokens.weight"][tokens]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        h = rmsnorm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, nh, d).transpose(1, 0, 2)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, nkv, d).transpose(1, 0, 2)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, nkv, d).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        k, v = np.repeat(k, nh // nkv, 0), np.repeat(v, nh // nkv, 0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(d) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(1, 0, 2).reshape(T, nh * d)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T


def ref(folder, text, ctx):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    w = load(folder)
    with open(text, "rb") as f:
        toks = np.frombuffer(f.read(), np.uint8).astype(np.int64)
    bits, n = 0.0, 0
    for off in range(0, len(toks), ctx + 1):
        win = toks[off:off + ctx + 1]
        if len(win) < 2:
            break
        lg = forward(w, cfg, win[:-1])
        m = lg.max(-1, keepdims=True)
        lse = (m + np.log(np.exp(lg - m).sum(-1, keepdims=True)))[:, 0]
        bits += ((lse - lg[np.arange(len(win) - 1), win[1:]]) / np.log(2)).sum()
        n += len(win) - 1
    print("bits_per_token: %.6f" % (bits / n))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--ref":
        ref(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) == 2:
        make(sys.argv[1])
    else:
        sys.exit("usage: mkllama.py DIR | mkllama.py --ref MODEL TEXT CTX")
