#!/usr/bin/env python3
"""An independent forward pass (numpy, weights dequantized by gguf-py) of the
architectures Wisp runs, to check Wisp's CPU reference (tests/src/cpu_model.rs) and to
see how far exact arithmetic is from llama.cpp's logits in tests/reference.

    scripts/numpy_forward.py MODEL.gguf REFERENCE_NAME [--reference DIR] [--f32]

prints, for each position of the capital prompt of tests/reference/REFERENCE_NAME.json,
the cosine and max |Δ| between exact arithmetic (f64 by default, f32 with --f32) and
llama.cpp's logits. Shares no code with Wisp. scripts/make_reference.py imports
`NumpyModel` from here for the f32 reference logits (`*.f32ref_logits_last`).
"""
import argparse
import json
from pathlib import Path

import numpy as np
import gguf
from safetensors.numpy import load_file

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "tests" / "reference"


def field(r, key):
    f = r.fields.get(key)
    if f is None:
        return None
    v = f.parts[f.data[0]]
    return v.tobytes().decode() if f.types[0] == gguf.GGUFValueType.STRING else v[0]


class NumpyModel:
    """A GGUF model whose every weight is dequantized to `dtype`; activations stay in `dtype`."""

    def __init__(self, path, dtype=np.float64):
        self.r = gguf.GGUFReader(str(path))
        self.dtype = dtype
        self.arch = field(self.r, "general.architecture")
        self.tensors = {t.name: t for t in self.r.tensors}
        self.cache = {}

    def k(self, name):
        return field(self.r, f"{self.arch}.{name}")

    def get(self, name):
        if name not in self.cache:
            t = self.tensors[name]
            self.cache[name] = gguf.quants.dequantize(t.data, t.tensor_type).astype(self.dtype)
        return self.cache[name]

    def logits(self, ids):
        """Logits [T, vocab] of the token ids, at every position (a causal prefill from 0)."""
        arch, k, get, dt = self.arch, self.k, self.get, self.dtype
        n_layer, d = int(k("block_count")), int(k("embedding_length"))
        nh, nkv = int(k("attention.head_count")), int(k("attention.head_count_kv"))
        hd = int(k("attention.key_length") or d // nh)
        eps = float(k("attention.layer_norm_rms_epsilon"))
        base = float(k("rope.freq_base") or 10000.0)
        window = int(k("attention.sliding_window") or 0)
        neox = arch in ("qwen2", "gemma3")

        def rms(x, g):
            return (x / np.sqrt((x * x).mean(-1, keepdims=True) + dt(eps)) * g).astype(dt)

        def rope(x, pos, b):
            # x: [heads, hd]; the angles in f64, then rounded to the activation type
            inv = b ** (-np.arange(0, hd, 2) / hd)
            c, s = np.cos(pos * inv).astype(dt), np.sin(pos * inv).astype(dt)
            x = x.copy()
            if neox:
                a, bb = x[:, : hd // 2].copy(), x[:, hd // 2 :].copy()
                x[:, : hd // 2], x[:, hd // 2 :] = a * c - bb * s, a * s + bb * c
            else:
                a, bb = x[:, 0::2].copy(), x[:, 1::2].copy()
                x[:, 0::2], x[:, 1::2] = a * c - bb * s, a * s + bb * c
            return x

        T = len(ids)
        emb = get("token_embd.weight")
        x = emb[ids]
        if arch == "gemma3":
            x = x * dt(np.sqrt(d))
        for i in range(n_layer):
            b = lambda n: get(f"blk.{i}.{n}.weight")
            h = rms(x, b("attn_norm"))
            q, kk, v = h @ b("attn_q").T, h @ b("attn_k").T, h @ b("attn_v").T
            if arch == "qwen2":
                q, kk, v = q + get(f"blk.{i}.attn_q.bias"), kk + get(f"blk.{i}.attn_k.bias"), v + get(f"blk.{i}.attn_v.bias")
            q, kk, v = q.reshape(T, nh, hd), kk.reshape(T, nkv, hd), v.reshape(T, nkv, hd)
            if arch == "gemma3":
                q, kk = rms(q, b("attn_q_norm")), rms(kk, b("attn_k_norm"))
            local = arch == "gemma3" and (i + 1) % 6 != 0
            rb = 10000.0 if local else base
            q = np.stack([rope(q[t], t, rb) for t in range(T)])
            kk = np.stack([rope(kk[t], t, rb) for t in range(T)])
            out = np.zeros((T, nh, hd), dtype=dt)
            for t in range(T):
                lo = max(0, t + 1 - window) if (window and (arch != "gemma3" or local)) else 0
                for hh in range(nh):
                    kh = hh // (nh // nkv)
                    sc = kk[lo : t + 1, kh] @ q[t, hh] / dt(np.sqrt(hd))
                    p = np.exp(sc - sc.max())
                    out[t, hh] = (p / p.sum()) @ v[lo : t + 1, kh]
            a = out.reshape(T, nh * hd) @ b("attn_output").T
            if arch == "gemma3":
                a = rms(a, b("post_attention_norm"))
            x = x + a
            h = rms(x, b("ffn_norm"))
            g, u = h @ b("ffn_gate").T, h @ b("ffn_up").T
            if arch == "gemma3":
                act = dt(0.5) * g * (1 + np.tanh(dt(np.sqrt(2 / np.pi)) * (g + dt(0.044715) * g**3)))
            else:
                act = g / (1 + np.exp(-g))
            f = (act * u) @ b("ffn_down").T
            if arch == "gemma3":
                f = rms(f, b("post_ffw_norm"))
            x = x + f
        x = rms(x, get("output_norm.weight"))
        head = get("output.weight") if "output.weight" in self.tensors else emb
        return x @ head.T


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="the GGUF file")
    ap.add_argument("ref_name", help="the reference's name, e.g. smollm2-135m-instruct-q4_1")
    ap.add_argument("--reference", type=Path, default=REFERENCE_DIR, help="the reference folder (default: tests/reference)")
    ap.add_argument("--f32", action="store_true", help="f32 weights and activations instead of f64")
    args = ap.parse_args()
    ref = json.loads((args.reference / f"{args.ref_name}.json").read_text())
    ids = ref["capital"]["ids"]
    logits = NumpyModel(args.model, np.float32 if args.f32 else np.float64).logits(ids)
    theirs = load_file(str(args.reference / f"{args.ref_name}.logits.safetensors"))["capital.llamacpp_logits"]
    for t in range(len(ids)):
        a, b2 = logits[t].astype(np.float64), theirs[t].astype(np.float64)
        cos = a @ b2 / np.linalg.norm(a) / np.linalg.norm(b2)
        print(f"pos {t}: cosine {cos:.6f}, max |Δ| {np.abs(a - b2).max():.3f}, top-1 ours {a.argmax()} llama.cpp {b2.argmax()}")


if __name__ == "__main__":
    main()
