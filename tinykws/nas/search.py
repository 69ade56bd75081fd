"""The search: alternating weight and architecture steps on a SuperNet, then the derived model.

Loss of the architecture step (Peter, Roth & Pernkopf)::

    loss_arch = CE * (log(E[cost]) / log(target)) ** beta

with E[cost] the expected cost under the architecture distribution (see :mod:`.cost`).
beta = 0 searches for accuracy alone; a larger beta pulls the cost down harder.

Schedule: ``warmup_epochs`` epochs of weight steps only (paths drawn from the initial, uniform
distribution), then every ``arch_every`` weight steps one architecture step on a fresh batch
of training clips. Weights: Adam (or SGD with Nesterov momentum), linear warm-up then cosine
(the training schedule of ``tinykws train``); architecture parameters: Adam (betas 0, 0.999).
The papers' full searches use SGD, arch lr 1e-3..4e-3 and ~850 steps per epoch on the full data
set; on the mini set (26 steps per epoch) the defaults are Adam and a larger arch lr (0.02).

Run folder ``out``: ``config.json``, ``last.pt`` (full state every epoch; ``resume=True``
continues from it), ``metrics.jsonl``, and ``search.json`` (the derived architecture string,
its costs, the final architecture distribution).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..audio import build_frontend, get_preset
from ..checks import ConfigError, resolve_device, setting, validate
from ..data.augment import AugmentConfig, WaveAugment, spec_augment
from ..data.features import cached_features
from ..data.speech_commands import make_task
from ..outputs import check_output_dir, clear_dir, mark
from ..train.evaluate import predict_logits
from ..train.loop import run_epochs
from ..train.checkpoint import SEARCH_KEYS, read_checkpoint
from ..train.rundir import RunDir
from ..train.trainer import (TrainConfig, class_ids, epoch_indices, epoch_steps, load_train_data, lr_at,
                             make_optimizer, resumed_config, settings_from_dict)
from .cost import CostTable, arch_cost, make_cost_model
from .spaces import make_space
from .supernet import SuperNet


@dataclass
class SearchConfig:
    data: str = setting("", help="Speech Commands folder")
    out: str = setting("runs/search", help="search folder: checkpoints, metrics, search.json")
    space: str = setting("mfcc", choices=("mfcc", "raw"), help="mfcc or raw (end-to-end on the waveform)")
    frontend: str = setting("", help="front-end preset (default: paper10 for mfcc, raw for raw)")
    width: float = setting(1.0, lo=0, lo_open=True, help="width multiplier omega")
    layers: int = setting(12, lo=1, help="searchable layers")
    kernels: list = field(default_factory=lambda: [3, 5, 7])
    expansions: list = field(default_factory=lambda: [1, 2, 3, 4, 5, 6])
    raw_frontend: str = setting("conv_c16_k64_s32_p4", help="front end of the raw space (conv_... or sinc_...)")
    first_stride: list = field(default_factory=list)  # first searchable layer; [] = 2 (the papers), [1, 2] keeps 25x5
    cost: str = setting("macs", help="macs | ops | weight_bytes | peak_act_bytes | lut:PATH")
    target: float = setting(2.5e6, lo=0, lo_open=True, help="cost target, in the cost's unit")
    beta: float = setting(1.0, lo=0, help="exponent of the cost term (0: accuracy only)")
    hard_limit: bool = True  # the derived architecture must meet the target (see derive)
    weight_bits: int = setting(8, lo=1, hi=32, help="bits per weight for the weight-memory cost")
    act_bits: int = setting(8, lo=1, hi=32, help="bits per activation for the activation-memory cost")
    quant_bits: int = setting(8, lo=0, hi=8, help="fake-quantized weights during the search (0: float)")
    share_weights: bool = True  # candidates of a layer share weights (False: separate, as ProxylessNAS)
    epochs: int = setting(40, lo=1, help="search epochs")
    warmup_epochs: int = setting(10, lo=0, help="weight-only epochs before architecture steps")
    batch_size: int = setting(100, lo=1, help="clips per step")
    optimizer: str = setting("adam", choices=("adam", "sgd"), help="adam or sgd (Nesterov), for the weights")
    lr: float = setting(3e-3, lo=0, lo_open=True, help="learning rate of the weights")
    momentum: float = setting(0.9, lo=0, hi=1, hi_open=True)
    weight_decay: float = setting(4e-5, lo=0)
    label_smoothing: float = setting(0.1, lo=0, hi=1, hi_open=True)
    arch_lr: float = setting(0.02, lo=0, lo_open=True, help="Adam learning rate of the architecture parameters")
    arch_every: int = setting(1, lo=1, help="one architecture step per this many weight steps")
    task: str = setting("12", help="'12', '35' or your words a,b,c")
    silence_frac: float = setting(0.1, lo=0)
    unknown_frac: float = setting(0.1, lo=0)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    threads: int = setting(0, lo=0, help="torch CPU threads (0: torch's default)")
    device: str = setting("cpu", help="cpu | cuda | cuda:N | auto (the search only; data loading stays on the CPU)")

    def __post_init__(self):
        validate(self)
        make_task(self.task)  # a bad task fails here, naming it

    @classmethod
    def from_dict(cls, d: dict) -> "SearchConfig":
        return settings_from_dict(cls, d, "search")

    @property
    def frontend_preset(self) -> str:
        return self.frontend or ("raw" if self.space == "raw" else "paper10")  # as Arch.default_frontend

    def make_space(self, num_classes: int = 12):
        return make_space(self.space, self.frontend_preset, self.width, self.layers, tuple(self.kernels),
                          tuple(self.expansions), self.raw_frontend, num_classes, tuple(self.first_stride))

    def make_table(self, space) -> CostTable:
        return CostTable(space, make_cost_model(self.cost, self.weight_bits, self.act_bits))

    def train_config(self) -> TrainConfig:
        return TrainConfig(data=self.data, task=self.task, frontend=self.frontend_preset, silence_frac=self.silence_frac,
                           unknown_frac=self.unknown_frac, seed=self.seed, batch_size=self.batch_size)


@dataclass
class SearchResult:
    arch: str
    model: str  # registry name of the derived model (mbnet or mbnet_raw)
    frontend: str
    cost: dict  # of the derived architecture: params, macs, ops, weight_bytes, peak_act_bytes
    searched_cost: float  # the derived architecture's cost under the search's cost model
    expected_cost: float
    probs: list
    config: dict
    history: list = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def load(cls, path: str | Path) -> "SearchResult":
        path = Path(path)
        if path.is_dir():
            path = path / "search.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no search result (run `tinykws search` first)")
        return cls(**json.loads(path.read_text()))


def derive(probs: torch.Tensor, table: CostTable, limit: float | None = None) -> list[int]:
    """The derived architecture: the most probable block of every layer; with ``limit``, blocks are
    then swapped for cheaper ones, greedily at the smallest loss of log-probability per unit of
    cost saved, until the architecture's cost is at most ``limit`` (or nothing cheaper is left),
    and finally swapped back to more probable ones (largest gain first) while the cost stays
    within ``limit``."""
    logp = torch.log(probs.double().clamp_min(1e-30)).masked_fill(~table.allowed, float("-inf"))
    choices = logp.argmax(1).tolist()
    if limit is None:
        return choices
    while (cur := table.of(choices)) > limit:
        best = None
        for l, j0 in enumerate(choices):
            for j in range(logp.shape[1]):
                if not table.allowed[l, j] or table.values[l, j] >= table.values[l, j0]:
                    continue
                saved = cur - table.of(choices[:l] + [j] + choices[l + 1 :])
                if saved <= 0:
                    continue
                score = float(logp[l, j0] - logp[l, j]) / saved
                if best is None or score < best[0]:
                    best = (score, l, j)
        if best is None:
            return choices
        choices[best[1]] = best[2]
    while True:  # then spend what is left of the budget on more probable blocks
        best = None
        for l, j0 in enumerate(choices):
            for j in range(logp.shape[1]):
                gain = float(logp[l, j] - logp[l, j0])
                if table.allowed[l, j] and gain > 0 and (best is None or gain > best[0]) \
                        and table.of(choices[:l] + [j] + choices[l + 1 :]) <= limit:
                    best = (gain, l, j)
        if best is None:
            return choices
        choices[best[1]] = best[2]


def random_arch(table: CostTable, limit: float | None = None, seed: int = 0) -> list[int]:
    """Random-search baseline: a random architecture derived exactly like a searched one.

    Per-layer probabilities are drawn at random (softmax of standard-normal logits) in place of
    the learned ones; :func:`derive` then applies the same hard limit, so searched and random
    architectures of one budget can be compared trained the same way."""
    g = torch.Generator().manual_seed(int(seed))
    logits = torch.randn(tuple(table.values.shape), generator=g, dtype=torch.float64)
    return derive(torch.softmax(logits, 1), table, limit)


def check_search_config(cfg: SearchConfig):
    """Space and cost table of a configuration; bad settings raise a clear ValueError before any data loads
    (the ranges of single settings are checked when the SearchConfig is made)."""
    if cfg.warmup_epochs >= cfg.epochs:
        raise ConfigError(f"--warmup-epochs must be below --epochs (got {cfg.warmup_epochs} and {cfg.epochs})")
    space = cfg.make_space()
    table = cfg.make_table(space)
    table.check_target(cfg.target)
    return space, table


def search(cfg: SearchConfig, resume: bool = False, overwrite: bool = False, progress: bool = True,
           data=None, log=print, given=None) -> SearchResult:
    """Run (or continue) a search; returns the derived architecture and its costs. With `resume`,
    the settings named in `given` must agree with the stored run's (a larger `epochs` extends it)."""
    run = RunDir(cfg.out, inputs=[cfg.data])
    run.prepare(resume, overwrite)
    state = None
    if resume:
        state = read_checkpoint(run.last, SEARCH_KEYS)
        cfg = resumed_config(SearchConfig, state["config"], cfg, given, state["epoch"] + 1)
    space, table = check_search_config(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run.start(asdict(cfg), resume=resume)
    try:
        return _search(cfg, run, state, space, table, progress, data, log)
    except BaseException:
        run.abandon()  # a start that failed before its first checkpoint leaves nothing behind
        raise


def _search(cfg, run, state, space, table, progress, data, log) -> SearchResult:
    out = run.path
    tcfg = cfg.train_config()
    data = data or load_train_data(tcfg, progress)
    if len(data.labels) != space.num_classes:
        space = cfg.make_space(len(data.labels))
        table = cfg.make_table(space)
    fe_cfg = get_preset(cfg.frontend_preset)
    device = resolve_device(cfg.device)  # cuda on a machine without one: a one-line error naming --device
    frontend = build_frontend(fe_cfg)
    torch.manual_seed(cfg.seed)
    net = SuperNet(space, cfg.quant_bits, share_weights=cfg.share_weights)
    dev_frontend = build_frontend(fe_cfg).to(device)
    net.to(device)
    wparams = list(net.weight_parameters())
    opt_w = make_optimizer(wparams, cfg)
    opt_a = torch.optim.Adam([net.alpha], lr=cfg.arch_lr, betas=(0.0, 0.999), eps=1e-8)

    augment = WaveAugment(cfg.augment, data.background)
    val_feats = cached_features(data.val, frontend, fe_cfg.key()).to(device)
    val_labels = torch.from_numpy(data.val.labels)
    unknown_id, silence_id = class_ids(data.labels)
    steps = epoch_steps(data.train.labels, unknown_id, cfg)
    total = steps * cfg.epochs
    log_target = math.log(cfg.target)
    # fixed, un-augmented training clips to recalibrate BatchNorm statistics of the derived path
    calib_idx = np.random.default_rng(cfg.seed).permutation(len(data.train))[: 4 * cfg.batch_size]
    with torch.no_grad():
        calib = [dev_frontend(torch.from_numpy(data.train.waves(calib_idx[i : i + cfg.batch_size])).to(device))
                 for i in range(0, len(calib_idx), cfg.batch_size)]

    elapsed = 0.0
    if state is not None:
        net.load_state_dict(state["net"])
        opt_w.load_state_dict(state["opt_w"])
        opt_a.load_state_dict(state["opt_a"])
        elapsed = state.get("seconds", 0.0)

    def batch(bi, g):
        y = torch.from_numpy(data.train.labels[bi])
        x = augment(torch.from_numpy(data.train.waves(bi)), g, y == silence_id)
        with torch.no_grad():
            feats = dev_frontend(x.to(device))
            if feats.dim() == 3:
                feats = spec_augment(feats, cfg.augment, g)
        return feats, y.to(device)

    def one_epoch(ep):
        g, rng = ep.g, ep.rng
        idx = epoch_indices(data.train.labels, unknown_id, cfg.unknown_frac, rng)
        arch_phase = ep.index >= cfg.warmup_epochs
        net.train()
        t0, seen, loss_sum, correct, arch_loss_sum, n_arch = time.time(), 0, 0.0, 0, 0.0, 0
        for b in range(steps):
            # weight step: one sampled path per layer
            bi = idx[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            feats, y = batch(bi, g)
            net.sample_single(g)
            for group in opt_w.param_groups:
                group["lr"] = lr_at(ep.index * steps + b, total, steps, cfg.lr)
            logits = net(feats)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            opt_w.zero_grad(set_to_none=True)
            loss.backward()
            opt_w.step()
            seen += len(y)
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            # architecture step: two sampled paths per layer behind binary gates, on a fresh batch
            if arch_phase and b % cfg.arch_every == 0:
                feats, y = batch(rng.choice(idx, min(cfg.batch_size, len(idx)), replace=False), g)
                net.sample_pair(g)
                for p in wparams:
                    p.requires_grad_(False)
                ce = F.cross_entropy(net(feats), y)
                expected = table.expected(net.probs().cpu()).to(device=ce.device, dtype=ce.dtype)
                loss_a = ce * (torch.log(expected) / log_target) ** cfg.beta
                opt_a.zero_grad(set_to_none=True)
                loss_a.backward()
                opt_a.step()
                net.rescale_pair()
                for p in wparams:
                    p.requires_grad_(True)
                arch_loss_sum += loss_a.item()
                n_arch += 1
            ep.bar.step(f"search {ep.number}/{ep.epochs} loss {loss_sum / seen:.3f}")
        with torch.no_grad():
            choices = derive(net.probs().cpu(), table, cfg.target if cfg.hard_limit else None)
        net.set_path(choices)
        net.recalibrate_bn(calib)
        val_acc = float((predict_logits(net, val_feats).argmax(1).cpu() == val_labels).float().mean())
        with torch.no_grad():
            exp_cost = float(table.expected(net.probs().cpu()))
        rec = {"epoch": ep.number, "phase": "search" if arch_phase else "warmup",
               "train_loss": round(loss_sum / seen, 5), "train_acc": round(correct / seen, 5),
               "arch_loss": round(arch_loss_sum / n_arch, 5) if n_arch else None,
               "val_acc_derived": round(val_acc, 5), "expected_cost": exp_cost,
               "derived_cost": table.of(choices), "arch": space.arch(choices),
               "seconds": round(time.time() - t0, 1)}
        return rec, val_acc

    def state_fn():
        return {"config": asdict(cfg), "net": net.state_dict(), "opt_w": opt_w.state_dict(),
                "opt_a": opt_a.state_dict(), "seconds": elapsed + time.time() - t_start}

    def describe(rec, best):
        return (f"epoch {rec['epoch']}/{cfg.epochs} [{rec['phase']}]  loss {rec['train_loss']:.4f}  val(derived) "
                f"{rec['val_acc_derived']:.4f}  E[{table.model.name}] {rec['expected_cost']:,.0f}  derived "
                f"{rec['derived_cost']:,.0f}  {rec['arch']}  ({rec['seconds']:.0f} s)")

    t_start = time.time()
    history = run_epochs(run, epochs=cfg.epochs, steps=steps, seed=cfg.seed, state=state, epoch_fn=one_epoch,
                         state_fn=state_fn, describe=describe, progress=progress, log=log)

    with torch.no_grad():
        probs = net.probs().cpu()
    choices = derive(probs, table, cfg.target if cfg.hard_limit else None)
    arch = space.arch(choices)
    result = SearchResult(
        arch=arch, model=space.model_name, frontend=cfg.frontend_preset,
        cost=arch_cost(arch, cfg.frontend_preset, space.num_classes, cfg.weight_bits, cfg.act_bits),
        searched_cost=table.of(choices), expected_cost=float(table.expected(probs)),
        probs=[[round(v, 5) for v in row] for row in probs.tolist()], config=asdict(cfg), history=history,
        seconds=round(elapsed + time.time() - t_start, 1))
    (out / "search.json").write_text(json.dumps(result.to_dict(), indent=1))
    return result


run_search = search  # the package-level name (``tinykws.nas.search`` is this module)


def retrain(result: SearchResult | str, out: str | Path, data: str, epochs: int = 40, resume: bool = False,
            overwrite: bool = False, progress: bool = True, log=print, train_data=None, **train_kw):
    """Train the derived architecture from scratch (``tinykws train --model mbnet --arch ...``)."""
    from ..train import train

    if isinstance(result, str):
        from ..models.arch import parse_arch

        a = parse_arch(result)
        model, arch, fe = a.model_name, result, train_kw.pop("frontend", a.default_frontend)
    else:
        model, arch, fe = result.model, result.arch, train_kw.pop("frontend", result.frontend)
    cfg = TrainConfig(data=str(data), out=str(out), model=model, model_kwargs={"arch": arch}, frontend=fe,
                      epochs=epochs, **train_kw)
    return train(cfg, resume=resume, overwrite=overwrite, progress=progress, data=train_data, log=log)


def run_trial(cfg: SearchConfig, train_epochs: int = 40, progress: bool = False, log=print, resume: bool = True,
              data=None, train_kw: dict | None = None, overwrite: bool = False) -> dict:
    """Search, train the derived model from scratch, evaluate on the test split: one row of the table.

    Files: ``cfg.out/search`` (the search), ``cfg.out/train`` (training), ``cfg.out/row.json``.
    With ``resume``, finished parts are reused and cut-off parts continue."""
    from ..train import evaluate_dir, load_bundle

    root = Path(cfg.out)
    check_output_dir(root, overwrite, [cfg.data], resume=resume)
    if not resume and root.exists() and any(root.iterdir()):
        clear_dir(root)
    check_search_config(cfg)  # bad settings fail before the folder is made
    mark(root)
    row_path = root / "row.json"
    if resume and row_path.exists():
        return json.loads(row_path.read_text())
    t0 = time.time()
    scfg = SearchConfig.from_dict({**asdict(cfg), "out": str(root / "search")})
    if resume and (root / "search" / "search.json").exists():
        res = SearchResult.load(root / "search")
    else:
        can_resume = resume and (root / "search" / "last.pt").exists()
        res = search(scfg, resume=can_resume, overwrite=not can_resume, progress=progress, data=data, log=log)
    tdir = root / "train"
    best = tdir / "best.pt"
    tdone = False
    if resume and (tdir / "last.pt").exists():
        st = read_checkpoint(tdir / "last.pt")
        tdone = st["epoch"] + 1 >= train_epochs
        if not tdone:
            retrain(res, tdir, cfg.data, train_epochs, resume=True, progress=progress, log=log, **(train_kw or {}))
    else:
        retrain(res, tdir, cfg.data, train_epochs, overwrite=True, progress=progress, log=log,
                seed=cfg.seed, **(train_kw or {}))
    bundle = load_bundle(best)
    test, _ = evaluate_dir(best, cfg.data, "testing")
    cost = arch_cost(res.arch, bundle.train_config.get("frontend", res.frontend), len(bundle.labels))
    row = {"name": root.name, "space": cfg.space, "frontend": (train_kw or {}).get("frontend", res.frontend), "width": cfg.width, "beta": cfg.beta,
           "cost_kind": cfg.cost, "target": cfg.target, "arch": res.arch, "model": res.model, **cost,
           "train_epochs": train_epochs,
           "val_acc": bundle.metrics.get("val_acc"), "test_acc": test.accuracy, "test_n": test.n,
           "search_seconds": res.seconds, "seconds": round(time.time() - t0, 1), "model_file": str(best)}
    row_path.write_text(json.dumps(row, indent=1))
    return row


def short_search_demo(data: str | Path, out: str | Path, epochs: int = 4, train_epochs: int = 10,
                      target: float = 2.0e6, beta: float = 2.0, progress: bool = False, log=print) -> dict:
    """A short MFCC search on a data set, the derived model trained and tested (for the main job)."""
    cfg = SearchConfig(data=str(data), out=str(out), width=0.5, layers=6, kernels=[3, 5], expansions=[1, 2, 3],
                       target=target, beta=beta, epochs=epochs, warmup_epochs=epochs // 2,
                       arch_lr=0.05)
    row = run_trial(cfg, train_epochs=train_epochs, progress=progress, log=log, resume=False)
    Path(out, "report.md").write_text(
        f"# Short architecture search\n\nDerived architecture: `{row['arch']}`\n\n"
        f"{row['macs'] / 1e6:.3f} M MACs, {row['params']:,} parameters, {row['weight_bytes'] / 1024:.1f} KiB weights "
        f"(int8)\n\nTest accuracy after {train_epochs} training epochs: {100 * row['test_acc']:.2f}% "
        f"({row['test_n']} clips)\n")
    return row
