"""Training: one readable loop, checkpointed every epoch, resumable to the same result."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..audio import build_frontend, get_preset
from ..checks import DEVICE_HELP, ConfigError, resolve_device, setting, validate
from ..data.augment import AugmentConfig, WaveAugment, spec_augment
from ..data.clips import ClipSet, load_background, load_clips
from ..data.features import cached_features
from ..data.speech_commands import SILENCE, UNKNOWN, SpeechCommands, make_task
from ..models import create_model
from .checkpoint import ModelBundle, atomic_save, load_bundle, read_checkpoint, save_bundle
from .distill import Teachers
from .evaluate import evaluate_features, prepare_model
from .loop import run_epochs
from .rundir import RunDir, config_changes


def settings_from_dict(cls, d: dict, what: str):
    """A settings dataclass (with an `augment` field) from its JSON form; unknown keys are an error."""
    d = dict(d)
    unknown = set(d) - set(cls.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown {what} settings {sorted(unknown)}")
    d["augment"] = AugmentConfig(**d.get("augment", {}))
    return cls(**d)


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def check_device_spec(spec: str, option: str = "device") -> None:
    """A `--device` value's form (auto, cpu, cuda, cuda:N); whether that GPU exists is checked when
    training starts (`resolve_device`), so that a run stored on a GPU machine still loads elsewhere."""
    head, _, index = str(spec).strip().lower().partition(":")
    if head not in ("auto", "cpu", "cuda") or (index and (head != "cuda" or not index.isdigit())):
        raise ConfigError(f"--{option} must be {DEVICE_HELP} (got {spec!r})")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run (None: plain fp32). Mixed precision runs on CUDA only: on the CPU,
    bf16 autocast is slower than fp32 for these small convolutions and changes the results."""
    if device.type != "cuda":
        if precision in ("bf16", "fp16"):
            raise ConfigError(f"--precision {precision} needs a CUDA device (this run trains on {device})")
        return None
    if precision == "fp32":
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def plain_state_dict(model: torch.nn.Module) -> dict:
    """The model's weights as contiguous CPU copies (what model files store, whatever the device/layout)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


@dataclass
class TrainConfig:
    data: str = setting("", help="Speech Commands folder (word folders, lists)")
    out: str = setting("runs/kws", help="run folder: checkpoints, metrics, best model")
    model: str = setting("dscnn_mlperf", help="architecture from the registry (see `tinykws models`)")
    model_kwargs: dict = field(default_factory=dict)
    task: str = setting("12", help="'12' (10 keywords + silence + unknown), '35' (every word) or your words a,b,c")
    frontend: str = setting("mlperf", help="front-end preset: mlperf, device, paper10..paper40, raw")
    extra_data: list[str] = field(default_factory=list)  # more folders whose every clip is training data
    epochs: int = setting(80, lo=1, help="training epochs")
    batch_size: int = setting(100, lo=1, help="clips per step")
    optimizer: str = setting("adam", choices=("adam", "sgd"), help="adam (AdamW) or sgd (Nesterov)")
    lr: float = setting(3e-3, lo=0, lo_open=True, help="peak learning rate (warm-up, then cosine decay)")
    momentum: float = setting(0.9, lo=0, hi=1, hi_open=True)
    weight_decay: float = setting(1e-4, lo=0, help="weight decay on kernels and weight matrices")
    label_smoothing: float = setting(0.1, lo=0, hi=1, hi_open=True, help="label smoothing")
    warmup_epochs: int = setting(1, lo=0)
    silence_frac: float = setting(0.1, lo=0)
    unknown_frac: float = setting(0.2, lo=0, help="unknown clips drawn afresh each epoch, as a fraction of keyword clips")
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = setting(0, help="seed of initialisation, data order and augmentation")
    threads: int = setting(0, lo=0, help="torch CPU threads (0: torch's default)")
    device: str = setting("auto", help=DEVICE_HELP)
    precision: str = setting("auto", choices=PRECISIONS, help="auto (bf16 or fp16 autocast on a GPU, fp32 on the CPU), "
                             "fp32, bf16 or fp16 (the last two: CUDA only)")
    teacher: list[str] = field(default_factory=list)  # model files / shipped names to distill from (tinykws.train.distill)
    kd_temperature: float = setting(4.0, lo=0, lo_open=True, help="distillation temperature of the soft targets")
    kd_alpha: float = setting(0.5, lo=0, hi=1, help="weight of the distillation term (1 - alpha: cross-entropy)")
    init: str = setting("", help="start from the weights of this model file or shipped name (fine-tuning); "
                                 "its architecture, labels and front end must be this run's")

    def __post_init__(self):
        validate(self)
        make_task(self.task)  # a bad task fails here, naming it
        check_device_spec(self.device)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return settings_from_dict(cls, d, "training")


@dataclass
class TrainData:
    train: ClipSet
    val: ClipSet
    background: list
    labels: list[str]


def load_train_data(cfg: TrainConfig, progress: bool = True) -> TrainData:
    """Training clips (every unknown clip kept, drawn per epoch) and validation clips."""
    task = make_task(cfg.task)
    labels = task.labels
    ds = SpeechCommands.open(cfg.data)
    if ds.test_set_layout:
        raise ValueError(f"{cfg.data}: an official test-set folder has no training split")
    train = load_clips(ds, ds.entries("training", task, cfg.silence_frac, None, cfg.seed), labels, cfg.seed, progress=progress)
    val = load_clips(ds, ds.entries("validation", task, cfg.silence_frac, 0.1, cfg.seed), labels, cfg.seed, progress=progress)
    for extra in cfg.extra_data:  # e.g. synthetic speech: all its splits serve training
        eds = SpeechCommands.open(extra)
        ents = [e for s in ("training", "validation", "testing") for e in eds.entries(s, task, 0.0, None, cfg.seed)]
        more = load_clips(eds, ents, labels, cfg.seed, progress=progress)
        train = ClipSet(np.concatenate([train.audio, more.audio]), np.concatenate([train.labels, more.labels]),
                        train.names + more.names, labels, "", train.skipped + more.skipped, train.notes + more.notes)
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"{cfg.data}: the training or validation split is empty")
    return TrainData(train, val, load_background(ds), labels)


def epoch_indices(labels: np.ndarray, unknown_id: int | None, frac: float, rng: np.random.Generator) -> np.ndarray:
    """Every keyword and silence clip, plus a fresh draw of unknown clips (frac x keyword clips)."""
    if unknown_id is None:
        return rng.permutation(len(labels))
    unk = np.flatnonzero(labels == unknown_id)
    rest = np.flatnonzero(labels != unknown_id)
    n = min(len(unk), int(round(frac * len(rest))))
    return rng.permutation(np.concatenate([rest, rng.choice(unk, n, replace=False)]))


def class_ids(labels: list[str]) -> tuple[int | None, int]:
    """Indices of the unknown class (None if absent) and the silence class (-1 if absent)."""
    return (labels.index(UNKNOWN) if UNKNOWN in labels else None, labels.index(SILENCE) if SILENCE in labels else -1)


def epoch_steps(labels: np.ndarray, unknown_id: int | None, cfg) -> int:
    """Steps per epoch: the epoch's draw (`epoch_indices`) has the same size every epoch."""
    n = len(epoch_indices(labels, unknown_id, cfg.unknown_frac, np.random.default_rng(0)))
    return math.ceil(n / cfg.batch_size)


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    """AdamW or Nesterov SGD from a settings object (optimizer, lr, momentum, weight_decay);
    weight decay on weight matrices and kernels only, not on biases and norms. AdamW runs as one fused
    kernel per step (CPU and CUDA)."""
    params = list(params)
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    if cfg.optimizer == "adam":
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}: use adam or sgd")


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up then cosine decay to zero."""
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False, progress: bool = True,
          data: TrainData | None = None, log=print, model: torch.nn.Module | None = None,
          quant: dict | None = None, extra_loss=None, given=None, prune: dict | None = None,
          after_step=None) -> ModelBundle:
    """Train and return the best model (by validation accuracy). Files in cfg.out:
    `last.pt` (full state, every epoch), `best.pt` (model file), `metrics.jsonl`, `config.json`.

    `resume` continues the run in cfg.out with its stored settings; `given` names the settings the
    caller set on purpose: those that contradict the stored run are an error (a larger `epochs` extends
    it). `overwrite` replaces an old run folder tinykws wrote (a clean start).

    `model` starts from a given network (e.g. a pretrained one prepared for quantization-aware
    training) instead of a fresh `cfg.model`; `quant` (and `prune`, the pruning settings and shapes)
    is then stored in the model files so that `ModelBundle.build` can rebuild it. `after_step(model)`
    runs after every optimizer step (pruning keeps its masks with it)."""
    resolve_device(cfg.device)  # a GPU this machine lacks fails here, before the run folder is touched
    autocast_dtype(cfg.precision, resolve_device(cfg.device))
    run = RunDir(cfg.out, inputs=[cfg.data, *cfg.extra_data])
    run.prepare(resume, overwrite)
    state = None
    if resume:
        state = read_checkpoint(run.last)
        cfg = resumed_config(TrainConfig, state["config"], cfg, given, state["epoch"] + 1)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # everything that can be wrong with the settings fails here, before any file is written
    device = resolve_device(cfg.device)
    amp = autocast_dtype(cfg.precision, device)
    if quant and amp is not None:
        amp = None  # fake quantization needs exact fp32 ranges and rounding: QAT trains in fp32
    labels = make_task(cfg.task).labels
    fe_cfg = get_preset(cfg.frontend)
    kind = getattr(model or create_model(cfg.model, num_classes=len(labels), **cfg.model_kwargs), "input_kind", fe_cfg.kind)
    if kind != fe_cfg.kind:
        raise ValueError(f"model {cfg.model!r} takes {kind} input but front end {cfg.frontend!r} "
                         f"gives {fe_cfg.kind}; use --frontend {'raw' if kind == 'raw' else 'mlperf'}")
    teachers = Teachers.load(cfg.teacher, labels, cfg.kd_temperature, cfg.kd_alpha) if cfg.teacher else None
    torch.manual_seed(cfg.seed)
    if model is None and cfg.init:
        model = initial_model(cfg, labels)
    if model is None:
        model = create_model(cfg.model, num_classes=len(labels), input_shape=fe_cfg.feature_shape, **cfg.model_kwargs)
    model = prepare_model(model, device)
    opt = make_optimizer(model.parameters(), cfg)
    data = data or load_train_data(cfg, progress)
    log(f"training: {data.train.summary()}; validation: {data.val.summary()}")
    for path, problem in (data.train.skipped + data.val.skipped)[:10]:
        log(f"  skipped {problem}")
    steps_per_epoch = epoch_steps(data.train.labels, class_ids(data.labels)[0], cfg)
    run.start(asdict(cfg), resume=resume)
    try:
        return _train_loop(cfg, run, state, data, model, opt, fe_cfg, steps_per_epoch, progress, log, quant, extra_loss,
                           device, amp, prune, after_step, teachers)
    except BaseException:
        run.abandon()  # a start that failed before its first checkpoint leaves nothing behind
        raise


def initial_model(cfg: TrainConfig, labels: list[str]) -> torch.nn.Module:
    """The network of `cfg.init` with its weights, checked against the run's settings."""
    from .checkpoint import load_model

    model, b = load_model(cfg.init)
    if b.frontend.key() != get_preset(cfg.frontend).key():
        raise ValueError(f"--init {cfg.init}: its front end differs from --frontend {cfg.frontend} of this run")
    for what, theirs, ours in (("architecture", b.arch, cfg.model), ("labels", list(b.labels), list(labels)),
                               ("model settings", b.model_kwargs, cfg.model_kwargs)):
        if theirs != ours:
            raise ValueError(f"--init {cfg.init}: {what} {theirs} there, {ours} in this run (they must match)")
    if b.quant or b.prune:
        raise ValueError(f"--init {cfg.init}: a quantized or pruned model cannot start a plain training run")
    return model.train()


def resumed_config(cls, stored: dict, cfg, given, done: int):
    """The stored run's settings; a given setting that contradicts them is an error naming it.
    A larger `epochs` extends the run (the learning-rate schedule is then that of the new length)."""
    old = cls.from_dict(stored)
    if not given:
        return old
    new = asdict(cfg)
    changed = config_changes(stored, {k: new[k] for k in given if k in new})
    if changed:
        raise ValueError(f"{cfg.out}: --resume continues the stored run; these options contradict it: "
                         + ", ".join(OPTION_NAMES.get(k, "--" + k.replace("_", "-")) for k in changed)
                         + " (leave them out, or start a new run with --overwrite)")
    if "epochs" in given and cfg.epochs != old.epochs:
        if cfg.epochs < done:
            raise ValueError(f"{cfg.out}: --epochs {cfg.epochs} is fewer than the {done} epochs already run")
        old.epochs = cfg.epochs
    for name in ("threads", "device", "precision"):  # where and how it runs, not what it computes
        if name in given:
            setattr(old, name, getattr(cfg, name))
    return old


# the CLI options that set each training setting (for error messages)
OPTION_NAMES = {"model_kwargs": "--arch/--dropout", "augment": "--speed/--specaug", "task": "--task/--keywords"}


def _train_loop(cfg, run, state, data, model, opt, fe_cfg, steps_per_epoch, progress, log, quant, extra_loss,
                device=torch.device("cpu"), amp=None, prune=None, after_step=None, teachers=None):
    frontend = build_frontend(fe_cfg)
    augment = WaveAugment(cfg.augment, data.background)
    val_feats = cached_features(data.val, frontend, fe_cfg.key())
    # with no waveform augmentation the training features never change: take them from the cache
    train_feats = cached_features(data.train, frontend, fe_cfg.key()).to(device) if not augment.active else None
    frontend = frontend.to(device)  # augmentation and MFCC run batched on the training device
    val_labels = torch.from_numpy(data.val.labels)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    unknown_id, silence_id = class_ids(data.labels)
    total = steps_per_epoch * cfg.epochs
    if state is not None:
        model.load_state_dict(state["model"]["state_dict"])
        opt.load_state_dict(state["optimizer"])

    def bundle(metrics: dict) -> ModelBundle:
        return ModelBundle(cfg.model, data.labels, fe_cfg, plain_state_dict(model),
                           cfg.model_kwargs, metrics, asdict(cfg), quant=quant or {}, prune=prune or {})

    def one_epoch(ep):
        idx = epoch_indices(data.train.labels, unknown_id, cfg.unknown_frac, ep.rng)
        model.train()
        t0, seen = time.time(), 0
        # running sums stay on the device (no host sync per step); float64 like Python's floats
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for b in range(steps_per_epoch):
            bi = idx[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            y_cpu = torch.from_numpy(data.train.labels[bi])
            y = y_cpu.to(device, non_blocking=True)
            with torch.no_grad():
                if train_feats is None:
                    raw = torch.from_numpy(data.train.waves(bi)).to(device, non_blocking=True)
                    keyword = (y_cpu != silence_id) & (y_cpu != unknown_id) if unknown_id is not None else None
                    waves, partial = augment.partials(raw, ep.g, y_cpu == silence_id, keyword)
                    if partial.any():  # only part of a keyword left in the window: a negative
                        y_cpu = torch.where(partial, unknown_id, y_cpu)
                        y = y_cpu.to(device, non_blocking=True)
                    feats = frontend(waves)
                else:
                    waves, feats = None, train_feats[torch.from_numpy(bi).to(device)]
                if teachers is not None:  # the same (augmented) waveforms, before SpecAugment
                    tw = waves if waves is not None else torch.from_numpy(data.train.waves(bi))
                    soft = teachers.soft_targets(tw.cpu()).to(device)
                feats = spec_augment(feats, cfg.augment, ep.g)
            for group in opt.param_groups:
                group["lr"] = lr_at(ep.index * steps_per_epoch + b, total, cfg.warmup_epochs * steps_per_epoch, cfg.lr)
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                logits = model(feats)
                if teachers is None:
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                else:
                    loss = teachers.loss(logits.float(), y, soft, cfg.label_smoothing)
            if extra_loss is not None:
                loss = loss + extra_loss(model)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if after_step is not None:
                after_step(model)
            seen += len(y)
            loss_sum += loss.detach().double() * len(y)
            correct += (logits.argmax(1) == y).sum()
            if b % 10 == 0 or b == steps_per_epoch - 1:  # the bar's running loss: one host sync per 10 steps
                ep.bar.step(f"epoch {ep.number}/{ep.epochs} loss {loss_sum.item() / seen:.3f}")
            else:
                ep.bar.step()
        val = evaluate_features(model, val_feats, val_labels, data.labels)
        loss_sum, correct = loss_sum.item(), correct.item()
        rec = {"epoch": ep.number, "train_loss": round(loss_sum / seen, 5), "train_acc": round(correct / seen, 5),
               "val_acc": round(val.accuracy, 5), "lr": opt.param_groups[0]["lr"],
               "samples_per_s": round(seen / (time.time() - t0), 1)}
        return rec, val.accuracy

    def save_best(rec, val_acc):
        save_bundle(bundle({"val_acc": val_acc, "epoch": rec["epoch"]}), run.best)

    def state_fn():
        return {"config": asdict(cfg), "model": bundle({}).to_dict(), "optimizer": opt.state_dict()}

    def describe(rec, best):
        return (f"epoch {rec['epoch']}/{cfg.epochs}  loss {rec['train_loss']:.4f}  train {rec['train_acc']:.3f}  "
                f"val {rec['val_acc']:.4f}  best {best:.4f}  ({rec['samples_per_s']:.0f} samples/s)")

    # last.pt is written through this module's `atomic_save` (the resume test cuts a run off there)
    run_epochs(run, epochs=cfg.epochs, steps=steps_per_epoch, seed=cfg.seed, state=state, epoch_fn=one_epoch,
               state_fn=state_fn, describe=describe, on_best=save_best, save=atomic_save, progress=progress, log=log)
    return load_bundle(run.best)
