"""Residual keyword spotters built only from ops int8 TFLite Micro and tinykws' C back end run.

``bcresnet`` (Kim et al. 2021, "Broadcasted Residual Learning for Efficient Keyword Spotting"),
MFCC input (B, T, F) laid out as an image with H = time, W = coefficients. Each block:

    h = f2(x)                 frequency-wise depthwise conv (1x3) + norm
    z = f1(avg_freq(h))       average over frequency -> temporal depthwise conv (3x1) + BN + ReLU
                              -> 1x1 conv (+ dropout)
    y = ReLU(x + h + broadcast(z))        (transition blocks: 1x1 conv + BN + ReLU first, no x)

Deployment choices (each keeps the block inside the ops the integer back ends run):

- the paper's SubSpectralNorm is a per-(channel, sub-band) affine after a conv whose weights are
  shared over frequency, so it cannot be folded into that conv; ``bcresnet`` uses BatchNorm
  (SubSpectralNorm with one sub-band), which folds;
- ReLU instead of swish (int8 TFLite has no fused swish);
- no dilation (the quantizer and the C kernels run undilated convolutions only);
- the broadcast of the (C, T, 1) temporal branch over the F frequency bins is a depthwise
  convolution with a fixed all-ones 1xF kernel on the branch zero-padded by F-1 bins on each
  side (``Broadcast``): output bin f sums the padded window [f, f + F - 1], which holds the one
  real value, so every bin gets it. It costs F MACs per output value and exports as PAD +
  DEPTHWISE_CONV_2D (all ones quantize exactly to 127 at scale 1/127); a broadcasting ADD would
  need a shape-aware C add kernel.

Stages follow the paper's table (channels 16/8/12/16/20/32 times the width ``tau``, 2/2/4/4
blocks, frequency stride 2 in the stem and at stages 2 and 3), head: depthwise conv over the
remaining map (5x5 at most, valid), 1x1 conv, average pool, linear layer.

``tcresnet`` (Choi et al. 2019, "Temporal Convolution for Real-time Keyword Spotting on Mobile
Devices"): the MFCC coefficients are the channels of a 1-D temporal convolution. Here the first
layer is a Conv2d with a (3, F) kernel over the (T, F) map (exactly a 3-tap temporal conv from F
input channels), the rest are Conv2d with (k, 1) kernels on (C, T, 1) maps. Blocks: conv k=9
(stride 2 in the first of each stage) + BN + ReLU, conv k=9 + BN, shortcut (identity, or 1x1 conv
stride 2 + BN + ReLU when the shape changes), sum, ReLU. ``tcresnet8`` (3 blocks, 16/24/32/48
channels times the width ``k``) and ``tcresnet14`` (6 blocks).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import ConvBNAct, as_image
from .registry import register_model


class Broadcast(nn.Conv2d):
    """(B, C, T, 1) -> (B, C, T, F): depthwise conv, fixed all-ones (1, F) kernel, F - 1 zero bins
    padded on each side (see the module doc). The kernel is a frozen parameter (a conv to the
    quantizer and the exporters)."""

    def __init__(self, channels: int, bins: int):
        super().__init__(channels, channels, (1, bins), 1, (0, bins - 1), groups=channels, bias=False)
        with torch.no_grad():
            self.weight.fill_(1.0)
        self.weight.requires_grad_(False)
        self.bins = bins


class BCBranch(nn.Module):
    """h = f2(x); returns h + broadcast(f1(avg_freq(h))) (the addition ends this forward, so it is
    quantized on its own grid)."""

    def __init__(self, ch: int, size: tuple, freq_stride: int = 1, dropout: float = 0.1):
        super().__init__()
        self.f2 = ConvBNAct(ch, ch, (1, 3), (1, freq_stride), groups=ch, act=None, in_size=size)
        t, f = self.f2.out_size
        self.pool = nn.AvgPool2d((1, f))
        self.f1 = nn.Sequential(ConvBNAct(ch, ch, (3, 1), groups=ch, act="relu", in_size=(t, 1)),
                                nn.Conv2d(ch, ch, 1), nn.Dropout(dropout))
        self.bcast = Broadcast(ch, f)
        self.out_size = (t, f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.f2(x)
        return h + self.bcast(self.f1(self.pool(h)))


class BCBlock(nn.Module):
    """Normal block: x + branch(x); transition block (channels or frequency size change):
    1x1 conv + BN + ReLU, then the branch without the identity. The ReLU after the sum is the
    next module (fused into the addition on export)."""

    def __init__(self, in_ch: int, out_ch: int, size: tuple, freq_stride: int = 1, dropout: float = 0.1):
        super().__init__()
        self.transition = in_ch != out_ch or freq_stride != 1
        self.pre = ConvBNAct(in_ch, out_ch, 1, act="relu") if self.transition else nn.Identity()
        self.branch = BCBranch(out_ch, size, freq_stride, dropout)
        self.has_skip = not self.transition  # cost counter: the block input stays alive
        self.out_size = self.branch.out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transition:
            return self.branch(self.pre(x))
        return x + self.branch(x)


class BCResNet(nn.Module):
    input_kind = "mfcc"

    def __init__(self, num_classes: int = 12, input_shape=(49, 10), tau: float = 1.0,
                 stem_freq_stride: int = 2, stages=((8, 2, 1), (12, 2, 2), (16, 4, 2), (20, 4, 1)),
                 stem_channels: int = 16, head_channels: int = 32, dropout: float = 0.1,
                 head_dropout: float = 0.0):
        super().__init__()
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        w = lambda c: max(1, int(round(c * tau)))  # noqa: E731
        self.stem = ConvBNAct(1, w(stem_channels), 5, (1, stem_freq_stride), act="relu", in_size=self.input_shape)
        size, in_ch, layers = self.stem.out_size, w(stem_channels), []
        for ch, n, fs in stages:
            for i in range(n):
                blk = BCBlock(in_ch, w(ch), size, fs if i == 0 else 1, dropout)
                layers += [blk, nn.ReLU()]
                size, in_ch = blk.out_size, w(ch)
        self.blocks = nn.Sequential(*layers)
        k = (min(5, size[0]), min(5, size[1]))
        self.head_dw = ConvBNAct(in_ch, in_ch, k, groups=in_ch, act=None, padding="valid")
        self.head_pw = ConvBNAct(in_ch, w(head_channels), 1, act="relu")
        size = (size[0] - k[0] + 1, size[1] - k[1] + 1)
        self.pool = nn.AvgPool2d(size)
        self.drop = nn.Dropout(head_dropout)
        self.fc = nn.Linear(w(head_channels), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(as_image(x)))
        x = self.pool(self.head_pw(self.head_dw(x)))
        return self.fc(self.drop(x.flatten(1)))


@register_model("bcresnet")
def bcresnet(num_classes=12, input_shape=(49, 10), tau: float = 1.0, **kw):
    """BC-ResNet-tau on MFCC features (BC-ResNet-1: tau=1, BC-ResNet-2: tau=2, ...)."""
    return BCResNet(num_classes, input_shape, tau, **kw)


class TCBlock(nn.Module):
    """conv k (stride s) + BN + ReLU, conv k + BN; + shortcut; the ReLU after the sum is the next
    module."""

    def __init__(self, in_ch: int, out_ch: int, length: int, stride: int = 1, kernel: int = 9):
        super().__init__()
        c1 = ConvBNAct(in_ch, out_ch, (kernel, 1), (stride, 1), act="relu", in_size=(length, 1))
        c2 = ConvBNAct(out_ch, out_ch, (kernel, 1), act=None, in_size=c1.out_size)
        self.branch = nn.Sequential(c1, c2)
        if stride != 1 or in_ch != out_ch:
            self.shortcut = ConvBNAct(in_ch, out_ch, 1, (stride, 1), act="relu", in_size=(length, 1))
        else:
            self.shortcut = nn.Identity()
        self.has_skip = True
        self.out_len = c1.out_size[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(x) + self.shortcut(x)


class TCResNet(nn.Module):
    input_kind = "mfcc"

    def __init__(self, num_classes: int = 12, input_shape=(49, 10), width: float = 1.0,
                 channels=(16, 24, 32, 48), blocks_per_stage: int = 1, kernel: int = 9,
                 dropout: float = 0.0):
        super().__init__()
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        t, f = self.input_shape
        ch = [max(1, int(round(c * width))) for c in channels]
        self.stem = ConvBNAct(1, ch[0], (3, f), padding=(1, 0), act=None, bn=False)
        length, in_ch, layers = t, ch[0], []
        for c in ch[1:]:
            for i in range(blocks_per_stage):
                blk = TCBlock(in_ch, c, length, 2 if i == 0 else 1, kernel)
                layers += [blk, nn.ReLU()]
                length, in_ch = blk.out_len, c
        self.blocks = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d((length, 1))
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.blocks(self.stem(as_image(x))))
        return self.fc(self.drop(x.flatten(1)))


@register_model("tcresnet8")
def tcresnet8(num_classes=12, input_shape=(49, 10), width: float = 1.0, **kw):
    """TC-ResNet8 (width 1.5: TC-ResNet8-1.5) on MFCC features, coefficients as channels."""
    return TCResNet(num_classes, input_shape, width, blocks_per_stage=1, **kw)


@register_model("tcresnet14")
def tcresnet14(num_classes=12, input_shape=(49, 10), width: float = 1.0, **kw):
    """TC-ResNet14 (two blocks per stage)."""
    return TCResNet(num_classes, input_shape, width, blocks_per_stage=2, **kw)
