"""Pruning settings: one dataclass, stored as a dict in model files (`prune` of the model file)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..checks import ConfigError, setting, validate

METHODS = ("unstructured", "vector4", "vector8", "kernel", "channel")


class PruneError(ValueError):
    """A model or setting that cannot be pruned; the message names the layer or option."""


@dataclass
class PruneConfig:
    """Magnitude pruning. Granularity (`method`): single weights (unstructured), blocks of 4 or 8
    consecutive input channels at one kernel position (vector4, vector8: 1x4, 1x8), whole kxk
    kernels of one (output, input) channel pair (kernel), or whole output channels removed from the
    network (channel: a smaller dense model; coupled layers are pruned together)."""
    method: str = setting("unstructured", choices=METHODS, help="granularity of what is removed")
    sparsity: float = setting(0.5, lo=0, hi=1, hi_open=True,
                              help="fraction removed: of the weights of the pruned layers, or (channel) of the "
                                   "channels, or of the MACs with --target macs")
    scope: str = setting("layer", choices=("layer", "global"),
                         help="layer: every pruned layer at the sparsity; global: one magnitude threshold for all")
    target: str = setting("weights", choices=("weights", "macs"),
                          help="channel only: --sparsity counts channels (weights) or MACs removed (macs)")
    round_to: int = setting(4, lo=1, help="channel only: remaining channel counts are multiples of this (the SIMD "
                                          "kernels of the C back end take channels in fours)")
    schedule: str = setting("polynomial", choices=("polynomial", "oneshot"),
                            help="polynomial: sparsity ramped over the pruning steps (Zhu & Gupta); oneshot: all at once")
    steps: int = setting(4, lo=1, help="pruning steps of the polynomial schedule (fine-tuning between them)")
    epochs: int = setting(8, lo=0, help="fine-tuning epochs in all (0: prune only)")
    ramp: float = setting(0.5, lo=0, hi=1, help="fraction of the epochs spent between pruning steps; the rest "
                                                 "fine-tunes at the final sparsity")
    lr: float = setting(1e-3, lo=0, lo_open=True, help="fine-tuning learning rate")
    layers: list[str] = setting(default_factory=list,
                                help="layers to prune (empty: every conv/linear layer the granularity fits, "
                                     "except the first and the depthwise layers)")
    augment: str = setting("model", choices=("model", "spec"),
                           help="fine-tuning augmentation: the model's own (waveform and SpecAugment), or SpecAugment "
                                "alone on cached features (faster: no MFCC per step)")
    seed: int = setting(0, help="seed of the fine-tuning")
    teacher: list[str] = setting(default_factory=list,
                                 help="model files / shipped names to distill from while fine-tuning (e.g. the "
                                      "unpruned model; tinykws.train.distill); empty: labels only")
    kd_alpha: float = setting(0.5, lo=0, hi=1, help="weight of the distillation term when a teacher is given")

    def __post_init__(self):
        validate(self)
        if self.target == "macs" and self.method != "channel":
            raise ConfigError(f"--target macs is for --method channel (got --method {self.method})")

    @property
    def block(self) -> int:
        """Input channels per pruned block (1 for unstructured, kernel and channel)."""
        return {"vector4": 4, "vector8": 8}.get(self.method, 1)


def config_to_dict(cfg: PruneConfig) -> dict:
    return asdict(cfg)


def config_from_dict(d: dict) -> PruneConfig:
    unknown = set(d) - {f.name for f in fields(PruneConfig)}
    if unknown:
        raise PruneError(f"unknown pruning settings {sorted(unknown)}")
    return PruneConfig(**d)
