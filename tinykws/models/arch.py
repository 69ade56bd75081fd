"""Architecture strings: a short, timm-style text form of a searched model.

A string is tokens joined by ``-``::

    w0.5-ir_k3_e1-ir_k5_e3-skip-skip-ir_k7_e2-skip-skip-skip-skip-skip-skip-skip
    w1-conv_c16_k64_s32_p4-ir_k5_e2-ir_k3_e1-skip-...

Tokens, in this order:

- ``w<omega>``: width multiplier (optional; default 1). Channel counts are the
  space's base counts times omega, rounded.
- ``s<frames>x<coefficients>`` (MFCC models) or ``s<n>`` (raw models): stride of the first
  searchable layer (optional; default 2 along every axis, as the papers). ``s1x2`` halves only
  the MFCC axis, which keeps the 25 x 5 map of the MLPerf DS-CNN instead of 13 x 5.
- front end, raw-waveform models only (``mbnet_raw``):
  ``conv_c<channels>_k<kernel>_s<stride>[_p<pool>]``: a strided Conv1d on the 16 kHz
  waveform (a learned filterbank), BN, ReLU, then max-pooling by ``pool``;
  ``sinc_c<channels>_k<kernel>_s<stride>[_p<pool>]``: the same with SincNet band-pass
  filters (two learned cut-offs per channel) instead of free kernels.
- one token per searchable layer: ``ir_k<kernel>_e<expansion>`` is an MBConv block
  (1x1 expansion by e, kxk depthwise, 1x1 linear projection); ``skip`` leaves the
  layer out. The first layer downsamples and cannot be a skip.

This module has no dependencies on the rest of tinykws; ``tinykws.models.mbnet``
decodes strings into models.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field


class ArchError(ValueError):
    """An architecture string that cannot be decoded; the message says which token and why."""


_IR = re.compile(r"^ir_k(\d+)_e(\d+)$")
_WIDTH = re.compile(r"^w(\d+(?:\.\d+)?|\.\d+)$")
_STRIDE = re.compile(r"^s(\d+)(?:x(\d+))?$")
_FRONT = re.compile(r"^(conv|sinc)_c(\d+)_k(\d+)_s(\d+)(?:_p(\d+))?$")
BLOCK_HELP = "'ir_k<kernel>_e<expansion>' (e.g. ir_k5_e3) or 'skip'"
FRONT_HELP = "'conv_c<channels>_k<kernel>_s<stride>[_p<pool>]' or 'sinc_c<channels>_k<kernel>_s<stride>[_p<pool>]'"


@dataclass(frozen=True)
class Block:
    """One searchable layer: an MBConv block (kind "ir") or a skipped layer (kind "skip")."""

    kind: str = "ir"
    kernel: int = 3
    expand: int = 1

    def __post_init__(self):
        if self.kind not in ("ir", "skip"):
            raise ArchError(f"unknown block kind {self.kind!r}: use 'ir' or 'skip'")
        if self.kind == "ir":
            if self.kernel < 1 or self.kernel % 2 == 0:
                raise ArchError(f"block {self}: the depthwise kernel must be odd and positive")
            if self.expand < 1:
                raise ArchError(f"block {self}: the expansion must be at least 1")

    @property
    def is_skip(self) -> bool:
        return self.kind == "skip"

    def __str__(self) -> str:
        return "skip" if self.is_skip else f"ir_k{self.kernel}_e{self.expand}"


SKIP = Block("skip", 0, 0)


@dataclass(frozen=True)
class FrontEnd:
    """Learnable front end of a raw-waveform model."""

    kind: str = "conv"  # conv | sinc
    channels: int = 16
    kernel: int = 64
    stride: int = 32
    pool: int = 4

    def __post_init__(self):
        if self.kind not in ("conv", "sinc"):
            raise ArchError(f"unknown front end {self.kind!r}: use {FRONT_HELP}")
        for name in ("channels", "kernel", "stride", "pool"):
            if getattr(self, name) < 1:
                raise ArchError(f"front end {self}: {name} must be at least 1")

    def __str__(self) -> str:
        return f"{self.kind}_c{self.channels}_k{self.kernel}_s{self.stride}_p{self.pool}"


@dataclass(frozen=True)
class Arch:
    """A decoded architecture string."""

    blocks: tuple[Block, ...]
    width: float = 1.0
    frontend: FrontEnd | None = None
    stride: tuple | None = None  # first searchable layer; None: 2 along every axis
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def space(self) -> str:
        """"raw" for an end-to-end model (it has a front-end token), else "mfcc"."""
        return "raw" if self.frontend is not None else "mfcc"

    @property
    def model_name(self) -> str:
        """The registry model that decodes this string."""
        return "mbnet_raw" if self.space == "raw" else "mbnet"

    @property
    def default_frontend(self) -> str:
        """The front-end preset searched models of this space use unless told otherwise."""
        return "raw" if self.space == "raw" else "paper10"

    @property
    def depth(self) -> int:
        """Number of MBConv blocks (skips not counted)."""
        return sum(not b.is_skip for b in self.blocks)

    def __str__(self) -> str:
        tokens = [f"w{self.width:g}"]
        if self.stride is not None:
            tokens.append(stride_token(self.stride))
        if self.frontend is not None:
            tokens.append(str(self.frontend))
        return "-".join(tokens + [str(b) for b in self.blocks])


def parse_block(token: str) -> Block:
    """``ir_k5_e3`` -> Block("ir", 5, 3); ``skip`` -> SKIP; anything else raises ArchError."""
    t = token.strip().lower()
    if t == "skip":
        return SKIP
    m = _IR.match(t)
    if not m:
        raise ArchError(f"unknown block {token!r}: expected {BLOCK_HELP}")
    return Block("ir", int(m.group(1)), int(m.group(2)))


def parse_frontend(token: str) -> FrontEnd:
    m = _FRONT.match(token.strip().lower())
    if not m:
        raise ArchError(f"unknown front end {token!r}: expected {FRONT_HELP}")
    kind, c, k, s, p = m.groups()
    return FrontEnd(kind, int(c), int(k), int(s), int(p) if p else 1)


def parse_arch(text: str | Arch) -> Arch:
    """Decode an architecture string (see the module doc); errors name the offending token."""
    if isinstance(text, Arch):
        return text
    if not isinstance(text, str) or not text.strip():
        raise ArchError(f"empty architecture string {text!r}: expected tokens like 'w0.75-ir_k5_e3-skip-...'")
    tokens = [t for t in re.split(r"[-\s,]+", text.strip()) if t]
    width, frontend, stride, blocks = 1.0, None, None, []
    for i, tok in enumerate(tokens):
        low = tok.lower()
        if _WIDTH.match(low):
            if i != 0:
                raise ArchError(f"{text!r}: the width token {tok!r} must come first")
            width = float(low[1:])
            if not 0 < width <= 8:
                raise ArchError(f"{text!r}: width multiplier {width} out of range (0, 8]")
        elif _STRIDE.match(low):
            if blocks or frontend is not None or stride is not None:
                raise ArchError(f"{text!r}: the stride token {tok!r} must come right after the width, once")
            stride = tuple(int(v) for v in _STRIDE.match(low).groups() if v is not None)
            if min(stride) < 1:
                raise ArchError(f"{text!r}: stride {tok!r} must be at least 1 along every axis")
        elif _FRONT.match(low) or low.startswith(("conv_", "sinc_")):
            if blocks or frontend is not None:
                raise ArchError(f"{text!r}: the front-end token {tok!r} must come before the blocks, once")
            frontend = parse_frontend(low)
        else:
            try:
                blocks.append(parse_block(low))
            except ArchError as exc:
                raise ArchError(f"{text!r}: token {i + 1}: {exc}") from None
    if not blocks:
        raise ArchError(f"{text!r}: no blocks; expected at least one {BLOCK_HELP}")
    if blocks[0].is_skip:
        raise ArchError(f"{text!r}: the first layer downsamples and cannot be 'skip'")
    if stride is not None and len(stride) != (1 if frontend is not None else 2):
        raise ArchError(f"{text!r}: stride token {stride_token(stride)!r} does not fit a "
                        f"{'raw (1-D): use s<n>' if frontend is not None else 'MFCC (2-D) model: use s<frames>x<coefficients>'}")
    return Arch(tuple(blocks), width, frontend, stride)


def stride_token(stride) -> str:
    """(1, 2) -> 's1x2'; 2 -> 's2'."""
    return "s" + "x".join(map(str, (stride,) if isinstance(stride, int) else stride))


def format_arch(blocks, width: float = 1.0, frontend: FrontEnd | str | None = None, stride=None) -> str:
    """The string of an architecture given as blocks (Block objects or tokens)."""
    fe = parse_frontend(frontend) if isinstance(frontend, str) else frontend
    bl = tuple(b if isinstance(b, Block) else parse_block(b) for b in blocks)
    return str(Arch(bl, width, fe, tuple(stride) if stride else None))


def scaled(channels: int, width: float) -> int:
    """Channel count ``channels`` scaled by the width multiplier (at least 1)."""
    return max(1, int(round(channels * width)))
