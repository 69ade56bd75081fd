"""Plain CNN on MFCC input (B, T, F), in the style of Wang & Li 2022 (KWS on a Cortex-M7).

``cnn_m7``: three 3x3 conv + BN + ReLU layers (32, 32, 64 channels, SAME
padding), 2x2 max-pooling after the first two, then dropout and one dense
layer on the flattened map. On 49x10 input: 1.71 M MACs, 46.5 k deployed
parameters, peak activation 19.5 KB at 8 bits (far below 512 KB SRAM).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import ConvBNAct, as_image
from .registry import register_model


class SmallCNN(nn.Module):
    input_kind = "mfcc"

    def __init__(self, num_classes: int = 12, input_shape=(49, 10), channels=(32, 32, 64),
                 pool=2, dropout: float = 0.2, act: str = "relu"):
        super().__init__()
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        size, in_ch, layers = self.input_shape, 1, []
        for i, ch in enumerate(channels):
            conv = ConvBNAct(in_ch, ch, 3, act=act, in_size=size)
            layers.append(conv)
            size, in_ch = conv.out_size, ch
            if i < len(channels) - 1:  # pool between convs; floor like TFLite VALID
                layers.append(nn.MaxPool2d(pool))
                size = tuple(n // pool for n in size)
        self.features = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_ch * size[0] * size[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(as_image(x))
        return self.fc(self.drop(x.flatten(1)))


@register_model("cnn_m7")
def cnn_m7(num_classes=12, input_shape=(49, 10), **kw):
    return SmallCNN(num_classes, input_shape, **kw)
