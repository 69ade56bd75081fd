"""Reusable convolution blocks for 1-D (raw audio) and 2-D (MFCC) models.

Padding: ``padding="same"`` follows TensorFlow / TFLite SAME semantics: the
output size is ``ceil(in / stride)`` and an odd amount of padding puts the
extra row/column at the bottom/right. Symmetric padding is done by the conv
itself; asymmetric padding by an explicit ``nn.ZeroPad1d/2d`` in front of it,
so every block maps 1:1 onto TFLite CONV_2D / DEPTHWISE_CONV_2D with SAME
padding. With stride 1 the padding does not depend on the input size; with a
larger stride the block needs ``in_size`` (the spatial input size).

Blocks built with a known ``in_size`` expose ``out_size``, which lets model
builders chain them and size the final pooling exactly.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn as nn

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_PAD = {1: nn.ZeroPad1d, 2: nn.ZeroPad2d}


def as_tuple(v, n: int) -> tuple:
    t = tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
    if len(t) != n:
        raise ValueError(f"expected {n} values, got {v!r}")
    return t


def make_act(name: str | None) -> nn.Module | None:
    """'relu' | 'relu6' | None."""
    if name is None or name == "none":
        return None
    acts = {"relu": nn.ReLU, "relu6": nn.ReLU6}
    if name not in acts:
        raise ValueError(f"unknown activation {name!r}; use one of {sorted(acts)} or None")
    return acts[name](inplace=True)


def same_padding(kernel, stride, in_size=None) -> list[tuple[int, int]]:
    """TF 'SAME' padding per spatial dim as (before, after) pairs."""
    pads = []
    for i, (k, s) in enumerate(zip(kernel, stride)):
        if s == 1:
            total = k - 1
        elif in_size is None:
            raise ValueError("padding='same' with stride > 1 needs in_size (the input's spatial size)")
        else:
            n = in_size[i]
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def conv_out_size(in_size, kernel, stride, pads) -> tuple[int, ...]:
    return tuple((n + b + a - k) // s + 1 for n, k, s, (b, a) in zip(in_size, kernel, stride, pads))


class ConvBNAct(nn.Sequential):
    """[ZeroPad] -> Conv -> BatchNorm -> ReLU/ReLU6 (children: pad, conv, bn, act).

    ``padding`` is "same" (TF semantics, see module doc), "valid", or an
    int/tuple of symmetric PyTorch padding. ``act=None`` leaves out the
    activation (e.g. the linear projection of an inverted residual).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel=3, stride=1, groups: int = 1,
                 act: str | None = "relu", padding="same", in_size=None, dims: int = 2,
                 bias: bool = False, bn: bool = True):
        kernel, stride = as_tuple(kernel, dims), as_tuple(stride, dims)
        if in_size is not None:
            in_size = as_tuple(in_size, dims)
        if padding == "same":
            pads = same_padding(kernel, stride, in_size)
        elif padding == "valid":
            pads = [(0, 0)] * dims
        else:
            pads = [(p, p) for p in as_tuple(padding, dims)]
        layers = OrderedDict()
        if all(b == a for b, a in pads):
            conv_pad = tuple(b for b, _ in pads)
        else:  # F.pad order: last dim first
            layers["pad"] = _PAD[dims](tuple(p for ba in reversed(pads) for p in ba))
            conv_pad = 0
        layers["conv"] = _CONV[dims](in_ch, out_ch, kernel, stride, conv_pad, groups=groups,
                                     bias=bias or not bn)
        if bn:
            layers["bn"] = _BN[dims](out_ch)
        a = make_act(act)
        if a is not None:
            layers["act"] = a
        super().__init__(layers)
        self.out_size = None if in_size is None else conv_out_size(in_size, kernel, stride, pads)


class DepthwiseSeparable(nn.Sequential):
    """Depthwise kxk conv + BN + act, then pointwise 1x1 conv + BN + act (children: dw, pw)."""

    def __init__(self, in_ch: int, out_ch: int, kernel=3, stride=1, act: str | None = "relu",
                 padding="same", in_size=None, dims: int = 2):
        dw = ConvBNAct(in_ch, in_ch, kernel, stride, groups=in_ch, act=act, padding=padding,
                       in_size=in_size, dims=dims)
        pw = ConvBNAct(in_ch, out_ch, 1, 1, act=act, dims=dims)
        super().__init__(OrderedDict(dw=dw, pw=pw))
        self.out_size = dw.out_size


class InvertedResidual(nn.Module):
    """MBConv (MobileNetV2): 1x1 expand by ``expand`` -> kxk depthwise -> 1x1 linear project.

    The expand conv is left out when ``expand == 1``. The block adds its input
    to its output when stride is 1 and in_ch == out_ch (``has_skip``; the cost
    counter uses this attribute to keep the block input alive in RAM).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel=3, stride=1, expand: float = 6,
                 act: str | None = "relu6", padding="same", in_size=None, dims: int = 2):
        super().__init__()
        hidden = int(round(in_ch * expand))
        layers = OrderedDict()
        if hidden != in_ch:
            layers["expand"] = ConvBNAct(in_ch, hidden, 1, act=act, dims=dims)
        layers["dw"] = ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=act,
                                 padding=padding, in_size=in_size, dims=dims)
        layers["project"] = ConvBNAct(hidden, out_ch, 1, act=None, dims=dims)
        self.conv = nn.Sequential(layers)
        self.has_skip = all(s == 1 for s in as_tuple(stride, dims)) and in_ch == out_ch
        self.out_size = layers["dw"].out_size
        self.in_ch, self.out_ch, self.kernel, self.stride, self.expand = in_ch, out_ch, kernel, stride, expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.has_skip else y

    def extra_repr(self) -> str:
        return (f"in_ch={self.in_ch}, out_ch={self.out_ch}, kernel={self.kernel}, "
                f"stride={self.stride}, expand={self.expand}, has_skip={self.has_skip}")


MBConv = InvertedResidual


def as_image(x: torch.Tensor) -> torch.Tensor:
    """MFCC features (B, T, F) -> (B, 1, T, F); 4-D input is passed through."""
    return x.unsqueeze(1) if x.dim() == 3 else x


def as_signal(x: torch.Tensor) -> torch.Tensor:
    """Waveform (B, samples) -> (B, 1, samples); 3-D input is passed through."""
    return x.unsqueeze(1) if x.dim() == 2 else x
