"""The over-parameterised network of a search space, with ProxylessNAS binarized path sampling.

Every searchable layer is a :class:`MixedOp` holding all candidate blocks; the architecture
parameters ``alpha`` (layers x ops) define p_l = softmax(alpha_l) per layer. Only sampled paths
run (Cai et al., ProxylessNAS, ICLR 2019):

- weight step (``sample_single``): one op per layer drawn from p_l; the gradient reaches only
  that op's weights, so a step costs about as much as training one normal network;
- architecture step (``sample_pair``): two ops per layer drawn from p_l without replacement;
  the binary gate g (one-hot on one of them, drawn from the renormalised pair) multiplies
  their outputs, ``y = sum_j g_j o_j``. The gate is passed straight through to the pair's
  renormalised probabilities, so ``dL/dalpha_i = sum_j dL/dg_j p_j (delta_ij - p_i)`` as in
  ProxylessNAS; ``rescale_pair`` then shifts the pair's alphas so that the probabilities of
  the ops not sampled stay unchanged.

``quant_bits`` > 0 fake-quantizes every conv / linear weight (symmetric, per output channel)
in the forward pass, with the straight-through estimator for the gradient (8-bit weights
during search, as in Peter et al.).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from .spaces import SearchSpace


class FakeQuant(nn.Module):
    """Symmetric per-output-channel weight quantization with a straight-through gradient."""

    def __init__(self, bits: int = 8):
        super().__init__()
        self.bits = bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        qmax = 2 ** (self.bits - 1) - 1
        scale = w.detach().abs().flatten(1).amax(1).clamp(min=1e-12) / qmax
        scale = scale.view(-1, *([1] * (w.dim() - 1)))
        q = (w / scale).round().clamp(-qmax, qmax) * scale
        return w + (q - w).detach()


def add_weight_fake_quant(model: nn.Module, bits: int) -> int:
    """Fake-quantize the weights of every Conv / Linear in ``model`` (SincConv excluded); returns the count."""
    n = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and isinstance(getattr(m, "weight", None), nn.Parameter):
            parametrize.register_parametrization(m, "weight", FakeQuant(bits))
            n += 1
    return n


class MixedOp(nn.Module):
    """All candidates of one layer; runs the active ones (one, or two behind binary gates)."""

    def __init__(self, ops: list[nn.Module]):
        super().__init__()
        self.ops = nn.ModuleList(ops)
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

    def __init__(self, space: SearchSpace, quant_bits: int = 0, dropout: float = 0.1):
        super().__init__()
        from ..models.mbnet import make_block

        self.space = space
        ref = space.build(space.arch([0] * space.layers))  # stem, head and classifier of the space
        self.raw = ref.raw
        self.stem, self.head, self.pool, self.fc = ref.stem, ref.head, ref.pool, ref.fc
        self.drop = nn.Dropout(dropout)
        layers = []
        for s in space.layer_shapes():
            ops = [make_block(b, s.in_ch, s.out_ch, s.stride, s.in_size, s.dims) if ok else nn.Identity()
                   for b, ok in zip(space.ops, space.allowed(s.index))]
            layers.append(MixedOp(ops))
        self.blocks = nn.ModuleList(layers)
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
        return [p for n, p in self.named_parameters() if n != "alpha"]

    def argmax(self) -> list[int]:
        return self.probs().argmax(1).tolist()

    def derived_arch(self) -> str:
        return self.space.arch(self.argmax())

    # ---------------------------------------------------------------- path sampling
    def set_path(self, choices) -> None:
        for layer, i in zip(self.blocks, choices):
            layer.active, layer.gates = [int(i)], None

    def sample_single(self, g: torch.Generator) -> list[int]:
        with torch.no_grad():
            choices = torch.multinomial(self.probs(), 1, generator=g).squeeze(1).tolist()
        self.set_path(choices)
        return choices

    def sample_pair(self, g: torch.Generator) -> None:
        with torch.no_grad():
            pairs = torch.multinomial(self.probs(), 2, replacement=False, generator=g)  # (layers, 2)
            self._pairs = pairs
            self._pair_alpha = self.alpha.detach().gather(1, pairs).clone()
        sub = F.softmax(self.alpha.gather(1, pairs), dim=1)  # renormalised pair probabilities
        with torch.no_grad():
            pick = torch.multinomial(sub.detach(), 1, generator=g).squeeze(1)
            onehot = F.one_hot(pick, 2).to(sub.dtype)
        gates = onehot - sub.detach() + sub  # forward: binary; backward: through the pair's softmax
        for layer, pr, gt in zip(self.blocks, pairs.tolist(), gates):
            layer.active, layer.gates = pr, gt

    @torch.no_grad()
    def rescale_pair(self) -> None:
        """After an architecture step: keep the pair's total probability mass, so the others do not move."""
        if self._pair_alpha is None:
            return
        new = self.alpha.gather(1, self._pairs)
        offset = torch.logsumexp(new, 1, keepdim=True) - torch.logsumexp(self._pair_alpha, 1, keepdim=True)
        self.alpha.scatter_(1, self._pairs, new - offset)
        self._pair_alpha = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from ..models.blocks import as_image, as_signal

        x = self.stem(as_signal(x) if self.raw else as_image(x))
        for layer in self.blocks:
            x = layer(x)
        x = self.pool(self.head(x))
        return self.fc(self.drop(x.flatten(1)))
