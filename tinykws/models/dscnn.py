"""DS-CNN keyword spotters on MFCC input (B, T, F).

- ``dscnn_s/m/l``: Hello Edge (Zhang et al. 2017), configs of ARM ML-KWS-for-MCU
  ``train_commands.txt`` (model_size_info):
  S: conv 64 10x4 /(2,2), 4 x DS 64 3x3 /1;
  M: conv 172 10x4 /(2,1), DS 172 3x3 /(2,2), 3 x DS 172 3x3 /1;
  L: conv 276 10x4 /(2,1), DS 276 3x3 /(2,2), 4 x DS 276 3x3 /1.
  All SAME padding, BN + ReLU after every conv, average pool over the whole
  map, FC. The paper's "memory" column (38.6 / 189.2 / 497.6 KB) is 8-bit
  deployed weights (BN folded, biases included) plus the peak activation
  buffer pair; see ``count_cost``.
- ``dscnn_mlperf``: MLPerf Tiny KWS reference (mlcommons/tiny keras_model.py):
  the S topology with dropout 0.2 after the stem and 0.4 before pooling;
  2,656,768 MACs and 22,604 deployed parameters on 49x10 input.

Convs feeding a BatchNorm have no bias (the bias appears when BN is folded),
so module order and weight shapes match the TFLite reference op by op.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import ConvBNAct, DepthwiseSeparable, as_image
from .registry import register_model


class DSCNN(nn.Module):
    """Conv stem, depthwise-separable blocks, average pool over the map, FC.

    ``blocks`` is a sequence of (channels, kernel, stride) for the DS blocks.
    """

    input_kind = "mfcc"

    def __init__(self, num_classes: int = 12, input_shape=(49, 10), channels: int = 64,
                 stem_kernel=(10, 4), stem_stride=(2, 2), blocks=((64, 3, 1),) * 4,
                 dropout: float = 0.0, head_dropout: float = 0.0, act: str = "relu"):
        super().__init__()
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.stem = ConvBNAct(1, channels, stem_kernel, stem_stride, act=act, in_size=self.input_shape)
        self.drop = nn.Dropout(dropout)
        size, in_ch, layers = self.stem.out_size, channels, []
        for ch, k, s in blocks:
            layers.append(DepthwiseSeparable(in_ch, ch, k, s, act=act, in_size=size))
            size, in_ch = layers[-1].out_size, ch
        self.blocks = nn.Sequential(*layers)
        self.head_drop = nn.Dropout(head_dropout)
        self.pool = nn.AvgPool2d(size)  # whole final map, like TFLite AVERAGE_POOL_2D VALID
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.stem(as_image(x)))
        x = self.pool(self.head_drop(self.blocks(x)))
        return self.fc(x.flatten(1))


@register_model("dscnn_s")
def dscnn_s(num_classes=12, input_shape=(49, 10), **kw):
    return DSCNN(num_classes, input_shape, 64, (10, 4), (2, 2), [(64, 3, 1)] * 4, **kw)


@register_model("dscnn_m")
def dscnn_m(num_classes=12, input_shape=(49, 10), **kw):
    blocks = [(172, 3, 2)] + [(172, 3, 1)] * 3
    return DSCNN(num_classes, input_shape, 172, (10, 4), (2, 1), blocks, **kw)


@register_model("dscnn_l")
def dscnn_l(num_classes=12, input_shape=(49, 10), **kw):
    blocks = [(276, 3, 2)] + [(276, 3, 1)] * 4
    return DSCNN(num_classes, input_shape, 276, (10, 4), (2, 1), blocks, **kw)


@register_model("dscnn_mlperf")
def dscnn_mlperf(num_classes=12, input_shape=(49, 10), dropout=0.2, head_dropout=0.4, **kw):
    return DSCNN(num_classes, input_shape, 64, (10, 4), (2, 2), [(64, 3, 1)] * 4,
                 dropout=dropout, head_dropout=head_dropout, **kw)
