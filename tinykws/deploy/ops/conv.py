"""CONV_2D (and pointwise 1x1): tkws_conv_params, OHWI int8 weights in the variant's layout."""
from __future__ import annotations

import numpy as np

from . import CArray
from .common import base_layer, clamp, finish, hwc, kernel_lib, packed, requant_arrays, select


def conv_params(im, op) -> dict:
    T, o = im.tensors, op.opts
    ih, iw, ic = hwc(T[op.inputs[0]].shape)
    oh, ow, oc = hwc(T[op.output].shape)
    kh, kw = T[op.inputs[1]].shape[1:3]
    amin, amax = clamp(op)
    return {"in_h": ih, "in_w": iw, "in_c": ic, "out_h": oh, "out_w": ow, "out_c": oc, "k_h": int(kh), "k_w": int(kw),
            "stride_h": int(o["stride"][0]), "stride_w": int(o["stride"][1]),
            "pad_top": int(o["pad"][0]), "pad_left": int(o["pad"][2]), "depth_multiplier": 1,
            "in_offset": -T[op.inputs[0]].zp, "out_offset": T[op.output].zp, "act_min": amin, "act_max": amax}


def weights_and_bias(im, op, variant, params, n_out) -> dict[str, CArray]:
    """The weight array as the variant packs it, the int32 bias (input offset folded in where the variant wants)."""
    T = im.tensors
    w = T[op.inputs[1]].data
    b = T[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    b = np.zeros(n_out, np.int32) if b is None else np.asarray(b, np.int32)
    packed = variant.pack_weights(w, params)
    values, ctype = (packed if isinstance(packed, tuple) else (packed, "int8_t"))
    if variant.folds_input_offset:
        b = np.asarray(variant.fold_bias(b, w, params["in_offset"]), np.int32)
    return {"w": CArray(ctype, np.asarray(values), f"weights, {variant.name} layout"),
            "bias": CArray("int32_t", b, "bias" + (" with the input offset folded in" if variant.folds_input_offset else ""))}


def build(im, k, op, kernels, loop_order, sparse="off", pack_weights="off"):
    layer = base_layer(im, k, op)
    p = conv_params(im, op)
    layer.macs = p["out_h"] * p["out_w"] * p["out_c"] * p["k_h"] * p["k_w"] * p["in_c"]
    if sparse != "off" and kernels == "fast":  # optional: dense or sparse pointwise from the weights
        KL, w = kernel_lib(), im.tensors[op.inputs[1]].data
        v = KL.select("conv", p, kernels=kernels, loop_order=loop_order, sparse=sparse, w=w)
        layer.note = f"{v.name}: {KL.sparse_choice(p, w, loop_order, sparse)[1]}"
    else:
        v = select("conv", p, kernels, loop_order)
    if v.name.startswith(("tkws_conv_s8", "tkws_pw_s8_fast")):  # dense int8: 4- or 2-bit packed where they fit
        v = packed(layer, "conv", p, im, op, kernels, loop_order, pack_weights, v)
    layer.arrays = {**weights_and_bias(im, op, v, p, p["out_c"]), **requant_arrays(im, op, p["out_c"], v, p)}
    return finish(layer, v, p, "tkws_conv_params", ["params", "in", "w", "bias", "mult", "shift", "out", "scratch"])
