"""End-to-end model on the raw 16 kHz waveform (B, samples), no MFCC front end.

``rawcnn``: a learned filterbank (Conv1d 16 ch, kernel 80 = 5 ms, stride 8),
BN + ReLU, max-pool 4 (one frame per 2 ms), then depthwise-separable 1-D
blocks (kernel 9) that halve the time axis, global average pooling and FC.
On 16000 samples: 4.15 M MACs, 37.5 k deployed parameters, peak activation
48 KB at 8 bits (the 16000-sample input plus the 16x2000 stem output).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import ConvBNAct, DepthwiseSeparable, as_signal
from .registry import register_model


class RawCNN(nn.Module):
    input_kind = "raw"

    def __init__(self, num_classes: int = 12, input_shape=(16000,), stem_channels: int = 16,
                 stem_kernel: int = 80, stem_stride: int = 8, pool: int = 4,
                 blocks=((32, 9, 2), (64, 9, 2), (64, 9, 2), (128, 9, 2), (128, 9, 1)),
                 dropout: float = 0.1, act: str = "relu"):
        super().__init__()
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.stem = ConvBNAct(1, stem_channels, stem_kernel, stem_stride, act=act,
                              in_size=self.input_shape, dims=1)
        self.pool = nn.MaxPool1d(pool)
        size, in_ch, layers = (self.stem.out_size[0] // pool,), stem_channels, []
        for ch, k, s in blocks:
            layers.append(DepthwiseSeparable(in_ch, ch, k, s, act=act, in_size=size, dims=1))
            size, in_ch = layers[-1].out_size, ch
        self.blocks = nn.Sequential(*layers)
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(as_signal(x)))
        x = self.gap(self.blocks(x)).flatten(1)
        return self.fc(self.drop(x))


@register_model("rawcnn")
def rawcnn(num_classes=12, input_shape=(16000,), **kw):
    return RawCNN(num_classes, input_shape, **kw)
