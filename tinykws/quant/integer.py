"""The integer representation of a quantized model, and the conversion to it.

An `IntModel` is a TFLite-like graph: int8 activation tensors (NHWC, batch 1 in the shapes, any
batch at run time) with a scale and a zero point, int8 weights with per-channel scales, int32
biases, and a list of ops (conv, depthwise, fc, avgpool, maxpool, add, softmax, reshape, pad). Each
op carries its output clamp [qmin, qmax]. Fixed-point multipliers and shifts are derived from the
float32 scales exactly as TFLite Micro's Prepare does, and `run` executes the ops with the
integer reference kernels of `kernels.py`.

    im = to_integer(model)                    # a model prepared and calibrated by quantize_()
    logits_q = im.run(im.quantize_input(features))
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from . import kernels as K
from .graph import Graph, QuantizationError, trace


@dataclass
class QTensor:
    name: str
    shape: tuple
    scale: np.ndarray  # float32, one per tensor or one per output channel
    zero_point: np.ndarray  # int64, same length as scale
    data: np.ndarray | None = None  # constants: int8 weights, int32 biases

    @property
    def zp(self) -> int:
        return int(self.zero_point[0])


@dataclass
class IntOp:
    kind: str  # conv depthwise fc avgpool maxpool add softmax reshape pad
    inputs: list[int]  # tensor indices: activations first, then weights and bias for conv/fc
    output: int
    opts: dict = field(default_factory=dict)  # stride, pad (top, bottom, left, right), filter, qmin, qmax, act, ...


@dataclass
class IntModel:
    tensors: list[QTensor]
    ops: list[IntOp]
    input: int
    output: int
    meta: dict = field(default_factory=dict)  # labels, frontend settings, arch

    # ------------------------------------------------------------------ running
    def quantize_input(self, feats) -> np.ndarray:
        """Float features (B, *feature_shape) -> int8 input tensor (B, *input_shape[1:])."""
        t = self.tensors[self.input]
        x = np.asarray(feats, dtype=np.float32).reshape(len(feats), *t.shape[1:])
        q = K._round_half_away(x / np.float32(t.scale[0])) + t.zp
        return np.clip(q, -128, 127).astype(np.int8)

    def dequantize(self, q: np.ndarray, index: int | None = None) -> np.ndarray:
        t = self.tensors[self.output if index is None else index]
        return (q.astype(np.float32) - t.zp) * np.float32(t.scale[0])

    def run(self, x: np.ndarray, keep: bool = False):
        """int8 input (B, ...) -> int8 output (B, ...); keep=True also returns every tensor."""
        vals = {self.input: np.asarray(x, dtype=np.int8)}
        for op in self.ops:
            vals[op.output] = self._run_op(op, vals)
        return (vals[self.output], vals) if keep else vals[self.output]

    def predict(self, feats, batch_size: int = 512) -> np.ndarray:
        """int8 outputs for float features, in batches."""
        return np.concatenate([self.run(self.quantize_input(feats[i : i + batch_size]))
                               for i in range(0, len(feats), batch_size)])

    def _run_op(self, op: IntOp, vals: dict) -> np.ndarray:
        T, o = self.tensors, op.opts
        x, tin, tout = vals[op.inputs[0]], T[op.inputs[0]], T[op.output]
        qmin, qmax = o.get("qmin", -128), o.get("qmax", 127)
        if op.kind in ("conv", "depthwise", "fc"):
            w, b = T[op.inputs[1]], (T[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] >= 0 else None)
            mult, shift = self._multipliers(op)
            if op.kind == "fc":
                return K.fully_connected(x, tin.zp, w.data, b, mult, shift, tout.zp, qmin, qmax)
            b = b if b is not None else np.zeros(w.shape[0 if op.kind == "conv" else 3], np.int32)
            if op.kind == "conv":
                return K.conv2d(x, tin.zp, w.data, b, o["stride"], o["pad"], mult, shift, tout.zp, qmin, qmax)
            return K.depthwise_conv2d(x, tin.zp, w.data, b, o["stride"], o["pad"], mult, shift, tout.zp, qmin, qmax,
                                      o.get("depth_multiplier", 1))
        if op.kind == "avgpool":
            return K.average_pool(x, o["filter"], o["stride"], o["pad"], qmin, qmax)
        if op.kind == "maxpool":
            return K.max_pool(x, o["filter"], o["stride"], o["pad"], qmin, qmax)
        if op.kind == "add":
            t2 = T[op.inputs[1]]
            if "_add" not in o:
                o["_add"] = K.add_params(tin.scale[0], t2.scale[0], tout.scale[0])
            return K.add(x, tin.zp, vals[op.inputs[1]], t2.zp, o["_add"], tout.zp, qmin, qmax)
        if op.kind == "softmax":
            if "_sm" not in o:
                o["_sm"] = K.softmax_params(tin.scale[0], o.get("beta", 1.0))
            return K.softmax(x, o["_sm"])
        if op.kind == "reshape":
            return x.reshape(x.shape[0], *tout.shape[1:])
        if op.kind == "pad":  # TFLite PAD of an int8 tensor fills with its zero point
            t, b_, l, r = o["pad"]
            return np.pad(x, ((0, 0), (t, b_), (l, r), (0, 0)), constant_values=np.int8(tin.zp))
        raise QuantizationError(f"no integer kernel for op {op.kind!r}")

    def _multipliers(self, op: IntOp):
        """Per-channel (multiplier, shift) as TFLite Micro computes them: double(s_in) * double(s_w[c]) / double(s_out)."""
        if "_mult" not in op.opts:
            s_in = float(np.float32(self.tensors[op.inputs[0]].scale[0]))
            s_out = float(np.float32(self.tensors[op.output].scale[0]))
            ms = [K.quantize_multiplier(s_in * float(np.float32(sw)) / s_out) for sw in self.tensors[op.inputs[1]].scale]
            op.opts["_mult"] = (np.array([m for m, _ in ms], np.int64), np.array([s for _, s in ms], np.int64))
        return op.opts["_mult"]

    # ------------------------------------------------------------------ info
    def summary(self) -> dict:
        """Weight and bias bytes as stored (int8 / int32), and the op list."""
        consts = [t for t in self.tensors if t.data is not None]
        return {"weight_bytes": int(sum(t.data.size for t in consts if t.data.dtype == np.int8)),
                "bias_bytes": int(sum(4 * t.data.size for t in consts if t.data.dtype == np.int32)),
                "ops": [op.kind for op in self.ops]}


# ---------------------------------------------------------------------------- conversion

def _canonical_order(shape: tuple) -> np.ndarray:
    """For a torch value (batch first), the NHWC buffer index of each element in torch order."""
    dims = shape[1:]
    n = math.prod(dims)
    if len(dims) == 3:  # C, H, W -> H, W, C
        c, h, w = dims
        return np.arange(n).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
    if len(dims) == 2:  # C, L -> L, C (a 1-D conv's map as NHWC with H = 1)
        c, l = dims
        return np.arange(n).reshape(l, c).T.reshape(-1)
    return np.arange(n)


def _nhwc(shape: tuple) -> tuple:
    dims = shape[1:]
    if len(dims) == 3:
        return (1, dims[1], dims[2], dims[0])
    if len(dims) == 2:
        return (1, 1, dims[1], dims[0])
    return (1, *dims)


class _Builder:
    def __init__(self):
        self.tensors: list[QTensor] = []
        self.ops: list[IntOp] = []

    def tensor(self, name, shape, scale, zp, data=None) -> int:
        self.tensors.append(QTensor(name, tuple(int(s) for s in shape), np.atleast_1d(np.asarray(scale, np.float32)),
                                    np.atleast_1d(np.asarray(zp, np.int64)), data))
        return len(self.tensors) - 1

    def act(self, name, shape, aq) -> tuple[int, dict]:
        p = aq.qparams()
        return self.tensor(name, shape, p["scale"], p["zero_point"]), p


def _act_kind(aq) -> str:
    return "relu6" if aq.relu6 else "none" if aq.signed else "relu"


@torch.no_grad()
def to_integer(model: nn.Module, meta: dict | None = None) -> IntModel:
    """Convert a model prepared and calibrated by `quantize_` to an IntModel."""
    if getattr(model, "quant_config", None) is None:
        raise QuantizationError(f"{type(model).__name__} is not quantized: run quantize_() (or load a quantized model file)")
    g: Graph = trace(model)
    b = _Builder()
    val: dict[int, int] = {}  # node id -> tensor index
    order: dict[int, np.ndarray] = {}  # node id -> NHWC buffer index of each element in torch order
    pads: dict[int, tuple] = {}  # node id of a zero pad -> (source node id, (top, bottom, left, right))
    clamp: dict[int, tuple] = {}  # tensor index -> (qmin, qmax)

    def src(n_id: int) -> int:
        return val[n_id]

    for node in g:
        op, name = node.op, node.name
        if op == "input":
            if node.quant is None:
                raise QuantizationError("the model input is not quantized")
            shape = (1, *node.shape[1:], 1) if len(node.shape) == 3 else (1, 1, node.shape[1], 1)
            val[node.id], p = b.act("input", shape, node.quant)
            order[node.id] = np.arange(math.prod(node.shape[1:]))
            clamp[val[node.id]] = (p["qmin"], p["qmax"])
            continue
        x = node.inputs[0] if node.inputs else None
        if op in ("identity", "reshape"):
            val[node.id] = val[x]
            o = order[x]
            canon = _canonical_order(node.shape)
            order[node.id] = canon if np.array_equal(o, canon) else o
            continue
        if op in ("relu", "relu6"):
            prod = g.grid_node(x)
            if prod.quant is None or prod.quant.signed:
                raise QuantizationError(f"{op} {name!r} must directly follow a conv/linear layer to be converted "
                                        f"(a ReLU is fused into the layer before it)")
            val[node.id], order[node.id] = val[x], order[x]
            continue
        if op == "pad":
            m = node.module
            p = tuple(m.padding) if len(m.padding) == 4 else (0, 0, *m.padding)  # F.pad order: l, r, t, b
            left, right, top, bottom = p if len(m.padding) == 4 else (p[2], p[3], 0, 0)
            pads[node.id] = (x, (top, bottom, left, right))
            continue
        if op in ("conv", "linear"):
            m = node.module
            pad = (0, 0, 0, 0)
            if x in pads:
                x, pad = pads[x]
            if not np.array_equal(order[x], _canonical_order(g[x].shape)) and op == "conv":
                raise QuantizationError(f"conv {name!r}: its input was reshaped in a way TFLite layouts cannot follow")
            if g.grid_node(x).quant is None:
                raise QuantizationError(f"layer {name!r}: its input is not quantized")
            wq, aq = m.wq, m.aq
            q, s_w = wq.integer(m.weight)
            t_in = b.tensors[val[x]]
            s_in = np.float64(t_in.scale[0])
            bias = m.bias if m.bias is not None else torch.zeros(q.shape[0])
            b_q = np.round(bias.double().numpy() / (s_in * s_w.double().numpy())).astype(np.int64)
            b_q = np.clip(b_q, K.INT32_MIN, K.INT32_MAX).astype(np.int32)
            out, p = b.act(name, _nhwc(node.shape), aq)
            opts = {"qmin": p["qmin"], "qmax": p["qmax"], "act": _act_kind(aq)}
            if op == "linear":
                w = q.numpy()
                if not np.array_equal(order[x], np.arange(w.shape[1])):  # flatten of an NCHW map: permute columns
                    perm = np.empty_like(w)
                    perm[:, order[x]] = w
                    w = perm
                wt = b.tensor(name + ".weight", w.shape, s_w.numpy(), np.zeros(len(s_w)), w.astype(np.int8))
                kind = "fc"
                out_shape = (1, w.shape[0])
                b.tensors[out].shape = out_shape
            else:
                w = q.numpy()
                if w.ndim == 3:  # Conv1d: a 1 x K kernel over an 1 x L map
                    w = w[:, :, None, :]
                    stride, cpad = (1, m.stride[0]), (0, 0, m.padding[0], m.padding[0])
                else:
                    stride, cpad = tuple(m.stride), (m.padding[0], m.padding[0], m.padding[1], m.padding[1])
                pad = tuple(a + c for a, c in zip(pad, cpad))
                depthwise = m.groups > 1 and m.groups == m.in_channels
                if depthwise:  # (O, 1, KH, KW) -> (1, KH, KW, O)
                    w = w.transpose(1, 2, 3, 0)
                    opts["depth_multiplier"] = m.out_channels // m.in_channels
                else:  # (O, I, KH, KW) -> OHWI
                    w = w.transpose(0, 2, 3, 1)
                wt = b.tensor(name + ".weight", w.shape, s_w.numpy(), np.zeros(len(s_w)), np.ascontiguousarray(w, np.int8))
                kind = "depthwise" if depthwise else "conv"
                opts.update(stride=stride, pad=pad)
            bt = b.tensor(name + ".bias", b_q.shape, (s_in * s_w.double().numpy()).astype(np.float32),
                          np.zeros(len(b_q)), b_q)
            b.ops.append(IntOp(kind, [val[x], wt, bt], out, opts))
            val[node.id], order[node.id] = out, _canonical_order(node.shape)
            clamp[out] = (p["qmin"], p["qmax"])
            continue
        if op in ("maxpool", "avgpool"):
            filt, stride, pad = _pool_geometry(node, g[x].shape)
            t = b.tensors[val[x]]
            out = b.tensor(name, _nhwc(node.shape), t.scale, t.zero_point)
            qmin, qmax = clamp[val[x]]
            b.ops.append(IntOp(op, [val[x]], out, {"filter": filt, "stride": stride, "pad": pad,
                                                   "qmin": qmin, "qmax": qmax, "act": "none"}))
            val[node.id], order[node.id] = out, _canonical_order(node.shape)
            clamp[out] = (qmin, qmax)
            continue
        if op == "add":
            if node.quant is None:
                raise QuantizationError(f"the addition in {name!r} is not quantized")
            out, p = b.act(name + ".add", _nhwc(node.shape), node.quant)
            b.ops.append(IntOp("add", [val[i] for i in node.inputs], out,
                               {"qmin": p["qmin"], "qmax": p["qmax"], "act": _act_kind(node.quant)}))
            val[node.id], order[node.id] = out, _canonical_order(node.shape)
            clamp[out] = (p["qmin"], p["qmax"])
            continue
        raise QuantizationError(f"layer {name!r} ({op}) cannot be converted to integer operations")
    out = val[g.output]
    return IntModel(b.tensors, b.ops, 0, out, dict(meta or {}))


def _pool_geometry(node, in_shape) -> tuple:
    """(filter, stride, pad) of a pooling layer in NHWC terms (1-D pools: H = 1)."""
    m, spatial = node.module, in_shape[2:]
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        out = m.output_size if isinstance(m.output_size, tuple) else (m.output_size,) * len(spatial)
        if any(o is None or n % o for n, o in zip(spatial, out)):
            raise QuantizationError(f"adaptive pool {node.name!r}: input {tuple(spatial)} is not a multiple of {out}")
        filt = tuple(n // o for n, o in zip(spatial, out))
        stride, padding = filt, (0,) * len(spatial)
    else:
        k = m.kernel_size
        filt = tuple(k) if isinstance(k, (tuple, list)) else (k,) * len(spatial)
        s = m.stride if m.stride is not None else filt
        stride = tuple(s) if isinstance(s, (tuple, list)) else (s,) * len(spatial)
        p = m.padding
        padding = tuple(p) if isinstance(p, (tuple, list)) else (p,) * len(spatial)
        if getattr(m, "ceil_mode", False) or any(padding) or (isinstance(m, nn.MaxPool2d) and m.dilation not in (1, (1, 1))):
            raise QuantizationError(f"pool {node.name!r}: padding, ceil_mode and dilation are not supported")
        if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)) and m.divisor_override:
            raise QuantizationError(f"pool {node.name!r}: divisor_override is not supported")
    if len(spatial) == 1:
        return (1, filt[0]), (1, stride[0]), (0, 0, 0, 0)
    return filt, stride, (0, 0, 0, 0)
