"""The C kernel library (`tinykws/deploy/csrc`) described for the generator: for each op family and
its params, which C function runs it, how its weights are laid out, how much scratch it needs, and
whether its bias has the input offset folded in.

    v = select("conv", params, kernels="fast", loop_order="input")
    v.name                        # "tkws_pw_s8_fast" for a 1x1 conv without padding
    w_c, ctype = v.pack(w, params)
    bias_c = v.fold_bias(bias, w, params["in_offset"]) if v.folds_input_offset else bias
    v.scratch_bytes(params)       # bytes of arena the call needs as `scratch`

Params are the dicts of the C params structs (`tkws_conv_params`, `tkws_fc_params`, ...), field
names as in `tkws_nn.h`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

CSRC = Path(__file__).resolve().parent / "csrc"
OP_KINDS = ("conv", "depthwise", "fc", "avgpool", "maxpool", "add", "softmax")
POINTWISE = ("int8", "wide")


class KernelError(ValueError):
    """No kernel variant for the op and options asked for."""


def _zero(_params) -> int:
    return 0


def _as_int8(w, _params):
    return np.ascontiguousarray(np.asarray(w, np.int8)).reshape(-1), "int8_t"


@dataclass(frozen=True)
class KernelVariant:
    name: str  # the C function
    op: str  # op family: conv, depthwise, fc, avgpool, maxpool, add, softmax
    loop_order: str  # input | weight
    folds_input_offset: bool = False  # bias' = bias + in_offset * sum(w) (fold_bias computes it)
    in_place: bool = False  # the output may be written over the (first) input
    scratch: Callable[[dict], int] = _zero
    packer: Callable = _as_int8  # (w, params) -> (flat array, C element type)
    weight_ctype: str = "int8_t"
    fast_requant: bool = False  # reads `shift` as {e, rnd} pairs and params["requant"] (tkws_support.h)
    body: str | None = None  # the inline body the generator instantiates per layer (shape specialization)
    body_header: str | None = None  # the header that defines it
    body_attr: str = ""  # a function attribute macro every function the body is inlined into needs

    def scratch_bytes(self, params: dict) -> int:
        """Bytes of scratch the call needs (0: the call gets NULL)."""
        return int(self.scratch(params))

    def pack_weights(self, w: np.ndarray, params: dict):
        """The weight array as this variant reads it: (flat numpy array, C element type)."""
        return self.packer(np.asarray(w), params)

    pack = pack_weights

    def fold_bias(self, bias, w, in_offset: int) -> np.ndarray:
        """bias + in_offset * (sum of each output channel's weights), int32 (wrapping as the C int32 sum does)."""
        w = np.asarray(w, np.int64)
        sums = w.reshape(-1, w.shape[-1]).sum(axis=0) if self.op == "depthwise" else w.reshape(w.shape[0], -1).sum(axis=1)
        b = np.zeros(len(sums), np.int64) if bias is None else np.asarray(bias, np.int64)
        v = b + int(in_offset) * sums
        return (((v + 2**31) & 0xFFFFFFFF) - 2**31).astype(np.int32)

    @property
    def supports_in_place(self) -> bool:
        return self.in_place

    def pack_requant(self, mult, shift, params: dict, w, bias) -> tuple[np.ndarray, np.ndarray, int]:
        """(mult, shift arrays as the variant reads them, params["requant"]): TFLite's arrays for
        variants without fast requantization; else requant_mode()'s mode and {e, rnd} pairs."""
        mult, shift = np.asarray(mult, np.int64), np.asarray(shift, np.int64)
        if not self.fast_requant:
            return mult.astype(np.int32), shift.astype(np.int32), RQ_EXACT
        mode = requant_mode(w, bias, mult, shift, params, depthwise=self.op == "depthwise")
        if mode == RQ_EXACT:
            pairs = np.stack([shift, np.zeros_like(shift)], axis=1)
        else:
            e = -shift
            pairs = np.stack([e, (1 << (e - 1)) + int(params["out_offset"]) * (1 << e)], axis=1)
        return mult.astype(np.int32), pairs.reshape(-1).astype(np.int32), mode


def supports_in_place(variant: KernelVariant, params: dict) -> bool:
    """Whether `variant` may write its output over its input (the memory planner may share them).

    The fast pointwise kernels widen both pixels of a pass into scratch before writing them, so
    with stride 1, out_c <= in_c and whole groups of 4 input channels (no raw tail reads) the
    outputs of pixels k, k+1 end before pixel k+2's input begins (the wide kernel widens the tails
    too, so any in_c)."""
    if variant.name == "tkws_pw_s8_fast_wide":
        return params.get("stride_h") == params.get("stride_w") == 1 and params["out_c"] <= params["in_c"]
    if variant.name == "tkws_pw_s8_fast":
        return (params.get("stride_h") == params.get("stride_w") == 1 and params["out_c"] <= params["in_c"]
                and params["in_c"] % 4 == 0)
    return bool(variant.in_place)


# ---------------------------------------------------------------------------- requantization

RQ_EXACT, RQ_FAST, RQ_FULL = 0, 1, 2  # TKWS_RQ_* in tkws_support.h


def accumulator_bound(w, bias, in_offset: int, depthwise: bool = False) -> int:
    """The largest |accumulator| any int8 input can give: |bias| + sum|w| * max|x + in_offset|."""
    w = np.abs(np.asarray(w, np.int64))
    sums = w.reshape(-1, w.shape[-1]).sum(axis=0) if depthwise else w.reshape(w.shape[0], -1).sum(axis=1)
    b = np.zeros(len(sums), np.int64) if bias is None else np.abs(np.asarray(bias, np.int64))
    xmax = max(abs(-128 + int(in_offset)), abs(127 + int(in_offset)))
    return int((b + sums * xmax).max()) if len(sums) else 0


def requant_mode(w, bias, mult, shift, params: dict, depthwise: bool = False) -> int:
    """TKWS_RQ_FULL or _FAST where the single-multiply requantization of tkws_support.h is provably
    equal to TFLite's (|acc| < 2^30, every shift a right shift of 1 to 23 bits), else TKWS_RQ_EXACT."""
    shift = np.asarray(shift, np.int64)
    if len(shift) == 0 or shift.max() > -1 or shift.min() < -23:
        return RQ_EXACT
    if accumulator_bound(w, bias, params["in_offset"], depthwise) >= 1 << 30:
        return RQ_EXACT
    return RQ_FULL if (params["act_min"], params["act_max"]) == (-128, 127) else RQ_FAST


# ---------------------------------------------------------------------------- weight packers

def pair_order(n: int) -> np.ndarray:
    """The order SXTB16 widens a row in: each full group of 4 as 0, 2, 1, 3; the tail as is
    (TKWS_PAIR_ORDER in tkws_support.h)."""
    j = np.arange(n)
    n4 = n & ~3
    return np.where(j < n4, (j & ~3) | ((j & 1) << 1) | ((j >> 1) & 1), j)


def pack_wide(w, params):
    """tkws_pw_s8_fast_wide, tkws_conv_s8_fast_wide: weights [out_c][k] (k = k_h*k_w*in_c) as int16
    pairs in the widened row's order (an odd k padded with a zero), 2 output channels' pairs one
    after another: [out_c // 2][(k + 1) // 2][2][2], then an odd last channel's pairs [(k + 1) // 2][2]."""
    w = np.asarray(w, np.int16)
    oc = w.shape[0]
    w = w.reshape(oc, -1)
    k = w.shape[1]
    w = w[:, pair_order(k)]
    if k % 2:
        w = np.concatenate([w, np.zeros((oc, 1), np.int16)], axis=1)
    k2, oc2 = w.shape[1], oc & ~1
    pairs = w[:oc2].reshape(oc2 // 2, 2, k2 // 2, 2).transpose(0, 2, 1, 3).reshape(-1)
    return np.ascontiguousarray(np.concatenate([pairs, w[oc2:].reshape(-1)])), "int16_t"


def pack_conv_fast(w, params):
    """tkws_conv_s8_fast: the OHWI int8 weights reordered (same bytes, no extra flash), k = k_h*k_w*in_c,
    k4 = k & ~3, oc4 = out_c & ~3: block A [oc4/4][k4/4][4 channels][4 bytes], block B the k % 4 tails
    [oc4][k - k4], block C the last out_c % 4 rows whole."""
    w = np.asarray(w, np.int8)
    oc = w.shape[0]
    w = w.reshape(oc, -1)
    k = w.shape[1]
    k4, oc4 = k & ~3, oc & ~3
    a = w[:oc4, :k4].reshape(oc4 // 4, 4, k4 // 4, 4).transpose(0, 2, 1, 3).reshape(-1)
    return np.concatenate([a, w[:oc4, k4:].reshape(-1), w[oc4:].reshape(-1)]).astype(np.int8), "int8_t"


def dw_packed(params) -> bool:
    """tkws_dw_s8_fast's 3x3 path (any C) reads its weights packed (pack_dw_fast)."""
    return params["k_h"] == 3 and params["k_w"] == 3


def pack_dw_fast(w, params):
    """tkws_dw_s8_fast: 3x3 weights [1][3][3][C] widened to int16 as [C/4][9 taps][c0, c2, c1, c3]
    (2x the flash of int8; the SXTB16 halves, one LDRD per tap), then, where C % 4 != 0, the last 4
    channels once more as a group (C > 4) or the channels as [9 taps][C] (C < 4); other shapes as
    stored (int8)."""
    w = np.asarray(w, np.int8)
    if not dw_packed(params):
        return np.ascontiguousarray(w).reshape(-1), "int8_t"
    c = w.shape[-1]
    c4 = c & ~3
    taps = w.reshape(9, c)
    g = taps[:, :c4].reshape(9, c4 // 4, 4).transpose(1, 0, 2)[:, :, [0, 2, 1, 3]]
    if c % 4 and c > 4:  # the last 4 channels again, as one more group (tkws_dw3x3_s8_fast_body)
        tail = taps[:, c - 4:][:, [0, 2, 1, 3]]
    else:  # c < 4: [9 taps][c]
        tail = taps[:, c4:]
    return np.concatenate([g.reshape(-1), tail.reshape(-1)]).astype(np.int16), "int16_t"


# ---------------------------------------------------------------------------- sparse weight formats

SPARSE_MAX_IN_C = 256  # the zero-skip entry holds the input channel in 8 bits


def _words(start: np.ndarray, *parts: np.ndarray) -> np.ndarray:
    """int32 start[out_c + 1] followed by the parts' bytes, padded to whole words."""
    blob = b"".join([np.asarray(start, "<i4").tobytes(), *(np.ascontiguousarray(a).tobytes() for a in parts)])
    blob += b"\0" * (-len(blob) % 4)
    return np.frombuffer(blob, "<i4").astype(np.int32)


def pack_sparse(w, params):
    """tkws_pw_s8_sparse(_wo): for each output channel its nonzero weights, one uint16 each,
    (input channel << 8) | (uint8)value, after int32 start[out_c + 1] (tkws_pw_s8_sparse.h)."""
    w = np.asarray(w, np.int8)
    oc = w.shape[0]
    w = w.reshape(oc, -1)
    if w.shape[1] > SPARSE_MAX_IN_C:
        raise KernelError(f"zero-skip kernels index at most {SPARSE_MAX_IN_C} input channels, got {w.shape[1]}")
    rows, cols = np.nonzero(w)  # row-major: each channel's nonzeros in input order
    start = np.searchsorted(rows, np.arange(oc + 1)).astype(np.int32)
    ent = ((cols.astype(np.uint16) << 8) | w[rows, cols].view(np.uint8).astype(np.uint16)).astype("<u2")
    return _words(start, ent), "int32_t"


def block_mask(w, block: int = 4) -> np.ndarray:
    """[out_c][in_c / block]: whether each 1 x block run along the input channels has a nonzero weight."""
    w = np.asarray(w, np.int8)
    oc = w.shape[0]
    return np.any(w.reshape(oc, -1, block) != 0, axis=2)


def pack_block4(w, params):
    """tkws_pw_s8_block4: int32 start[out_c + 1], one word per kept 1x4 block (its 4 int8 weights
    as stored), one uint16 per kept block: its word offset 8 * group in the widened pixels."""
    w = np.asarray(w, np.int8)
    oc = w.shape[0]
    w = w.reshape(oc, -1)
    if w.shape[1] % 4:
        raise KernelError(f"1x4 block-sparse kernels need in_c a multiple of 4, got {w.shape[1]}")
    rows, groups = np.nonzero(block_mask(w))
    start = np.searchsorted(rows, np.arange(oc + 1)).astype(np.int32)
    blocks = w.reshape(oc, -1, 4)[rows, groups]  # (nb, 4) int8, bytes as stored
    return _words(start, blocks.reshape(-1), (groups * 8).astype("<u2")), "int32_t"


def pack_block8(w, params):
    """tkws_pw_s8_block8: int32 start[out_c + 1], two words per kept 1x8 block (its 8 int8 weights
    as stored), one uint16 per kept block: its word offset 16 * block in the widened pixels."""
    w = np.asarray(w, np.int8)
    oc = w.shape[0]
    w = w.reshape(oc, -1)
    if w.shape[1] % 8:
        raise KernelError(f"1x8 block-sparse kernels need in_c a multiple of 8, got {w.shape[1]}")
    rows, blocks = np.nonzero(block_mask(w, 8))
    start = np.searchsorted(rows, np.arange(oc + 1)).astype(np.int32)
    kept = w.reshape(oc, -1, 8)[rows, blocks]  # (nb, 8) int8, bytes as stored
    return _words(start, kept.reshape(-1), (blocks * 16).astype("<u2")), "int32_t"


def sparsity(w) -> float:
    """The fraction of zero weights."""
    w = np.asarray(w)
    return float(np.mean(w == 0)) if w.size else 0.0


def block_sparsity(w, block: int = 4) -> float:
    """The fraction of 1 x block runs along the input channels that are all zero (0 where in_c % block != 0)."""
    w = np.asarray(w)
    if w.size == 0 or w.reshape(w.shape[0], -1).shape[1] % block:
        return 0.0
    return float(1.0 - np.mean(block_mask(w, block)))


# ---------------------------------------------------------------------------- scratch sizes

def _round4(n: int) -> int:
    return (int(n) + 3) & ~3


def _plane_i32(p):
    return 4 * p["out_h"] * p["out_w"]


def _cols2_i16(p):  # two int16 columns of k (rounded up to even), one int8 column
    k = p["k_h"] * p["k_w"] * p["in_c"]
    return 2 * 2 * ((k + 1) & ~1) + _round4(k)


def _windows2(p):  # two int8 windows of k (each rounded up to 4), then two interleaved int16 columns of k (even)
    k = p["k_h"] * p["k_w"] * p["in_c"]
    return 2 * _round4(k) + 2 * 2 * ((k + 1) & ~1)


def _pw_pixels(p):
    return 2 * 2 * ((p["in_c"] + 1) & ~1)


def _pw_pixels4(p):
    return 4 * 2 * _round4(p["in_c"])


def _sp_plane(p):
    return 4 * p["out_h"] * p["out_w"]


def _fc_in_i16(p):
    return _round4(2 * p["in_n"])


def _fc_out_i32(p):
    return 4 * p["out_n"]


# ---------------------------------------------------------------------------- the variants

def _v(name, op, order, **kw) -> KernelVariant:
    return KernelVariant(name, op, order, **kw)


VARIANTS: dict[str, KernelVariant] = {v.name: v for v in [
    _v("tkws_conv_s8_ref", "conv", "input"),
    _v("tkws_conv_s8_ref_wo", "conv", "weight", scratch=_plane_i32),
    _v("tkws_conv_s8_fast", "conv", "input", folds_input_offset=True, scratch=_cols2_i16, packer=pack_conv_fast,
       fast_requant=True, body="tkws_conv_s8_fast_body", body_header="tkws_conv_s8_fast.h"),
    _v("tkws_conv_s8_fast_wide", "conv", "input", folds_input_offset=True, scratch=_windows2, packer=pack_wide,
       weight_ctype="int16_t", fast_requant=True, body="tkws_conv_s8_fast_wide_body", body_header="tkws_conv_s8_fast.h"),
    _v("tkws_conv_s8_fast_wo", "conv", "weight", folds_input_offset=True, scratch=_plane_i32),
    _v("tkws_pw_s8_fast", "conv", "input", folds_input_offset=True, scratch=_pw_pixels, fast_requant=True,
       body="tkws_pw_s8_fast_body", body_header="tkws_pw_s8_fast.h"),
    _v("tkws_pw_s8_fast_wide", "conv", "input", folds_input_offset=True, scratch=_pw_pixels,
       packer=pack_wide, weight_ctype="int16_t", fast_requant=True, body="tkws_pw_s8_fast_wide_body",
       body_header="tkws_pw_s8_fast.h"),
    _v("tkws_pw_s8_sparse", "conv", "input", folds_input_offset=True, packer=pack_sparse, weight_ctype="int32_t",
       fast_requant=True, body="tkws_pw_s8_sparse_body", body_header="tkws_pw_s8_sparse.h"),
    _v("tkws_pw_s8_sparse_wo", "conv", "weight", folds_input_offset=True, scratch=_sp_plane, packer=pack_sparse,
       weight_ctype="int32_t", fast_requant=True, body="tkws_pw_s8_sparse_wo_body", body_header="tkws_pw_s8_sparse.h"),
    _v("tkws_pw_s8_block4", "conv", "input", folds_input_offset=True, scratch=_pw_pixels4, packer=pack_block4,
       weight_ctype="int32_t", fast_requant=True, body="tkws_pw_s8_block4_body", body_header="tkws_pw_s8_sparse.h"),
    _v("tkws_pw_s8_block8", "conv", "input", folds_input_offset=True, scratch=_pw_pixels4, packer=pack_block8,
       weight_ctype="int32_t", fast_requant=True, body="tkws_pw_s8_block8_body", body_header="tkws_pw_s8_sparse.h"),
    _v("tkws_dw_s8_ref", "depthwise", "input"),
    _v("tkws_dw_s8_ref_wo", "depthwise", "weight", scratch=_plane_i32),
    _v("tkws_dw_s8_fast", "depthwise", "input", folds_input_offset=True, packer=pack_dw_fast, fast_requant=True,
       body="tkws_dw_s8_fast_body", body_header="tkws_dw_s8_fast.h", body_attr="TKWS_DW_FAST_ATTR"),
    _v("tkws_fc_s8_ref", "fc", "input"),
    _v("tkws_fc_s8_ref_wo", "fc", "weight", scratch=_fc_out_i32),
    _v("tkws_fc_s8_fast", "fc", "input", folds_input_offset=True, scratch=_fc_in_i16),
    _v("tkws_fc_s8_fast_wo", "fc", "weight", folds_input_offset=True, scratch=_fc_out_i32),
    _v("tkws_avgpool_s8_ref", "avgpool", "input"),
    _v("tkws_avgpool_s8_fast", "avgpool", "input"),
    _v("tkws_maxpool_s8_ref", "maxpool", "input"),
    _v("tkws_add_s8_ref", "add", "input", in_place=True),
    _v("tkws_softmax_s8_ref", "softmax", "input", in_place=True),
]}


# sub-byte packed weights (tinykws/deploy/subbyte.py, csrc/tkws_subbyte.h): 4 and 2 bits per weight
from .subbyte import PACK_WEIGHTS, weight_bits  # noqa: E402
from .subbyte import conv_scratch as _sb_conv, dw_scratch as _sb_dw, fc_scratch as _sb_fc, pack_s2, pack_s4  # noqa: E402
from .subbyte import pw_scratch as _sb_pw  # noqa: E402

_SB_PACK = {4: pack_s4, 2: pack_s2}
for _b in (4, 2):
    VARIANTS.update({v.name: v for v in [
        _v(f"tkws_conv_s{_b}_ref", "conv", "input", packer=_SB_PACK[_b], weight_ctype="int32_t"),
        _v(f"tkws_conv_s{_b}_fast", "conv", "input", folds_input_offset=True, scratch=_sb_conv(_b),
           packer=_SB_PACK[_b], weight_ctype="int32_t", fast_requant=True, body=f"tkws_conv_s{_b}_fast_body",
           body_header="tkws_subbyte.h"),
        _v(f"tkws_pw_s{_b}_fast", "conv", "input", folds_input_offset=True, scratch=_sb_pw(_b), packer=_SB_PACK[_b],
           weight_ctype="int32_t", fast_requant=True, body=f"tkws_pw_s{_b}_fast_body", body_header="tkws_subbyte.h"),
        _v(f"tkws_dw_s{_b}_ref", "depthwise", "input", packer=_SB_PACK[_b], weight_ctype="int32_t"),
        _v(f"tkws_dw_s{_b}_fast", "depthwise", "input", folds_input_offset=True, scratch=_sb_dw(_b),
           packer=_SB_PACK[_b], weight_ctype="int32_t", fast_requant=True, body=f"tkws_dw_s{_b}_fast_body",
           body_header="tkws_subbyte.h", body_attr="TKWS_DW_FAST_ATTR"),
        _v(f"tkws_fc_s{_b}_ref", "fc", "input", packer=_SB_PACK[_b], weight_ctype="int32_t"),
        _v(f"tkws_fc_s{_b}_fast", "fc", "input", folds_input_offset=True, scratch=_sb_fc(_b), packer=_SB_PACK[_b],
           weight_ctype="int32_t", fast_requant=True, body=f"tkws_fc_s{_b}_fast_body", body_header="tkws_subbyte.h"),
    ]})


def packed_choice(op_kind: str, params: dict, w, bias, kernels: str = "fast", loop_order: str = "input",
                  pack_weights: str = "auto") -> tuple[str | None, str]:
    """(packed kernel variant or None for the int8 one, why) for a conv, depthwise or fc layer with
    weights w.

    auto: weights that fit 4 (2) signed bits get the 4-bit (2-bit) kernels, the reference with
    kernels="ref", the fast one with "fast" where the scaled accumulator of tkws_subbyte.h provably
    fits (|acc| * 2^(8-bits) < 2^31 for any int8 input; depthwise unpacks into scratch, no scaling,
    depth multiplier 1); the weight-prioritized order has no packed kernel (int8 kept)."""
    if pack_weights not in PACK_WEIGHTS:
        raise KernelError(f"pack_weights {pack_weights!r}: use {' or '.join(PACK_WEIGHTS)}")
    if pack_weights == "off" or w is None or op_kind not in ("conv", "depthwise", "fc"):
        return None, "packed weights off"
    bits = weight_bits(w)
    w = np.asarray(w)
    rng = f"weights in [{int(w.min())}, {int(w.max())}]" if w.size else "no weights"
    if bits == 8:
        return None, f"{rng}: 8 bits"
    if loop_order != "input":
        return None, f"{rng}: {bits} bits, but no packed kernel in the {loop_order}-prioritized order"
    fam = {"depthwise": "dw"}.get(op_kind, op_kind)
    if kernels == "ref":
        return f"tkws_{fam}_s{bits}_ref", f"{rng}: {bits}-bit packed"
    if op_kind == "depthwise":
        if params.get("depth_multiplier", 1) != 1:
            return None, f"{rng}: {bits} bits, but the fast packed depthwise kernel needs depth multiplier 1"
        return f"tkws_dw_s{bits}_fast", f"{rng}: {bits}-bit packed (unpacked into scratch per call)"
    bound = accumulator_bound(w, bias, params["in_offset"])
    if bound << (8 - bits) >= 1 << 31:
        return None, f"{rng}: {bits} bits, but the scaled accumulator could overflow (bound {bound})"
    fam = "pw" if op_kind == "conv" and is_pointwise(params) else fam
    return f"tkws_{fam}_s{bits}_fast", f"{rng}: {bits}-bit packed"


def is_pointwise(p: dict) -> bool:
    """A 1x1 conv without padding (any stride): the no-im2col path applies."""
    return p["k_h"] == 1 and p["k_w"] == 1 and p.get("pad_top", 0) == 0 and p.get("pad_left", 0) == 0


# Break-even sparsities of the sparse pointwise kernels against the dense fast (wide) one, measured
# on the emulated Cortex-M7 for a 25x5x64 -> 64 layer (benchmarks/bench_sparse_kernels.py,
# docs/sparse_kernels.md): zero-skip (fraction of zero weights), block-sparse 1x4 (fraction of
# zero blocks), block-sparse 1x8 (fraction of zero 1x8 blocks). Above its break-even a kernel's cost
# is taken as proportional to what it keeps.
ZS_BREAK_EVEN = 0.79  # measured 78.8%
ZS_WO_BREAK_EVEN = 0.92  # weight order, against the same dense SIMD kernel: measured 91.8%
B4_BREAK_EVEN = 0.39  # measured 38.6%
B8_BREAK_EVEN = 0.33  # measured 32.8%
SPARSE = ("off", "auto", "on")


def sparse_choice(params: dict, w, loop_order: str = "input", sparse: str = "auto") -> tuple[str | None, str]:
    """(sparse variant or None for the dense kernel, why) for a pointwise layer with weights w."""
    if sparse not in SPARSE:
        raise KernelError(f"sparse {sparse!r}: use {', '.join(SPARSE)}")
    if sparse == "off" or w is None:
        return None, "sparse kernels off"
    if not is_pointwise(params):
        return None, "not a pointwise layer"
    s, sb, sb8 = sparsity(w), block_sparsity(w), block_sparsity(w, 8)
    ok_zs = params["in_c"] <= SPARSE_MAX_IN_C
    ok_b4 = params["in_c"] % 4 == 0 and loop_order == "input"
    ok_b8 = params["in_c"] % 8 == 0 and loop_order == "input"
    costs = {}  # relative to the dense kernel (1.0)
    if ok_zs:
        if loop_order == "weight":
            costs["tkws_pw_s8_sparse_wo"] = (1 - s) / (1 - ZS_WO_BREAK_EVEN)
        else:
            costs["tkws_pw_s8_sparse"] = (1 - s) / (1 - ZS_BREAK_EVEN)
    if ok_b4:
        costs["tkws_pw_s8_block4"] = (1 - sb) / (1 - B4_BREAK_EVEN)
    if ok_b8:
        costs["tkws_pw_s8_block8"] = (1 - sb8) / (1 - B8_BREAK_EVEN)
    if not costs:
        return None, "no sparse kernel for this shape"
    best = min(costs, key=costs.get)
    why = f"sparsity {s:.0%}, 1x4 block sparsity {sb:.0%}, 1x8 block sparsity {sb8:.0%}"
    if sparse == "auto" and costs[best] >= 1.0:
        return None, why + (f": below the break-even ({ZS_BREAK_EVEN:.0%} zero-skip, {B4_BREAK_EVEN:.0%} 1x4 blocks, "
                            f"{B8_BREAK_EVEN:.0%} 1x8 blocks)")
    return best, why


def select(op_kind: str, params: dict, kernels: str = "ref", loop_order: str = "input",
           pointwise: str = "wide", sparse: str = "off", w=None) -> KernelVariant:
    """The kernel variant for an op family and its params.

    kernels: ref (plain C, TFLite Micro's arithmetic as written) | fast (bias folding, SIMD with
    the DSP extension, no-im2col pointwise); loop_order: input | weight (weight-prioritized, int32
    accumulators in scratch; ops without such a variant keep the input order). pointwise: wide
    (int16 weights, 2x their flash, fewer instructions) | int8 (weights as stored). sparse: off (dense
    kernels) | auto (a fast pointwise layer with weights `w` gets a sparse kernel where it is below
    the dense one's measured cost: sparse_choice) | on (the cheapest sparse kernel that applies)."""
    if op_kind not in OP_KINDS:
        raise KernelError(f"op {op_kind!r}: the kernel library has {', '.join(OP_KINDS)}")
    if kernels not in ("ref", "fast"):
        raise KernelError(f"kernels {kernels!r}: use ref or fast")
    if loop_order not in ("input", "weight"):
        raise KernelError(f"loop order {loop_order!r}: use input or weight")
    if pointwise not in POINTWISE:
        raise KernelError(f"pointwise {pointwise!r}: use {' or '.join(POINTWISE)}")
    if sparse not in SPARSE:
        raise KernelError(f"sparse {sparse!r}: use {', '.join(SPARSE)}")
    wo = loop_order == "weight"
    if op_kind == "conv" and kernels == "fast" and sparse != "off":
        name, _why = sparse_choice(params, w, loop_order, sparse)
        if name is not None:
            return VARIANTS[name]
    if op_kind == "conv":
        if kernels == "ref":
            return VARIANTS["tkws_conv_s8_ref_wo" if wo else "tkws_conv_s8_ref"]
        if wo:
            return VARIANTS["tkws_conv_s8_fast_wo"]
        wide = pointwise == "wide"  # any channel counts: SIMD main body, cheap tails (tkws_gemm.h)
        if is_pointwise(params):
            return VARIANTS["tkws_pw_s8_fast_wide" if wide else "tkws_pw_s8_fast"]
        return VARIANTS["tkws_conv_s8_fast_wide" if wide else "tkws_conv_s8_fast"]
    if op_kind == "depthwise":
        if wo:
            return VARIANTS["tkws_dw_s8_ref_wo"]
        dm = params.get("depth_multiplier", 1)
        return VARIANTS["tkws_dw_s8_fast" if kernels == "fast" and dm == 1 else "tkws_dw_s8_ref"]
    if op_kind == "fc":
        return VARIANTS[f"tkws_fc_s8_{kernels}{'_wo' if wo else ''}"]
    if op_kind == "avgpool" and kernels == "fast":
        return VARIANTS["tkws_avgpool_s8_fast"]
    return VARIANTS[f"tkws_{op_kind}_s8_ref"]


def sources() -> list[Path]:
    """The library's C and header files."""
    return sorted(p for p in CSRC.iterdir() if p.suffix in (".c", ".h"))
