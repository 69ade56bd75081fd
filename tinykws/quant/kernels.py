"""Integer reference kernels, written to match TFLite Micro's reference kernels bit for bit.

Tensors are NHWC int8 numpy arrays with a batch dimension; accumulators are int32 as on the
microcontroller (int64 numpy arrays where an intermediate needs 64 bits). Requantization is
TFLite's MultiplyByQuantizedMultiplier (gemmlowp SaturatingRoundingDoublingHighMul followed by
RoundingDivideByPOT, the "double rounding" TFLite Micro builds with by default). Hand-written:
bit-exactness with TFLite Micro / CMSIS-NN is the point, and no library ships these in Python.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


# ---------------------------------------------------------------------------- fixed point

def quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: m = q * 2^(shift - 31) with q a Q0.31 int32 in [2^30, 2^31)."""
    if m == 0.0:
        return 0, 0
    frac, shift = math.frexp(m)
    q = int(_round_half_away(frac * (1 << 31)))
    if q == 1 << 31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


def _round_half_away(x):
    """std::round: halves away from zero."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _c_div(a: np.ndarray, b: int) -> np.ndarray:
    """C integer division (truncates toward zero)."""
    q = np.abs(a) // b
    return np.where(a < 0, -q, q)


def _c_div_pot(v: np.ndarray, e: int) -> np.ndarray:
    """C integer division by 2^e (truncates toward zero): add 2^e - 1 to negatives, shift."""
    return (v + ((v >> 63) & ((1 << e) - 1))) >> e


def srdhm(a, b) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul for int32 values: round(a * b / 2^31)."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    ab = a * b
    ab += np.where(ab >= 0, 1 << 30, 1 - (1 << 30))  # nudge
    out = _c_div_pot(ab, 31)
    if np.any(b == INT32_MIN):  # only INT32_MIN * INT32_MIN overflows
        out = np.where((a == b) & (a == INT32_MIN), INT32_MAX, out)
    return out


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: x / 2^exponent, rounded to nearest, ties away from zero."""
    x, e = np.asarray(x, dtype=np.int64), np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplier (double rounding); shift > 0 is a left shift."""
    shift = np.asarray(shift, dtype=np.int64)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    x = np.asarray(x, dtype=np.int64) * (np.int64(1) << left)
    return rounding_divide_by_pot(srdhm(_wrap32(x), multiplier), right)


def _wrap32(x: np.ndarray) -> np.ndarray:
    """int32 overflow wraps (as the C code's int32 arithmetic does on every target we know)."""
    return ((x + 2**31) & 0xFFFFFFFF) - 2**31


def requantize(acc: np.ndarray, multiplier, shift, out_zp: int, qmin: int, qmax: int) -> np.ndarray:
    """int32 accumulator -> int8 output: scale by the fixed-point multiplier, add the zero point, clamp."""
    out = multiply_by_quantized_multiplier(acc, multiplier, shift) + out_zp
    return np.clip(out, qmin, qmax).astype(np.int8)


# ---------------------------------------------------------------------------- layers

def _pad(x: np.ndarray, pad) -> np.ndarray:
    top, bottom, left, right = pad
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))


def conv2d(x, in_zp, w, bias, stride, pad, multiplier, shift, out_zp, qmin, qmax):
    """CONV_2D, per-channel (reference_integer_ops::ConvPerChannel).
    x (B, H, W, C) int8, w (O, KH, KW, C) int8, bias (O,) int32. Padding reads the input zero point."""
    o, kh, kw, c = w.shape
    xs = _pad(x.astype(np.int32) - in_zp, pad)
    if (kh, kw) == (1, 1):  # pointwise: no patches to gather
        xs = xs[:, :: stride[0], :: stride[1]]
        b, oh, ow = xs.shape[:3]
        cols = xs.reshape(b * oh * ow, c)
    else:
        win = sliding_window_view(xs, (kh, kw), axis=(1, 2))[:, :: stride[0], :: stride[1]]  # B, OH, OW, C, KH, KW
        b, oh, ow = win.shape[:3]
        cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(b * oh * ow, kh * kw * c)
    acc = cols @ w.reshape(o, -1).T.astype(np.int32) + bias.astype(np.int32)
    return requantize(acc, multiplier, shift, out_zp, qmin, qmax).reshape(b, oh, ow, o)


def depthwise_conv2d(x, in_zp, w, bias, stride, pad, multiplier, shift, out_zp, qmin, qmax, depth_multiplier=1):
    """DEPTHWISE_CONV_2D, per-channel (reference_integer_ops::DepthwiseConvPerChannel).
    w (1, KH, KW, C * depth_multiplier); output channel c * depth_multiplier + m reads input channel c."""
    _, kh, kw, oc = w.shape
    xs = _pad(x.astype(np.int32) - in_zp, pad)
    if depth_multiplier > 1:
        xs = np.repeat(xs, depth_multiplier, axis=3)
    b, h, wd, _ = xs.shape
    oh, ow = (h - kh) // stride[0] + 1, (wd - kw) // stride[1] + 1
    acc = np.zeros((b, oh, ow, oc), dtype=np.int32)
    for i in range(kh):
        for j in range(kw):
            tap = xs[:, i : i + (oh - 1) * stride[0] + 1 : stride[0], j : j + (ow - 1) * stride[1] + 1 : stride[1]]
            acc += tap * w[0, i, j].astype(np.int32)
    acc += bias.astype(np.int32)
    return requantize(acc, multiplier, shift, out_zp, qmin, qmax)


def fully_connected(x, in_zp, w, bias, multiplier, shift, out_zp, qmin, qmax):
    """FULLY_CONNECTED (reference_integer_ops::FullyConnected / FullyConnectedPerChannel).
    x (B, ..., N) flattened to (B, N); w (O, N) int8."""
    xs = x.reshape(x.shape[0], -1).astype(np.int32) - in_zp
    acc = xs @ w.T.astype(np.int32)
    if bias is not None:
        acc = acc + bias.astype(np.int32)
    return requantize(acc, multiplier, shift, out_zp, qmin, qmax)


def _pool_windows(x, filt, stride, pad):
    """Yield (out_y, out_x, window) with the window clipped to the input, like TFLite's pooling."""
    b, h, w, c = x.shape
    oh, ow = (h + pad[0] + pad[1] - filt[0]) // stride[0] + 1, (w + pad[2] + pad[3] - filt[1]) // stride[1] + 1
    for oy in range(oh):
        for ox in range(ow):
            y0, x0 = oy * stride[0] - pad[0], ox * stride[1] - pad[2]
            yield oy, ox, x[:, max(0, y0) : min(h, y0 + filt[0]), max(0, x0) : min(w, x0 + filt[1])]


def average_pool(x, filt, stride, pad, qmin, qmax):
    """AVERAGE_POOL_2D int8: sum over the valid window, divide rounding half away from zero."""
    b, h, w, c = x.shape
    oh, ow = (h + pad[0] + pad[1] - filt[0]) // stride[0] + 1, (w + pad[2] + pad[3] - filt[1]) // stride[1] + 1
    out = np.empty((b, oh, ow, c), dtype=np.int8)
    for oy, ox, win in _pool_windows(x, filt, stride, pad):
        s = win.astype(np.int32).sum(axis=(1, 2))
        n = win.shape[1] * win.shape[2]
        avg = np.where(s > 0, _c_div(s + n // 2, n), _c_div(s - n // 2, n))
        out[:, oy, ox] = np.clip(avg, qmin, qmax)
    return out


def max_pool(x, filt, stride, pad, qmin, qmax):
    """MAX_POOL_2D int8."""
    b, h, w, c = x.shape
    oh, ow = (h + pad[0] + pad[1] - filt[0]) // stride[0] + 1, (w + pad[2] + pad[3] - filt[1]) // stride[1] + 1
    out = np.empty((b, oh, ow, c), dtype=np.int8)
    for oy, ox, win in _pool_windows(x, filt, stride, pad):
        out[:, oy, ox] = np.clip(win.max(axis=(1, 2)), qmin, qmax)
    return out


def add(x1, zp1, x2, zp2, params: dict, out_zp, qmin, qmax):
    """ADD int8 (reference_integer_ops::Add): both inputs onto a common scale with 20 bits of
    headroom, add, rescale to the output."""
    ls = params["left_shift"]
    a = (x1.astype(np.int64) - zp1) * (1 << ls)
    b = (x2.astype(np.int64) - zp2) * (1 << ls)
    a = multiply_by_quantized_multiplier(a, params["m1"], params["s1"])
    b = multiply_by_quantized_multiplier(b, params["m2"], params["s2"])
    out = multiply_by_quantized_multiplier(a + b, params["mo"], params["so"]) + out_zp
    return np.clip(out, qmin, qmax).astype(np.int8)


def add_params(s1: float, s2: float, so: float) -> dict:
    """TFLite Micro's ADD Prepare (float32 scales, computed in double)."""
    ls = 20
    twice_max = 2 * float(max(np.float32(s1), np.float32(s2)))
    m1, sh1 = quantize_multiplier(float(np.float32(s1)) / twice_max)
    m2, sh2 = quantize_multiplier(float(np.float32(s2)) / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << ls) * float(np.float32(so))))
    return {"left_shift": ls, "m1": m1, "s1": sh1, "m2": m2, "s2": sh2, "mo": mo, "so": sho}


# ---------------------------------------------------------------------------- softmax (gemmlowp fixed point)

def _sat_mul_pot(x, exponent: int):
    """SaturatingRoundingMultiplyByPOT for int32."""
    if exponent > 0:
        thr = (1 << (31 - exponent)) - 1
        return np.where(x > thr, INT32_MAX, np.where(x < -thr, INT32_MIN, x * (1 << exponent)))
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    return x


def _exp_quarter(a):
    """exp(x) for x in [-1/4, 0), Q0.31 in and out."""
    const_term, one_third = 1895147668, 715827883
    x = a + (1 << 28)
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = _sat_mul_pot(x4, -2)
    poly = _sat_mul_pot(srdhm(x4_over_4 + x3, one_third) + x2, -1)
    return const_term + srdhm(const_term, x + poly)


def exp_on_negative_values(a, integer_bits: int):
    """gemmlowp exp_on_negative_values: a is Q(integer_bits).(31-integer_bits), result Q0.31."""
    frac_bits = 31 - integer_bits
    quarter = 1 << (frac_bits - 2)
    a_mod = (a & (quarter - 1)) - quarter
    result = _exp_quarter(_sat_mul_pot(a_mod, integer_bits))  # Rescale<0>
    remainder = a_mod - a
    for exponent, mult in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                           (2, 39332535), (3, 720401), (4, 242)):
        if integer_bits > exponent:
            bit = 1 << (frac_bits + exponent)
            result = np.where(remainder & bit, srdhm(result, mult), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _one_over_one_plus_x(a):
    """gemmlowp one_over_one_plus_x_for_x_in_0_1 (Q0.31 in, Q0.31 out), Newton-Raphson."""
    s = a + INT32_MAX  # RoundingHalfSum(a, One)
    half_denominator = _c_div(s + np.where(s >= 0, 1, -1), 2)
    x = 1515870810 + srdhm(half_denominator, -1010580540)  # F2: 48/17 - 32/17 * d
    one_f2 = 1 << 29
    for _ in range(3):
        hdx = srdhm(half_denominator, x)  # F2
        x = x + _sat_mul_pot(srdhm(x, one_f2 - hdx), 2)  # Rescale<2> of an F4 product
    return _sat_mul_pot(x, 1)  # Rescale<0>(ExactMulByPot<-1>(x)): F1 -> F0


def softmax_params(input_scale: float, beta: float = 1.0) -> dict:
    """TFLite Micro's int8 SOFTMAX Prepare (PreprocessSoftmaxScaling, CalculateInputRadius)."""
    integer_bits = 5
    real = min(beta * float(np.float32(input_scale)) * (1 << (31 - integer_bits)), (1 << 31) - 1.0)
    mult, shift = quantize_multiplier(real)
    radius = ((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << shift)
    return {"multiplier": mult, "left_shift": shift, "diff_min": -math.floor(radius)}


def softmax(x, params: dict) -> np.ndarray:
    """SOFTMAX int8 -> int8 with output scale 1/256 and zero point -128 (reference_ops::Softmax)."""
    diff = x.astype(np.int64) - x.max(axis=-1, keepdims=True)
    ok = diff >= params["diff_min"]
    scaled = srdhm(_wrap32(diff * (1 << params["left_shift"])), params["multiplier"])  # Q5.26
    e = exp_on_negative_values(scaled, 5)  # Q0.31
    sum_exps = np.where(ok, _sat_mul_pot(e, -12), 0).sum(axis=-1, keepdims=True)  # Q12.19
    headroom = 32 - np.frexp(sum_exps.astype(np.float64))[1].astype(np.int64)  # count leading zeros (sum > 0)
    num_bits_over_unit = 12 - headroom
    shifted_minus_one = ((sum_exps << headroom) & 0xFFFFFFFF) - (1 << 31)
    scale = _one_over_one_plus_x(shifted_minus_one)
    exponent = num_bits_over_unit + 31 - 8
    out = rounding_divide_by_pot(srdhm(scale, e), exponent) - 128
    return np.where(ok, np.clip(out, -128, 127), -128).astype(np.int8)
