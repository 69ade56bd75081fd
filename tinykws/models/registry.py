"""Model registry: ``@register_model("name")`` on a factory, ``create_model("name", **kw)``.

A factory has the signature ``fn(num_classes=12, input_shape=(49, 10), **kw) -> nn.Module``.
Every model made by :func:`create_model` carries

- ``arch``: the registered name,
- ``input_kind``: "mfcc" (input (B, T, F)) or "raw" (input (B, samples)),
- ``input_shape``: the input shape without the batch dim, e.g. (49, 10) or (16000,),
- ``num_classes`` and ``model_kwargs`` (the keyword arguments it was created with,
  so ``create_model(m.arch, **m.model_kwargs)`` rebuilds the same architecture).
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
from typing import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str | Callable | None = None):
    """Register a model factory under ``name`` (default: the function name)."""
    def deco(fn):
        key = name if isinstance(name, str) else fn.__name__
        old = _MODELS.get(key)
        if old is not None and (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"model {key!r} is already registered by {old.__module__}.{old.__qualname__}")
        _MODELS[key] = fn
        return fn
    return deco(name) if callable(name) else deco


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by a shell-style pattern ("dscnn*")."""
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def _default(fn, arg):
    p = inspect.signature(fn).parameters.get(arg)
    return None if p is None or p.default is inspect.Parameter.empty else p.default


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; unknown names raise ValueError listing the available ones."""
    fn = _MODELS.get(name)
    if fn is None:
        close = difflib.get_close_matches(name, list(_MODELS), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} Available models: {', '.join(list_models())}")
    model = fn(**kwargs)
    model.arch = name
    model.input_kind = getattr(model, "input_kind", "mfcc")
    shape = kwargs.get("input_shape", getattr(model, "input_shape", None) or _default(fn, "input_shape"))
    model.input_shape = tuple(shape)
    model.num_classes = kwargs.get("num_classes", getattr(model, "num_classes", None) or _default(fn, "num_classes"))
    model.model_kwargs = dict(kwargs)
    return model
