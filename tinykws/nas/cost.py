"""Cost models for hardware-aware search, and per-layer cost tables for the expected cost.

Every layer of a search space sits at a fixed position (channels and map size do not depend on
the other layers' choices), so a network's cost is a fixed part (stem, head, classifier) plus
one entry per layer: summed for operations and weight memory, maximised for peak activation
memory. A :class:`CostTable` holds those entries; under the architecture distribution
(softmax of each layer's architecture parameters) the expected cost is

    sum:  fixed + sum_l sum_j p_lj c_lj          (exact expectation)
    max:  max(fixed, max_l sum_j p_lj c_lj)      (max of per-layer expectations; an approximation)

Cost models (``make_cost_model``):

- ``macs``: multiply-accumulates (``tinykws info`` counts the same);
- ``ops``: operations as the papers count them, 2 x MACs;
- ``weight_bytes``: deployed weight memory at ``weight_bits`` (BN folded, int32 biases);
- ``peak_act_bytes``: peak activation memory at ``act_bits`` (two live buffers per layer,
  plus the block input across a residual), as :func:`tinykws.models.count_cost`;
- ``lut:PATH``: a measured lookup table (e.g. per-layer latency on a microcontroller), JSON
  ``{"unit": "ms", "reduce": "sum", "fixed": 1.9, "blocks": {"<layer key>": 0.31, ...}}``
  keyed by :meth:`LayerShape.key` (``ir_k5_e3|c36>36|s1|13x5``). ``write_lut_template``
  writes every key a space needs, with MAC-based estimates to be replaced by measurements.

A new cost model subclasses :class:`CostModel` and implements ``block_cost`` and ``fixed_cost``.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import torch

from ..models.arch import ArchError, parse_arch
from .spaces import LayerShape, SearchSpace

COST_KINDS = ("macs", "ops", "weight_bytes", "peak_act_bytes", "lut:PATH")


class CostModel:
    """What the search trades accuracy against. ``reduce`` is "sum" (additive) or "max"."""

    name = "cost"
    unit = ""
    reduce = "sum"

    def block_cost(self, layer: LayerShape, block) -> float:
        raise NotImplementedError

    def fixed_cost(self, space: SearchSpace) -> float:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "unit": self.unit, "reduce": self.reduce}


@lru_cache(maxsize=4096)
def _block_model_cost(block_str: str, in_ch: int, out_ch: int, stride: int, in_size: tuple, dims: int,
                      weight_bits: int, act_bits: int):
    from ..models import count_cost
    from ..models.mbnet import make_block
    from ..models.arch import parse_block

    block = parse_block(block_str)
    if block.is_skip:
        return None
    m = make_block(block, in_ch, out_ch, stride, in_size, dims)
    return count_cost(m, input_shape=(in_ch, *in_size), weight_bits=weight_bits, act_bits=act_bits)


class CountedCost(CostModel):
    """A cost read off :func:`tinykws.models.count_cost` (the same numbers as ``tinykws info``)."""

    def __init__(self, weight_bits: int = 8, act_bits: int = 8):
        self.weight_bits, self.act_bits = weight_bits, act_bits

    def metric(self, c) -> float:
        raise NotImplementedError

    def block_cost(self, layer: LayerShape, block) -> float:
        c = _block_model_cost(str(block), layer.in_ch, layer.out_ch, layer.stride, tuple(layer.in_size), layer.dims,
                              self.weight_bits, self.act_bits)
        return 0.0 if c is None else float(self.metric(c))

    def fixed_cost(self, space: SearchSpace) -> float:
        from ..models import count_cost

        arch = space.arch([0] + [len(space.ops) - 1] * (space.layers - 1))  # first candidate, then skips
        c = count_cost(space.build(arch), weight_bits=self.weight_bits, act_bits=self.act_bits)
        if self.reduce == "max":
            return float(max(self.metric_layer(l) for l in c.layers if not l.name.startswith("blocks.")))
        return float(self.metric(c)) - self.block_cost(space.layer_shapes()[0], space.ops[0])

    def metric_layer(self, layer) -> float:
        raise NotImplementedError


class MacsCost(CountedCost):
    name, unit = "macs", "MACs"

    def metric(self, c):
        return c.macs


class OpsCost(CountedCost):
    """Operations as in the papers: one multiply-accumulate = 2 operations."""

    name, unit = "ops", "ops"

    def metric(self, c):
        return 2 * c.macs


class WeightMemoryCost(CountedCost):
    name, unit = "weight_bytes", "bytes"

    def metric(self, c):
        return c.weight_bytes

    def describe(self) -> dict:
        return {**super().describe(), "weight_bits": self.weight_bits}


class PeakActivationCost(CountedCost):
    name, unit, reduce = "peak_act_bytes", "bytes", "max"

    def metric(self, c):
        return c.peak_activation_bytes

    def metric_layer(self, layer):
        return layer.act_bytes

    def describe(self) -> dict:
        return {**super().describe(), "act_bits": self.act_bits}


class LookupTableCost(CostModel):
    """Measured per-layer costs (e.g. latency on the target MCU) from a JSON table."""

    name = "lut"

    def __init__(self, table: dict, source: str = ""):
        try:
            self.blocks = {str(k): float(v) for k, v in table["blocks"].items()}
            self.fixed = float(table["fixed"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{source or 'lookup table'}: expected {{'fixed': number, 'blocks': {{key: number}}}} "
                             f"({exc.__class__.__name__}: {exc})") from None
        self.unit = str(table.get("unit", ""))
        self.reduce = str(table.get("reduce", "sum"))
        if self.reduce not in ("sum", "max"):
            raise ValueError(f"{source}: reduce must be 'sum' or 'max', not {self.reduce!r}")
        self.source = source

    @classmethod
    def from_json(cls, path: str | Path) -> "LookupTableCost":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such lookup table (write one with `tinykws lut-template`)")
        try:
            table = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        return cls(table, str(path))

    def block_cost(self, layer: LayerShape, block) -> float:
        if block.is_skip:
            return 0.0
        key = layer.key(block)
        if key not in self.blocks:
            raise ValueError(f"{self.source or 'lookup table'} has no entry {key!r} (layer {layer.index}); "
                             f"write the keys this space needs with `tinykws lut-template`")
        return self.blocks[key]

    def fixed_cost(self, space: SearchSpace) -> float:
        return self.fixed

    def describe(self) -> dict:
        return {**super().describe(), "source": self.source}


def make_cost_model(kind: str = "macs", weight_bits: int = 8, act_bits: int = 8) -> CostModel:
    """``macs`` | ``ops`` | ``weight_bytes`` | ``peak_act_bytes`` | ``lut:PATH`` (or a .json path)."""
    if kind.startswith("lut:") or kind.endswith(".json"):
        return LookupTableCost.from_json(kind[4:] if kind.startswith("lut:") else kind)
    models = {"macs": MacsCost, "ops": OpsCost, "weight_bytes": WeightMemoryCost, "peak_act_bytes": PeakActivationCost}
    aliases = {"memory": "weight_bytes", "weights": "weight_bytes", "peak": "peak_act_bytes", "activations": "peak_act_bytes"}
    kind = aliases.get(kind, kind)
    if kind not in models:
        raise ValueError(f"unknown cost {kind!r}: use one of {', '.join(COST_KINDS)}")
    return models[kind](weight_bits, act_bits)


class CostTable:
    """Per-layer, per-candidate costs of a space under a cost model (see the module doc)."""

    def __init__(self, space: SearchSpace, model: CostModel):
        self.space, self.model = space, model
        self.shapes = space.layer_shapes()
        ops = space.ops
        self.allowed = torch.tensor([space.allowed(i) for i in range(space.layers)])
        self.values = torch.tensor([[model.block_cost(s, b) if ok else 0.0 for b, ok in zip(ops, space.allowed(s.index))]
                                    for s in self.shapes], dtype=torch.float64)
        self.fixed = float(model.fixed_cost(space))

    @property
    def reduce(self) -> str:
        return self.model.reduce

    def _combine(self, per_layer: torch.Tensor) -> torch.Tensor:
        if self.reduce == "max":
            return torch.maximum(per_layer.max(), torch.tensor(self.fixed, dtype=per_layer.dtype))
        return self.fixed + per_layer.sum()

    def expected(self, probs: torch.Tensor) -> torch.Tensor:
        """Expected cost under per-layer probabilities (layers x ops); differentiable."""
        return self._combine((probs.to(self.values.dtype) * self.values).sum(1))

    def of(self, choices) -> float:
        """Cost of one architecture given as op indices per layer."""
        return float(self._combine(self.values[torch.arange(len(choices)), torch.as_tensor(choices)]))

    def range(self) -> tuple[float, float]:
        """Cheapest and most expensive architectures of the space."""
        big = torch.finfo(self.values.dtype).max
        lo = torch.where(self.allowed, self.values, torch.full_like(self.values, big)).min(1).values
        hi = torch.where(self.allowed, self.values, torch.full_like(self.values, -big)).max(1).values
        return float(self._combine(lo)), float(self._combine(hi))

    def check_target(self, target: float) -> None:
        """Raise a clear ValueError for a target no architecture of the space can meet sensibly."""
        lo, hi = self.range()
        unit = self.model.unit
        if not (target > 1 and math.isfinite(target)):
            raise ValueError(f"target {target:g} {unit}: the cost loss uses log(target), so it must be a finite number > 1")
        if target < lo:
            raise ValueError(f"target {target:,.0f} {unit} is below the smallest architecture of this space "
                             f"({lo:,.0f} {unit}: {self.space.smallest_arch()}); raise the target, lower the width "
                             f"(--width), or use fewer MFCC coefficients")
        if target > hi:
            raise ValueError(f"target {target:,.0f} {unit} is above the largest architecture of this space "
                             f"({hi:,.0f} {unit}), so the cost term cannot steer the search; lower the target or "
                             f"raise the width (--width)")


def arch_cost(arch: str, frontend: str | None = None, num_classes: int = 12, weight_bits: int = 8,
              act_bits: int = 8, **model_kwargs) -> dict:
    """Parameters, MACs, ops, weight memory and peak activations of a decoded architecture string."""
    from ..audio import get_preset
    from ..models import count_cost, create_model

    a = parse_arch(arch)
    fe = get_preset(frontend or a.default_frontend)
    if (fe.kind == "raw") != (a.space == "raw"):
        raise ArchError(f"{arch!r} is a {a.space} architecture; front end {frontend!r} does not fit it")
    m = create_model(a.model_name, num_classes=num_classes,
                     input_shape=fe.feature_shape, arch=arch, **model_kwargs)
    c = count_cost(m, weight_bits=weight_bits, act_bits=act_bits)
    return {"params": c.params, "params_deployed": c.params_deployed, "macs": c.macs, "ops": 2 * c.macs,
            "weight_bytes": c.weight_bytes, "peak_act_bytes": c.peak_activation_bytes}


def write_lut_template(space: SearchSpace, path: str | Path, mac_per_cycle: float = 0.69, mhz: float = 216.0) -> dict:
    """A lookup table with every key of ``space``, filled with latency estimates in ms from MACs
    (default: 0.69 MAC per cycle at 216 MHz, the MLPerf Tiny DS-CNN on a Cortex-M7); replace the
    numbers by measurements and pass the file as ``--cost lut:PATH``."""
    macs = CostTable(space, MacsCost())
    ms = lambda m: round(m / mac_per_cycle / (mhz * 1e3), 5)  # noqa: E731
    blocks = {}
    for s in macs.shapes:
        for b, ok, v in zip(space.ops, space.allowed(s.index), macs.values[s.index].tolist()):
            if ok and not b.is_skip:
                blocks[s.key(b)] = ms(v)
    table = {"unit": "ms", "reduce": "sum", "measured": False,
             "note": f"estimates from MACs at {mac_per_cycle} MAC/cycle, {mhz} MHz; replace with measurements",
             "fixed": ms(macs.fixed), "blocks": blocks}
    Path(path).write_text(json.dumps(table, indent=1))
    return table
