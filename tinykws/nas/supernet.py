"""The over-parameterised network of a search space, with ProxylessNAS binarized path sampling.

Every searchable layer is a :class:`MixedOp` holding all candidate blocks; the architecture
parameters ``alpha`` (layers x ops) define p_l = softmax(alpha_l) per layer. Only sampled paths
run (Cai et al., ProxylessNAS, ICLR 2019):

- weight step (``sample_single``): one op per layer drawn from p_l; the gradient reaches only
  that op's weights, so a step costs about as much as training one normal network;
- architecture step (``sample_pair``): two ops per layer drawn from p_l without replacement;
  the binary gate g (one-hot on one of them, drawn from the renormalised as_tuple) multiplies
  their outputs, ``y = sum_j g_j o_j``. The gate is passed straight through to the as_tuple's
  renormalised probabilities, so ``dL/dalpha_i = sum_j dL/dg_j p_j (delta_ij - p_i)`` as in
  ProxylessNAS; ``rescale_pair`` then shifts the as_tuple's alphas so that the probabilities of
  the ops not sampled stay unchanged.

Candidate weights are either separate per candidate (``share_weights=False``, ProxylessNAS)
or shared within a layer (``share_weights=True``, as in Single-Path NAS / once-for-all): one
superblock per layer holds the largest expansion and kernel; candidate (k, e) uses the first
``e x C`` hidden channels and the centre k x k of the depthwise kernel, with its own BatchNorms.
Sharing lets every weight step train all candidates of a layer, which makes short searches on
small data converge far faster; path sampling and the architecture gradient are unchanged.

``quant_bits`` > 0 fake-quantizes every conv / linear weight (symmetric, per output channel)
in the forward pass, with the straight-through estimator for the gradient (8-bit weights
during search, as in Peter et al.).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from ..quant.fake import WeightQuant
from .spaces import SearchSpace


def add_weight_fake_quant(model: nn.Module, bits: int) -> int:
    """Fake-quantize the weights of every Conv / Linear in ``model`` (SincConv excluded); returns the count."""
    n = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and isinstance(getattr(m, "weight", None), nn.Parameter):
            parametrize.register_parametrization(m, "weight", WeightQuant(bits, trainable=False))
            n += 1
    return n


class SharedMBConv(nn.Module):
    """All MBConv candidates (kernels x expansions) of one layer with shared weights (see module doc)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, in_size, dims: int, kernels, expansions,
                 quant_bits: int = 0):
        super().__init__()
        from ..models.blocks import as_tuple, same_padding

        self.in_ch, self.out_ch, self.dims, self.quant_bits = in_ch, out_ch, dims, quant_bits
        self.stride = as_tuple(stride, dims)
        self.kmax = max(kernels)
        self.hidden = {e: int(round(in_ch * e)) for e in expansions}
        hmax = max(self.hidden.values())
        kshape = (self.kmax,) * dims
        one = (1,) * dims
        self.w_expand = nn.Parameter(torch.empty(hmax, in_ch, *one))
        self.w_dw = nn.Parameter(torch.empty(hmax, 1, *kshape))
        self.w_project = nn.Parameter(torch.empty(out_ch, hmax, *one))
        for w in (self.w_expand, self.w_dw, self.w_project):
            nn.init.kaiming_uniform_(w, a=5 ** 0.5)
        bn = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        self.bn_expand = nn.ModuleDict({f"e{e}": bn(h) for e, h in self.hidden.items() if h != in_ch})
        self.bn_dw = nn.ModuleDict({f"k{k}_e{e}": bn(self.hidden[e]) for k in kernels for e in expansions})
        self.bn_project = nn.ModuleDict({f"k{k}_e{e}": bn(out_ch) for k in kernels for e in expansions})
        self.pads = {k: [p for ba in reversed(same_padding((k,) * dims, self.stride, as_tuple(in_size, dims))) for p in ba]
                     for k in kernels}
        self.has_skip = all(s == 1 for s in self.stride) and in_ch == out_ch
        self.conv = F.conv1d if dims == 1 else F.conv2d
        self.wq = WeightQuant(quant_bits, trainable=False) if quant_bits else nn.Identity()

    def run(self, x: torch.Tensor, k: int, e: int) -> torch.Tensor:
        h, q = self.hidden[e], self.wq
        y = x
        if h != self.in_ch:
            y = F.relu6(self.bn_expand[f"e{e}"](self.conv(y, q(self.w_expand[:h]))))
        c = (self.kmax - k) // 2
        w = self.w_dw[:h, :, c : c + k] if self.dims == 1 else self.w_dw[:h, :, c : c + k, c : c + k]
        y = self.conv(F.pad(y, self.pads[k]), q(w), None, self.stride, 0, 1, h)
        y = F.relu6(self.bn_dw[f"k{k}_e{e}"](y))
        y = self.bn_project[f"k{k}_e{e}"](self.conv(y, q(self.w_project[:, :h])))
        return x + y if self.has_skip else y


class _Candidate:
    """One (kernel, expansion) view of a SharedMBConv (not a registered module: no duplicate weights)."""

    def __init__(self, shared: SharedMBConv, k: int, e: int):
        self.shared, self.k, self.e = shared, k, e

    def __call__(self, x):
        return self.shared.run(x, self.k, self.e)


class MixedOp(nn.Module):
    """All candidates of one layer; runs the active ones (one, or two behind binary gates)."""

    def __init__(self, ops: list, shared: nn.Module | None = None):
        super().__init__()
        self.shared = shared
        self.ops = ops if shared is not None else nn.ModuleList(ops)
        self.active: list[int] = [0]
        self.gates: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gates is None:
            return self.ops[self.active[0]](x)
        out = 0
        for g, i in zip(self.gates, self.active):
            out = out + g * self.ops[i](x)
        return out


class SuperNet(nn.Module):
    """Stem, one MixedOp per searchable layer, head; module names as in ``MBNet``."""

    def __init__(self, space: SearchSpace, quant_bits: int = 0, dropout: float = 0.1, share_weights: bool = False):
        super().__init__()
        from ..models.mbnet import make_block

        self.space = space
        ref = space.build(space.arch([0] * space.layers))  # stem, head and classifier of the space
        self.raw = ref.raw
        self.stem, self.head, self.pool, self.fc = ref.stem, ref.head, ref.pool, ref.fc
        self.drop = nn.Dropout(dropout)
        layers = []
        for s in space.layer_shapes():
            if share_weights:
                sh = SharedMBConv(s.in_ch, s.out_ch, s.stride, s.in_size, s.dims, space.kernels, space.expansions,
                                  quant_bits)
                ops = [nn.Identity() if b.is_skip else _Candidate(sh, b.kernel, b.expand) for b in space.ops]
                layers.append(MixedOp(ops, sh))
            else:
                ops = [make_block(b, s.in_ch, s.out_ch, s.stride, s.in_size, s.dims) if ok else nn.Identity()
                       for b, ok in zip(space.ops, space.allowed(s.index))]
                layers.append(MixedOp(ops))
        self.blocks = nn.ModuleList(layers)
        self.share_weights = share_weights
        self.register_buffer("allowed", torch.tensor([space.allowed(i) for i in range(space.layers)]))
        self.alpha = nn.Parameter(torch.zeros(space.layers, len(space.ops)))
        self.quant_bits = quant_bits
        if quant_bits:
            add_weight_fake_quant(self, quant_bits)
        self._pair_alpha: torch.Tensor | None = None

    # ---------------------------------------------------------------- architecture distribution
    def probs(self) -> torch.Tensor:
        """p_l = softmax(alpha_l) over the layer's allowed ops (layers x ops)."""
        return F.softmax(self.alpha.masked_fill(~self.allowed, float("-inf")), dim=1)

    def weight_parameters(self) -> list[nn.Parameter]:
        """Trainable weights (not the architecture parameters, not the quantizers' fixed clipping)."""
        return [p for n, p in self.named_parameters() if n != "alpha" and not n.endswith("log_alpha")]

    def argmax(self) -> list[int]:
        return self.probs().argmax(1).tolist()

    # ---------------------------------------------------------------- path sampling
    def set_path(self, choices) -> None:
        for layer, i in zip(self.blocks, choices):
            layer.active, layer.gates = [int(i)], None

    def sample_single(self, g: torch.Generator) -> list[int]:
        with torch.no_grad():  # sampled on the CPU (the generator's device)
            choices = torch.multinomial(self.probs().cpu(), 1, generator=g).squeeze(1).tolist()
        self.set_path(choices)
        return choices

    def sample_pair(self, g: torch.Generator) -> None:
        with torch.no_grad():
            pairs = torch.multinomial(self.probs().cpu(), 2, replacement=False, generator=g)  # (layers, 2)
            pairs = pairs.to(self.alpha.device)
            self._pairs = pairs
            self._pair_alpha = self.alpha.detach().gather(1, pairs).clone()
        sub = F.softmax(self.alpha.gather(1, pairs), dim=1)  # renormalised as_tuple probabilities
        with torch.no_grad():
            pick = torch.multinomial(sub.detach().cpu(), 1, generator=g).squeeze(1)
            onehot = F.one_hot(pick, 2).to(device=sub.device, dtype=sub.dtype)
        gates = onehot - sub.detach() + sub  # forward: binary; backward: through the as_tuple's softmax
        for layer, pr, gt in zip(self.blocks, pairs.tolist(), gates):
            layer.active, layer.gates = pr, gt

    @torch.no_grad()
    def rescale_pair(self) -> None:
        """After an architecture step: keep the as_tuple's total probability mass, so the others do not move."""
        if self._pair_alpha is None:
            return
        new = self.alpha.gather(1, self._pairs)
        offset = torch.logsumexp(new, 1, keepdim=True) - torch.logsumexp(self._pair_alpha, 1, keepdim=True)
        self.alpha.scatter_(1, self._pairs, new - offset)
        self._pair_alpha = None

    @torch.no_grad()
    def recalibrate_bn(self, batches) -> None:
        """Recompute every BatchNorm's running statistics for the current path from ``batches``.

        Needed before evaluating one path of a supernet: a candidate's BatchNorms see too few
        (and mixed) batches during the search for their running averages to fit this path."""
        bns = [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        was = self.training
        self.train()
        for x in batches:
            self(x)
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        self.train(was)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from ..models.blocks import as_image, as_signal

        x = self.stem(as_signal(x) if self.raw else as_image(x))
        for layer in self.blocks:
            x = layer(x)
        x = self.pool(self.head(x))
        return self.fc(self.drop(x.flatten(1)))
