"""Sub-byte (4- and 2-bit) packed weights for the C kernel library: the packing (the layout of
csrc/tkws_subbyte.h), the bit width a layer's weights need, the scratch of the packed kernels and
the per-layer choice the generator makes (`packed_choice`).

    bits = weight_bits(w)              # 2 (all in [-2, 1]), 4 (in [-8, 7]) or 8
    words, ctype = pack_bits(w, 4)     # int32 words, rows of k zero-padded to a multiple of 8

The generator's per-layer choice is tinykws.deploy.kernels.packed_choice.
"""
from __future__ import annotations

import numpy as np

PACK_WEIGHTS = ("off", "auto")
GROUP = {4: 8, 2: 16}  # weights per 32-bit word
RANGES = {2: (-2, 1), 4: (-8, 7)}


def weight_bits(w) -> int:
    """The fewest of 2, 4 or 8 signed bits that hold every weight."""
    w = np.asarray(w)
    if w.size == 0:
        return 8
    lo, hi = int(w.min()), int(w.max())
    for b in (2, 4):
        if RANGES[b][0] <= lo and hi <= RANGES[b][1]:
            return b
    return 8


def pack_bits(w, bits: int) -> tuple[np.ndarray, str]:
    """Rows [out][k] (conv OHWI flattened, fc [out_n][in_n]) zero-padded to a multiple of G = 8 (4
    bits) or 16 (2 bits) and packed little-endian into k/G int32 words per row: byte j of word g
    holds w[G*g + 4*f + j] in bits [b*f, b*f + b) for each field f (tkws_subbyte.h)."""
    if bits not in GROUP:
        raise ValueError(f"packed weights have 4 or 2 bits, not {bits}")
    w = np.asarray(w, np.int64)
    oc = w.shape[0]
    w = w.reshape(oc, -1)
    lo, hi = RANGES[bits]
    if w.size and (w.min() < lo or w.max() > hi):
        raise ValueError(f"weights in [{int(w.min())}, {int(w.max())}] do not fit {bits} signed bits ([{lo}, {hi}])")
    g = GROUP[bits]
    k = w.shape[1]
    kp = -(-k // g) * g
    u = np.zeros((oc, kp), np.uint32)
    u[:, :k] = (w & ((1 << bits) - 1)).astype(np.uint32)
    u = u.reshape(oc, kp // g, g // 4, 4)  # [row][word][field][byte]
    fields = np.arange(g // 4, dtype=np.uint32)[:, None]
    byte = np.arange(4, dtype=np.uint32)[None, :]
    words = (u << (bits * fields + 8 * byte)).sum(axis=(2, 3), dtype=np.uint64).astype(np.uint32)
    return np.ascontiguousarray(words.reshape(-1)).view(np.int32), "int32_t"


def unpack_bits(words, bits: int, rows: int, k: int) -> np.ndarray:
    """The inverse of pack_bits: int8 [rows][k]."""
    g = GROUP[bits]
    v = np.asarray(words, np.int32).view(np.uint32).reshape(rows, -1, 1, 1)
    f = np.arange(g // 4, dtype=np.uint32)[:, None]
    b = np.arange(4, dtype=np.uint32)[None, :]
    u = ((v >> (bits * f + 8 * b)) & ((1 << bits) - 1)).astype(np.int64)
    s = (u ^ (1 << (bits - 1))) - (1 << (bits - 1))
    return s.reshape(rows, -1)[:, :k].astype(np.int8)


def pack_s4(w, params):
    """tkws_*_s4_*: 4-bit packed rows, 8 weights per word."""
    return pack_bits(w, 4)


def pack_s2(w, params):
    """tkws_*_s2_*: 2-bit packed rows, 16 weights per word."""
    return pack_bits(w, 2)


# ---------------------------------------------------------------------------- scratch sizes

def _padded(n: int, bits: int) -> int:
    g = GROUP[bits]
    return -(-int(n) // g) * g


def pw_scratch(bits):
    """Four pixels of int16, in_c padded to the packed row."""
    return lambda p: 4 * 2 * _padded(p["in_c"], bits)


def conv_scratch(bits):
    """Four int8 windows (k rounded up to 4), four int16 columns padded to the packed row."""
    def f(p):
        k = p["k_h"] * p["k_w"] * p["in_c"]
        return 4 * ((k + 3) & ~3) + 4 * 2 * _padded(k, bits)
    return f


def fc_scratch(bits):
    """The input as int16, padded to the packed row."""
    return lambda p: 2 * _padded(p["in_n"], bits)


def dw_scratch(bits):
    """The weights unpacked as tkws_dw_s8_fast reads them: int16 for 3x3 with C % 4 == 0, else int8."""
    def f(p):
        n = p["k_h"] * p["k_w"] * p["out_c"]
        return 2 * n if (p["k_h"], p["k_w"]) == (3, 3) and p["out_c"] % 4 == 0 else (n + 3) & ~3
    return f
