#!/usr/bin/env python3
"""Generate the quantization fixtures in tests/fixtures/quant/.

Wisp's CPU dequantizer (core/src/quant/dequant.rs) and reference quantizers are checked
against an independent implementation: gguf-py's `gguf.quants` (the Python package that
ships with llama.cpp). This script writes, for every type both sides support:

  <TYPE>.bin        raw blocks of deterministic pseudo-random bytes, with sane f16 scales
                    (no NaN/Inf; a few blocks use edge-case scales: +0, -0, the smallest
                    subnormal, the largest finite f16)
  <TYPE>.f32        what `gguf.quants.dequantize` makes of them, little-endian f32

and, for the types Wisp can quantize to,

  quant_input.f32   deterministic f32 values (random blocks at several scales, plus blocks
                    built to hit rounding ties, equal +/- extremes and all zeros)
  <TYPE>.quant.bin  what `gguf.quants.quantize` makes of them

`tests/tests/quant_fixtures.rs` checks Wisp bit-exactly against these files.

Usage (from the repository root; re-running rewrites the same bytes):

    pip install gguf numpy
    python3 scripts/make_quant_fixtures.py

The pseudo-random generator is a pure-Python splitmix64, so the output does not depend on
the numpy version. Total size is about 105 KB.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "quant"

# type -> (bytes per block, elements per block, byte offsets of its f16 scale fields)
DEQUANT_TYPES: dict[str, tuple[int, int, list[int]]] = {
    "F32": (4, 1, []),
    "F16": (2, 1, []),
    "BF16": (2, 1, []),
    "Q4_0": (18, 32, [0]),
    "Q4_1": (20, 32, [0, 2]),
    "Q5_0": (22, 32, [0]),
    "Q5_1": (24, 32, [0, 2]),
    "Q8_0": (34, 32, [0]),
    "IQ4_NL": (18, 32, [0]),
    "Q2_K": (84, 256, [80, 82]),
    "Q3_K": (110, 256, [108]),
    "Q4_K": (144, 256, [0, 2]),
    "Q5_K": (176, 256, [0, 2]),
    "Q6_K": (210, 256, [208]),
}

QUANT_TYPES = ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]

# Blocks per fixture: enough to exercise every scale/sub-block path, small enough to keep
# the whole directory near 100 KB (the budget is 200 KB).
N_SCALAR = 256
N_SMALL_BLOCKS = 32
N_K_BLOCKS = 8
N_QUANT_BLOCKS = 64

# Scales for the first blocks: +0, -0, smallest subnormal, largest finite (f16 bit patterns).
EDGE_SCALES = [0x0000, 0x8000, 0x0001, 0x7BFF]


class SplitMix64:
    def __init__(self, seed: int) -> None:
        self.state = seed & 0xFFFFFFFFFFFFFFFF

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return z ^ (z >> 31)

    def bytes(self, n: int) -> bytearray:
        out = bytearray()
        while len(out) < n:
            out += self.next().to_bytes(8, "little")
        return out[:n]

    def uniform(self) -> float:
        """A float in [0, 1)."""
        return (self.next() >> 11) / float(1 << 53)


def seed_of(name: str) -> int:
    # A stable per-type seed (Python's hash() is randomised per process).
    return int.from_bytes(name.encode().ljust(8, b"\0")[:8], "little")


def sane_f16(rng: SplitMix64) -> int:
    """A finite f16 bit pattern of magnitude 2^-14 .. 2^3, either sign."""
    mag = 2.0 ** (-14 + 17 * rng.uniform())
    sign = -1.0 if rng.next() & 1 else 1.0
    return int(np.array([sign * mag], dtype=np.float16).view(np.uint16)[0])


def finite_scalar_bits(rng: SplitMix64, width: int, exp_mask: int) -> int:
    """A random bit pattern of the given width that is not Inf/NaN (exponent not all ones)."""
    while True:
        v = rng.next() & ((1 << width) - 1)
        if v & exp_mask != exp_mask:
            return v


def dequant_blocks(name: str) -> bytes:
    block_bytes, block_elems, scale_offsets = DEQUANT_TYPES[name]
    rng = SplitMix64(seed_of(name))
    if block_elems == 1:
        width, exp_mask = {"F32": (32, 0x7F800000), "F16": (16, 0x7C00), "BF16": (16, 0x7F80)}[name]
        return b"".join(
            finite_scalar_bits(rng, width, exp_mask).to_bytes(width // 8, "little")
            for _ in range(N_SCALAR)
        )
    n_blocks = N_K_BLOCKS if block_elems == 256 else N_SMALL_BLOCKS
    data = rng.bytes(n_blocks * block_bytes)
    for b in range(n_blocks):
        for k, off in enumerate(scale_offsets):
            # Edge-case scales go in the first field (d) of the first blocks; everything
            # else, including the min fields, gets an ordinary random scale.
            bits = EDGE_SCALES[b] if (k == 0 and b < len(EDGE_SCALES)) else sane_f16(rng)
            struct.pack_into("<H", data, b * block_bytes + off, bits)
    return bytes(data)


def quant_input() -> np.ndarray:
    rng = SplitMix64(seed_of("quantin"))
    blocks = []
    for b in range(N_QUANT_BLOCKS):
        scale = 10.0 ** (-3 + 6 * (b / N_QUANT_BLOCKS))
        blocks.append([(2 * rng.uniform() - 1) * scale for _ in range(32)])
    # Blocks aimed at the rounding rules:
    blocks[0] = [0.0] * 32  # d = 0 must give id = 0
    blocks[1] = [k + 0.5 for k in range(-16, 16)]  # halves; amax 15.5
    blocks[2] = [127.0] + [k + 0.5 for k in range(-15, 16)]  # Q8_0 d = 1: exact ties
    blocks[3] = [15.0, 0.0] + [k * 0.5 for k in range(30)]  # Q4_1 d = 1 with ties
    blocks[4] = [-2.0, 2.0] + [0.25 * k for k in range(-15, 15)]  # equal +/- extremes
    blocks[5] = [-1.0] * 32  # constant block: max == min
    return np.array(blocks, dtype=np.float32).reshape(-1)


def main() -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    total = 0
    for name in DEQUANT_TYPES:
        raw = dequant_blocks(name)
        expected = quants.dequantize(np.frombuffer(raw, dtype=np.uint8), T[name])
        expected = np.asarray(expected, dtype=np.float32).reshape(-1)
        assert np.all(np.isfinite(expected)), name
        (OUT_DIR / f"{name}.bin").write_bytes(raw)
        (OUT_DIR / f"{name}.f32").write_bytes(expected.astype("<f4").tobytes())
        total += len(raw) + expected.size * 4

    values = quant_input()
    (OUT_DIR / "quant_input.f32").write_bytes(values.astype("<f4").tobytes())
    total += values.size * 4
    for name in QUANT_TYPES:
        q = np.asarray(quants.quantize(values, T[name]))
        raw = q.view(np.uint8).tobytes()
        (OUT_DIR / f"{name}.quant.bin").write_bytes(raw)
        total += len(raw)

    print(f"wrote {len(DEQUANT_TYPES) * 2 + 1 + len(QUANT_TYPES)} files, {total} bytes, to {OUT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
