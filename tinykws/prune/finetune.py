"""Prune a model file with fine-tuning on its training data: the gradual schedule.

    bundle = prune_model("dscnn-kws", PruneConfig(method="channel", sparsity=0.5, target="macs"),
                         data="speech_commands_mini")
    save_bundle(bundle, "dscnn_ch50.pt")    # evaluates, quantizes and deploys like any model file

Schedule: `steps` pruning steps at the sparsities of `polynomial_schedule` (Zhu & Gupta's cubic
ramp: large steps first, while the network has redundancy to spare, small ones at the end); between
two steps the model fine-tunes for a share of `ramp` x `epochs`, and after the last step for the rest
of the epochs, keeping the best epoch by validation accuracy. Masked weights are re-zeroed after
every optimizer step. `schedule="oneshot"` prunes once, then fine-tunes.
"""
from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from ..models import count_cost
from .config import PruneConfig, PruneError
from .core import ChannelPruning, keep_masks, polynomial_schedule, prune_, prune_dict, sparsity_stats


def plan_steps(config: PruneConfig) -> list[tuple[float, int]]:
    """(sparsity, fine-tuning epochs after it) of each pruning step."""
    e = config.epochs
    n = 1 if config.schedule == "oneshot" or e == 0 else min(config.steps, e)
    gap = lambda k: max(1, round(config.ramp * e / (k - 1))) if k > 1 else 0  # noqa: E731
    while n > 1 and e - (n - 1) * gap(n) < 1:
        n -= 1
    levels = polynomial_schedule(config.sparsity, n) if n > 1 else [config.sparsity]
    return [(s, gap(n) if i < n - 1 else e - (n - 1) * gap(n)) for i, s in enumerate(levels)]


def data_dir_of(bundle, data) -> Path:
    path = data or bundle.train_config.get("data")
    if not path:
        raise PruneError("fine-tuning needs data: pass --data DIR (a Speech Commands folder)")
    if not Path(path).is_dir():
        raise PruneError(f"fine-tuning needs data: {path} is not a folder; pass --data DIR")
    return Path(path)


def prune_model(model=None, config: PruneConfig | None = None, data=None, log=print, progress: bool = False):
    """Prune a float model file (or shipped name; None: the shipped model) and return its ModelBundle."""
    from ..train import ModelBundle, TrainConfig, load_model, load_train_data, train

    config = config or PruneConfig()
    net, bundle = load_model(model)
    if bundle.quant:
        raise PruneError(f"{model}: a quantized model file; prune the float model, then quantize the pruned one")
    if bundle.prune:
        raise PruneError(f"{model}: already pruned ({bundle.prune['config']['method']}); prune the unpruned model")
    dense_macs = count_cost(net).macs
    plan = plan_steps(config)
    channel = ChannelPruning(net, config, len(plan)) if config.method == "channel" else None
    if config.method != "channel":
        from .core import prunable_layers

        prunable_layers(net, config)  # a granularity that does not fit fails before any data is read
    cfg, data_ = None, None
    if config.epochs:
        data_dir = data_dir_of(bundle, data)
        base = TrainConfig.from_dict({**bundle.train_config, "data": str(data_dir)}) if bundle.train_config else \
            TrainConfig(data=str(data_dir), model=bundle.arch, model_kwargs=bundle.model_kwargs)
        cfg = replace(base, lr=config.lr, warmup_epochs=0, seed=config.seed, teacher=list(config.teacher),
                      kd_alpha=config.kd_alpha)
        if config.augment == "spec":  # unchanged waveforms: the features come from the cache
            cfg = replace(cfg, augment=replace(cfg.augment, time_shift_ms=0.0, noise_prob=0.0, gain_db=0.0, speed=0.0))
        data_ = load_train_data(cfg, progress)
    best = None
    with tempfile.TemporaryDirectory(prefix="tinykws-prune-") as tmp:
        for i, (s, epochs) in enumerate(plan):
            hook = None
            if channel is not None:
                channel.step()
            else:
                prune_(net, config, sparsity=s)
                hook = keep_masks(net.prune_masks)
            net.prune_config = config
            info = prune_dict(net, config)
            info.update(macs=count_cost(net).macs, dense_macs=dense_macs)
            log(f"pruning step {i + 1}/{len(plan)}: {config.method} at {100 * s:.1f}% -> "
                f"{100 * info['sparsity']:.1f}% zero weights, {info['macs']:,} MACs"
                + (f"; fine-tuning {epochs} epochs" if epochs else ""))
            if epochs:
                best = train(replace(cfg, out=f"{tmp}/step{i + 1}", epochs=epochs), data=data_, model=net,
                             progress=progress, log=log, prune=info, after_step=hook)
    if best is None:  # no fine-tuning
        best = ModelBundle(bundle.arch, bundle.labels, bundle.frontend,
                           {k: v.detach().clone() for k, v in net.state_dict().items()}, bundle.model_kwargs,
                           {}, bundle.train_config, prune=info)
    best.name = bundle.name
    best.metrics = {**best.metrics, "sparsity": sparsity_stats(net)["sparsity"], "macs": info["macs"],
                    "dense_macs": dense_macs}
    return best
