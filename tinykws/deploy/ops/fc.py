"""FULLY_CONNECTED: tkws_fc_params, [out_n][in_n] int8 weights in the variant's layout."""
from __future__ import annotations

import numpy as np

from .common import base_layer, clamp, finish, packed, requant_arrays, select
from .conv import weights_and_bias


def build(im, k, op, kernels, loop_order, pack_weights="off"):
    T = im.tensors
    layer = base_layer(im, k, op)
    w = T[op.inputs[1]].data
    amin, amax = clamp(op)
    p = {"in_n": int(np.prod(T[op.inputs[0]].shape[1:])), "out_n": int(w.shape[0]),
         "in_offset": -T[op.inputs[0]].zp, "out_offset": T[op.output].zp, "act_min": amin, "act_max": amax}
    layer.macs = p["in_n"] * p["out_n"]
    v = packed(layer, "fc", p, im, op, kernels, loop_order, pack_weights, select("fc", p, kernels, loop_order))
    layer.arrays = {**weights_and_bias(im, op, v, p, p["out_n"]), **requant_arrays(im, op, p["out_n"], v, p)}
    return finish(layer, v, p, "tkws_fc_params", ["params", "in", "w", "bias", "mult", "shift", "out", "scratch"])
