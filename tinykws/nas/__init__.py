"""Hardware-aware neural architecture search (ProxylessNAS-style) for keyword spotting.

- architecture strings (``w0.5-ir_k5_e3-skip-...``) and their codec live in :mod:`tinykws.models.arch`;
- :mod:`.spaces`: the MFCC and raw-waveform search spaces;
- :mod:`.cost`: cost models (MACs / ops, weight memory, peak activation memory, a measured
  per-layer lookup table) and per-layer cost tables for the expected-cost loss;
- :mod:`.supernet`: the over-parameterised network with binarized path sampling;
- :mod:`.search`: the search loop (alternating weight / architecture steps, warm-up,
  checkpointed and resumable), then training the derived model from scratch;
- :mod:`.sweep`: sweeps over beta, targets and front ends with Optuna;
- :mod:`.pareto`: the results table and Pareto plot.

Names are imported lazily.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "SearchSpace": "spaces", "make_space": "spaces",
    "CostModel": "cost", "MacsCost": "cost", "OpsCost": "cost", "WeightMemoryCost": "cost",
    "PeakActivationCost": "cost", "LookupTableCost": "cost", "CostTable": "cost", "make_cost_model": "cost",
    "arch_cost": "cost", "write_lut_template": "cost",
    "SuperNet": "supernet",
    "SearchConfig": "search", "SearchResult": "search", "run_search": "search", "retrain": "search", "derive": "search", "random_arch": "search",
    "run_trial": "search", "short_search_demo": "search",
    "SweepConfig": "sweep", "run_sweep": "sweep", "sweep_rows": "sweep",
    "pareto_front": "pareto", "format_table": "pareto", "plot_pareto": "pareto", "baseline_rows": "pareto",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'tinykws.nas' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{mod}", __name__), name)
