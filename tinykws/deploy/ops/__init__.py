"""C emission of each op, one module per op kind: the layer's params struct, its constant arrays (in
the layout the chosen kernel variant packs) and its call. The integer reference of every op stays
in `tinykws.quant.kernels`; the kernel variants are described in `tinykws.deploy.kernels`.

    layers = build_layers(im, kernels="fast", loop_order="input")   # one Layer per op
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import DeployError


@dataclass
class CArray:
    """A constant array of the generated model.c (flash)."""

    ctype: str  # int8_t, int16_t, int32_t, ...
    values: np.ndarray
    comment: str = ""

    @property
    def nbytes(self) -> int:
        return int(np.asarray(self.values).nbytes)


@dataclass
class Layer:
    """One op of the model as the generated C runs it."""

    op_index: int
    kind: str
    name: str
    inputs: list[int]  # activation tensor indices
    output: int
    in_shape: tuple
    out_shape: tuple
    kernel: str | None = None  # the C function; None for a view (reshape)
    struct: str | None = None  # the C params struct type
    params: dict = field(default_factory=dict)  # struct field -> int (or tuple of ints)
    arrays: dict[str, CArray] = field(default_factory=dict)  # role (w, bias, mult, shift, ...) -> array
    args: list[str] = field(default_factory=list)  # call arguments: params, in, in2, out, scratch or an array role
    macs: int = 0
    scratch_bytes: int = 0
    in_place_inputs: tuple = ()  # activation inputs the kernel may write its output over
    variant: object = None  # the kernels.KernelVariant
    note: str = ""  # why a sparse-capable layer got its kernel (only with sparse kernels on)

    @property
    def view(self) -> bool:
        return self.kernel is None

    def to_dict(self) -> dict:
        return {"name": self.name, "op": self.kind, "kernel": self.kernel, "macs": int(self.macs),
                "in_shape": list(self.in_shape), "out_shape": list(self.out_shape), "op_index": self.op_index,
                "scratch_bytes": int(self.scratch_bytes), **({"kernel_choice": self.note} if self.note else {})}


def _emitters() -> dict:
    from . import add, conv, depthwise, fc, pool, reshape, softmax

    return {"conv": conv.build, "depthwise": depthwise.build, "fc": fc.build, "avgpool": pool.build,
            "maxpool": pool.build, "add": add.build, "softmax": softmax.build, "reshape": reshape.build}


def build_layers(im, kernels: str = "fast", loop_order: str = "input", sparse: str = "off",
                 pack_weights: str = "off") -> list[Layer]:
    """Every op of `im` as a Layer; an op the generator cannot emit is a one-line error naming it.
    sparse: off | auto | on, the sparse pointwise kernels (tinykws.deploy.kernels.select).
    pack_weights: off | auto, conv, depthwise and fc layers whose weights fit 4 or 2 bits get
    packed-weight kernels (tinykws.deploy.kernels.packed_choice)."""
    if kernels not in ("ref", "fast"):
        raise DeployError(f"kernels {kernels!r}: the tinykws back end has ref and fast (CMSIS-NN: tinykws.deploy.cmsis)")
    if loop_order not in ("input", "weight"):
        raise DeployError(f"loop order {loop_order!r}: use input or weight")
    if sparse not in ("off", "auto", "on"):
        raise DeployError(f"sparse {sparse!r}: use off, auto or on")
    if pack_weights not in ("off", "auto"):
        raise DeployError(f"pack_weights {pack_weights!r}: use off or auto")
    emit = _emitters()
    for k, op in enumerate(im.ops):  # every op checked before any work
        if op.kind not in emit:
            name = im.tensors[op.output].name.split(";")[0]
            raise DeployError(f"op {op.kind!r} (layer {k}, {name!r}) cannot be emitted as C: the generator "
                              f"handles {', '.join(sorted(emit))}")

    def extra(kind):
        kw = {"sparse": sparse} if kind == "conv" and sparse != "off" else {}
        if kind in ("conv", "depthwise", "fc") and pack_weights != "off":
            kw["pack_weights"] = pack_weights
        return kw

    return [emit[op.kind](im, k, op, kernels, loop_order, **extra(op.kind)) for k, op in enumerate(im.ops)]


def layer_variants(im, kernels: str = "fast", loop_order: str = "input") -> dict[int, Layer]:
    """op index -> Layer (its scratch_bytes and in_place_inputs are what the memory planner needs)."""
    return {l.op_index: l for l in build_layers(im, kernels, loop_order)}
