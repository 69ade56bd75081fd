"""Deployment cost of a model: parameters, MACs, weight memory, peak activation memory.

Measured with forward hooks on one dummy input (batch 1), model in eval mode.

Counting rules
- MACs: Conv1d/Conv2d = output elements x (in_ch / groups) x kernel size;
  Linear = output elements x in_features. BatchNorm, activations, pooling,
  padding and residual additions count 0 MACs.
- ``params``: trainable parameters, BatchNorm affine parameters included.
  ``params_deployed``: parameters after folding every BatchNorm whose input is
  a conv/linear output into that layer (the layer then has a bias). A norm
  layer that cannot be folded stays as a per-channel scale and shift (2 x C).
- ``weight_bytes``: conv/linear weights at ``weight_bits`` (rounded up per
  layer) plus biases as int32 (4 bytes each, ``bias_bytes``). Unfolded norm
  layers are stored as int32 too; other parameterised layers at ``weight_bits``.
- ``peak_activation_bytes``: for each conv / linear / pooling layer in
  execution order, input bytes + output bytes at ``act_bits`` (the two
  buffers a layer-by-layer runtime keeps alive); the peak is the maximum.
  Explicit zero-padding layers are treated as fused into the following layer
  (its input is counted unpadded, as with TFLite SAME padding). Residual rule:
  a module with a truthy ``has_skip`` attribute (e.g. ``InvertedResidual``)
  keeps its input alive while its inner layers run, so that input is added to
  every inner layer that does not read it directly; the addition itself
  counts block input + branch output + block output.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from ..checks import check_value

_CONV = (nn.Conv1d, nn.Conv2d)
_MATMUL = _CONV + (nn.Linear,)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
         nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
_PAD = (nn.ZeroPad1d, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d)


@dataclass
class LayerCost:
    name: str
    type: str
    macs: int
    params: int
    out_shape: tuple
    weight_bytes: int = 0  # deployed storage (BN folded)
    act_bytes: int = 0  # activation bytes alive while this layer runs


@dataclass
class ModelCost:
    params: int
    params_deployed: int
    macs: int
    weight_bytes: int
    bias_bytes: int
    peak_activation_bytes: int
    peak_layer: str
    weight_bits: int
    act_bits: int
    input_shape: tuple
    layers: list[LayerCost] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        for layer in d["layers"]:
            layer["out_shape"] = list(layer["out_shape"])
        return d

    def summary(self) -> str:
        rows = [f"{'layer':<28}{'type':<18}{'out':>16}{'MACs':>12}{'params':>9}{'w bytes':>9}{'act B':>9}"]
        for l in self.layers:
            rows.append(f"{l.name:<28}{l.type:<18}{'x'.join(map(str, l.out_shape)):>16}"
                        f"{l.macs:>12,}{l.params:>9,}{l.weight_bytes:>9,}{l.act_bytes:>9,}")
        rows.append(f"params {self.params:,} (deployed {self.params_deployed:,}), MACs {self.macs:,}, "
                    f"weights {self.weight_bytes:,} B @{self.weight_bits}b, peak activations "
                    f"{self.peak_activation_bytes:,} B @{self.act_bits}b ({self.peak_layer})")
        return "\n".join(rows)


def _type(m: nn.Module) -> str:
    name = type(m).__name__
    if isinstance(m, _CONV) and m.groups > 1 and m.groups == m.in_channels == m.out_channels:
        return "Depthwise" + name
    return name


BITS = {"lo": 1, "hi": 32}  # bits per stored value


def count_cost(model: nn.Module, input_shape=None, weight_bits: int = 8, act_bits: int = 8) -> ModelCost:
    """Cost of ``model`` on one input of ``input_shape`` (no batch dim; default ``model.input_shape``)."""
    check_value("weight_bits", weight_bits, BITS)
    check_value("act_bits", act_bits, BITS)
    shape = tuple(input_shape if input_shape is not None else model.input_shape)
    abytes = lambda n: math.ceil(n * act_bits / 8)  # noqa: E731
    records: list[tuple[LayerCost, nn.Module]] = []
    keep, live, pad_src, producers, folded = [], [], {}, {}, set()  # folded: conv/linear + BN pairs
    peak = [0, ""]

    def src(t):  # tensor before explicit zero padding
        return pad_src.get(id(t), t)

    def account(name, inp, out):
        n = abytes(inp.numel()) + abytes(out.numel()) + sum(abytes(t.numel()) for t in live if t is not inp)
        if n > peak[0]:
            peak[:] = [n, name]
        return n

    def leaf_hook(name):
        def hook(m, inputs, out):
            if not inputs or not torch.is_tensor(out):
                return
            inp = inputs[0]
            keep.append(out)
            if isinstance(m, _PAD):
                pad_src[id(out)] = src(inp)
                return
            macs = act = 0
            if isinstance(m, _MATMUL):
                k = m.in_features if isinstance(m, nn.Linear) else m.in_channels // m.groups * math.prod(m.kernel_size)
                macs = out.numel() * k
                producers[id(out)] = m
                act = account(name, src(inp), out)
            elif isinstance(m, _POOL):
                act = account(name, src(inp), out)
            elif isinstance(m, _NORM):
                if id(inp) in producers:
                    folded.update((producers[id(inp)], m))
            elif not any(True for _ in m.parameters(recurse=False)):
                if not isinstance(m, (nn.Dropout, nn.Identity)):
                    producers.pop(id(out), None)  # in-place act between conv and BN: no folding
                return  # activations, dropout, flatten: free
            params = sum(p.numel() for p in m.parameters(recurse=False))
            records.append((LayerCost(name, _type(m), macs, params, tuple(out.shape[1:]), 0, act), m))
        return hook

    def skip_pre(m, inputs):
        live.append(src(inputs[0]))

    def skip_post(name):
        def hook(m, inputs, out):
            x = live.pop()  # x + branch output -> sum: three buffers alive
            n = abytes(x.numel()) + 2 * abytes(out.numel()) + sum(abytes(t.numel()) for t in live)
            if n > peak[0]:
                peak[:] = [n, name + ".add"]
        return hook

    handles = []
    for name, m in model.named_modules():
        if not any(True for _ in m.children()):
            handles.append(m.register_forward_hook(leaf_hook(name)))
        elif getattr(m, "has_skip", False):
            handles.append(m.register_forward_pre_hook(skip_pre))
            handles.append(m.register_forward_hook(skip_post(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.randn(1, *shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    deployed = wbytes = bbytes = 0
    seen = set()
    for lc, m in records:
        if id(m) in seen:  # shared module called twice: store its weights once
            continue
        seen.add(id(m))
        if isinstance(m, _MATMUL):
            n_out = m.out_features if isinstance(m, nn.Linear) else m.out_channels
            n_bias = n_out if (m.bias is not None or m in folded) else 0
            lc.weight_bytes = math.ceil(m.weight.numel() * weight_bits / 8) + 4 * n_bias
            deployed += m.weight.numel() + n_bias
            bbytes += 4 * n_bias
        elif isinstance(m, _NORM):
            if m in folded:  # folded into the conv/linear before it
                continue
            deployed += 2 * m.num_features
            lc.weight_bytes = 8 * m.num_features
            bbytes += lc.weight_bytes
        else:
            deployed += lc.params
            lc.weight_bytes = math.ceil(lc.params * weight_bits / 8)
        wbytes += lc.weight_bytes
    return ModelCost(
        params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        params_deployed=deployed,
        macs=sum(lc.macs for lc, _ in records),
        weight_bytes=wbytes,
        bias_bytes=bbytes,
        peak_activation_bytes=peak[0],
        peak_layer=peak[1],
        weight_bits=weight_bits,
        act_bits=act_bits,
        input_shape=shape,
        layers=[lc for lc, _ in records],
    )
