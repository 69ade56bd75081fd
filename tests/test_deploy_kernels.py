"""Per-op golden tests of the C kernel library: every variant, built on the host with gcc and
called through ctypes, equals the integer reference (tinykws.quant.kernels) bit for bit over
random shapes, strides, paddings (asymmetric SAME included), odd channel counts, depth
multipliers, extreme zero points, multipliers and shifts, and ReLU/ReLU6 clamps."""
from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from tinykws.deploy import kernels as KL
from tinykws.quant import kernels as K

GUARD = 64  # bytes after every output and scratch buffer that no kernel may touch
CONV_FIELDS = ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h", "stride_w", "pad_top",
               "pad_left", "depth_multiplier", "in_offset", "out_offset", "act_min", "act_max", "requant")
FC_FIELDS = ("in_n", "out_n", "in_offset", "out_offset", "act_min", "act_max", "requant")
MODES_SEEN: dict[str, set] = {}  # variant -> the requantization modes its golden tests ran
POOL_FIELDS = ("in_h", "in_w", "channels", "out_h", "out_w", "f_h", "f_w", "stride_h", "stride_w", "pad_top",
               "pad_left", "act_min", "act_max")
ADD_FIELDS = ("size", "in1_offset", "in2_offset", "left_shift", "in1_mult", "in1_shift", "in2_mult", "in2_shift",
              "out_mult", "out_shift", "out_offset", "act_min", "act_max")
SOFTMAX_FIELDS = ("rows", "depth", "input_multiplier", "input_left_shift", "diff_min")


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the kernel library on the host"
    out = tmp_path_factory.mktemp("tkws_kernels") / "libtkws_kernels.so"
    srcs = [str(p) for p in KL.sources() if p.suffix == ".c"]
    subprocess.run([gcc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", "-o", str(out), *srcs],
                   check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(out))


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


def _struct(fields, p: dict) -> np.ndarray:
    """A params struct: every field is an int32_t, in declaration order."""
    return np.array([int(p.get(f, 0)) for f in fields], np.int32)


def _buf(n: int, dtype=np.int8):
    """n elements followed by a guard band (filled with a pattern)."""
    itemsize = np.dtype(dtype).itemsize
    b = np.full(n * itemsize + GUARD, 0x5A, np.uint8)
    return b


def _check_guard(b: np.ndarray, n_bytes: int, what: str):
    assert np.all(b[n_bytes:] == 0x5A), f"{what} wrote past its buffer"


def _requant_for(v, mult, shift, p, w, bias):
    """The variant's requantization arrays and mode (recorded in MODES_SEEN)."""
    m, s, mode = v.pack_requant(mult, shift, p, w, bias)
    MODES_SEEN.setdefault(v.name, set()).add(mode)
    return m, s, {**p, "requant": mode}


def _call_conv(lib, name, p, x, w, bias, mult, shift):
    v = KL.VARIANTS[name]
    packed, ctype = v.pack_weights(w, p)
    packed = np.ascontiguousarray(packed, {"int8_t": np.int8, "int16_t": np.int16, "int32_t": np.int32}[ctype])
    b = v.fold_bias(bias, w, p["in_offset"]) if v.folds_input_offset else np.asarray(bias, np.int32)
    mult, shift, p = _requant_for(v, mult, shift, p, w, bias)
    n_out = p["out_h"] * p["out_w"] * p["out_c"]
    out = _buf(n_out)
    sb = v.scratch_bytes(p)
    scratch = _buf(sb)
    st = _struct(CONV_FIELDS, p)
    getattr(lib, name)(_ptr(st), _ptr(np.ascontiguousarray(x, np.int8)), _ptr(packed), _ptr(np.asarray(b, np.int32)),
                       _ptr(np.asarray(mult, np.int32)), _ptr(np.asarray(shift, np.int32)), _ptr(out),
                       _ptr(scratch) if sb else None)
    _check_guard(out, n_out, name)
    _check_guard(scratch, sb, name + " scratch")
    return out[:n_out].view(np.int8).reshape(1, p["out_h"], p["out_w"], p["out_c"])


def _call_fc(lib, name, p, x, w, bias, mult, shift):
    v = KL.VARIANTS[name]
    packed = np.ascontiguousarray(v.pack_weights(w, p)[0], np.int8)
    b = v.fold_bias(bias, w, p["in_offset"]) if v.folds_input_offset else np.asarray(bias, np.int32)
    mult, shift, p = _requant_for(v, mult, shift, p, w, bias)
    out, sb = _buf(p["out_n"]), v.scratch_bytes(p)
    scratch = _buf(sb)
    st = _struct(FC_FIELDS, p)
    getattr(lib, name)(_ptr(st), _ptr(np.ascontiguousarray(x, np.int8)), _ptr(packed), _ptr(np.asarray(b, np.int32)),
                       _ptr(np.asarray(mult, np.int32)), _ptr(np.asarray(shift, np.int32)), _ptr(out),
                       _ptr(scratch) if sb else None)
    _check_guard(out, p["out_n"], name)
    _check_guard(scratch, sb, name + " scratch")
    return out[: p["out_n"]].view(np.int8).reshape(1, -1)


# ---------------------------------------------------------------------------- random cases

def _zp(rng) -> int:
    return int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))]))


def _requant(rng, n: int, extreme: bool):
    """Per-channel (multiplier, shift) from scales; extreme: tiny and > 1 multipliers too."""
    lo, hi = (-9, 1.5) if extreme else (-4, -1)
    ms = [K.quantize_multiplier(float(10 ** rng.uniform(lo, hi))) for _ in range(n)]
    if extreme:  # the ends of the multiplier range
        ms[0] = (2**31 - 1, ms[0][1])
        if n > 1:
            ms[1] = (1 << 30, ms[1][1])
    return np.array([m for m, _ in ms], np.int32), np.array([s for _, s in ms], np.int32)


def _clamp(rng, out_zp: int):
    kind = rng.integers(0, 3)
    if kind == 0:
        return -128, 127
    if kind == 1:  # ReLU
        return out_zp, 127
    top = min(127, out_zp + int(rng.integers(0, 120)))  # ReLU6-like
    return out_zp, top


def _same_pad(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _conv_case(rng, depthwise=False, pointwise=False):
    ih, iw = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    ic = int(rng.choice([1, 2, 3, 4, 5, 7, 8, 13, 16, 17]))
    if pointwise:
        kh = kw = 1
        sh = sw = 1
        pad = (0, 0, 0, 0)
    else:
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        mode = rng.integers(0, 3)
        if mode == 0:  # SAME (asymmetric when the total is odd)
            t, b = _same_pad(ih, kh, sh)
            l, r = _same_pad(iw, kw, sw)
        elif mode == 1:
            t = b = l = r = 0
        else:
            t, b, l, r = (int(v) for v in rng.integers(0, 3, 4))
        ih, iw = max(ih, kh - t - b), max(iw, kw - l - r)
        pad = (t, b, l, r)
    dm = int(rng.choice([1, 1, 2, 3])) if depthwise else 1
    oc = ic * dm if depthwise else int(rng.choice([1, 2, 3, 4, 5, 6, 8, 9, 11, 16]))
    in_zp, out_zp = _zp(rng), _zp(rng)
    x = rng.integers(-128, 128, (1, ih, iw, ic)).astype(np.int8)
    shape = (1, kh, kw, oc) if depthwise else (oc, kh, kw, ic)
    w = rng.integers(-127, 128, shape).astype(np.int8)
    extreme = bool(rng.integers(0, 2))
    bias = rng.integers(-(2**16), 2**16, oc).astype(np.int32) if not extreme else \
        rng.integers(-(2**24), 2**24, oc).astype(np.int32)
    mult, shift = _requant(rng, oc, extreme)
    qmin, qmax = _clamp(rng, out_zp)
    return dict(x=x, in_zp=in_zp, w=w, bias=bias, stride=(sh, sw), pad=pad, mult=mult, shift=shift, out_zp=out_zp,
                qmin=qmin, qmax=qmax, dm=dm)


def _conv_params(c, y):
    _, ih, iw, ic = c["x"].shape
    _, oh, ow, oc = y.shape
    kh, kw = c["w"].shape[1:3]
    return dict(in_h=ih, in_w=iw, in_c=ic, out_h=oh, out_w=ow, out_c=oc, k_h=kh, k_w=kw, stride_h=c["stride"][0],
                stride_w=c["stride"][1], pad_top=c["pad"][0], pad_left=c["pad"][2], depth_multiplier=c["dm"],
                in_offset=-c["in_zp"], out_offset=c["out_zp"], act_min=c["qmin"], act_max=c["qmax"])


CONV_VARIANTS = ["tkws_conv_s8_ref", "tkws_conv_s8_ref_wo", "tkws_conv_s8_fast", "tkws_conv_s8_fast_wo",
                 "tkws_conv_s8_fast_wide"]
PW_VARIANTS = CONV_VARIANTS + ["tkws_pw_s8_fast", "tkws_pw_s8_fast_wide"]


def _selectable(name, c) -> bool:
    """Whether select() can give `name` for the case's shapes (every variant takes any channel count)."""
    return True


def _check_modes(name):
    """A fast variant's golden cases ran every requantization mode (the generator's proof and both clamps)."""
    if KL.VARIANTS[name].fast_requant:
        assert MODES_SEEN.get(name, set()) == {KL.RQ_EXACT, KL.RQ_FAST, KL.RQ_FULL}, (name, MODES_SEEN.get(name))


@pytest.mark.parametrize("name", CONV_VARIANTS)
def test_conv_bit_exact(lib, name):
    rng = np.random.default_rng(13)
    MODES_SEEN.pop(name, None)
    n = 0
    while n < 60:
        c = _conv_case(rng)
        if not _selectable(name, c):
            continue
        n += 1
        y = K.conv2d(c["x"], c["in_zp"], c["w"], c["bias"], c["stride"], c["pad"], c["mult"], c["shift"], c["out_zp"],
                     c["qmin"], c["qmax"])
        p = _conv_params(c, y)
        got = _call_conv(lib, name, p, c["x"], c["w"], c["bias"], c["mult"], c["shift"])
        np.testing.assert_array_equal(got, y, err_msg=f"{name} {p}")
    _check_modes(name)


@pytest.mark.parametrize("name", PW_VARIANTS)
def test_pointwise_bit_exact(lib, name):
    rng = np.random.default_rng(77)
    MODES_SEEN.pop(name, None)
    n = 0
    while n < 40:
        c = _conv_case(rng, pointwise=True)
        if not _selectable(name, c):
            continue
        n += 1
        y = K.conv2d(c["x"], c["in_zp"], c["w"], c["bias"], c["stride"], c["pad"], c["mult"], c["shift"], c["out_zp"],
                     c["qmin"], c["qmax"])
        p = _conv_params(c, y)
        assert KL.is_pointwise(p)
        got = _call_conv(lib, name, p, c["x"], c["w"], c["bias"], c["mult"], c["shift"])
        np.testing.assert_array_equal(got, y, err_msg=f"{name} {p}")
    _check_modes(name)


@pytest.mark.parametrize("name", ["tkws_dw_s8_ref", "tkws_dw_s8_ref_wo", "tkws_dw_s8_fast"])
def test_depthwise_bit_exact(lib, name):
    rng = np.random.default_rng(5)
    MODES_SEEN.pop(name, None)
    n = 0
    while n < 60:
        c = _conv_case(rng, depthwise=True)
        if name == "tkws_dw_s8_fast" and c["dm"] != 1:
            continue  # select() gives the reference for other depth multipliers
        y = K.depthwise_conv2d(c["x"], c["in_zp"], c["w"], c["bias"], c["stride"], c["pad"], c["mult"], c["shift"],
                               c["out_zp"], c["qmin"], c["qmax"], c["dm"])
        p = _conv_params(c, y)
        got = _call_conv(lib, name, p, c["x"], c["w"], c["bias"], c["mult"], c["shift"])
        np.testing.assert_array_equal(got, y, err_msg=f"{name} {p}")
        n += 1
    _check_modes(name)


@pytest.mark.parametrize("name", ["tkws_pw_s8_fast_wide", "tkws_dw_s8_fast", "tkws_conv_s8_fast_wide"])
def test_fast_requant_at_its_bounds(lib, name):
    """The single-multiply requantization at the edges the generator allows: accumulators just
    under 2^30 in magnitude (inputs chosen to reach the bound), right shifts of 1 and 23, output
    zero points -128 and 127; one more step of bias and the generator falls back to the exact path."""
    rng = np.random.default_rng(21)
    dw = name == "tkws_dw_s8_fast"
    for e, out_zp, in_zp, sign in [(1, -128, -128, 1), (23, 127, 127, -1), (12, -128, 127, 1), (23, -128, 0, -1)]:
        oc = 8
        w = rng.integers(-127, 128, (1, 3, 3, oc) if dw else ((oc, 1, 1, 8) if "pw" in name else (oc, 2, 2, 2)))
        w = w.astype(np.int8)
        xs = (1, 3, 3, oc) if dw else ((1, 2, 2, 8) if "pw" in name else (1, 3, 3, 2))
        x = np.full(xs, 127 if sign > 0 else -128, np.int8)
        if dw:
            x = np.where(w[0] > 0, x[0, :, :, :], (-1 - x[0].astype(np.int16)).astype(np.int8))[None]
        mult = np.full(oc, 1 << 30, np.int32)
        shift = np.full(oc, -e, np.int32)
        c = dict(x=x, w=w, stride=(1, 1), pad=(1, 1, 1, 1) if dw else (0, 0, 0, 0), dm=1, in_zp=in_zp, out_zp=out_zp,
                 qmin=-128, qmax=127)
        sums = np.abs(w.astype(np.int64)).reshape(-1, oc).sum(0) if dw else \
            np.abs(w.astype(np.int64)).reshape(oc, -1).sum(1)
        xmax = max(abs(-128 - in_zp), abs(127 - in_zp))
        bias = (sign * ((1 << 30) - 1 - sums * xmax)).astype(np.int32)
        args = (x, in_zp, w, bias, (1, 1), c["pad"], mult, shift, out_zp, -128, 127)
        y = K.depthwise_conv2d(*args) if dw else K.conv2d(*args)
        p = _conv_params(c, y)
        v = KL.VARIANTS[name]
        assert v.pack_requant(mult, shift, p, w, bias)[2] == KL.RQ_FULL
        assert v.pack_requant(mult, shift, p, w, bias + sign)[2] == KL.RQ_EXACT
        got = _call_conv(lib, name, p, x, w, bias, mult, shift)
        np.testing.assert_array_equal(got, y, err_msg=f"{name} e={e} zp={out_zp}")


def test_dscnn_shapes_bit_exact(lib):
    """The MLPerf DS-CNN's layer shapes: first conv 49x10x1 -> 25x5x64 (10x4, stride 2, SAME),
    depthwise 3x3 SAME and pointwise 64 -> 64 on 25x5, every variant select() offers."""
    rng = np.random.default_rng(1)
    cases = [((1, 49, 10, 1), (64, 10, 4, 1), (2, 2), (4, 5, 1, 2), False),
             ((1, 25, 5, 64), (1, 3, 3, 64), (1, 1), (1, 1, 1, 1), True),
             ((1, 25, 5, 64), (64, 1, 1, 64), (1, 1), (0, 0, 0, 0), False)]
    for xs, ws, stride, pad, dw in cases:
        x = rng.integers(-128, 128, xs).astype(np.int8)
        w = rng.integers(-127, 128, ws).astype(np.int8)
        oc = ws[-1] if dw else ws[0]
        bias = rng.integers(-5000, 5000, oc).astype(np.int32)
        mult, shift = _requant(rng, oc, False)
        in_zp, out_zp = -128, -128
        args = (x, in_zp, w, bias, stride, pad, mult, shift, out_zp, -128, 127)
        y = K.depthwise_conv2d(*args) if dw else K.conv2d(*args)
        c = dict(x=x, w=w, stride=stride, pad=pad, dm=1, in_zp=in_zp, out_zp=out_zp, qmin=-128, qmax=127)
        p = _conv_params(c, y)
        names = {KL.select("depthwise" if dw else "conv", p, kernels=k, loop_order=lo, pointwise=f).name
                 for k in ("ref", "fast") for lo in ("input", "weight") for f in KL.POINTWISE}
        for name in sorted(names):
            got = _call_conv(lib, name, p, x, w, bias, mult, shift)
            np.testing.assert_array_equal(got, y, err_msg=name)


@pytest.mark.parametrize("name", ["tkws_fc_s8_ref", "tkws_fc_s8_ref_wo", "tkws_fc_s8_fast"])
def test_fc_bit_exact(lib, name):
    rng = np.random.default_rng(3)
    for _ in range(60):
        n_in, n_out = int(rng.integers(1, 70)), int(rng.integers(1, 20))
        in_zp, out_zp = _zp(rng), _zp(rng)
        x = rng.integers(-128, 128, (1, n_in)).astype(np.int8)
        w = rng.integers(-127, 128, (n_out, n_in)).astype(np.int8)
        bias = rng.integers(-(2**20), 2**20, n_out).astype(np.int32)
        mult, shift = _requant(rng, n_out, bool(rng.integers(0, 2)))
        qmin, qmax = _clamp(rng, out_zp)
        y = K.fully_connected(x, in_zp, w, bias, mult, shift, out_zp, qmin, qmax)
        p = dict(in_n=n_in, out_n=n_out, in_offset=-in_zp, out_offset=out_zp, act_min=qmin, act_max=qmax)
        np.testing.assert_array_equal(_call_fc(lib, name, p, x, w, bias, mult, shift), y, err_msg=f"{name} {p}")


@pytest.mark.parametrize("kind", ["avgpool", "maxpool"])
def test_pool_bit_exact(lib, kind):
    rng = np.random.default_rng(11)
    for _ in range(60):
        ih, iw, c = int(rng.integers(1, 12)), int(rng.integers(1, 12)), int(rng.integers(1, 20))
        fh, fw = int(rng.integers(1, ih + 1)), int(rng.integers(1, iw + 1))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        if rng.integers(0, 2):
            t, b = _same_pad(ih, fh, sh)
            l, r = _same_pad(iw, fw, sw)
        else:
            t = b = l = r = 0
        pad = (t, b, l, r)
        x = rng.integers(-128, 128, (1, ih, iw, c)).astype(np.int8)
        qmin, qmax = _clamp(rng, _zp(rng))
        ref = K.average_pool if kind == "avgpool" else K.max_pool
        y = ref(x, (fh, fw), (sh, sw), pad, qmin, qmax)
        p = dict(in_h=ih, in_w=iw, channels=c, out_h=y.shape[1], out_w=y.shape[2], f_h=fh, f_w=fw, stride_h=sh,
                 stride_w=sw, pad_top=t, pad_left=l, act_min=qmin, act_max=qmax)
        for lo in ("input", "weight"):
            for k in ("ref", "fast"):
                v = KL.select(kind, p, kernels=k, loop_order=lo)
                out = _buf(y.size)
                getattr(lib, v.name)(_ptr(_struct(POOL_FIELDS, p)), _ptr(x), _ptr(out), None)
                _check_guard(out, y.size, v.name)
                np.testing.assert_array_equal(out[: y.size].view(np.int8).reshape(y.shape), y, err_msg=f"{v.name} {p}")
    if kind == "avgpool":  # windows past the fast kernel's int16 flush: 300 rows x 1, 20 x 20, 1 x 600 values
        for ih, iw in [(300, 1), (20, 20), (1, 600)]:
            for fill in (-128, 127, None):
                x = rng.integers(-128, 128, (1, ih, iw, 8)).astype(np.int8) if fill is None else \
                    np.full((1, ih, iw, 8), fill, np.int8)
                y = K.average_pool(x, (ih, iw), (1, 1), (0, 0, 0, 0), -128, 127)
                p = dict(in_h=ih, in_w=iw, channels=8, out_h=1, out_w=1, f_h=ih, f_w=iw, stride_h=1, stride_w=1,
                         pad_top=0, pad_left=0, act_min=-128, act_max=127)
                out = _buf(y.size)
                lib.tkws_avgpool_s8_fast(_ptr(_struct(POOL_FIELDS, p)), _ptr(x), _ptr(out), None)
                np.testing.assert_array_equal(out[: y.size].view(np.int8).reshape(y.shape), y, err_msg=f"{ih}x{iw}")


def test_add_bit_exact(lib):
    rng = np.random.default_rng(17)
    for _ in range(60):
        n = int(rng.integers(1, 300))
        zp1, zp2, zpo = _zp(rng), _zp(rng), _zp(rng)
        s1, s2, so = (float(10 ** rng.uniform(-3, 0)) for _ in range(3))
        q = K.add_params(s1, s2, so)
        qmin, qmax = _clamp(rng, zpo)
        a = rng.integers(-128, 128, (1, n)).astype(np.int8)
        b = rng.integers(-128, 128, (1, n)).astype(np.int8)
        y = K.add(a, zp1, b, zp2, q, zpo, qmin, qmax)
        p = {"size": n, "in1_offset": -zp1, "in2_offset": -zp2, "left_shift": q["left_shift"], "in1_mult": q["m1"],
             "in1_shift": q["s1"], "in2_mult": q["m2"], "in2_shift": q["s2"], "out_mult": q["mo"],
             "out_shift": q["so"], "out_offset": zpo, "act_min": qmin, "act_max": qmax}
        v = KL.select("add", p, kernels="fast")
        out = _buf(n)
        lib.tkws_add_s8_ref(_ptr(_struct(ADD_FIELDS, p)), _ptr(a), _ptr(b), _ptr(out), None)
        _check_guard(out, n, v.name)
        np.testing.assert_array_equal(out[:n].view(np.int8).reshape(1, n), y)
        assert KL.supports_in_place(v, p)
        inplace = a.copy()
        lib.tkws_add_s8_ref(_ptr(_struct(ADD_FIELDS, p)), _ptr(inplace), _ptr(b), _ptr(inplace), None)
        np.testing.assert_array_equal(inplace, y)


def test_softmax_bit_exact(lib):
    rng = np.random.default_rng(19)
    for i in range(80):
        rows, depth = int(rng.integers(1, 4)), int(rng.integers(1, 40))
        scale = float(10 ** rng.uniform(-3, 0.5))
        q = K.softmax_params(scale, float(rng.choice([1.0, 0.5, 2.0])))
        x = rng.integers(-128, 128, (rows, depth)).astype(np.int8)
        if i % 5 == 0:
            x[:] = int(rng.integers(-128, 128))  # all equal
        y = K.softmax(x, q)
        p = {"rows": rows, "depth": depth, "input_multiplier": q["multiplier"], "input_left_shift": q["left_shift"],
             "diff_min": q["diff_min"]}
        out = _buf(x.size)
        lib.tkws_softmax_s8_ref(_ptr(_struct(SOFTMAX_FIELDS, p)), _ptr(x), _ptr(out), None)
        _check_guard(out, x.size, "softmax")
        np.testing.assert_array_equal(out[: x.size].view(np.int8).reshape(x.shape), y, err_msg=str(p))
        inplace = x.copy()
        lib.tkws_softmax_s8_ref(_ptr(_struct(SOFTMAX_FIELDS, p)), _ptr(inplace), _ptr(inplace), None)
        np.testing.assert_array_equal(inplace, y)


def test_select():
    pw = dict(in_h=25, in_w=5, in_c=64, out_h=25, out_w=5, out_c=64, k_h=1, k_w=1, stride_h=1, stride_w=1,
              pad_top=0, pad_left=0, depth_multiplier=1, in_offset=128)
    assert KL.select("conv", pw, kernels="fast").name == "tkws_pw_s8_fast_wide"
    assert KL.select("conv", pw, kernels="fast", pointwise="int8").name == "tkws_pw_s8_fast"
    assert KL.select("conv", pw, kernels="ref").name == "tkws_conv_s8_ref"
    assert KL.select("conv", pw, kernels="ref", loop_order="weight").name == "tkws_conv_s8_ref_wo"
    assert KL.select("conv", {**pw, "k_h": 3}, kernels="fast").name == "tkws_conv_s8_fast_wide"
    assert KL.select("conv", {**pw, "k_h": 3}, kernels="fast", pointwise="int8").name == "tkws_conv_s8_fast"
    # the wide kernels take any channel count (SIMD main body and tails): 42 / 43 channels, k % 4 != 0
    assert KL.select("conv", {**pw, "k_h": 3, "in_c": 3}, kernels="fast").name == "tkws_conv_s8_fast_wide"
    for c in (42, 43):
        assert KL.select("conv", {**pw, "in_c": c, "out_c": c}, kernels="fast").name == "tkws_pw_s8_fast_wide"
    assert KL.select("depthwise", {**pw, "out_c": 128, "depth_multiplier": 2}, kernels="fast").name == "tkws_dw_s8_ref"
    assert KL.select("depthwise", pw, kernels="fast").name == "tkws_dw_s8_fast"
    # the wide pointwise weights take twice the flash, the int8 variant none more
    w = np.ones((64, 1, 1, 64), np.int8)
    wide = KL.select("conv", pw, kernels="fast").pack_weights(w, pw)
    small = KL.select("conv", pw, kernels="fast", pointwise="int8").pack_weights(w, pw)
    assert (wide[1], np.asarray(wide[0]).size) == ("int16_t", w.size)
    assert (small[1], np.asarray(small[0]).size) == ("int8_t", w.size)
    with pytest.raises(ValueError, match="kernels 'x'"):
        KL.select("conv", pw, kernels="x")
    with pytest.raises(ValueError, match="op 'gelu'"):
        KL.select("gelu", pw)


# ---------------------------------------------------------------------------- on the emulated Cortex-M7

_CTYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.int16): "int16_t", np.dtype(np.int32): "int32_t"}


def _c_arr(name, a):
    a = np.asarray(a).reshape(-1)
    return (f"static const {_CTYPES[a.dtype]} {name}[{max(len(a), 1)}] __attribute__((aligned(4))) = "
            f"{{{', '.join(str(int(v)) for v in a) or '0'}}};\n")


def m7_kernel_project(folder, calls, x: np.ndarray):
    """A project the Cortex-M7 harness of tinykws.deploy.mcu builds: tkws_invoke runs each call
    (variant name, "conv" | "fc", params, w, bias, mult, shift, n_out) on the same int8 input and
    writes their outputs one after another; tkws_layer_mark(i) before call i and after the last."""
    folder.mkdir(parents=True, exist_ok=True)
    for src in KL.sources():
        shutil.copy2(src, folder / src.name)
    consts, body, n_total, scratch = [], [], 0, 4
    for i, (name, fam, p, w, bias, mult, shift, n_out) in enumerate(calls):
        v = KL.VARIANTS[name]
        packed, ctype = v.pack_weights(w, p)
        packed = np.asarray(packed, {"int8_t": np.int8, "int16_t": np.int16, "int32_t": np.int32}[ctype])
        b = v.fold_bias(bias, w, p["in_offset"]) if v.folds_input_offset else np.asarray(bias, np.int32)
        mult, shift, p = _requant_for(v, mult, shift, p, w, bias)
        fields = CONV_FIELDS if fam == "conv" else FC_FIELDS
        struct = "tkws_conv_params" if fam == "conv" else "tkws_fc_params"
        consts += [_c_arr(f"w{i}", packed), _c_arr(f"b{i}", np.asarray(b, np.int32)),
                   _c_arr(f"m{i}", np.asarray(mult, np.int32)), _c_arr(f"s{i}", np.asarray(shift, np.int32)),
                   f"static const {struct} p{i} = {{{', '.join(str(int(p.get(f, 0))) for f in fields)}}};\n"]
        body.append(f"    tkws_layer_mark({i});\n    {name}(&p{i}, input, w{i}, b{i}, m{i}, s{i}, output + {n_total}, "
                    f"scratch);\n")
        n_total += n_out
        scratch = max(scratch, v.scratch_bytes(p))
    (folder / "model.h").write_text(
        f"#ifndef TKWS_MODEL_H\n#define TKWS_MODEL_H\n#include <stdint.h>\n#define TKWS_INPUT_SIZE {x.size}\n"
        f"#define TKWS_OUTPUT_SIZE {n_total}\nint tkws_invoke(const int8_t *input, int8_t *output);\n"
        f"void tkws_layer_mark(int i);\n#endif\n")
    (folder / "model.c").write_text(
        '#include "model.h"\n#include "tkws_nn.h"\n' + "".join(consts)
        + f"static int8_t scratch[{scratch}] __attribute__((aligned(8)));\n"
        + "__attribute__((noinline, weak)) void tkws_layer_mark(int i) { (void)i; }\n"
        + "int tkws_invoke(const int8_t *input, int8_t *output)\n{\n" + "".join(body)
        + f"    tkws_layer_mark({len(calls)});\n    return 0;\n}}\n")
    return n_total


def _m7_or_fail():
    from tinykws.deploy import mcu
    assert shutil.which("arm-none-eabi-gcc"), "arm-none-eabi-gcc is needed for the Cortex-M7 kernel tests"
    return mcu


@pytest.mark.slow
@pytest.mark.parametrize("dsp", [True, False])
def test_kernels_on_emulated_m7(tmp_path, dsp):
    """The DSP-extension paths (__ARM_FEATURE_DSP) and the portable ones, built for the Cortex-M7 and
    run on the emulator: every conv/pointwise/depthwise/fc variant equals the integer reference."""
    mcu = _m7_or_fail()
    rng = np.random.default_rng(29)
    # one input (5x6x8, zero point -128 reaching the padding) shared by every call
    x = rng.integers(-128, 128, (1, 5, 6, 8)).astype(np.int8)
    in_zp = -128
    calls, want = [], []

    def add_conv(names, w, stride, pad, dw=False, dm=1):
        oc = w.shape[3] if dw else w.shape[0]
        bias = rng.integers(-3000, 3000, oc).astype(np.int32)
        mult, shift = _requant(rng, oc, bool(rng.integers(0, 2)))
        out_zp = _zp(rng)
        qmin, qmax = _clamp(rng, out_zp)
        if dw:
            y = K.depthwise_conv2d(x, in_zp, w, bias, stride, pad, mult, shift, out_zp, qmin, qmax, dm)
        else:
            y = K.conv2d(x, in_zp, w, bias, stride, pad, mult, shift, out_zp, qmin, qmax)
        c = dict(x=x, w=w, stride=stride, pad=pad, dm=dm, in_zp=in_zp, out_zp=out_zp, qmin=qmin, qmax=qmax)
        p = _conv_params(c, y)
        for name in names:
            if not _selectable(name, c):
                continue
            calls.append((name, "conv", p, w, bias, mult, shift, y.size))
            want.append(y.reshape(-1))

    add_conv(CONV_VARIANTS, rng.integers(-127, 128, (6, 3, 2, 8)).astype(np.int8), (2, 1), (1, 1, 0, 1))
    add_conv(CONV_VARIANTS, rng.integers(-127, 128, (5, 3, 3, 8)).astype(np.int8), (1, 1), (1, 1, 1, 1))
    add_conv(PW_VARIANTS, rng.integers(-127, 128, (12, 1, 1, 8)).astype(np.int8), (1, 1), (0, 0, 0, 0))
    add_conv(["tkws_dw_s8_ref", "tkws_dw_s8_ref_wo", "tkws_dw_s8_fast"],
             rng.integers(-127, 128, (1, 3, 3, 8)).astype(np.int8), (1, 1), (1, 1, 1, 1), dw=True)
    add_conv(["tkws_dw_s8_ref", "tkws_dw_s8_ref_wo"], rng.integers(-127, 128, (1, 3, 3, 16)).astype(np.int8), (2, 2),
             (1, 1, 1, 1), dw=True, dm=2)
    n_in = x.size
    w = rng.integers(-127, 128, (7, n_in)).astype(np.int8)
    bias = rng.integers(-3000, 3000, 7).astype(np.int32)
    mult, shift = _requant(rng, 7, True)
    y = K.fully_connected(x, in_zp, w, bias, mult, shift, 3, -128, 127)
    p = dict(in_n=n_in, out_n=7, in_offset=-in_zp, out_offset=3, act_min=-128, act_max=127)
    for name in ["tkws_fc_s8_ref", "tkws_fc_s8_ref_wo", "tkws_fc_s8_fast"]:
        calls.append((name, "fc", p, w, bias, mult, shift, 7))
        want.append(y.reshape(-1))

    proj = tmp_path / "proj"
    m7_kernel_project(proj, calls, x)
    elf = mcu.build_m7(proj, opt="O2", dsp=dsp)
    r = mcu.run_m7(elf, x.reshape(1, -1))
    got = r.outputs.reshape(-1)
    at = 0
    for (name, *_), yv in zip(calls, want):
        np.testing.assert_array_equal(got[at : at + yv.size], yv, err_msg=f"{name} on the emulated Cortex-M7")
        at += yv.size
    assert len(r.layer_instructions) == len(calls) and all(n > 0 for n in r.layer_instructions)


def test_depthwise_3x3_packed_path_bit_exact(lib):
    """tkws_dw_s8_fast's 3x3 path (weights packed per group of 4 channels, zero-point words for the
    taps outside the input): strides 1-2, SAME (asymmetric too), VALID and uneven padding, inputs
    smaller than the window, extreme zero points and clamps."""
    rng = np.random.default_rng(33)
    v = KL.select("depthwise", {"k_h": 3, "k_w": 3, "out_c": 8, "in_c": 8, "depth_multiplier": 1}, kernels="fast")
    assert v.name == "tkws_dw_s8_fast"
    for _ in range(40):
        ih, iw = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        c = int(rng.choice([1, 3, 4, 6, 8, 12, 42, 43, 64]))
        sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        mode = rng.integers(0, 3)
        if mode == 0:
            pad = (*_same_pad(ih, 3, sh), *_same_pad(iw, 3, sw))
        elif mode == 1:
            ih, iw, pad = max(ih, 3), max(iw, 3), (0, 0, 0, 0)
        else:
            pad = tuple(int(t) for t in rng.integers(0, 3, 4))
            ih, iw = max(ih, 3 - pad[0] - pad[1]), max(iw, 3 - pad[2] - pad[3])
        in_zp, out_zp = _zp(rng), _zp(rng)
        qmin, qmax = _clamp(rng, out_zp)
        x = rng.integers(-128, 128, (1, ih, iw, c)).astype(np.int8)
        w = rng.integers(-127, 128, (1, 3, 3, c)).astype(np.int8)
        bias = rng.integers(-20000, 20000, c).astype(np.int32)
        mult, shift = _requant(rng, c, bool(rng.integers(0, 2)))
        y = K.depthwise_conv2d(x, in_zp, w, bias, (sh, sw), pad, mult, shift, out_zp, qmin, qmax)
        cc = dict(x=x, w=w, stride=(sh, sw), pad=pad, dm=1, in_zp=in_zp, out_zp=out_zp, qmin=qmin, qmax=qmax)
        p = _conv_params(cc, y)
        assert KL.dw_packed(p)
        got = _call_conv(lib, "tkws_dw_s8_fast", p, x, w, bias, mult, shift)
        np.testing.assert_array_equal(got, y, err_msg=str(p))
