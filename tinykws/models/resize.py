"""Channel counts of a network's layers, and rebuilding a network with other counts.

A channel-pruned model (`tinykws.prune`) has fewer channels than its registry architecture. Its
model file stores `layer_shapes(model)`; loading builds the registry model and calls
`resize_(model, shapes)` before the weights load, so the file rebuilds without code of its own.
"""
from __future__ import annotations

import torch.nn as nn

_CONV = (nn.Conv1d, nn.Conv2d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d)


def layer_shapes(model: nn.Module) -> dict[str, list[int]]:
    """{layer name: [in, out, groups]} of every conv and linear layer, {name: [features]} of every
    batch norm."""
    shapes = {}
    for name, m in model.named_modules():
        if isinstance(m, _CONV):
            shapes[name] = [m.in_channels, m.out_channels, m.groups]
        elif isinstance(m, nn.Linear):
            shapes[name] = [m.in_features, m.out_features, 1]
        elif isinstance(m, _NORM):
            shapes[name] = [m.num_features]
    return shapes


def _new(m: nn.Module, shape: list[int]) -> nn.Module:
    if isinstance(m, _CONV):
        cin, cout, groups = shape
        return type(m)(cin, cout, m.kernel_size, m.stride, m.padding, m.dilation, groups, m.bias is not None,
                       m.padding_mode)
    if isinstance(m, nn.Linear):
        return nn.Linear(shape[0], shape[1], m.bias is not None)
    return type(m)(shape[0], m.eps, m.momentum, m.affine, m.track_running_stats)


def resize_(model: nn.Module, shapes: dict[str, list[int]]) -> nn.Module:
    """Replace each named conv / linear / batch-norm layer whose shape differs by a fresh one of the
    stored shape (weights are loaded afterwards). Unknown names or other layer types raise ValueError."""
    for name, shape in shapes.items():
        try:
            m = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"layer {name!r} of the stored shapes is not in the model") from None
        if not isinstance(m, _CONV + _NORM + (nn.Linear,)):
            raise ValueError(f"layer {name!r} ({type(m).__name__}) cannot be resized")
        if layer_shapes(m)[""] == list(shape):
            continue
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, _new(m, list(shape)))
    return model
