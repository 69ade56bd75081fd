"""Sub-byte (4- and 2-bit) packed weights for the C kernel library: the packing (the layout of
csrc/tkws_subbyte.h), the bit width a layer's weights need, the scratch of the packed kernels and
the per-layer choice the generator makes (`packed_choice`).

    bits = weight_bits(w)              # 2 (all in [-2, 1]), 4 (in [-8, 7]) or 8
    words, ctype = pack_bits(w, 4)     # int32 words, rows of k zero-padded to a multiple of 8
    name, why = packed_choice("conv", params, w, bias, "fast", "input", "auto")
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
    """Two pixels of int16, in_c padded to the packed row."""
    return lambda p: 2 * 2 * _padded(p["in_c"], bits)


def conv_scratch(bits):
    """Two int8 windows (k rounded up to 4), two int16 columns padded to the packed row."""
    def f(p):
        k = p["k_h"] * p["k_w"] * p["in_c"]
        return 2 * ((k + 3) & ~3) + 2 * 2 * _padded(k, bits)
    return f


def fc_scratch(bits):
    """The input as int16, padded to the packed row."""
    return lambda p: 2 * _padded(p["in_n"], bits)


# ---------------------------------------------------------------------------- the choice

def packed_choice(op_kind: str, params: dict, w, bias, kernels: str = "fast", loop_order: str = "input",
                  pack_weights: str = "auto") -> tuple[str | None, str]:
    """(packed kernel variant or None for the int8 one, why) for a conv or fc layer with weights w.

    auto: weights that fit 4 (2) signed bits get the 4-bit (2-bit) kernels, the reference with
    kernels="ref", the fast one with "fast" where the scaled accumulator of tkws_subbyte.h provably
    fits (|acc| * 2^(8-bits) < 2^31 for any int8 input); the weight-prioritized order has no packed
    kernel (int8 kept)."""
    if pack_weights not in PACK_WEIGHTS:
        raise ValueError(f"pack_weights {pack_weights!r}: use {' or '.join(PACK_WEIGHTS)}")
    if pack_weights == "off" or w is None or op_kind not in ("conv", "fc"):
        return None, "packed weights off"
    bits = weight_bits(w)
    w = np.asarray(w)
    rng = f"weights in [{int(w.min())}, {int(w.max())}]" if w.size else "no weights"
    if bits == 8:
        return None, f"{rng}: 8 bits"
    if loop_order != "input":
        return None, f"{rng}: {bits} bits, but no packed kernel in the {loop_order}-prioritized order"
    if kernels == "ref":
        return f"tkws_{op_kind}_s{bits}_ref", f"{rng}: {bits}-bit packed"
    from .kernels import accumulator_bound, is_pointwise  # the int8 library's bound (same arithmetic)

    bound = accumulator_bound(w, bias, params["in_offset"])
    if bound << (8 - bits) >= 1 << 31:
        return None, f"{rng}: {bits} bits, but the scaled accumulator could overflow (bound {bound})"
    fam = "pw" if op_kind == "conv" and is_pointwise(params) else op_kind
    return f"tkws_{fam}_s{bits}_fast", f"{rng}: {bits}-bit packed"
