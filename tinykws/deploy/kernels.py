"""The C kernel library (`tinykws/deploy/csrc`) described for the code generator: for each op and
choice (`ref`/`fast`, input- or weight-prioritized loop order) the C function, the weight layout
it reads (a packer), whether its bias carries the folded input offset, and its scratch bytes.

    v = select("conv", params, kernels="fast", loop_order="input")
    v.name                          # "tkws_pw_s8_fast_wide" for a 1x1 stride-1 unpadded conv
    values, ctype = v.pack_weights(w, params)     # emit `static const ctype w[] = {values}`
    bias = v.fold_bias(bias, w, params["in_offset"]) if v.folds_input_offset else bias
    v.scratch_bytes(params)         # bytes of 4-byte aligned scratch the call needs (0: pass NULL)

`params` is the dict of the op's C params struct fields (`tkws_conv_params`, `tkws_fc_params`,
`tkws_pool_params`, `tkws_add_params`, `tkws_softmax_params` in tkws_nn.h). Every variant of an
op has the same C signature and gives the same int8 outputs as `tinykws.quant.kernels`, bit for
bit (tests/test_deploy_kernels.py). `fast` is the default of the generator: the fastest variant
that applies; `flash="small"` picks the fast variants that need no more flash than int8 weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

CSRC = Path(__file__).resolve().parent / "csrc"
KINDS = ("conv", "depthwise", "fc", "avgpool", "maxpool", "add", "softmax")


def _identity_s8(w: np.ndarray, params: dict):
    return np.ascontiguousarray(w, np.int8).reshape(-1), "int8_t"


def _no_scratch(params: dict) -> int:
    return 0


@dataclass(frozen=True)
class KernelVariant:
    name: str  # the C function
    op: str  # conv, depthwise, fc, avgpool, maxpool, add, softmax
    source: str  # the C file that defines it
    folds_input_offset: bool = False  # the bias must carry in_offset * sum(weights) (see fold_bias)
    in_place: bool = False  # the output may overwrite the (first) input
    pack: Callable = field(default=_identity_s8, repr=False)
    scratch: Callable = field(default=_no_scratch, repr=False)

    def pack_weights(self, w: np.ndarray, params: dict) -> tuple[np.ndarray, str]:
        """The weights in this variant's layout: (flat values, C element type)."""
        return self.pack(np.asarray(w), params)

    def scratch_bytes(self, params: dict) -> int:
        return int(self.scratch(params))

    def fold_bias(self, bias, w: np.ndarray, in_offset: int) -> np.ndarray:
        """bias + in_offset * (sum of each output channel's weights), int32 (wrapping as the C sum)."""
        return fold_bias(self.op, bias, w, in_offset)


def fold_bias(op: str, bias, w: np.ndarray, in_offset: int) -> np.ndarray:
    """The bias with the input offset folded in: the kernel then sums raw int8 inputs times weights
    (padding taps read the raw zero point) and needs no per-MAC offset work."""
    w = np.asarray(w, np.int64)
    if op == "conv":  # OHWI
        s = w.reshape(w.shape[0], -1).sum(axis=1)
    elif op == "depthwise":  # [1][k_h][k_w][out_c]
        s = w.reshape(-1, w.shape[-1]).sum(axis=0)
    elif op == "fc":  # [out_n][in_n]
        s = w.reshape(w.shape[0], -1).sum(axis=1)
    else:
        raise ValueError(f"fold_bias: op {op!r} has no weights")
    b = np.zeros(len(s), np.int64) if bias is None else np.asarray(bias, np.int64)
    v = b + int(in_offset) * s
    return (((v + 2**31) & 0xFFFFFFFF) - 2**31).astype(np.int32)


# ---------------------------------------------------------------------------- packers and scratch

def pack_pw_wide(w: np.ndarray, params: dict):
    """int16 weights for tkws_pw_s8_fast_wide: for each group of 4 output channels (the last one
    zero-filled), for each input-channel pair j (in_c rounded up to even), the words
    (w[oc+g][2j], w[oc+g][2j+1]) for g = 0..3; low half first (little endian)."""
    w = np.asarray(w, np.int16).reshape(w.shape[0], -1)
    oc, k = w.shape
    oc4, k2 = -(-oc // 4) * 4, k + (k & 1)
    full = np.zeros((oc4, k2), np.int16)
    full[:oc, :k] = w
    packed = full.reshape(oc4 // 4, 4, k2 // 2, 2).transpose(0, 2, 1, 3)  # group, pair, g, half
    return np.ascontiguousarray(packed).reshape(-1), "int16_t"


def _k(params: dict) -> int:
    return int(params["k_h"]) * int(params["k_w"]) * int(params["in_c"])


def _r4(n: int) -> int:
    return (int(n) + 3) & ~3


def _scratch_conv_fast(p):  # two int16 columns and one int8 column
    return 2 * 2 * _r4(_k(p)) + _r4(_k(p))


def _scratch_out_map(p):  # one output channel's map of int32 accumulators
    return 4 * int(p["out_h"]) * int(p["out_w"])


def _scratch_pw_fast(p):  # two pixels widened to int16
    return 2 * 2 * _r4(p["in_c"])


def _scratch_pw_wide(p):  # two pixels as int16 pairs
    return 2 * 4 * ((int(p["in_c"]) + 1) // 2)


def _scratch_fc_fast(p):
    return 2 * _r4(p["in_n"])


def _scratch_fc_wo(p):
    return 4 * int(p["out_n"])


def _v(name, op, source, **kw) -> KernelVariant:
    return KernelVariant(name, op, source, **kw)


VARIANTS: dict[str, KernelVariant] = {v.name: v for v in [
    _v("tkws_conv_s8_ref", "conv", "tkws_conv_s8.c"),
    _v("tkws_conv_s8_ref_wo", "conv", "tkws_conv_s8.c", scratch=_scratch_out_map),
    _v("tkws_conv_s8_fast", "conv", "tkws_conv_s8.c", folds_input_offset=True, scratch=_scratch_conv_fast),
    _v("tkws_conv_s8_fast_wo", "conv", "tkws_conv_s8.c", folds_input_offset=True, scratch=_scratch_out_map),
    _v("tkws_pw_s8_fast", "conv", "tkws_pw_s8.c", folds_input_offset=True, scratch=_scratch_pw_fast),
    _v("tkws_pw_s8_fast_wide", "conv", "tkws_pw_s8.c", folds_input_offset=True, pack=pack_pw_wide,
       scratch=_scratch_pw_wide),
    _v("tkws_dw_s8_ref", "depthwise", "tkws_dw_s8.c"),
    _v("tkws_dw_s8_ref_wo", "depthwise", "tkws_dw_s8.c", scratch=_scratch_out_map),
    _v("tkws_dw_s8_fast", "depthwise", "tkws_dw_s8.c", folds_input_offset=True),
    _v("tkws_fc_s8_ref", "fc", "tkws_fc_s8.c"),
    _v("tkws_fc_s8_ref_wo", "fc", "tkws_fc_s8.c", scratch=_scratch_fc_wo),
    _v("tkws_fc_s8_fast", "fc", "tkws_fc_s8.c", folds_input_offset=True, scratch=_scratch_fc_fast),
    _v("tkws_avgpool_s8_ref", "avgpool", "tkws_pool_s8.c"),
    _v("tkws_maxpool_s8_ref", "maxpool", "tkws_pool_s8.c"),
    _v("tkws_add_s8_ref", "add", "tkws_add_s8.c", in_place=True),
    _v("tkws_softmax_s8_ref", "softmax", "tkws_softmax_s8.c", in_place=True),
]}


def is_pointwise(p: dict) -> bool:
    """1x1, stride 1, no padding: the pointwise fast path applies."""
    return (int(p["k_h"]), int(p["k_w"]), int(p["stride_h"]), int(p["stride_w"]), int(p["pad_top"]),
            int(p["pad_left"])) == (1, 1, 1, 1, 0, 0) and (p["in_h"], p["in_w"]) == (p["out_h"], p["out_w"])


def select(op_kind: str, params: dict, kernels: str = "fast", loop_order: str = "input",
           flash: str = "speed") -> KernelVariant:
    """The kernel variant for an op and its params. kernels: ref | fast; loop_order: input | weight;
    flash: speed (the fastest, may store weights pre-widened) | small (int8 weights only)."""
    if op_kind not in KINDS:
        raise ValueError(f"op {op_kind!r}: the kernel library has {', '.join(KINDS)}")
    if kernels not in ("ref", "fast"):
        raise ValueError(f"kernels {kernels!r}: use ref or fast")
    if loop_order not in ("input", "weight"):
        raise ValueError(f"loop order {loop_order!r}: use input or weight")
    if flash not in ("speed", "small"):
        raise ValueError(f"flash {flash!r}: use speed or small")
    wo = loop_order == "weight"
    fast = kernels == "fast"
    if op_kind == "conv":
        if not fast:
            name = "tkws_conv_s8_ref_wo" if wo else "tkws_conv_s8_ref"
        elif wo:
            name = "tkws_conv_s8_fast_wo"
        elif is_pointwise(params):
            name = "tkws_pw_s8_fast_wide" if flash == "speed" else "tkws_pw_s8_fast"
        else:
            name = "tkws_conv_s8_fast"
    elif op_kind == "depthwise":
        dm1 = int(params["out_c"]) == int(params["in_c"])
        name = "tkws_dw_s8_ref_wo" if wo else "tkws_dw_s8_fast" if fast and dm1 else "tkws_dw_s8_ref"
    elif op_kind == "fc":
        name = "tkws_fc_s8_ref_wo" if wo else "tkws_fc_s8_fast" if fast else "tkws_fc_s8_ref"
    else:
        name = {"avgpool": "tkws_avgpool_s8_ref", "maxpool": "tkws_maxpool_s8_ref", "add": "tkws_add_s8_ref",
                "softmax": "tkws_softmax_s8_ref"}[op_kind]
    return VARIANTS[name]


def supports_in_place(variant: KernelVariant, params: dict) -> bool:
    """Whether the variant may write its output over its (first) input."""
    return variant.in_place


def sources() -> list[Path]:
    """The kernel library's files (headers and C sources) that a generated project copies."""
    return sorted(p for p in CSRC.iterdir() if p.suffix in (".c", ".h"))
