"""Model files: a trained network with everything needed to use it (architecture, front end, labels).

A model file is a `torch.save`d dict with `format: "tinykws-model"`; it loads with weights_only=True,
so opening a model file never runs code from it.
"""
from __future__ import annotations

import difflib
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..audio import FrontendConfig
from ..models import create_model
from ..models.resize import resize_
from ..pretrained import DEFAULT, HERE, PRETRAINED
from ..quant import apply_quant_dict

FORMAT = "tinykws-model"


class ModelFileError(ValueError):
    """A model file or name that cannot be used; the message names it and the problem."""


@dataclass
class ModelBundle:
    arch: str
    labels: list[str]
    frontend: FrontendConfig
    state_dict: dict
    model_kwargs: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    train_config: dict = field(default_factory=dict)
    name: str = ""
    quant: dict = field(default_factory=dict)  # quantization settings applied before the weights load
    prune: dict = field(default_factory=dict)  # pruning settings; "shapes": channel counts of a channel-pruned model

    def build(self) -> torch.nn.Module:
        """The network with its trained weights, in eval mode."""
        model = create_model(self.arch, num_classes=len(self.labels), input_shape=self.frontend.feature_shape,
                             **self.model_kwargs)
        if self.prune.get("shapes"):
            resize_(model, self.prune["shapes"])
        if self.quant:
            model = apply_quant_dict(model, self.quant)
        model.load_state_dict(self.state_dict)
        return model.eval()

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": 1, "arch": self.arch, "labels": list(self.labels),
                "frontend": self.frontend.to_dict(), "state_dict": self.state_dict,
                "model_kwargs": self.model_kwargs, "metrics": self.metrics, "train_config": self.train_config,
                "quant": self.quant, "prune": self.prune}


def atomic_save(obj, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_bundle(bundle: ModelBundle, path: str | Path) -> None:
    atomic_save(bundle.to_dict(), path)


def _torch_load(path: Path):
    """torch.load with weights_only=True; its failures become one ModelFileError line.

    torch's own text for a refused pickle advises turning weights_only off: never shown, since
    that would run code from the file.
    """
    import pickle
    import zipfile

    if path.is_file() and path.stat().st_size == 0:
        raise ModelFileError(f"{path}: empty file, not a tinykws model file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(f"{path}: not a tinykws model file (unreadable or unsafe content)") from None
    except (EOFError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{path}: truncated or damaged model file ({exc.__class__.__name__})") from None
    except RuntimeError as exc:
        text = str(exc)
        if "zip archive" in text or "central directory" in text or "PytorchStreamReader" in text:
            raise ModelFileError(f"{path}: truncated or damaged model file (not a complete torch archive)") from None
        raise ModelFileError(f"{path}: not a tinykws model file (unreadable or unsafe content)") from None
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # torch's reader reports a cut-off archive as EINVAL
            raise ModelFileError(f"{path}: truncated or damaged model file") from None
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except Exception:  # any other failure inside the unpickler: the content is not ours
        raise ModelFileError(f"{path}: not a tinykws model file (unreadable or unsafe content)") from None


def _read(path: Path) -> dict:
    if path.suffix.lower() == ".tflite":
        raise ModelFileError(f"{path}: a .tflite model; this command takes a tinykws model file (.pt) or a "
                             f"shipped model name (`tinykws eval --model x.tflite` runs a .tflite)")
    d = _torch_load(path)
    if isinstance(d, dict) and "model" in d and isinstance(d["model"], dict) and d["model"].get("format") == FORMAT:
        d = d["model"]  # a training checkpoint (last.pt) holds the bundle under "model"
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a tinykws model file (no '{FORMAT}' header)")
    return d


def resolve(name_or_path: str | Path | None) -> Path:
    """A shipped model's file for its name, or the given path if it is a file."""
    if name_or_path is None:
        name_or_path = DEFAULT
    if str(name_or_path) in PRETRAINED:
        path = HERE / PRETRAINED[str(name_or_path)]
        if not path.is_file():
            raise ModelFileError(f"shipped model {name_or_path!r} is missing from the installation ({path})")
        return path
    path = Path(name_or_path)
    if path.is_file():
        return path
    hint = difflib.get_close_matches(str(name_or_path), PRETRAINED, n=1)
    raise ModelFileError(f"{name_or_path}: no such model file, and not a shipped model "
                         f"({', '.join(PRETRAINED)}){f'; did you mean {hint[0]!r}?' if hint else ''}")


TRAIN_KEYS = ("config", "model", "optimizer", "epoch", "best", "history")
SEARCH_KEYS = ("config", "net", "opt_w", "opt_a", "epoch", "history")


def read_checkpoint(path: str | Path, keys=TRAIN_KEYS) -> dict:
    """A run's checkpoint (last.pt: config, model and optimizer state, epoch; training's by default,
    `SEARCH_KEYS` for an architecture search) with one-line errors."""
    path = Path(path)
    d = _torch_load(path)
    if not isinstance(d, dict) or any(k not in d for k in keys) or ("model" in keys and (
            not isinstance(d["model"], dict) or d["model"].get("format") != FORMAT)):
        raise ModelFileError(f"{path}: not a tinykws training checkpoint (damaged or from elsewhere)")
    return d


def load_bundle(name_or_path: str | Path | None = None) -> ModelBundle:
    """A model file, or the name of a model shipped with tinykws (None: the default one)."""
    path = resolve(name_or_path)
    name = DEFAULT if name_or_path is None else str(name_or_path)
    d = _read(path)
    try:
        fe = FrontendConfig.from_dict(d["frontend"])
        return ModelBundle(d["arch"], list(d["labels"]), fe, d["state_dict"], dict(d.get("model_kwargs", {})),
                           dict(d.get("metrics", {})), dict(d.get("train_config", {})), name=name,
                           quant=dict(d.get("quant", {})), prune=dict(d.get("prune", {})))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: damaged tinykws model file ({exc})") from None


def load_model(name_or_path: str | Path | None = None) -> tuple[torch.nn.Module, ModelBundle]:
    bundle = load_bundle(name_or_path)
    try:
        return bundle.build(), bundle
    except (RuntimeError, ValueError) as exc:
        raise ModelFileError(f"{name_or_path}: weights do not fit architecture {bundle.arch!r} ({exc})") from None
