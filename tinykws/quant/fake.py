"""Fake quantization with the straight-through estimator (STE).

Weights: symmetric, per output channel. Channel c of a layer with b bits uses the step
    s_c = alpha * max|w_c| / (2^(b-1) - 1),   q = clamp(round(w / s_c), -L, L) * s_c,  L = 2^(b-1) - 1
with a clipping ratio alpha per layer (1 for post-training rounding, learned in QAT).

Activations: affine on the grid of the TFLite int8 convention. A range [lo, hi] (lo = 0 after a
ReLU, lo <= 0 <= hi otherwise) and b bits give the step d = (hi - lo) / (2^b - 1) and the zero
point z = round(-lo / d); x -> (clamp(round(x / d) + z, 0, 2^b - 1) - z) * d. After a ReLU6 the
input is first clipped to 6. In int8 storage a value k of this unsigned grid becomes
k + offset with offset = 127 - (2^b - 1) for ReLU outputs (so TFLite's fused-ReLU clamps are
exactly the b-bit clamps) and -128 otherwise.

Learned bit-widths: b is a parameter, rounded in the forward pass with the STE, so the network
always runs at whole bit-widths (the ones it is deployed with) while b moves freely; the range
parameters are learned in log space. Ranges, clipping ratios and bits are scaled (`_GAIN`) so
that Adam moves them at a useful rate with the learning rate of the weights.

Hand-written (not torchao/Brevitas): the grid must be exactly the integer kernels' grid (int8
container, TFLite zero points and clamps) and bit-widths must be learnable per layer.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

_GAIN = 5.0  # log-range parameters: log(value) = _GAIN * p
_BITS_GAIN = 20.0  # bit-width parameters: bits = _BITS_GAIN * p


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round() forward, identity gradient."""
    return x + (torch.round(x) - x).detach()


def requant_round_ste(t: torch.Tensor, rshift: torch.Tensor | None) -> torch.Tensor:
    """Round t (an output in units of its step) as TFLite's fixed-point requantization does, with
    an identity gradient: first to 2^-r (SaturatingRoundingDoublingHighMul), then to an integer
    (RoundingDivideByPOT), both halves away from zero. For r >= 1 that is exactly
    sign(t) * floor(|t| + 1/2 + 2^-(r+1)): values within 2^-(r+1) below a half round up."""
    with torch.no_grad():
        half = 0.5 if rshift is None else 0.5 + torch.where(rshift >= 1, 2.0 ** (-rshift - 1), 0.0)
        r = torch.sign(t) * torch.floor(t.abs() + half)
    return t + (r - t).detach()


def _bits(p: torch.Tensor, learned: bool) -> torch.Tensor:
    return round_ste(p * _BITS_GAIN).clamp(2, 8) if learned else p


def _bits_param(bits: float, learned: bool) -> nn.Parameter | torch.Tensor:
    return nn.Parameter(torch.tensor(bits / _BITS_GAIN)) if learned else torch.tensor(float(bits))


class WeightQuant(nn.Module):
    """Per-output-channel symmetric fake quantizer for a conv/linear weight (channel dim 0)."""

    is_quantizer = False  # not an activation quantizer (the tracer looks through it)

    def __init__(self, bits: int, learn_bits: bool = False, trainable: bool = True, channels: int | None = None):
        """`channels`: learn one clipping ratio per output channel (an LSQ-style step per channel)
        instead of one per layer."""
        super().__init__()
        self.learn_bits = learn_bits
        if learn_bits:
            self.bits_p = _bits_param(bits, True)
        else:
            self.register_buffer("bits_p", _bits_param(bits, False))
        shape = () if channels is None else (channels,)
        self.log_alpha = nn.Parameter(torch.zeros(shape), requires_grad=trainable)  # alpha = exp(_GAIN * p)

    @property
    def bits(self) -> torch.Tensor:
        return _bits(self.bits_p, self.learn_bits)

    def bits_float(self) -> torch.Tensor:
        """Bits before rounding (the penalty uses the rounded ones through the STE)."""
        return self.bits_p * _BITS_GAIN if self.learn_bits else self.bits_p

    def levels(self) -> torch.Tensor:
        return 2 ** (self.bits - 1) - 1

    def scale(self, w: torch.Tensor) -> torch.Tensor:
        """Per-channel step, shaped to broadcast against w."""
        r = w.detach().abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp_min(1e-8)
        alpha = torch.exp(_GAIN * self.log_alpha).clamp(max=1.0)
        if alpha.dim():
            alpha = alpha.reshape(-1, *([1] * (w.dim() - 1)))
        return alpha * r / self.levels()

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        s, L = self.scale(w), self.levels().detach()
        if getattr(self, "export_mode", False):  # for ONNX: QuantizeLinear/DequantizeLinear per channel
            scale = torch.tensor(s.detach().flatten().tolist(), dtype=torch.float32)  # a constant in the graph
            return torch.fake_quantize_per_channel_affine(w, scale, torch.zeros_like(scale, dtype=torch.int32), 0, -128, 127)
        return torch.clamp(round_ste(w / s), -L, L) * s

    @torch.no_grad()
    def init_clip(self, w: torch.Tensor, steps: int = 50) -> None:
        """Clipping ratio with the smallest squared error at the current bit-width (1 at 8 bits)."""
        if self.log_alpha.dim():  # per channel: each channel's own best ratio
            best = torch.full(self.log_alpha.shape, math.inf)
            best_a = torch.ones(self.log_alpha.shape)
            for a in torch.linspace(1.0, 0.2, steps):
                self.log_alpha.fill_(math.log(a) / _GAIN)
                err = (self(w) - w).square().flatten(1).sum(1)
                better = err < best - 1e-12
                best, best_a = torch.where(better, err, best), torch.where(better, a, best_a)
            self.log_alpha.copy_(torch.log(best_a) / _GAIN)
            return
        best, best_a = None, 1.0
        for a in torch.linspace(1.0, 0.2, steps):
            self.log_alpha.fill_(math.log(a) / _GAIN)
            err = (self(w) - w).square().sum().item()
            if best is None or err < best - 1e-12:
                best, best_a = err, float(a)
        self.log_alpha.fill_(math.log(best_a) / _GAIN)

    @torch.no_grad()
    def integer(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(integer weights as int64, per-channel scales as float32): w ~ q * scale."""
        s = self.scale(w)
        L = self.levels()
        q = torch.clamp(torch.round(w / s), -L, L)
        return q.long(), s.flatten().float()


class ActQuant(nn.Module):
    """Activation fake quantizer with a learned range [lo, hi] (and learned bits, optionally).

    `signed=False` quantizes a ReLU (relu6: ReLU6) output: lo is fixed at 0, so the grid's clamp
    is the ReLU. Until it is calibrated (`ready`) it passes values through; while `observing`
    it records them for calibration instead.
    """

    is_quantizer = True

    def __init__(self, bits: int, signed: bool, relu6: bool = False, learn_bits: bool = False,
                 trainable: bool = True):
        super().__init__()
        self.signed, self.relu6, self.learn_bits = signed, relu6, learn_bits
        if learn_bits:
            self.bits_p = _bits_param(bits, True)
        else:
            self.register_buffer("bits_p", _bits_param(bits, False))
        self.log_hi = nn.Parameter(torch.zeros(()), requires_grad=trainable)
        self.log_neg_lo = nn.Parameter(torch.zeros(()), requires_grad=trainable and signed)
        self.register_buffer("ready", torch.tensor(False))
        self.observing = False
        self.numel = 0  # values per clip (set when placed), for the average bits per activation
        self._seen: list[torch.Tensor] = []
        self._min, self._max = math.inf, -math.inf

    @property
    def bits(self) -> torch.Tensor:
        return _bits(self.bits_p, self.learn_bits)

    def bits_float(self) -> torch.Tensor:
        return self.bits_p * _BITS_GAIN if self.learn_bits else self.bits_p

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        hi = torch.exp(_GAIN * self.log_hi)
        lo = -torch.exp(_GAIN * self.log_neg_lo) if self.signed else torch.zeros_like(hi)
        return lo, hi

    def grid(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(step d, zero point z on the unsigned grid, top level n = 2^b - 1)."""
        lo, hi = self.range()
        n = 2 ** self.bits - 1
        d = (hi - lo) / n
        z = round_ste(-lo / d)
        return d, z, n

    def forward(self, x: torch.Tensor, rshift: torch.Tensor | None = None) -> torch.Tensor:
        """`rshift`: per-channel right shifts of the integer requantization that produces x, so
        that rounding matches the integer kernels (see requant_round_ste)."""
        if self.relu6:
            x = x.clamp(max=6.0)
        if self.observing:
            self._observe(x)
            return x
        if not bool(self.ready):
            return x
        if getattr(self, "export_mode", False):  # for ONNX: Clip + QuantizeLinear/DequantizeLinear on the int8 grid
            p = self.qparams()
            s, zp = p["scale"], p["zero_point"]
            x = x.clamp((p["qmin"] - zp) * s, (p["qmax"] - zp) * s)
            return torch.fake_quantize_per_tensor_affine(x, s, zp, -128, 127)
        d, z, n = self.grid()
        k = torch.clamp(requant_round_ste(x / d, rshift) + z, 0, n.detach())
        return (k - z) * d

    # ------------------------------------------------------------------ hooks (placed by quantize_)
    def input_hook(self, module, args):
        return (self(args[0]),) + tuple(args[1:])

    def output_hook(self, module, args, out):
        return self(out)

    def requant_hook(self, module, args, out):
        """Average pooling keeps its input's grid: round the mean back onto it (never observe), as
        TFLite's int8 AVERAGE_POOL_2D does: the mean of the stored int8 values (zero point
        included) rounded half away from zero. Small windows (1x2, 1x3) make exact ties common."""
        if self.observing or not bool(self.ready) or getattr(self, "export_mode", False):
            return out if self.observing else self(out)
        d, z, n = self.grid()
        count = max(1, round(args[0][0].numel() / out[0].numel()))  # values per window
        offset = -128 if self.signed else 127 - n.detach()  # grid level k is stored as k + offset
        with torch.no_grad():
            stored = torch.round(out / d * count) / count + z + offset  # exact multiples of 1/count
            k = torch.clamp(torch.sign(stored) * torch.floor(stored.abs() + 0.5) - offset, 0, n.detach())
        return out + (k - z - out / d).detach() * d  # identity gradient, as round_ste

    # ------------------------------------------------------------------ calibration
    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        v = x.detach().flatten().float()
        if not self.signed:
            v = v.clamp(min=0)
        self._min, self._max = min(self._min, v.min().item()), max(self._max, v.max().item())
        if v.numel() > 20000:
            v = v[torch.randint(0, v.numel(), (20000,), generator=torch.Generator().manual_seed(len(self._seen)))]
        self._seen.append(v)

    @torch.no_grad()
    def calibrate(self, mse: bool) -> None:
        """Set the range from what was observed: min/max, or (mse) the clipping of min/max with the
        smallest squared error at the current bit-width."""
        if not self._seen:
            raise RuntimeError("calibrate() before any observation")
        lo, hi = min(self._min, 0.0), max(self._max, 1e-6)
        if not self.signed:
            lo = 0.0
        self._set_range(lo, hi)
        self.ready.fill_(True)
        if mse:
            v = torch.cat(self._seen)
            best, best_a = None, 1.0
            for a in torch.linspace(1.0, 0.1, 46).tolist():
                self._set_range(lo * a, hi * a)
                err = (self(v) - v).square().mean().item()
                if best is None or err < best - 1e-12:
                    best, best_a = err, a
            self._set_range(lo * best_a, hi * best_a)
        self._seen, self._min, self._max = [], math.inf, -math.inf

    def _set_range(self, lo: float, hi: float) -> None:
        self.log_hi.fill_(math.log(max(hi, 1e-6)) / _GAIN)
        if self.signed:
            self.log_neg_lo.fill_(math.log(max(-lo, 1e-6)) / _GAIN)

    # ------------------------------------------------------------------ integer form
    @torch.no_grad()
    def qparams(self) -> dict:
        """The int8 form: scale, zero point and the clamp [qmin, qmax] (see module doc)."""
        d, z, n = self.grid()
        n, z = int(n), int(z)
        offset = 127 - n if not self.signed else -128
        qmin, qmax = offset, offset + n
        if self.relu6:  # values were clipped to 6 first: the top level is round(6 / d) at most
            qmax = min(qmax, offset + z + int(torch.round(6.0 / d)))
        return {"scale": float(d), "zero_point": z + offset, "qmin": qmin, "qmax": qmax, "bits": int(self.bits)}

    def extra_repr(self) -> str:
        return f"bits={float(self.bits_float()):.2f}, signed={self.signed}, relu6={self.relu6}, learn_bits={self.learn_bits}"


class _QMixin:
    """Conv/linear whose weight goes through `wq` and whose output goes through `aq`. The bias is
    rounded onto the int32 grid of step s_in * s_w[c] (as the integer kernels store it) once the
    input's quantizer (`in_quant`, set by quantize_, not a submodule) is calibrated."""

    in_quant = None

    def qweight(self) -> torch.Tensor:
        return self.wq(self.weight)

    def qbias(self) -> torch.Tensor | None:
        q = self.in_quant
        if self.bias is None or q is None or not bool(q.ready) or q.observing:
            return self.bias
        step = q.grid()[0] * self.wq.scale(self.weight).flatten()
        if getattr(self.wq, "export_mode", False):
            return torch.tensor((torch.round(self.bias / step) * step).tolist(), dtype=torch.float32)
        return round_ste(self.bias / step) * step

    def _out(self, y):
        aq, q = getattr(self, "aq", None), self.in_quant
        if aq is None:
            return y
        if q is None or not bool(q.ready) or not bool(aq.ready) or q.observing or aq.observing or \
                getattr(aq, "export_mode", False):
            return aq(y)
        with torch.no_grad():  # the right shift of TFLite's multiplier s_in * s_w[c] / s_out, per channel
            m = q.grid()[0].double() * self.wq.scale(self.weight).flatten().double() / aq.grid()[0].double()
            mant, exp = torch.frexp(m)
            exp = exp + (torch.round(mant * 2.0**31) == 2.0**31).long()
            rshift = (-exp).clamp(min=0).float().reshape(1, -1, *([1] * (y.dim() - 2)))
        return aq(y, rshift)


class QConv1d(_QMixin, nn.Conv1d):
    def forward(self, x):
        return self._out(self._conv_forward(x, self.qweight(), self.qbias()))


class QConv2d(_QMixin, nn.Conv2d):
    def forward(self, x):
        return self._out(self._conv_forward(x, self.qweight(), self.qbias()))


class QLinear(_QMixin, nn.Linear):
    def forward(self, x):
        return self._out(F.linear(x, self.qweight(), self.qbias()))


_QCLASS = {nn.Conv1d: QConv1d, nn.Conv2d: QConv2d, nn.Linear: QLinear}


def to_qmodule(m: nn.Module, wq: WeightQuant, aq: ActQuant | None) -> nn.Module:
    """A quantized copy of a float conv/linear that shares its parameters."""
    cls = _QCLASS[type(m)] if type(m) in _QCLASS else next(c for t, c in _QCLASS.items() if isinstance(m, t))
    q = cls.__new__(cls)
    nn.Module.__init__(q)
    q.__dict__.update({k: v for k, v in m.__dict__.items() if k not in ("_parameters", "_buffers", "_modules")})
    q._parameters = {k: m._parameters.get(k) for k in ("weight", "bias")}
    if q._parameters["weight"] is None:  # a computed weight (SincNet filters): frozen into a plain conv weight
        q._parameters["weight"] = nn.Parameter(m.weight.detach().clone())
    q._buffers = {k: v for k, v in m._buffers.items() if k != "weight"}
    q._modules = dict(m._modules)
    q.wq, q.aq = wq, aq
    return q
