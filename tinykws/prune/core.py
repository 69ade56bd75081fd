"""prune_(model, config): magnitude pruning in place, by masks or by removing channels.

    model = load_model("dscnn-kws")[0]
    prune_(model, PruneConfig(method="vector4", sparsity=0.75))   # masks: weights zeroed in blocks
    prune_(model, PruneConfig(method="channel", sparsity=0.3))    # a smaller dense network

Mask methods zero the weights of the pruned blocks and keep the masks on the model
(`model.prune_masks`, layer name -> bool tensor, True = kept); `apply_masks(model)` zeroes them
again after an optimizer step. A model file needs no masks: a pruned weight is stored as an exact
zero, and `masks_from_zeros` finds the masks again (for QAT). Channel pruning removes output
channels with torch-pruning, whose dependency graph prunes the coupled layers with them (the
depthwise conv and batch norm after a pointwise conv, both sides of a residual addition, the
classifier's inputs); the classifier's outputs are never pruned.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import torch
import torch.nn as nn

from ..models import count_cost
from ..models.resize import layer_shapes
from .config import PruneConfig, PruneError, config_to_dict

_CONV = (nn.Conv1d, nn.Conv2d)
_LAYERS = _CONV + (nn.Linear,)


def polynomial_schedule(final: float, steps: int, initial: float = 0.0, power: int = 3) -> list[float]:
    """Sparsity after each of `steps` pruning steps (Zhu & Gupta 2017):
    s_t = s_f + (s_i - s_f) * (1 - t / steps) ** 3, t = 1..steps; the last is `final`."""
    return [final + (initial - final) * (1 - t / steps) ** power for t in range(1, steps + 1)]


def _check_float(model: nn.Module) -> None:
    if getattr(model, "quant_config", None) is not None:
        raise PruneError("the model is quantized: prune the float model, then quantize the pruned one")


def _in_per_group(m: nn.Module) -> int:
    return m.in_features if isinstance(m, nn.Linear) else m.in_channels // m.groups


def _depthwise(m: nn.Module) -> bool:
    return isinstance(m, _CONV) and m.groups > 1 and m.groups == m.in_channels


def _fits(m: nn.Module, cfg: PruneConfig) -> str | None:
    """Why granularity `cfg.method` does not fit layer `m` (None: it fits)."""
    if cfg.block > 1:
        n = _in_per_group(m)
        if n % cfg.block:
            return (f"{cfg.method} needs input channels (per group) divisible by {cfg.block}; "
                    f"it has {n}")
    return None


def prunable_layers(model: nn.Module, cfg: PruneConfig) -> list[str]:
    """The layers `cfg` prunes: `cfg.layers` (checked: each must exist, be a conv/linear layer and fit
    the granularity), else every conv/linear layer the granularity fits except the first one and the
    depthwise ones."""
    mods = dict(model.named_modules())
    if cfg.layers:
        for name in cfg.layers:
            if name not in mods or name == "":
                raise PruneError(f"--layers: no layer {name!r} in {type(model).__name__} "
                                 f"(layers: {', '.join(n for n, m in mods.items() if isinstance(m, _LAYERS))})")
            m = mods[name]
            if not isinstance(m, _LAYERS) or not isinstance(m._parameters.get("weight"), nn.Parameter):
                raise PruneError(f"layer {name!r} ({type(m).__name__}) cannot be pruned: only convolution and "
                                 f"linear layers with a weight parameter can")
            why = _fits(m, cfg)
            if why:
                raise PruneError(f"layer {name!r} ({type(m).__name__}): {why}")
        return list(cfg.layers)
    names = [n for n, m in mods.items() if isinstance(m, _LAYERS) and isinstance(m._parameters.get("weight"), nn.Parameter)]
    # depthwise kernels (k*k weights a channel) are left whole by default: on dscnn-kws, half of their
    # weights pruned at once costs 37 points of validation accuracy, half of one pointwise layer's 4.5
    names = [n for n in names[1:] if _fits(mods[n], cfg) is None and not _depthwise(mods[n])]
    if not names:
        need = f" (input channels per group divisible by {cfg.block})" if cfg.block > 1 else ""
        raise PruneError(f"{type(model).__name__}: no layer but the first fits --method {cfg.method}{need}")
    return names


def _blocks(w: torch.Tensor, method: str, block: int) -> torch.Tensor:
    """Per-block scores (mean squared weight), shaped to expand back onto w with `_expand`."""
    if method == "kernel" and w.dim() > 2:
        return w.square().mean(dim=tuple(range(2, w.dim())))  # (out, in)
    if block > 1:  # (out, in, *k) -> (out, *k, in / block, block)
        t = w.movedim(1, -1)
        return t.reshape(*t.shape[:-1], t.shape[-1] // block, block).square().mean(-1)
    return w.square()


def _expand(keep: torch.Tensor, w: torch.Tensor, method: str, block: int) -> torch.Tensor:
    if method == "kernel" and w.dim() > 2:
        return keep.reshape(*keep.shape, *([1] * (w.dim() - 2))).expand_as(w).clone()
    if block > 1:
        k = keep.unsqueeze(-1).expand(*keep.shape, block).reshape(*keep.shape[:-1], -1)
        return k.movedim(-1, 1).contiguous()
    return keep


def _keep_lowest_out(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    """True everywhere but at the `n_prune` smallest scores (ties: the first ones in order)."""
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    if n_prune > 0:
        keep[torch.argsort(scores.flatten(), stable=True)[:n_prune]] = False
    return keep.reshape(scores.shape)


@torch.no_grad()
def compute_masks(model: nn.Module, cfg: PruneConfig, sparsity: float | None = None) -> dict[str, torch.Tensor]:
    """Masks (True = kept) of the layers `cfg` prunes at `sparsity` (default cfg.sparsity), by
    magnitude: per layer, or with one threshold over all layers (scope global; scores are the mean
    squared weight of a block, comparable between block sizes)."""
    s = cfg.sparsity if sparsity is None else sparsity
    names = prunable_layers(model, cfg)
    weights = {n: model.get_submodule(n).weight for n in names}
    scores = {n: _blocks(w, cfg.method, cfg.block) for n, w in weights.items()}
    if cfg.scope == "global":
        flat = torch.cat([v.flatten() for v in scores.values()])
        # block counts weight each score by its weights, so the fraction removed is one of weights
        sizes = torch.cat([torch.full((v.numel(),), weights[n].numel() // v.numel()) for n, v in scores.items()])
        order = torch.argsort(flat, stable=True)
        removed = torch.cumsum(sizes[order], 0) <= round(s * sizes.sum().item())
        keep = torch.ones(flat.numel(), dtype=torch.bool)
        keep[order[removed]] = False
        parts, i = {}, 0
        for n, v in scores.items():
            parts[n] = keep[i : i + v.numel()].reshape(v.shape)
            i += v.numel()
    else:
        parts = {n: _keep_lowest_out(v, round(s * v.numel())) for n, v in scores.items()}
    return {n: _expand(parts[n], weights[n], cfg.method, cfg.block) for n in names}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Zero the pruned weights (after an optimizer step they may have moved)."""
    masks = getattr(model, "prune_masks", None) if masks is None else masks
    for name, mask in (masks or {}).items():
        model.get_submodule(name).weight.mul_(mask)
    return model


def masks_from_zeros(model: nn.Module) -> dict[str, torch.Tensor]:
    """Masks of a pruned model read back from its weights: every conv/linear layer with exact zeros
    (a trained weight is never exactly zero otherwise)."""
    masks = {}
    for name, m in model.named_modules():
        w = m._parameters.get("weight") if isinstance(m, _LAYERS) else None
        if isinstance(w, nn.Parameter) and bool((w == 0).any()):
            masks[name] = w.detach() != 0
    return masks


def keep_masks(masks: dict[str, torch.Tensor]):
    """An `after_step` callback for `tinykws.train.train`: re-zero the masked weights."""
    return lambda model: apply_masks(model, masks)


def sparsity_stats(model: nn.Module) -> dict:
    """Zero weights of the conv/linear layers: in all, and per layer with zeros."""
    layers, total, zeros = [], 0, 0
    for name, m in model.named_modules():
        w = getattr(m, "weight", None) if isinstance(m, _LAYERS) else None
        if not isinstance(w, torch.Tensor):
            continue
        n, z = w.numel(), int((w == 0).sum())
        total, zeros = total + n, zeros + z
        if z:
            layers.append({"name": name, "weights": n, "zeros": z, "sparsity": z / n})
    return {"weights": total, "zeros": zeros, "sparsity": zeros / max(1, total), "layers": layers}


# ---------------------------------------------------------------------------- channel pruning

def _channel_pruner(model: nn.Module, cfg: PruneConfig, ratio: float, steps: int = 1, schedule=None):
    import torch_pruning as tp

    x = torch.randn(1, *model.input_shape)
    mods = dict(model.named_modules())
    layers = [n for n, m in mods.items() if isinstance(m, _LAYERS)]
    if cfg.layers:
        prunable_layers(model, cfg)  # names checked
    keep = set(cfg.layers) if cfg.layers else set(layers[:-1])
    # the classifier's outputs are the classes; with --layers, every other layer is left whole
    ignored = [mods[n] for n in layers if n not in keep or n == layers[-1]]
    kw = {"iterative_pruning_ratio_scheduler": schedule} if schedule else {}
    with torch.enable_grad():  # its dependency graph is traced through autograd
        return tp.pruner.BasePruner(model, x, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=ratio,
                                    global_pruning=cfg.scope == "global", ignored_layers=ignored,
                                    iterative_steps=steps, round_to=cfg.round_to if cfg.round_to > 1 else None, **kw)


def channel_ratio(model: nn.Module, cfg: PruneConfig, sparsity: float | None = None) -> float:
    """The torch-pruning channel ratio for `sparsity`: itself, or (target macs) the ratio whose
    one-shot pruning removes that fraction of the MACs (bisection on copies)."""
    s = cfg.sparsity if sparsity is None else sparsity
    if cfg.target != "macs" or s == 0:
        return s
    dense = count_cost(model).macs
    lo, hi = 0.0, 0.99
    for _ in range(10):  # to 0.001: finer than one channel of any layer here
        mid = (lo + hi) / 2
        m = copy.deepcopy(model)
        _channel_pruner(m, cfg, mid).step()
        if 1 - count_cost(m).macs / dense < s:
            lo = mid
        else:
            hi = mid
    return hi


class ChannelPruning:
    """Channel pruning in steps (torch-pruning's iterative pruner): `step()` removes the next share
    of channels; the last step reaches the final ratio."""

    def __init__(self, model: nn.Module, cfg: PruneConfig, steps: int = 1):
        _check_float(model)
        self.model, self.ratio = model, channel_ratio(model, cfg)
        sched = (lambda r, n: [0.0] + polynomial_schedule(r, n)) if cfg.schedule == "polynomial" else None
        self.pruner = _channel_pruner(model, cfg, self.ratio, steps, sched)

    def step(self) -> None:
        with torch.no_grad():
            self.pruner.step()


# ---------------------------------------------------------------------------- the entry point

def prune_(model: nn.Module, config: PruneConfig, sparsity: float | None = None) -> nn.Module:
    """Prune `model` in place at `sparsity` (default config.sparsity) and return it. Sets
    `model.prune_config`, and `model.prune_masks` for the mask methods. Call it again with a higher
    sparsity for the next step of a schedule (mask methods)."""
    _check_float(model)
    if not isinstance(config, PruneConfig):
        raise PruneError(f"prune_ takes a PruneConfig, got {type(config).__name__}")
    if config.method == "channel":
        if getattr(model, "prune_masks", None):
            raise PruneError("the model carries pruning masks; channel-prune the unpruned model")
        cfg = config if sparsity is None else replace(config, sparsity=sparsity)
        ChannelPruning(model, cfg, 1).step()
    else:
        masks = compute_masks(model, config, sparsity)
        apply_masks(model, masks)
        model.prune_masks = masks
    model.prune_config = config
    return model


def prune_dict(model: nn.Module, config: PruneConfig) -> dict:
    """What a model file stores about its pruning: the settings, the measured sparsity and, for a
    channel-pruned model, the shapes of its layers."""
    d = {"config": config_to_dict(config), "sparsity": sparsity_stats(model)["sparsity"]}
    if config.method == "channel":
        d["shapes"] = layer_shapes(model)
    return d

