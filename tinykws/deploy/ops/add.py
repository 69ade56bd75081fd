"""ADD (same shapes): tkws_add_params from TFLite Micro's Prepare (`kernels.add_params`)."""
from __future__ import annotations

import numpy as np

from ...quant import kernels as K
from .common import base_layer, clamp, finish, select


def build(im, k, op, kernels, loop_order):
    T = im.tensors
    layer = base_layer(im, k, op)
    a, b, out = T[op.inputs[0]], T[op.inputs[1]], T[op.output]
    q = K.add_params(a.scale[0], b.scale[0], out.scale[0])
    amin, amax = clamp(op)
    p = {"size": int(np.prod(out.shape[1:])), "in1_offset": -a.zp, "in2_offset": -b.zp, "left_shift": q["left_shift"],
         "in1_mult": q["m1"], "in1_shift": q["s1"], "in2_mult": q["m2"], "in2_shift": q["s2"],
         "out_mult": q["mo"], "out_shift": q["so"], "out_offset": out.zp, "act_min": amin, "act_max": amax}
    layer.macs = 0
    v = select("add", p, kernels, loop_order)
    return finish(layer, v, p, "tkws_add_params", ["params", "in", "in2", "out", "scratch"])
