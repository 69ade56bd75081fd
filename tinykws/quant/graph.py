"""A small dataflow tracer: which layer feeds which, in the order they run.

`trace(model)` runs one forward pass and records every leaf layer (conv, linear, batch norm,
ReLU, pad, pool, dropout, ...) and the few tensor operations written in `forward` code
(reshapes, `x + y`, functional ReLU). Quantization uses the graph to fold batch norm, to decide
where activations are quantized (after the ReLU a conv feeds, after an addition) and to convert a
quantized model to integer operations.

torch.fx cannot trace our models (`forward` branches on `x.dim()`) and torch.export yields aten
ops without the layer structure we quantize by, so this runs the model eagerly with module hooks
plus a TorchFunctionMode for the operations written in `forward` code.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode


class QuantizationError(ValueError):
    """A model, layer or file that cannot be quantized, converted or exported; names the culprit."""


_LEAVES = [
    ((nn.Conv1d, nn.Conv2d), "conv"),
    ((nn.Linear,), "linear"),
    ((nn.BatchNorm1d, nn.BatchNorm2d), "bn"),
    ((nn.ReLU6,), "relu6"),
    ((nn.ReLU,), "relu"),
    ((nn.ZeroPad1d, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d), "pad"),
    ((nn.MaxPool1d, nn.MaxPool2d), "maxpool"),
    ((nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d), "avgpool"),
    ((nn.Dropout, nn.Identity), "identity"),
    ((nn.Flatten,), "reshape"),
]
_T = torch.Tensor
_RESHAPE = {torch.flatten, _T.flatten, _T.view, _T.reshape, torch.reshape, _T.unsqueeze, torch.unsqueeze,
            _T.squeeze, torch.squeeze, _T.contiguous, _T.float, _T.to, _T.clone, _T.detach}
_ADD = {torch.add, _T.add, _T.__add__, _T.__radd__, _T.__iadd__, _T.add_}
_RELU = {torch.relu, _T.relu, _T.relu_, torch.relu_, nn.functional.relu}


def leaf_kind(m: nn.Module) -> str | None:
    """The graph op of a layer, or None when the layer is not one we know."""
    if isinstance(m, nn.Hardtanh) and (m.min_val, m.max_val) == (0.0, 6.0):
        return "relu6"
    if isinstance(m, (nn.ConstantPad1d, nn.ConstantPad2d)) and m.value != 0:
        return None
    for types, kind in _LEAVES:
        if isinstance(m, types):
            return kind
    return None


@dataclass
class Node:
    """One value of the graph and the operation that made it."""
    id: int
    op: str  # input conv linear bn relu relu6 pad maxpool avgpool identity reshape add
    name: str  # module path (or the module whose forward code holds the operation)
    inputs: list[int]
    shape: tuple  # output shape, batch dim included
    module: nn.Module | None = None
    quant: nn.Module | None = None  # the activation quantizer applied to this value, if any
    users: list[int] = field(default_factory=list)


@dataclass
class Graph:
    nodes: list[Node]
    output: int

    def __iter__(self):
        return iter(self.nodes)

    def __getitem__(self, i: int) -> Node:
        return self.nodes[i]

    def sole_user(self, i: int, skip=("identity",)) -> Node | None:
        """The one node reading value i, looking through `skip` ops (e.g. a folded batch norm)."""
        n = self.nodes[i]
        while len(n.users) == 1:
            n = self.nodes[n.users[0]]
            if n.op not in skip:
                return n
        return None

    def grid_node(self, i: int) -> Node:
        """The node whose quantizer sets the grid of value i: pads, max pools, reshapes and fused
        ReLUs keep the grid of their input."""
        n = self.nodes[i]
        while n.quant is None and n.op in _KEEP_GRID:
            n = self.nodes[n.inputs[0]]
        return n


_KEEP_GRID = ("identity", "reshape", "pad", "maxpool", "avgpool", "relu", "relu6")


class _Mode(TorchFunctionMode):
    def __init__(self, tracer: "_Tracer"):
        super().__init__()
        self.t = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.t.depth == 0:
            self.t.functional(func, args, out)
        return out


class _Tracer:
    def __init__(self, model: nn.Module):
        self.model, self.nodes, self.ids, self.keep = model, [], {}, []
        self.depth, self.stack = 0, [""]

    def new(self, op, name, inputs, out, module=None) -> Node:
        node = Node(len(self.nodes), op, name, inputs, tuple(out.shape), module)
        self.nodes.append(node)
        for i in inputs:
            self.nodes[i].users.append(node.id)
        self.ids[id(out)] = node.id
        self.keep.append(out)
        return node

    def functional(self, func, args, out):
        known = [self.ids[id(a)] for a in args if isinstance(a, torch.Tensor) and id(a) in self.ids]
        if not known or not isinstance(out, torch.Tensor):
            return  # x.dim(), x.shape, ...
        where = self.stack[-1]  # the module whose forward code runs this ("" for the model itself)
        if func in _RESHAPE:
            self.new("reshape", where, known[:1], out)
        elif func in _ADD and len(known) == 2:
            self.new("add", where, known, out)
        elif func in _RELU:
            self.new("relu", where, known[:1], out)
        else:
            fname = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
            raise QuantizationError(f"operation {fname} in the forward code of {where or type(self.model).__name__!r} "
                                    f"cannot be quantized "
                                    f"(supported there: reshapes, x + y, relu)")

    def pre(self, name, leaf):
        def hook(m, args):
            self.stack.append(name)
            if leaf:
                self.depth += 1
        return hook

    def post(self, name, leaf):
        def hook(m, args, out):
            self.stack.pop()
            if not leaf:
                return
            self.depth -= 1
            x = args[0] if args else None
            if self.depth or not isinstance(x, torch.Tensor) or id(x) not in self.ids:
                return
            src = self.ids[id(x)]
            if getattr(m, "is_quantizer", False):  # an activation quantizer keeps the value, sets its grid
                self.ids[id(out)] = src
                self.keep.append(out)
                self.nodes[src].quant = m
                return
            kind = leaf_kind(m)
            if kind is None or not isinstance(out, torch.Tensor):
                raise QuantizationError(f"layer {name!r} ({type(m).__name__}) cannot be quantized or exported: "
                                        f"supported layers are Conv1d/2d, Linear, BatchNorm, ReLU/ReLU6, zero padding, "
                                        f"max/average pooling, Dropout, Identity, Flatten")
            node = self.new(kind, name, [src], out, m)
            node.quant = getattr(m, "aq", None)  # a quantized conv/linear quantizes its own output
        return hook


def trace(model: nn.Module, example: torch.Tensor | None = None) -> Graph:
    """Run `model` once (eval mode, no grad) on `example` (default: zeros of `model.input_shape`)."""
    if example is None:
        example = torch.zeros(1, *model.input_shape)
    t = _Tracer(model)
    handles = []
    for name, m in model.named_modules():
        leaf = leaf_kind(m) is not None or getattr(m, "is_quantizer", False) or not any(True for _ in m.children())
        if name == "" and not leaf:
            continue
        handles.append(m.register_forward_pre_hook(t.pre(name, leaf)))
        handles.append(m.register_forward_hook(t.post(name, leaf)))
    was_training = model.training
    model.eval()
    t.new("input", "input", [], example)
    try:
        with torch.no_grad(), _Mode(t):
            out = model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or id(out) not in t.ids:
        raise QuantizationError(f"{type(model).__name__}: the output is not a tensor computed by supported layers")
    return Graph(t.nodes, t.ids[id(out)])
