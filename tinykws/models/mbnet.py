"""MBConv networks decoded from architecture strings (the models that neural architecture search finds).

``mbnet`` (MFCC input (B, T, F)), the search space of Peter, Roth & Pernkopf:

- stem: Conv 5x11 (5 along the MFCC axis, 11 along time), stride 2 along time, 72 channels,
  BN, ReLU6. The papers lay features out as (coefficients, frames); tinykws uses (frames,
  coefficients), so the same convolution has kernel (11, 5) and stride (2, 1) here;
- one MBConv block (``ir_k<k>_e<e>``) or nothing (``skip``) per searchable layer, 72 channels,
  the first block with stride 2 (no residual there; residuals wherever shapes match; a stride
  token such as ``s1x2`` in the architecture string sets another first stride);
- 1x1 conv to 144 channels, BN, ReLU6, average pooling over the whole map, dropout, FC.

``mbnet_raw`` (raw 16 kHz waveform (B, samples)), the end-to-end space: a learnable front
end (strided Conv1d, or SincNet band-pass filters) with BN, ReLU and max-pooling, then 1-D
MBConv blocks (48 channels, the first with stride 2), 1x1 conv to 96 channels, pooling, FC.

Channel counts are scaled by the string's width multiplier ``w<omega>``. The string format
is described in :mod:`tinykws.models.arch`; for example::

    create_model("mbnet", arch="w0.5-ir_k3_e2-ir_k5_e3-skip-skip")
    create_model("mbnet_raw", input_shape=(16000,), arch="w1-sinc_c16_k63_s32_p4-ir_k5_e2-ir_k3_e1")
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .arch import ArchError, parse_arch, scaled
from .blocks import ConvBNAct, InvertedResidual, as_image, as_signal, as_tuple
from .registry import register_model

MFCC_CHANNELS, MFCC_HEAD = 72, 144
RAW_CHANNELS, RAW_HEAD = 48, 96
MFCC_STEM_KERNEL, MFCC_STEM_STRIDE = (11, 5), (2, 1)
DEFAULT_ARCH = "w0.5-ir_k3_e3-ir_k5_e3-ir_k3_e2-skip-skip-skip-skip-skip-skip-skip-skip-skip"
DEFAULT_RAW_ARCH = "w1-conv_c16_k64_s32_p4-ir_k5_e2-ir_k5_e2-ir_k3_e2-skip-skip-skip-skip-skip-skip-skip-skip-skip"


class SincConv1d(nn.Conv1d):
    """SincNet band-pass filters (Ravanelli & Bengio 2018) on a mono waveform (B, 1, samples).

    Each output channel is an ideal band-pass filter between a learned low cut-off and a learned
    bandwidth, Hamming-windowed: 2 parameters per channel instead of ``kernel_size``. It is a
    Conv1d for everything else: ``weight`` holds the current filters (refreshed by every forward
    call, not saved in the state dict), so cost counting and export treat it as a normal conv.
    """

    def __init__(self, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 sample_rate: int = 16000, min_low_hz: float = 30.0, min_band_hz: float = 50.0):
        super().__init__(1, out_channels, kernel_size, stride, padding, bias=False)
        del self.weight
        self.register_buffer("weight", torch.zeros(out_channels, 1, kernel_size), persistent=False)
        self.sample_rate, self.min_low_hz, self.min_band_hz = sample_rate, min_low_hz, min_band_hz
        mel = torch.linspace(_hz2mel(min_low_hz), _hz2mel(sample_rate / 2 - min_low_hz - min_band_hz), out_channels + 1)
        hz = _mel2hz(mel)
        self.low_hz_ = nn.Parameter((hz[:-1] - min_low_hz).unsqueeze(1))
        self.band_hz_ = nn.Parameter(torch.diff(hz).unsqueeze(1))
        self.register_buffer("t_", (torch.arange(kernel_size) - (kernel_size - 1) / 2) / sample_rate, persistent=False)
        self.register_buffer("window_", torch.hamming_window(kernel_size, periodic=False), persistent=False)
        with torch.no_grad():
            self.weight.copy_(self.filters())

    def filters(self) -> torch.Tensor:
        low = self.min_low_hz + self.low_hz_.abs()
        high = (low + self.min_band_hz + self.band_hz_.abs()).clamp(max=self.sample_rate / 2)
        t = self.t_.unsqueeze(0)
        h = 2 * high * torch.sinc(2 * high * t) - 2 * low * torch.sinc(2 * low * t)
        h = h * self.window_ / (2 * (high - low))
        return h.unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.filters()
        with torch.no_grad():
            self.weight.copy_(w)
        return F.conv1d(x, w, None, self.stride, self.padding)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        with torch.no_grad():
            self.weight.copy_(self.filters())


def _hz2mel(f):
    return 2595 * math.log10(1 + f / 700)


def _mel2hz(m):
    return 700 * (10 ** (m / 2595) - 1)


def make_block(block, in_ch: int, out_ch: int, stride: int, in_size, dims: int) -> nn.Module:
    """The module of one searchable layer: an InvertedResidual, or Identity for ``skip``."""
    if block.is_skip:
        if any(v != 1 for v in as_tuple(stride, dims)) or in_ch != out_ch:
            raise ValueError(f"a skipped layer cannot change the shape (stride {stride}, {in_ch} -> {out_ch} channels)")
        m = nn.Identity()
        m.out_size = tuple(in_size)
        return m
    return InvertedResidual(in_ch, out_ch, block.kernel, stride, block.expand, act="relu6", in_size=in_size, dims=dims)


def make_mfcc_stem(width: float, input_shape, kernel=MFCC_STEM_KERNEL, stride=MFCC_STEM_STRIDE,
                   channels: int = MFCC_CHANNELS) -> ConvBNAct:
    return ConvBNAct(1, scaled(channels, width), kernel, stride, act="relu6", in_size=tuple(input_shape))


def make_raw_frontend(fe, input_shape, sample_rate: int = 16000) -> nn.Sequential:
    """Front end of a raw model: conv (or sinc) + BN + ReLU [+ max-pool]; ``out_size`` is set."""
    stem = ConvBNAct(1, fe.channels, fe.kernel, fe.stride, act="relu", in_size=tuple(input_shape), dims=1)
    if fe.kind == "sinc":
        c = stem.conv
        stem.conv = SincConv1d(fe.channels, fe.kernel, fe.stride, c.padding[0], sample_rate)
    size = stem.out_size
    layers = [stem]
    if fe.pool > 1:
        layers.append(nn.MaxPool1d(fe.pool))
        size = (size[0] // fe.pool,)
    if size[0] < 2:
        raise ValueError(f"front end {fe} leaves {size[0]} frames of {input_shape[0]} samples; use a smaller stride or pool")
    seq = nn.Sequential(*layers)
    seq.out_size = size
    return seq


class MBNet(nn.Module):
    """Stem (or learnable front end), searchable MBConv layers, 1x1 head conv, pooling, FC.

    ``blocks`` has one entry per searchable layer (skipped layers are ``nn.Identity``), so module
    names match the layer positions of the search space.
    """

    def __init__(self, arch, num_classes: int = 12, input_shape=(49, 10), raw: bool = False,
                 channels: int | None = None, head_channels: int | None = None, dropout: float = 0.1,
                 sample_rate: int = 16000, stem_dropout: float = 0.0):
        super().__init__()
        a = parse_arch(arch)
        self.input_shape, self.num_classes, self.raw = tuple(input_shape), num_classes, raw
        self.input_kind = "raw" if raw else "mfcc"
        name = "mbnet_raw" if raw else "mbnet"
        if raw and a.frontend is None:
            raise ArchError(f"{name} reads the raw waveform and needs a front-end token in its architecture "
                            f"string (e.g. 'w1-conv_c16_k64_s32_p4-ir_k5_e2-...'); {str(arch)!r} is an MFCC "
                            f"architecture: use model 'mbnet' with an MFCC front end")
        if not raw and a.frontend is not None:
            raise ArchError(f"mbnet reads MFCC features, but {str(arch)!r} has a raw-waveform front end "
                            f"({a.frontend}): use model 'mbnet_raw' with the 'raw' front end")
        want = 1 if raw else 2
        if len(self.input_shape) != want:
            kind = "a raw waveform (samples,)" if len(self.input_shape) == 1 else f"MFCC features {self.input_shape}"
            raise ValueError(f"{name} expects {'a raw waveform (samples,)' if raw else 'MFCC features (frames, coefficients)'}"
                             f" but the front end gives {kind}: use {'mbnet' if raw else 'mbnet_raw'} for this front end")
        dims = 1 if raw else 2
        c = scaled(channels or (RAW_CHANNELS if raw else MFCC_CHANNELS), a.width)
        h = scaled(head_channels or (RAW_HEAD if raw else MFCC_HEAD), a.width)
        if raw:
            self.stem = make_raw_frontend(a.frontend, self.input_shape, sample_rate)
            in_ch = a.frontend.channels
        else:
            self.stem = make_mfcc_stem(a.width, self.input_shape, channels=channels or MFCC_CHANNELS)
            in_ch = c
        self.stem_drop = nn.Dropout(stem_dropout)
        size, layers = self.stem.out_size, []
        stride0 = a.stride if a.stride is not None else 2  # the string's stride token, else the papers' 2
        for i, b in enumerate(a.blocks):
            layers.append(make_block(b, in_ch if i == 0 else c, c, stride0 if i == 0 else 1, size, dims))
            size = layers[-1].out_size
        self.blocks = nn.Sequential(*layers)
        self.head = ConvBNAct(c, h, 1, act="relu6", dims=dims)
        self.pool = nn.AdaptiveAvgPool1d(1) if raw else nn.AvgPool2d(size)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(h, num_classes)
        self.arch_string = str(a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_drop(self.stem(as_signal(x) if self.raw else as_image(x)))
        x = self.pool(self.head(self.blocks(x)))
        return self.fc(self.drop(x.flatten(1)))


@register_model("mbnet")
def mbnet(num_classes=12, input_shape=(49, 10), arch: str = DEFAULT_ARCH, **kw):
    """MBConv network on MFCC features, decoded from an architecture string (see tinykws.nas)."""
    return MBNet(arch, num_classes, input_shape, raw=False, **kw)


@register_model("mbnet_raw")
def mbnet_raw(num_classes=12, input_shape=(16000,), arch: str = DEFAULT_RAW_ARCH, **kw):
    """End-to-end MBConv network on the raw 16 kHz waveform, decoded from an architecture string."""
    return MBNet(arch, num_classes, input_shape, raw=True, **kw)
