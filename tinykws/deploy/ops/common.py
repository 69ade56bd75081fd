"""What every op module shares: shapes, requantization arrays, and the one place that talks to the
kernel library's description (`tinykws.deploy.kernels`: variant names, packing, scratch, in place)."""
from __future__ import annotations

import numpy as np

from .. import DeployError
from . import CArray, Layer


def hwc(shape) -> tuple[int, int, int]:
    """(H, W, C) of an NHWC shape; a 2-D (1, N) tensor is 1 x 1 x N."""
    s = tuple(int(v) for v in shape[1:])
    if len(s) == 3:
        return s
    if len(s) == 1:
        return 1, 1, s[0]
    if len(s) == 2:
        return 1, s[0], s[1]
    raise DeployError(f"tensor shape {tuple(shape)}: not NHWC or (1, N)")


def requant_arrays(im, op, channels: int, variant=None, params: dict | None = None) -> dict[str, CArray]:
    """Per-output-channel multiplier and shift (TFLite Micro's computation), a per-tensor value
    expanded; in the variant's layout, its requantization mode set as params["requant"]."""
    mult, shift = im._multipliers(op)
    mult, shift = np.asarray(mult, np.int64), np.asarray(shift, np.int64)
    if len(mult) == 1 and channels > 1:
        mult, shift = np.repeat(mult, channels), np.repeat(shift, channels)
    note = "requantization shifts (> 0: left)"
    if variant is not None and params is not None:
        T = im.tensors
        w = T[op.inputs[1]].data
        b = T[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        mult, shift, params["requant"] = variant.pack_requant(mult, shift, params, w, b)
        if variant.fast_requant:
            note = f"requantization {{shift, rounding}} pairs (mode {params['requant']}, tkws_support.h)"
    return {"mult": CArray("int32_t", np.asarray(mult).astype(np.int32), "requantization multipliers (Q31)"),
            "shift": CArray("int32_t", np.asarray(shift).astype(np.int32), note)}


def clamp(op) -> tuple[int, int]:
    return int(op.opts.get("qmin", -128)), int(op.opts.get("qmax", 127))


def base_layer(im, k, op) -> Layer:
    T = im.tensors
    acts = op.inputs[:1] if op.kind in ("conv", "depthwise", "fc") else [i for i in op.inputs if i >= 0 and T[i].data is None]
    return Layer(k, op.kind, T[op.output].name.split(";")[0], acts, op.output, tuple(T[acts[0]].shape),
                 tuple(T[op.output].shape))


# ---------------------------------------------------------------------------- the kernel library

def kernel_lib():
    try:
        from .. import kernels as KL
    except ImportError as exc:
        raise DeployError(f"the kernel library description tinykws.deploy.kernels is missing ({exc})") from None
    return KL


def select(kind: str, params: dict, kernels: str, loop_order: str):
    """The kernel variant for an op family and its params."""
    return kernel_lib().select(kind, params, kernels=kernels, loop_order=loop_order)


def finish(layer: Layer, variant, params: dict, struct: str, args: list[str]) -> Layer:
    """Fill in the kernel call, scratch and in-place facts of a layer from its variant."""
    KL = kernel_lib()
    layer.variant = variant
    layer.kernel = variant.name
    layer.struct = struct
    layer.params = params
    layer.args = args
    layer.scratch_bytes = int(variant.scratch_bytes(params))
    if KL.supports_in_place(variant, params):  # over its first input
        layer.in_place_inputs = tuple(layer.inputs[:1])
    return layer


def packed(layer: Layer, kind: str, params: dict, im, op, kernels: str, loop_order: str, pack_weights: str, variant):
    """The packed-weight variant for a conv/depthwise/fc layer whose weights fit 4 or 2 bits (note set to why),
    else `variant`; layers with int8-range weights keep theirs and get no note."""
    if pack_weights == "off":
        return variant
    KL, T = kernel_lib(), im.tensors
    w = T[op.inputs[1]].data
    b = T[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    name, why = KL.packed_choice(kind, params, w, b, kernels, loop_order, pack_weights)
    if name is not None:
        layer.note = f"{name}: {why}"
        return KL.VARIANTS[name]
    if KL.weight_bits(w) < 8:
        layer.note = f"{variant.name}: {why}"
    return variant
