"""Quantization settings: one small dataclass per method, stored as a dict in model files."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..checks import setting, validate
from .graph import QuantizationError

MIN_BITS, MAX_BITS = 2, 8
KEEP_8BIT = ("none", "first", "last", "first,last")


def keep_8bit_field():
    return setting("none", choices=KEEP_8BIT, help="layers whose weights stay at 8 bits: the first conv/linear, the "
                   "last (the classifier), both, or none (their weights count in the average bits)")


def _check_bits(name: str, v, lo: float = MIN_BITS) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= MAX_BITS:
        raise QuantizationError(f"{name}={v!r}: bit-widths must be between {MIN_BITS} and {MAX_BITS}")
    if lo == MIN_BITS and v != int(v):
        raise QuantizationError(f"{name}={v!r}: a fixed bit-width must be a whole number")


@dataclass
class PTQConfig:
    """Post-training quantization: weights rounded per output channel (symmetric, scale from the
    channel's max |w|), activations from min/max over calibration clips. No training."""
    weight_bits: int = 8
    act_bits: int = 8
    io_bits: int = 8  # the model input and output (logits)
    keep_8bit: str = keep_8bit_field()
    method = "ptq"

    def __post_init__(self):
        for f in ("weight_bits", "act_bits", "io_bits"):
            _check_bits(f, getattr(self, f))
        validate(self)


@dataclass
class QATConfig:
    """Quantization-aware training at a fixed bit-width with the straight-through estimator:
    per-channel symmetric weights with a learned clipping ratio per layer, activations with a
    learned range (LSQ/PACT style). `act_bits` defaults to `weight_bits`."""
    weight_bits: int = 8
    act_bits: int | None = None
    io_bits: int = 8
    keep_8bit: str = keep_8bit_field()
    start_bits: int | None = setting(None, lo=MIN_BITS + 1, hi=MAX_BITS, help="progressive lowering: fine-tune the "
                                     "weights at this many bits first, then halve it stage by stage down to the "
                                     "weight bits (each stage gets the full epochs)")
    weight_step: str = setting("layer", choices=("layer", "channel"), help="learned weight clipping (the step): "
                               "one ratio per layer, or one per output channel (LSQ-style step per channel); both "
                               "start at the squared-error-optimal clipping")
    method = "qat"

    def __post_init__(self):
        if self.act_bits is None:
            self.act_bits = self.weight_bits
        for f in ("weight_bits", "act_bits", "io_bits"):
            _check_bits(f, getattr(self, f))
        validate(self)
        if self.start_bits is not None and self.start_bits <= self.weight_bits:
            raise QuantizationError(f"start_bits={self.start_bits}: progressive lowering must start above the "
                                    f"weight bits ({self.weight_bits})")

    def stages(self) -> list[int]:
        """Weight bit-widths of the fine-tuning stages: start_bits halved down to weight_bits."""
        b, out = self.start_bits or self.weight_bits, []
        while b > self.weight_bits:
            out.append(b)
            b = max(self.weight_bits, -(-b // 2))
        return out + [self.weight_bits]


@dataclass
class LearnedBitsConfig:
    """Trained bit-widths: every layer learns its own weight and activation bit-width (a
    continuous parameter rounded with the straight-through estimator) together with its
    range; a hinge penalty pushes the average bits per weight and per activation (weighted by
    their counts, i.e. by memory) below the targets."""
    weight_bits: float = 3.0  # target average bits per weight
    act_bits: float = 4.0  # target average bits per activation (the 8-bit input counts)
    init_bits: int = 6  # every layer starts here
    penalty: float = 1.0  # weight of the memory penalty in the loss
    io_bits: int = 8
    keep_8bit: str = keep_8bit_field()
    method = "learned"

    def __post_init__(self):
        validate(self)
        _check_bits("weight_bits", self.weight_bits, lo=MIN_BITS - 1e-9)
        _check_bits("act_bits", self.act_bits, lo=MIN_BITS - 1e-9)
        for f in ("init_bits", "io_bits"):
            _check_bits(f, getattr(self, f))
        if self.penalty < 0:
            raise QuantizationError(f"penalty={self.penalty}: must be >= 0")


QuantConfig = PTQConfig | QATConfig | LearnedBitsConfig
_METHODS = {c.method: c for c in (PTQConfig, QATConfig, LearnedBitsConfig)}


def config_to_dict(cfg: QuantConfig) -> dict:
    return {"method": cfg.method, **asdict(cfg)}


def config_from_dict(d: dict) -> QuantConfig:
    d = dict(d)
    method = d.pop("method", None)
    if method not in _METHODS:
        raise QuantizationError(f"unknown quantization method {method!r}; use one of {sorted(_METHODS)}")
    cls = _METHODS[method]
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise QuantizationError(f"unknown {cls.__name__} settings {sorted(unknown)}")
    return cls(**d)


def preset(name: str, **settings) -> QuantConfig:
    """The CLI's --method names: ptq8, qat8, qat4, qat2 (any qatN, 2 <= N <= 8), learned, with
    further settings of that method's config (None: its default), e.g. `preset("qat2", act_bits=8,
    keep_8bit="first,last", start_bits=4)` or `preset("learned", weight_bits=2.5, act_bits=2.9)`."""
    settings = {k: v for k, v in settings.items() if v is not None}
    if name == "learned":
        cls, base = LearnedBitsConfig, {}
    else:
        cls = next((c for p, c in (("ptq", PTQConfig), ("qat", QATConfig))
                    if name.startswith(p) and name[len(p):].isdigit()), None)
        if cls is None:
            raise QuantizationError(f"unknown method {name!r}; use ptq8, qat8, qat4, qat2 (any qatN with N in 2..8) "
                                    f"or learned")
        bits = int(name[3:])
        base = {"weight_bits": bits, "act_bits": bits}
        if "weight_bits" in settings:
            raise QuantizationError(f"method {name!r} sets the weight bits itself ({bits})")
    unknown = set(settings) - {f.name for f in fields(cls)}
    if unknown:
        raise QuantizationError(f"method {name!r} takes no setting {', '.join(sorted(unknown))}")
    return cls(**{**base, **settings})
