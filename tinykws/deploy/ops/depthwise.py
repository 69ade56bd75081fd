"""DEPTHWISE_CONV_2D: tkws_conv_params with the depth multiplier, [k_h][k_w][out_c] int8 weights."""
from __future__ import annotations

from .common import base_layer, finish, packed, requant_arrays, select
from .conv import conv_params, weights_and_bias


def build(im, k, op, kernels, loop_order, pack_weights="off"):
    layer = base_layer(im, k, op)
    p = conv_params(im, op)
    p["depth_multiplier"] = int(op.opts.get("depth_multiplier", 1))
    layer.macs = p["out_h"] * p["out_w"] * p["out_c"] * p["k_h"] * p["k_w"]
    v = select("depthwise", p, kernels, loop_order)
    v = packed(layer, "depthwise", p, im, op, kernels, loop_order, pack_weights, v)
    layer.arrays = {**weights_and_bias(im, op, v, p, p["out_c"]), **requant_arrays(im, op, p["out_c"], v, p)}
    return finish(layer, v, p, "tkws_conv_params", ["params", "in", "w", "bias", "mult", "shift", "out", "scratch"])
