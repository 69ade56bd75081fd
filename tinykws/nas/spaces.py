"""Search spaces: which model, which front end, how many searchable layers, which candidate blocks.

- ``mfcc``: model ``mbnet`` on MFCC features (front-end presets ``paper10/20/30/40`` give
  10/20/30/40 coefficients with the papers' 40 ms window, ``mlperf`` the MLPerf features);
  stem conv 5x11 / stride 2 along time, 72 x omega channels, 12 searchable layers, 1x1 conv
  to 144 x omega channels, pooling, classifier.
- ``raw``: model ``mbnet_raw`` on the 16 kHz waveform (front-end preset ``raw``); a learnable
  front end (``conv_...`` strided Conv1d or ``sinc_...`` SincNet layer), 12 searchable 1-D
  layers of 48 x omega channels, 1x1 conv to 96 x omega, pooling, classifier.

Each searchable layer chooses among MBConv blocks ``ir_k<k>_e<e>`` for every kernel k and
expansion e of the space, and ``skip``; the first layer (stride 2) cannot be skipped.
``first_stride`` (e.g. ``(1, 2)``: frames x coefficients) gives the first layer another stride
and every architecture of the space the matching ``s1x2`` token.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..models.arch import SKIP, ArchError, Block, FrontEnd, format_arch, parse_arch, parse_frontend, scaled, stride_token

SPACES = ("mfcc", "raw")
DEFAULT_RAW_FRONTEND = "conv_c16_k64_s32_p4"


@dataclass(frozen=True)
class LayerShape:
    """Where a searchable layer sits: channels in/out, stride, spatial input size, dims (1 or 2)."""

    index: int
    in_ch: int
    out_ch: int
    stride: int | tuple  # an int when equal along every axis
    in_size: tuple
    dims: int

    def key(self, block) -> str:
        """Lookup-table key of ``block`` at this position, e.g. ``ir_k5_e3|c36>36|s1|13x5``."""
        return f"{block}|c{self.in_ch}>{self.out_ch}|{stride_token(self.stride)}|{'x'.join(map(str, self.in_size))}"


@dataclass(frozen=True)
class SearchSpace:
    kind: str = "mfcc"
    input_shape: tuple = (49, 10)
    width: float = 1.0
    layers: int = 12
    kernels: tuple = (3, 5, 7)
    expansions: tuple = (1, 2, 3, 4, 5, 6)
    raw_frontend: str = DEFAULT_RAW_FRONTEND
    num_classes: int = 12
    model_kwargs: dict = field(default_factory=dict, compare=False, hash=False)
    first_stride: tuple = ()  # stride of the first searchable layer; () = 2 along every axis

    def __post_init__(self):
        if self.kind not in SPACES:
            raise ValueError(f"unknown search space {self.kind!r}: use one of {', '.join(SPACES)}")
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "kernels", tuple(int(k) for k in self.kernels))
        object.__setattr__(self, "expansions", tuple(int(e) for e in self.expansions))
        object.__setattr__(self, "first_stride", tuple(int(s) for s in self.first_stride))
        want = 1 if self.kind == "raw" else 2
        if self.first_stride and (len(self.first_stride) != want or min(self.first_stride) < 1):
            raise ValueError(f"first stride {stride_token(self.first_stride)[1:]} does not fit the {self.kind!r} space: "
                             f"give {'one positive stride (e.g. 2)' if want == 1 else 'frames x coefficients (e.g. 1x2)'}")
        if len(self.input_shape) != want:
            raise ValueError(
                f"search space {self.kind!r} needs {'the raw waveform (front end raw)' if want == 1 else 'MFCC features (front end mlperf or paper10..paper40)'}"
                f", but the front end gives {'a waveform' if len(self.input_shape) == 1 else 'MFCC features'} "
                f"of shape {self.input_shape}: pick the matching --space or --frontend")
        if self.layers < 1:
            raise ValueError(f"a search space needs at least one searchable layer (got {self.layers})")
        if not self.kernels or not self.expansions:
            raise ValueError("a search space needs at least one kernel and one expansion")
        for k in self.kernels:
            Block("ir", k, 1)
        for e in self.expansions:
            Block("ir", 3, e)
        if self.kind == "raw":
            parse_frontend(self.raw_frontend)

    # ------------------------------------------------------------------ candidates and strings
    @property
    def model_name(self) -> str:
        return "mbnet_raw" if self.kind == "raw" else "mbnet"

    @property
    def frontend(self) -> FrontEnd | None:
        return parse_frontend(self.raw_frontend) if self.kind == "raw" else None

    @property
    def ops(self) -> list[Block]:
        """The candidate list shared by all layers (kernel-major), ``skip`` last."""
        return [Block("ir", k, e) for k in self.kernels for e in self.expansions] + [SKIP]

    def allowed(self, layer: int) -> list[bool]:
        """Which entries of ``ops`` layer ``layer`` may use (layer 0 has no skip)."""
        return [not (b.is_skip and layer == 0) for b in self.ops]

    def arch(self, choices) -> str:
        """The architecture string for one op index per layer."""
        if len(choices) != self.layers:
            raise ValueError(f"need {self.layers} choices, got {len(choices)}")
        ops = self.ops
        return format_arch([ops[i] for i in choices], self.width, self.frontend, self.first_stride or None)

    def choices(self, arch: str) -> list[int]:
        """Op indices of an architecture string of this space (inverse of ``arch``)."""
        a = parse_arch(arch)
        if a.space != self.kind:
            raise ArchError(f"{arch!r} is a {a.space} architecture, not one of the {self.kind} space")
        if len(a.blocks) != self.layers:
            raise ArchError(f"{arch!r} has {len(a.blocks)} layers; this space has {self.layers}")
        if (a.stride or ()) != self.first_stride:
            want = stride_token(self.first_stride) if self.first_stride else "none"
            raise ArchError(f"{arch!r}: its first-layer stride token does not match this space's ({want})")
        ops = self.ops
        for b in a.blocks:
            if b not in ops:
                raise ArchError(f"block {b} is not a candidate of this space ({', '.join(map(str, ops))})")
        return [ops.index(b) for b in a.blocks]

    def smallest_arch(self) -> str:
        """Cheapest block in layer 0, skips elsewhere (cheapest in MACs; see CostTable.range for others)."""
        return format_arch([Block("ir", min(self.kernels), min(self.expansions))] + [SKIP] * (self.layers - 1),
                           self.width, self.frontend, self.first_stride or None)

    # ------------------------------------------------------------------ models
    def build(self, arch: str):
        """The normal (registered) model of an architecture string of this space."""
        from ..models import create_model

        return create_model(self.model_name, num_classes=self.num_classes, input_shape=self.input_shape,
                            arch=arch, **self.model_kwargs)

    def layer_shapes(self) -> list[LayerShape]:
        """Position of each searchable layer (independent of the blocks chosen: SAME padding)."""
        ref = self.build(self.arch([0] * self.layers))
        dims = 1 if self.kind == "raw" else 2
        size, out = ref.stem.out_size, []
        for i, blk in enumerate(ref.blocks):
            st = blk.stride if isinstance(blk.stride, int) else tuple(blk.stride)
            if not isinstance(st, int) and len(set(st)) == 1:
                st = st[0]
            out.append(LayerShape(i, blk.in_ch, blk.out_ch, st, tuple(size), dims))
            size = blk.out_size
        return out

    def channels(self) -> int:
        from ..models.mbnet import MFCC_CHANNELS, RAW_CHANNELS

        return scaled(self.model_kwargs.get("channels") or (RAW_CHANNELS if self.kind == "raw" else MFCC_CHANNELS), self.width)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"], d["kernels"], d["expansions"] = list(self.input_shape), list(self.kernels), list(self.expansions)
        d["first_stride"] = list(self.first_stride)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        return cls(**{**d, "input_shape": tuple(d["input_shape"]), "kernels": tuple(d["kernels"]),
                      "expansions": tuple(d["expansions"]), "first_stride": tuple(d.get("first_stride", ()))})


def make_space(kind: str = "mfcc", frontend: str | None = None, width: float = 1.0, layers: int = 12,
               kernels=(3, 5, 7), expansions=(1, 2, 3, 4, 5, 6), raw_frontend: str = DEFAULT_RAW_FRONTEND,
               num_classes: int = 12, first_stride=(), **model_kwargs) -> SearchSpace:
    """A search space for a front-end preset (default: paper10 for mfcc, raw for raw); a front end
    that does not fit the space (MFCC features for the raw space, or the waveform for mfcc) raises
    a ValueError saying so."""
    from ..audio import get_preset

    if kind not in SPACES:
        raise ValueError(f"unknown search space {kind!r}: use one of {', '.join(SPACES)}")
    frontend = frontend or ("raw" if kind == "raw" else "paper10")
    fe = get_preset(frontend)
    if (fe.kind == "raw") != (kind == "raw"):
        raise ValueError(f"front end {frontend!r} gives {'the raw waveform' if fe.kind == 'raw' else 'MFCC features'}, "
                         f"which the {kind!r} search space cannot read: use "
                         f"{'--space raw' if fe.kind == 'raw' else '--space mfcc'} with it, or "
                         f"{'--frontend raw' if kind == 'raw' else '--frontend paper10 (or mlperf, paper20..paper40)'}")
    return SearchSpace(kind, fe.feature_shape, width, layers, tuple(kernels), tuple(expansions), raw_frontend,
                       num_classes, dict(model_kwargs), tuple(first_stride or ()))
