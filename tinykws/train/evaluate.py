"""Evaluation: top-1, per-class accuracy, confusion matrix; prediction on files."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio import FrontendConfig, get_preset
from ..data.speech_commands import SILENCE, UNKNOWN, SpeechCommands, Task
from ..quant import QuantizationError, read_tflite, tflm_run
from .checkpoint import ModelBundle, load_model


@dataclass
class EvalResult:
    accuracy: float
    per_class: dict[str, float]
    confusion: list[list[int]]  # rows: true class, columns: predicted
    labels: list[str]
    n: int

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "per_class": self.per_class, "confusion": self.confusion,
                "labels": self.labels, "n": self.n}


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's weights (the CPU for a model without any)."""
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model on `device`; 2-D convolution networks in channels_last memory layout (oneDNN's fast
    depthwise and pointwise kernels on the CPU, tensor-core layouts on a GPU)."""
    model = model.to(device)
    if any(m.weight.ndim == 4 for m in model.modules() if isinstance(m, torch.nn.Conv2d)):
        model = model.to(memory_format=torch.channels_last)
    return model


@torch.no_grad()
def predict_logits(model: torch.nn.Module, feats: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits (on the CPU) of features run in batches on the model's device."""
    model.eval()
    dev = model_device(model)
    return torch.cat([model(feats[i : i + batch_size].to(dev)).float().cpu() for i in range(0, len(feats), batch_size)])


def evaluate_predictions(pred: np.ndarray, y: np.ndarray, labels: list[str]) -> EvalResult:
    k = len(labels)
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (np.asarray(y), np.asarray(pred)), 1)
    per = {labels[i]: float(conf[i, i] / conf[i].sum()) for i in range(k) if conf[i].sum() > 0}
    acc = float(np.trace(conf) / max(1, conf.sum()))
    return EvalResult(acc, per, conf.tolist(), list(labels), int(conf.sum()))


def evaluate_features(model, feats: torch.Tensor, y: torch.Tensor, labels: list[str]) -> EvalResult:
    pred = predict_logits(model, feats).argmax(1).numpy()
    return evaluate_predictions(pred, y.numpy(), labels)


def task_of(labels: list[str]) -> Task:
    """The task a model was trained on, from its output labels."""
    return Task(tuple(l for l in labels if l not in (SILENCE, UNKNOWN)), SILENCE in labels, UNKNOWN in labels)


def split_features(data_dir: str | Path, split: str, labels: list[str], frontend, limit: int | None = None,
                   seed: int = 0, progress: bool = False):
    """(features (N, *feature_shape) float tensor, labels (N,) int64 array) of a data set split (or
    an official test-set folder) for a model's labels and front end (a FrontendConfig): silence and
    unknown each 10% of the keyword count, `limit` clips drawn at random (seeded), decoded clips
    and features cached. Unreadable clips are skipped with a warning naming the count."""
    from ..audio import build_frontend
    from ..data.clips import load_clips
    from ..data.features import cached_features

    ds = SpeechCommands.open(data_dir)
    entries = ds.entries(split, task_of(labels), 0.1, 0.1, seed)
    if limit is not None and len(entries) > limit:
        rng = np.random.default_rng(seed)
        entries = [entries[i] for i in sorted(rng.choice(len(entries), limit, replace=False))]
    clips = load_clips(ds, entries, labels, seed, progress=progress)
    if clips.skipped:
        warnings.warn(f"{data_dir}: {len(clips.skipped)} unreadable clip(s) skipped, e.g. {clips.skipped[0][1]}",
                      stacklevel=2)
    if len(clips) == 0:
        raise ValueError(f"{data_dir}: no readable clips in the {split} split")
    return cached_features(clips, build_frontend(frontend), frontend.key()), clips.labels


def evaluate_dir(model_or_name=None, data_dir: str | Path = "", split: str = "testing", progress: bool = False,
                 seed: int = 0, device: str = "cpu") -> tuple[EvalResult, ModelBundle]:
    """Evaluate a model (file, shipped name, or None for the default) on a data set folder's split
    or on an official test-set folder; the model runs on `device` (auto, cpu, cuda, cuda:N)."""
    from ..checks import resolve_device

    dev = resolve_device(device)
    model, bundle = load_model(model_or_name)
    model = prepare_model(model, dev)
    feats, y = split_features(data_dir, split, bundle.labels, bundle.frontend, seed=seed, progress=progress)
    return evaluate_features(model, feats, torch.from_numpy(y), bundle.labels), bundle


def evaluate_tflite(path: str | Path, data_dir: str | Path, split: str = "testing", labels: list[str] | None = None,
                    frontend=None, progress: bool = False, seed: int = 0) -> EvalResult:
    """Top-1 of a .tflite model run by the TFLite Micro interpreter on a data set split, with the
    model's own front end and labels (stored by tinykws export; pass them for other models)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .tflite file")
    im = read_tflite(path)
    labels = labels or im.meta.get("labels")
    fe = frontend or im.meta.get("frontend")
    if not labels or fe is None:
        raise QuantizationError(f"{path}: no tinykws metadata (labels, front end); pass them (--labels, --frontend)")
    fe = get_preset(fe) if isinstance(fe, str) else fe if isinstance(fe, FrontendConfig) else FrontendConfig.from_dict(fe)
    feats, y = split_features(data_dir, split, labels, fe, seed=seed, progress=progress)
    out = tflm_run(path, im.quantize_input(feats.numpy()))
    return evaluate_predictions(out.argmax(1), y, labels)


@torch.no_grad()
def predict_files(files: list[str | Path], model_or_name=None, top: int = 3, errors: str = "raise") -> list[dict]:
    """Top-k labels and probabilities for each audio file, in order.

    errors="raise": an unusable file raises AudioError; errors="collect": it becomes
    {"file": ..., "error": message} in the list and the other files are still classified.
    """
    from ..audio import AudioError, build_frontend
    from ..data.clips import read_clip

    if errors not in ("raise", "collect"):
        raise ValueError(f"errors={errors!r}: use 'raise' or 'collect'")
    model, bundle = load_model(model_or_name)
    frontend = build_frontend(bundle.frontend)
    clips: list = []
    for f in files:
        try:
            clips.append(read_clip(f))
        except AudioError as exc:
            if errors == "raise":
                raise
            clips.append(exc)
    good = [c for c in clips if not isinstance(c, Exception)]
    probs = iter(torch.softmax(model(frontend(torch.from_numpy(np.stack([c[0] for c in good])))), dim=1)
                 if good else [])
    out = []
    for f, c in zip(files, clips):
        if isinstance(c, Exception):
            out.append({"file": str(f), "error": str(c)})
            continue
        p = next(probs)
        v, i = p.topk(min(top, len(p)))
        out.append({"file": str(f), "label": bundle.labels[i[0]], "score": float(v[0]), "notes": c[1],
                    "top": [{"label": bundle.labels[j], "score": float(s)} for s, j in zip(v, i)]})
    return out


def plot_confusion(result: EvalResult, path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.asarray(result.confusion, dtype=float)
    norm = conf / np.maximum(1, conf.sum(1, keepdims=True))
    k = len(result.labels)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * k, 1 + 0.55 * k))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if conf[i, j]:
                ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), result.labels, rotation=60, ha="right")
    ax.set_yticks(range(k), result.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"top-1 {100 * result.accuracy:.2f}% on {result.n} clips")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_result(result: EvalResult) -> str:
    """A plain-text table: per-class accuracy and the confusion matrix."""
    w = max(len(l) for l in result.labels)
    lines = [f"top-1 accuracy: {100 * result.accuracy:.2f}% ({result.n} clips)", ""]
    head = " " * (w + 2) + " ".join(f"{l[:5]:>5}" for l in result.labels) + "   acc"
    lines.append(head)
    for l, row in zip(result.labels, result.confusion):
        acc = result.per_class.get(l)
        lines.append(f"{l:>{w}}  " + " ".join(f"{v:>5}" for v in row) + (f"  {100 * acc:5.1f}" if acc is not None else ""))
    return "\n".join(lines)
