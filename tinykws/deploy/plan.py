"""Memory planner: every activation tensor of an IntModel gets a byte offset in one static arena.

Ops run in order; a tensor lives from the op that produces it to its last consumer (the model
output to the end). A reshape is a view (same buffer, no copy). An op may write its output over
an input that dies there when its kernel allows it (`in_place`), which joins the two tensors
into one buffer. Each op's kernel scratch is one more buffer that lives during that op only.
The model input and output stay in the caller's buffers (`tkws_invoke(input, output)`), so they
take no arena space. Placement is TFLite Micro's greedy idea: buffers from the largest down,
each at the lowest 4-byte aligned offset where it overlaps no buffer alive at the same time;
a few orders and fit rules are tried and the smallest arena is kept.

Hand-written: the offsets must be known when the C source is emitted, and no library plans an
arena over this graph.

    plan = plan_memory(im, scratch={0: 160}, in_place={(1, 22)})
    print(plan.table())
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from ..quant.integer import IntModel

ALIGN = 4
INPUT, OUTPUT, ARENA = "input", "output", "arena"


def _align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


@dataclass
class Buffer:
    """One region: the tensors that share it (views, in-place outputs) or one op's scratch."""

    name: str
    size: int  # bytes used (the largest member)
    first: int  # op index of the first write (-1: before the first op)
    last: int  # op index of the last read
    tensors: list[int] = field(default_factory=list)
    scratch_of: int | None = None  # op index, for a scratch buffer
    where: str = ARENA  # arena | input | output (the caller's buffers)
    offset: int = 0

    def overlaps(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class MemoryPlan:
    buffers: list[Buffer]
    offsets: dict[int, int]  # tensor index -> arena byte offset (arena tensors only)
    sizes: dict[int, int]  # tensor index -> bytes (every activation tensor)
    where: dict[int, str]  # tensor index -> arena | input | output
    scratch_offsets: dict[int, int]  # op index -> arena byte offset of its scratch
    scratch_sizes: dict[int, int]  # op index -> scratch bytes
    in_place: list[tuple[int, int]]  # (op index, input tensor index) written over
    arena_bytes: int
    lower_bound: int  # the most bytes alive at once (aligned): no plan can use less
    peak_op: int  # the op at which the lower bound is reached
    op_names: list[str]

    def table(self) -> str:
        """Offsets, sizes, lifetimes and the peak, as printable text."""
        lines = [f"memory plan: arena {self.arena_bytes:,} bytes; lower bound {self.lower_bound:,} bytes "
                 f"(alive at once during op {self.peak_op}, {self.op_names[self.peak_op] if self.op_names else ''})",
                 f"{'offset':>8} {'bytes':>7}  {'ops':<9} contents"]
        for b in sorted(self.buffers, key=lambda b: (b.where != ARENA, b.offset, b.first)):
            life = f"{b.first}..{b.last}" if b.first >= 0 else f"in..{b.last}"
            off = f"{b.offset:>8}" if b.where == ARENA else f"{b.where:>8}"
            lines.append(f"{off} {b.size:>7}  {life:<9} {b.name}")
        if self.in_place:
            lines.append("in place (output over its input): ops " + ", ".join(str(k) for k, _ in self.in_place))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"arena_bytes": self.arena_bytes, "lower_bound": self.lower_bound, "peak_op": self.peak_op,
                "in_place_ops": [k for k, _ in self.in_place],
                "buffers": [{"name": b.name, "offset": b.offset if b.where == ARENA else None, "where": b.where,
                             "bytes": b.size, "first_op": b.first, "last_op": b.last, "tensors": b.tensors,
                             "scratch_of": b.scratch_of} for b in self.buffers]}

    def location(self, tensor: int) -> tuple[str, int]:
        """(arena | input | output, byte offset) of an activation tensor."""
        w = self.where[tensor]
        return w, self.offsets.get(tensor, 0)


def tensor_bytes(im: IntModel, i: int) -> int:
    return int(np.prod(im.tensors[i].shape))  # int8, batch 1


def _activations(op, im: IntModel) -> list[int]:
    """The activation inputs of an op (conv/fc: the first only; add: both)."""
    if op.kind in ("conv", "depthwise", "fc"):
        return op.inputs[:1]
    return [i for i in op.inputs if i >= 0 and im.tensors[i].data is None]


class _Groups:
    """Union-find over tensor indices."""

    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, i: int) -> int:
        self.parent.setdefault(i, i)
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        self.parent[self.find(b)] = self.find(a)


def plan_memory(im: IntModel, scratch: dict[int, int] | None = None,
                in_place: Iterable[tuple[int, int]] | Callable[[int, int], bool] | None = None,
                kernels: str = "fast", loop_order: str = "input") -> MemoryPlan:
    """Plan the arena of `im`.

    scratch: op index -> scratch bytes; in_place: the (op index, input tensor index) pairs whose
    kernel may write its output over that input, or a predicate on them. Leave both None to take
    them from the tinykws kernel variants chosen by `kernels` and `loop_order` (other back ends,
    e.g. CMSIS-NN, pass their own; their in_place default is none).
    """
    if scratch is None and in_place is None:
        from .ops import layer_variants

        specs = layer_variants(im, kernels, loop_order)
        scratch = {k: s.scratch_bytes for k, s in specs.items()}
        in_place = {(k, t) for k, s in specs.items() for t in s.in_place_inputs}
    scratch = dict(scratch or {})
    allowed = in_place if callable(in_place) else (lambda k, t, s=set(in_place or ()): (k, t) in s)
    ops, n = im.ops, len(im.ops)

    # lifetimes of single tensors
    first: dict[int, int] = {im.input: -1}
    last: dict[int, int] = {im.input: -1}
    for k, op in enumerate(ops):
        for t in _activations(op, im):
            last[t] = k
            first.setdefault(t, -1)
        first[op.output] = k
        last.setdefault(op.output, k)
    last[im.output] = n  # read by the caller after the last op

    g = _Groups()
    for t in first:
        g.find(t)
    for op in ops:  # views first: a reshape shares its input's buffer
        if op.kind == "reshape":
            g.join(op.inputs[0], op.output)

    def members(root):
        return [t for t in first if g.find(t) == root]

    def group_last(root):
        return max(last[t] for t in members(root))

    def group_size(root):
        return max(tensor_bytes(im, t) for t in members(root))

    done: list[tuple[int, int]] = []
    in_root = g.find(im.input)
    for k, op in enumerate(ops):
        if op.kind == "reshape":
            continue
        out_root = g.find(op.output)
        for t in _activations(op, im):
            r = g.find(t)
            if (r != in_root and r != out_root and group_last(r) == k and allowed(k, t)
                    and tensor_bytes(im, op.output) <= group_size(r)
                    and all(g.find(u) != r for u in _activations(op, im) if u != t)):
                g.join(r, op.output)
                done.append((k, t))
                break

    # one buffer per group
    roots: dict[int, list[int]] = {}
    for t in first:
        roots.setdefault(g.find(t), []).append(t)
    buffers: list[Buffer] = []
    out_root = g.find(im.output)
    for r, ts in roots.items():
        ts = sorted(ts, key=lambda t: (first[t], t))
        size = max(tensor_bytes(im, t) for t in ts)
        where = ARENA
        if r == in_root:
            where = INPUT
        elif r == out_root and size == tensor_bytes(im, im.output):
            where = OUTPUT
        name = " -> ".join(f"t{t} {short_name(im.tensors[t].name)} {'x'.join(map(str, im.tensors[t].shape[1:]))}"
                           for t in ts)
        buffers.append(Buffer(name, size, min(first[t] for t in ts), max(last[t] for t in ts), ts, where=where))
    for k, s in sorted(scratch.items()):
        if s > 0:
            buffers.append(Buffer(f"scratch of op {k} ({ops[k].kind})", int(s), k, k, scratch_of=k))

    arena = [b for b in buffers if b.where == ARENA]
    alive = [sum(_align(b.size) for b in arena if b.first <= k <= b.last) for k in range(max(n, 1))]
    _place(arena, max(alive, default=0))
    arena_bytes = max((b.offset + _align(b.size) for b in arena), default=0)
    peak_op = int(np.argmax(alive)) if alive else 0

    offsets, where = {}, {}
    for b in buffers:
        for t in b.tensors:
            where[t] = b.where
            if b.where == ARENA:
                offsets[t] = b.offset
    return MemoryPlan(buffers, offsets, {t: tensor_bytes(im, t) for t in first}, where,
                      {b.scratch_of: b.offset for b in buffers if b.scratch_of is not None},
                      {b.scratch_of: b.size for b in buffers if b.scratch_of is not None}, done,
                      arena_bytes, max(alive, default=0), peak_op, [_op_name(im, op) for op in ops])


def short_name(name: str, width: int = 40) -> str:
    """A tensor name for tables: TFLite's fused names keep their first part."""
    name = name.split(";")[0]
    return name if len(name) <= width else "..." + name[-(width - 3):]


def _op_name(im: IntModel, op) -> str:
    return f"{op.kind} {short_name(im.tensors[op.output].name)}"


def _place(buffers: list[Buffer], lower_bound: int = 0, tries: int = 300) -> None:
    """Greedy placement; keeps the best of a few orders (largest first, by first use, longest
    lived first, then seeded random orders) and two fit rules, stopping at the lower bound."""
    keys = [lambda b: (-_align(b.size), b.first), lambda b: (b.first, -b.size),
            lambda b: (-(b.last - b.first), -b.size), lambda b: (-b.last, -b.size)]
    orders = [sorted(buffers, key=k) for k in keys]
    rng = np.random.default_rng(0)
    orders += [[buffers[i] for i in rng.permutation(len(buffers))] for _ in range(tries if len(buffers) > 2 else 0)]
    best = None
    for order in orders:
        for rule in ("first", "best"):
            offs = _greedy(order, rule)
            top = max((offs[id(b)] + _align(b.size) for b in buffers), default=0)
            if best is None or top < best[0]:
                best = (top, offs)
        if best[0] <= lower_bound:
            break
    for b in buffers:
        b.offset = best[1][id(b)] if best else 0


def _greedy(order: list[Buffer], rule: str) -> dict[int, int]:
    placed: list[tuple[int, int, Buffer]] = []  # (offset, end, buffer)
    offs: dict[int, int] = {}
    for b in order:
        size = _align(b.size)
        busy = sorted((o, e) for o, e, p in placed if p.overlaps(b))
        gaps, cur = [], 0
        for o, e in busy:
            if o - cur >= size:
                gaps.append((o - cur, cur))
            cur = max(cur, e)
        if gaps:
            off = min(gaps, key=lambda g: (g[0], g[1]))[1] if rule == "best" else min(g[1] for g in gaps)
        else:
            off = cur
        offs[id(b)] = off
        placed.append((off, off + size, b))
    return offs
