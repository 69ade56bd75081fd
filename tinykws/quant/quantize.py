"""quantize_(model, config): fold batch norm, put fake quantizers in, calibrate.

    model = create_model("dscnn_mlperf")               # or load_model(...)[0]
    quantize_(model, PTQConfig(), calib=features)       # features: (N, 49, 10) float tensor
    quantize_(model, QATConfig(weight_bits=4), calib=features)   # then fine-tune it (train(model=...))

Where activations are quantized (TFLite conventions): the model input; the output of every
conv/linear (after the ReLU/ReLU6 it feeds directly, which is then fused); the output of every
addition (after the ReLU it feeds directly, then fused into the ADD). Pads, max pools and reshapes
keep their input's grid; average pooling rounds back onto its input's grid. Batch norm is folded
into the conv/linear before it.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .config import LearnedBitsConfig, PTQConfig, QuantConfig, config_from_dict
from .fake import ActQuant, WeightQuant, to_qmodule
from .graph import Graph, QuantizationError, trace

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


@torch.no_grad()
def fold_batchnorm(model: nn.Module, graph: Graph | None = None) -> nn.Module:
    """Fold every BatchNorm into the conv/linear that feeds it (in place; the BN becomes Identity).

    W' = W * g / sqrt(var + eps) per output channel, b' = (b - mean) * g / sqrt(var + eps) + beta.
    """
    graph = graph or trace(model)
    for node in graph:
        if node.op != "bn":
            continue
        src = graph[node.inputs[0]]
        if src.op not in ("conv", "linear") or len(src.users) != 1:
            raise QuantizationError(f"BatchNorm {node.name!r} does not directly follow a conv/linear layer, "
                                    f"so it cannot be folded")
        bn, m = node.module, src.module
        k = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0 / torch.sqrt(bn.running_var + bn.eps)
        beta = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        m.weight.mul_(k.reshape(-1, *([1] * (m.weight.dim() - 1))))
        b = m.bias if m.bias is not None else torch.zeros_like(bn.running_mean)
        new_b = (b - bn.running_mean) * k + beta
        if m.bias is None:
            m.bias = nn.Parameter(new_b.clone())
        else:
            m.bias.copy_(new_b)
        _set(model, node.name, nn.Identity())
    return model


def _check_supported(graph: Graph) -> None:
    for n in graph:
        if n.op == "conv":
            m = n.module
            if m.groups not in (1, m.in_channels) or m.padding_mode != "zeros" or any(d != 1 for d in m.dilation):
                raise QuantizationError(f"layer {n.name!r} ({type(m).__name__}): only plain or depthwise convolutions "
                                        f"without dilation can be quantized")


def quantize_(model: nn.Module, config: QuantConfig, calib: torch.Tensor | None = None,
              batch_size: int = 256) -> nn.Module:
    """Quantize `model` in place and return it.

    `calib` (features, shape (N, *model.input_shape)) calibrates the activation ranges and, below
    8 bits, the weight clipping; a few hundred clips are enough. Without `calib` only the structure
    is built (used to load a quantized model file: the ranges come from its state dict).
    """
    if getattr(model, "quant_config", None) is not None:
        raise QuantizationError(f"{type(model).__name__} is already quantized")
    if calib is not None and len(calib) == 0:
        raise QuantizationError("calibration needs data: got 0 clips")
    graph = trace(model)
    _check_supported(graph)
    fold_batchnorm(model, graph)
    graph = trace(model)
    learned = isinstance(config, LearnedBitsConfig)
    trainable = not isinstance(config, PTQConfig)
    wbits = config.init_bits if learned else config.weight_bits
    abits = config.init_bits if learned else config.act_bits

    quants: dict[int, ActQuant] = {}  # node id -> quantizer of its value
    io_bits = config.io_bits
    inp = ActQuant(io_bits, signed=True, trainable=trainable)
    if isinstance(model, _CONTAINERS):
        raise QuantizationError(f"{type(model).__name__} as the whole model cannot be quantized; wrap it in a module")
    model.input_quant = inp
    model.register_forward_pre_hook(inp.input_hook)
    quants[0] = inp
    layers = [n.id for n in graph if n.op in ("conv", "linear")]
    keep = getattr(config, "keep_8bit", "none").split(",")
    kept = {layers[0]} if layers and "first" in keep else set()
    kept |= {layers[-1]} if layers and "last" in keep else set()
    for node in graph:
        if node.op in ("conv", "linear"):
            user = graph.sole_user(node.id)
            act = user.op if user is not None and user.op in ("relu", "relu6") else None
            last = node.id == graph.output or (user is not None and user.id == graph.output and act is None)
            bits = io_bits if last else abits
            aq = ActQuant(bits, signed=act is None, relu6=act == "relu6", learn_bits=learned and not last,
                          trainable=trainable)
            k8 = node.id in kept  # keep_8bit: this layer's weights stay at 8 bits (fixed, not learned)
            per_channel = getattr(config, "weight_step", "layer") == "channel"
            wq = WeightQuant(8 if k8 else wbits, learn_bits=learned and not k8, trainable=trainable,
                             channels=node.module.weight.shape[0] if per_channel else None)
            wq.kept_8bit = k8
            _set(model, node.name, to_qmodule(node.module, wq, aq))
            quants[node.id] = aq
        elif node.op == "add":
            host = model.get_submodule(node.name)
            if isinstance(host, _CONTAINERS):
                raise QuantizationError(f"the addition in {node.name!r} cannot be quantized")
            user = graph.sole_user(node.id)  # a ReLU right after the sum is fused into the ADD
            act = user.op if user is not None and user.op in ("relu", "relu6") else None
            aq = ActQuant(abits, signed=act is None, relu6=act == "relu6", learn_bits=learned, trainable=trainable)
            host.add_quant = aq
            host.register_forward_hook(aq.output_hook)
            quants[node.id] = aq
    graph = trace(model)  # now with the quantizers in place: check that each addition got its own
    for node in graph:
        if node.op in ("conv", "linear"):
            owner = graph.grid_node(node.inputs[0])
            object.__setattr__(node.module, "in_quant", owner.quant)  # a reference, not a submodule
        if node.op == "add" and node.quant is None:
            raise QuantizationError(f"the addition in {node.name!r} must be the last operation of its module's "
                                    f"forward to be quantized")
        if node.op == "avgpool":
            owner = graph.grid_node(node.inputs[0])
            if owner.quant is None:
                raise QuantizationError(f"average pool {node.name!r}: its input has no quantized producer")
            node.module.register_forward_hook(owner.quant.requant_hook)
    for node in trace(model):
        if node.quant is not None and node.op != "avgpool":
            node.quant.numel = math.prod(node.shape[1:])
    model.quant_config = config
    if calib is not None:
        calibrate(model, calib, batch_size)
    return model


def quantizers(model: nn.Module) -> tuple[list[tuple[str, WeightQuant]], list[tuple[str, ActQuant]]]:
    ws = [(n, m) for n, m in model.named_modules() if isinstance(m, WeightQuant)]
    acts = [(n, m) for n, m in model.named_modules() if isinstance(m, ActQuant)]
    return ws, acts


@torch.no_grad()
def calibrate(model: nn.Module, feats: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """Observe activations on `feats` (float model), set ranges; set weight clipping below 8 bits."""
    if feats is None or len(feats) == 0:
        raise QuantizationError("calibration needs data: no clips given")
    ws, acts = quantizers(model)
    if not acts:
        raise QuantizationError("calibrate() needs a model prepared by quantize_()")
    was = model.training
    model.eval()
    for _, q in acts:
        q.observing = True
    try:
        for i in range(0, len(feats), batch_size):
            model(feats[i : i + batch_size])
    finally:
        for _, q in acts:
            q.observing = False
        model.train(was)
    for _, q in acts:
        q.calibrate(mse=int(q.bits) < 8)
    for name, wq in ws:
        if int(wq.bits) < 8:
            wq.init_clip(model.get_submodule(name.rpartition(".")[0]).weight)
    return model


def apply_quant_dict(model: nn.Module, quant: dict) -> nn.Module:
    """Rebuild a quantized model's structure from the `quant` dict of a model file (no calibration;
    the ranges and bit-widths come with the state dict)."""
    return quantize_(model, config_from_dict(quant))


# ---------------------------------------------------------------------------- bits and memory

def bit_stats(model: nn.Module, differentiable: bool = False) -> dict:
    """Average bits per weight (weighted by weight count) and per activation (weighted by values
    per clip), packed weight bytes (each layer at its bit-width) and int32 bias bytes.
    `differentiable`: the averages are tensors carrying gradients to learned bit-widths."""
    ws, acts = quantizers(model)
    if not ws:
        raise QuantizationError("not a quantized model")
    wn = [model.get_submodule(n.rpartition(".")[0]).weight.numel() for n, _ in ws]
    wb = [q.bits if differentiable else float(q.bits.detach()) for _, q in ws]
    an = [q.numel for _, q in acts]
    ab = [q.bits if differentiable else float(q.bits.detach()) for _, q in acts]
    bias = sum(model.get_submodule(n.rpartition(".")[0]).weight.shape[0] for n, _ in ws)
    w_avg = sum(n * b for n, b in zip(wn, wb)) / sum(wn)
    a_avg = sum(n * b for n, b in zip(an, ab)) / max(1, sum(an))
    return {"weight_bits": w_avg, "act_bits": a_avg, "weights": sum(wn),
            "weight_bytes": sum(math.ceil(n * int(q.bits.detach()) / 8) for n, (_, q) in zip(wn, ws)),
            "bias_bytes": 4 * bias,
            "layers": [{"name": n.rpartition(".")[0], "weights": k, "weight_bits": int(q.bits.detach())}
                       for (n, q), k in zip(ws, wn)],
            "activations": [{"name": n, "values": q.numel, "bits": int(q.bits.detach())} for n, q in acts]}


def bit_penalty(model: nn.Module, config: LearnedBitsConfig):
    """extra_loss for training: penalty * (relu(avg weight bits - target) + relu(avg act bits - target))."""
    def loss(m: nn.Module) -> torch.Tensor:
        s = bit_stats(m, differentiable=True)
        return config.penalty * (torch.relu(s["weight_bits"] - config.weight_bits)
                                 + torch.relu(s["act_bits"] - config.act_bits))
    return loss


@torch.no_grad()
def meet_bit_targets(model: nn.Module, config: LearnedBitsConfig) -> dict:
    """Make the rounded bit-widths meet the targets exactly: lower every learned bit-width of a kind
    (weights, activations) by the smallest common offset that brings the average to its target.
    The learned allocation between layers is kept; the penalty only has to get close."""
    from .fake import _BITS_GAIN

    ws, acts = quantizers(model)
    for qs, key, target in ((ws, "weight_bits", config.weight_bits), (acts, "act_bits", config.act_bits)):
        learned = [q for _, q in qs if q.learn_bits]
        for _ in range(int(6 / 0.02)):
            if bit_stats(model)[key] <= target + 1e-9 or all(float(q.bits) <= 2 for q in learned):
                break
            for q in learned:
                q.bits_p.sub_(0.02 / _BITS_GAIN)
    return bit_stats(model)


@torch.no_grad()
def set_weight_bits(model: nn.Module, bits: int) -> nn.Module:
    """Progressive lowering: put every fixed-bit weight quantizer (not those kept at 8 bits) at `bits`
    and re-initialise its clipping at the new bit-width (squared-error optimal)."""
    for name, wq in quantizers(model)[0]:
        if wq.learn_bits or getattr(wq, "kept_8bit", False):
            continue
        wq.bits_p.fill_(float(bits))
        wq.init_clip(model.get_submodule(name.rpartition(".")[0]).weight)
    return model


def freeze_bits(model: nn.Module) -> nn.Module:
    """Stop learning bit-widths (keep ranges and weights trainable)."""
    for m in model.modules():
        if isinstance(m, (WeightQuant, ActQuant)) and m.learn_bits:
            m.bits_p.requires_grad_(False)
    return model
