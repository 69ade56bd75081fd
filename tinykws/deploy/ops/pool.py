"""AVERAGE_POOL_2D and MAX_POOL_2D: tkws_pool_params."""
from __future__ import annotations

from .common import base_layer, clamp, finish, hwc, select


def build(im, k, op, kernels, loop_order):
    T, o = im.tensors, op.opts
    layer = base_layer(im, k, op)
    ih, iw, c = hwc(T[op.inputs[0]].shape)
    oh, ow, _ = hwc(T[op.output].shape)
    amin, amax = clamp(op)
    p = {"in_h": ih, "in_w": iw, "channels": c, "out_h": oh, "out_w": ow, "f_h": int(o["filter"][0]),
         "f_w": int(o["filter"][1]), "stride_h": int(o["stride"][0]), "stride_w": int(o["stride"][1]),
         "pad_top": int(o["pad"][0]), "pad_left": int(o["pad"][2]), "act_min": amin, "act_max": amax}
    layer.macs = 0  # additions and comparisons, no multiplies (as MACs are counted for the MLPerf DS-CNN)
    v = select(op.kind, p, kernels, loop_order)
    return finish(layer, v, p, "tkws_pool_params", ["params", "in", "out", "scratch"])
