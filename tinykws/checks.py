"""Ranges of settings, declared once on the config dataclasses and checked wherever a config is made.

    @dataclass
    class TrainConfig:
        epochs: int = setting(80, lo=1, help="training epochs")
        label_smoothing: float = setting(0.1, lo=0, hi=1, hi_open=True)

        def __post_init__(self):
            validate(self)

The CLI builds its options from the same fields (`tinykws.cli.options`), so a bad value gives the
same one-line error from the command line and from Python, naming the option.
"""
from __future__ import annotations

from dataclasses import MISSING, field, fields


class ConfigError(ValueError):
    """A setting out of its range; the message names the option and the accepted values."""


def setting(default=MISSING, *, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False, choices=None,
            help: str = "", default_factory=MISSING):
    """A dataclass field with its accepted range (and the CLI help text) in its metadata."""
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "choices": choices, "help": help}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def describe(meta: dict) -> str:
    """'>= 1', 'in [0, 1)', 'one of adam, sgd', ...; '' when unrestricted."""
    lo, hi = meta.get("lo"), meta.get("hi")
    if meta.get("choices"):
        return "one of " + ", ".join(map(str, meta["choices"]))
    if lo is not None and hi is not None:
        return f"in {'(' if meta.get('lo_open') else '['}{lo:g}, {hi:g}{')' if meta.get('hi_open') else ']'}"
    if lo is not None:
        return f"{'>' if meta.get('lo_open') else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if meta.get('hi_open') else '<='} {hi:g}"
    return ""


def check_value(name: str, value, meta: dict) -> None:
    """Raise ConfigError unless `value` lies in the range `meta` declares."""
    if value is None:
        return
    lo, hi = meta.get("lo"), meta.get("hi")
    bad = (meta.get("choices") and value not in meta["choices"]) or (
        lo is not None and (value <= lo if meta.get("lo_open") else value < lo)) or (
        hi is not None and (value >= hi if meta.get("hi_open") else value > hi))
    if bad:
        raise ConfigError(f"{option_name(name)} must be {describe(meta)} (got {value!r})")


def validate(obj) -> None:
    """Check every field of a dataclass instance that declares a range (see `setting`)."""
    for f in fields(obj):
        if f.metadata:
            check_value(f.name, getattr(obj, f.name), f.metadata)


DEVICE_HELP = "auto (a GPU when there is one, else the CPU), cpu, cuda or cuda:N"


def resolve_device(spec: str = "auto", option: str = "device"):
    """The torch.device a `--device` value names: "auto" is the first CUDA GPU when torch sees one and
    the CPU otherwise; "cuda"/"cuda:N" on a machine without that GPU is a ConfigError naming it."""
    import torch

    s = str(spec).strip().lower()
    if s == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if s == "cpu":
        return torch.device("cpu")
    head, _, index = s.partition(":")
    if head != "cuda" or (index and not index.isdigit()):
        raise ConfigError(f"{option_name(option)} must be {DEVICE_HELP} (got {spec!r})")
    if not torch.cuda.is_available():
        raise ConfigError(f"{option_name(option)} {spec}: torch sees no CUDA GPU on this machine "
                          f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use --{option} cpu or auto")
    if index and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"{option_name(option)} {spec}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return torch.device(s)
