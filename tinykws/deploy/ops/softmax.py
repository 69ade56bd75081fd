"""SOFTMAX int8 -> int8 (output scale 1/256, zero point -128): tkws_softmax_params from `kernels.softmax_params`."""
from __future__ import annotations

import numpy as np

from ...quant import kernels as K
from .common import base_layer, finish, select


def build(im, k, op, kernels, loop_order):
    T = im.tensors
    layer = base_layer(im, k, op)
    shape = T[op.inputs[0]].shape
    q = K.softmax_params(T[op.inputs[0]].scale[0], op.opts.get("beta", 1.0))
    depth = int(shape[-1])
    p = {"rows": int(np.prod(shape[1:])) // depth, "depth": depth, "input_multiplier": q["multiplier"],
         "input_left_shift": q["left_shift"], "diff_min": q["diff_min"]}
    v = select("softmax", p, kernels, loop_order)
    return finish(layer, v, p, "tkws_softmax_params", ["params", "in", "out", "scratch"])
