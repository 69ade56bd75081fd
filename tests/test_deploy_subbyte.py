"""Golden tests of the sub-byte packed-weight kernels (4 and 2 bits: conv and fc references,
im2col conv, pointwise and fc fast variants): built on the host with gcc, bit-exact with the
integer reference over random shapes (odd channel counts, rows that do not fill a packed word),
strides, paddings, extreme zero points, multipliers and clamps, both bit widths; the packed
layout; the generator's per-layer choice; the Cortex-M7 (DSP) paths on the emulator; a whole
4-bit model generated with packed weights."""
from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest
from test_deploy_kernels import (FC_FIELDS, MODES_SEEN, _buf, _call_conv, _check_guard, _check_modes, _clamp,
                                 _conv_case, _conv_params, _ptr, _requant, _requant_for, _struct, _zp)

from tinykws.deploy import kernels as KL
from tinykws.deploy import subbyte as SB
from tinykws.quant import kernels as K

CONV_SB = ["tkws_conv_s4_ref", "tkws_conv_s2_ref", "tkws_conv_s4_fast", "tkws_conv_s2_fast"]
PW_SB = CONV_SB + ["tkws_pw_s4_fast", "tkws_pw_s2_fast"]
FC_SB = ["tkws_fc_s4_ref", "tkws_fc_s2_ref", "tkws_fc_s4_fast", "tkws_fc_s2_fast"]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """The packed-weight kernels' C files alone, built with gcc as a shared library."""
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the kernel library on the host"
    out = tmp_path_factory.mktemp("tkws_subbyte") / "libtkws_subbyte.so"
    srcs = [str(p) for p in KL.sources() if p.name in ("tkws_conv_s4.c", "tkws_pw_s4.c", "tkws_dw_s4.c", "tkws_fc_s4.c")]
    assert len(srcs) == 4
    subprocess.run([gcc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", "-o", str(out), *srcs],
                   check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(out))


def _bits(name) -> int:
    return 4 if "_s4_" in name else 2


def _small(rng, shape, bits):
    lo, hi = SB.RANGES[bits]
    return rng.integers(lo, hi + 1, shape).astype(np.int8)


def _call_fc(lib, name, p, x, w, bias, mult, shift):
    v = KL.VARIANTS[name]
    packed = np.ascontiguousarray(v.pack_weights(w, p)[0], np.int32)
    b = v.fold_bias(bias, w, p["in_offset"]) if v.folds_input_offset else np.asarray(bias, np.int32)
    mult, shift, p = _requant_for(v, mult, shift, p, w, bias)
    out, sb = _buf(p["out_n"]), v.scratch_bytes(p)
    scratch = _buf(sb)
    getattr(lib, name)(_ptr(_struct(FC_FIELDS, p)), _ptr(np.ascontiguousarray(x, np.int8)), _ptr(packed),
                       _ptr(np.asarray(b, np.int32)), _ptr(np.asarray(mult, np.int32)),
                       _ptr(np.asarray(shift, np.int32)), _ptr(out), _ptr(scratch) if sb else None)
    _check_guard(out, p["out_n"], name)
    _check_guard(scratch, sb, name + " scratch")
    return out[: p["out_n"]].view(np.int8).reshape(1, -1)


def test_packed_layout():
    """Byte j of word g holds w[8g + j] (low nibble) and w[8g + 4 + j] (high nibble) at 4 bits;
    w[16g + 4f + j] in bits 2f..2f+1 at 2 bits; rows zero-padded to whole words; round trip."""
    w4 = np.array([[1, -2, 3, -4, 5, -6, 7, -8, -1]], np.int8)
    words, ctype = SB.pack_bits(w4, 4)
    assert ctype == "int32_t" and words.size == 2
    b = words.view(np.uint8)
    assert list(b[:4]) == [0x51, 0xAE, 0x73, 0x8C] and list(b[4:]) == [0x0F, 0, 0, 0]
    w2 = np.array([[-2, -1, 0, 1] * 4 + [1]], np.int8)
    b2 = SB.pack_bits(w2, 2)[0].view(np.uint8)
    assert list(b2[:4]) == [0b10101010, 0b11111111, 0, 0b01010101] and list(b2[4:]) == [1, 0, 0, 0]
    rng = np.random.default_rng(2)
    for bits in (4, 2):
        for k in (1, 7, 8, 9, 15, 16, 17, 40, 64):
            w = _small(rng, (3, k), bits)
            np.testing.assert_array_equal(SB.unpack_bits(SB.pack_bits(w, bits)[0], bits, 3, k), w)
    assert SB.weight_bits(w4) == 4 and SB.weight_bits(w2) == 2 and SB.weight_bits(np.array([8])) == 8
    assert SB.weight_bits(np.array([-3, 1])) == 4 and SB.weight_bits(np.array([2])) == 4
    with pytest.raises(ValueError, match="do not fit 2 signed bits"):
        SB.pack_bits(w4, 2)


def _sb_case(rng, name, pointwise=False):
    c = _conv_case(rng, pointwise=pointwise)
    c["w"] = _small(rng, c["w"].shape, _bits(name))
    return c


def _assert_conv_case(lib, name, c):
    """The packed conv kernel `name` on case `c` equals the integer reference."""
    y = K.conv2d(c["x"], c["in_zp"], c["w"], c["bias"], c["stride"], c["pad"], c["mult"], c["shift"], c["out_zp"],
                 c["qmin"], c["qmax"])
    p = _conv_params(c, y)
    got = _call_conv(lib, name, p, c["x"], c["w"], c["bias"], c["mult"], c["shift"])
    np.testing.assert_array_equal(got, y, err_msg=f"{name} {p}")


@pytest.mark.parametrize("name", CONV_SB)
def test_packed_conv_bit_exact(lib, name):
    rng = np.random.default_rng(17)
    MODES_SEEN.pop(name, None)
    for _ in range(50):
        c = _sb_case(rng, name)
        _assert_conv_case(lib, name, c)
    _check_modes(name)


@pytest.mark.parametrize("name", PW_SB)
def test_packed_pointwise_bit_exact(lib, name):
    rng = np.random.default_rng(19)
    MODES_SEEN.pop(name, None)
    for _ in range(40):
        c = _sb_case(rng, name, pointwise=True)
        if bool(rng.integers(0, 2)):  # wide rows too: several packed words, a partial last one
            ic = int(rng.choice([24, 33, 64, 71]))
            c["x"] = rng.integers(-128, 128, c["x"].shape[:3] + (ic,)).astype(np.int8)
            c["w"] = _small(rng, (c["w"].shape[0], 1, 1, ic), _bits(name))
        _assert_conv_case(lib, name, c)
    _check_modes(name)


@pytest.mark.parametrize("name", FC_SB)
def test_packed_fc_bit_exact(lib, name):
    rng = np.random.default_rng(23)
    MODES_SEEN.pop(name, None)
    for _ in range(60):
        n_in, n_out = int(rng.integers(1, 90)), int(rng.integers(1, 14))
        in_zp, out_zp = _zp(rng), _zp(rng)
        x = rng.integers(-128, 128, (1, n_in)).astype(np.int8)
        w = _small(rng, (n_out, n_in), _bits(name))
        extreme = bool(rng.integers(0, 2))
        bias = rng.integers(-(2**20), 2**20, n_out).astype(np.int32)
        mult, shift = _requant(rng, n_out, extreme)
        qmin, qmax = _clamp(rng, out_zp)
        y = K.fully_connected(x, in_zp, w, bias, mult, shift, out_zp, qmin, qmax)
        p = dict(in_n=n_in, out_n=n_out, in_offset=-in_zp, out_offset=out_zp, act_min=qmin, act_max=qmax)
        np.testing.assert_array_equal(_call_fc(lib, name, p, x, w, bias, mult, shift), y, err_msg=f"{name} {p}")
    _check_modes(name)


@pytest.mark.parametrize("name", ["tkws_dw_s4_ref", "tkws_dw_s2_ref", "tkws_dw_s4_fast", "tkws_dw_s2_fast"])
def test_packed_depthwise_bit_exact(lib, name):
    """Any kernel size (the 3x3 path with C % 4 == 0 and the generic one), depth multipliers 1-3 for
    the references (1 for the fast kernels, as selected)."""
    rng = np.random.default_rng(29)
    MODES_SEEN.pop(name, None)
    n = 0
    while n < 50:
        c = _conv_case(rng, depthwise=True)
        if "fast" in name and c["dm"] != 1:
            continue
        if n % 3 == 0:  # the 3x3 packed-layout path of the fast kernel
            ch = int(rng.choice([4, 8, 12]))
            c["x"] = rng.integers(-128, 128, c["x"].shape[:3] + (ch,)).astype(np.int8)
            c.update(w=np.zeros((1, 3, 3, ch * c["dm"]), np.int8), pad=(1, 1, 1, 1),
                     bias=c["bias"][:1].repeat(ch * c["dm"]), mult=c["mult"][:1].repeat(ch * c["dm"]),
                     shift=c["shift"][:1].repeat(ch * c["dm"]))
        c["w"] = _small(rng, c["w"].shape, _bits(name))
        y = K.depthwise_conv2d(c["x"], c["in_zp"], c["w"], c["bias"], c["stride"], c["pad"], c["mult"], c["shift"],
                               c["out_zp"], c["qmin"], c["qmax"], c["dm"])
        p = _conv_params(c, y)
        got = _call_conv(lib, name, p, c["x"], c["w"], c["bias"], c["mult"], c["shift"])
        np.testing.assert_array_equal(got, y, err_msg=f"{name} {p}")
        n += 1
    _check_modes(name)


@pytest.mark.parametrize("bits", [4, 2])
def test_packed_extremes(lib, bits):
    """The most negative and most positive weights everywhere, inputs at -128/127, zero points
    -128 and 127, on the DS-CNN's 25x5x64 -> 64 pointwise and 49x10x1 -> 25x5x64 first conv."""
    rng = np.random.default_rng(9)
    lo, hi = SB.RANGES[bits]
    for xs, ws, stride, pad in [((1, 25, 5, 64), (64, 1, 1, 64), (1, 1), (0, 0, 0, 0)),
                                ((1, 49, 10, 1), (64, 10, 4, 1), (2, 2), (4, 5, 1, 2))]:
        for fill in (lo, hi, None):
            w = np.full(ws, fill, np.int8) if fill is not None else _small(rng, ws, bits)
            for in_zp, out_zp, xv in ((-128, 127, 127), (127, -128, -128)):
                x = np.full(xs, xv, np.int8) if fill is not None else rng.integers(-128, 128, xs).astype(np.int8)
                bias = rng.integers(-5000, 5000, ws[0]).astype(np.int32)
                mult, shift = _requant(rng, ws[0], False)
                y = K.conv2d(x, in_zp, w, bias, stride, pad, mult, shift, out_zp, -128, 127)
                c = dict(x=x, w=w, stride=stride, pad=pad, dm=1, in_zp=in_zp, out_zp=out_zp, qmin=-128, qmax=127)
                p = _conv_params(c, y)
                names = [f"tkws_conv_s{bits}_ref", f"tkws_conv_s{bits}_fast"]
                names += [f"tkws_pw_s{bits}_fast"] if KL.is_pointwise(p) else []
                for name in names:
                    got = _call_conv(lib, name, p, x, w, bias, mult, shift)
                    np.testing.assert_array_equal(got, y, err_msg=f"{name} fill {fill} zp {in_zp}/{out_zp}")


def test_packed_choice():
    """auto packs a layer whose weights fit 4 (2) bits, with the reference or fast kernel, says why;
    int8-range weights, the weight order and an accumulator that could overflow keep int8."""
    pw = dict(in_h=25, in_w=5, in_c=64, out_h=25, out_w=5, out_c=64, k_h=1, k_w=1, stride_h=1, stride_w=1,
              pad_top=0, pad_left=0, depth_multiplier=1, in_offset=128)
    conv = {**pw, "k_h": 3, "pad_top": 1, "pad_left": 1}
    rng = np.random.default_rng(4)
    w4, w2 = _small(rng, (64, 1, 1, 64), 4), _small(rng, (64, 1, 1, 64), 2)
    w8 = rng.integers(-127, 128, (64, 1, 1, 64)).astype(np.int8)
    assert KL.packed_choice("conv", pw, w4, None, "fast")[0] == "tkws_pw_s4_fast"
    assert KL.packed_choice("conv", pw, w2, None, "fast")[0] == "tkws_pw_s2_fast"
    assert KL.packed_choice("conv", conv, w4, None, "fast")[0] == "tkws_conv_s4_fast"
    assert KL.packed_choice("conv", pw, w4, None, "ref")[0] == "tkws_conv_s4_ref"
    dw = {**conv, "out_c": 64, "depth_multiplier": 1}
    assert KL.packed_choice("depthwise", dw, _small(rng, (1, 3, 3, 64), 4), None, "fast")[0] == "tkws_dw_s4_fast"
    assert KL.packed_choice("depthwise", dw, _small(rng, (1, 3, 3, 64), 2), None, "ref")[0] == "tkws_dw_s2_ref"
    assert KL.packed_choice("depthwise", {**dw, "depth_multiplier": 2}, _small(rng, (1, 3, 3, 64), 4), None,
                            "fast")[0] is None
    assert KL.packed_choice("fc", {"in_offset": 3}, w2.reshape(64, 64), None, "fast")[0] == "tkws_fc_s2_fast"
    name, why = KL.packed_choice("conv", pw, w8, None, "fast")
    assert name is None and "8 bits" in why
    assert KL.packed_choice("conv", pw, w4, None, "fast", pack_weights="off")[0] is None
    assert KL.packed_choice("conv", pw, w4, None, "fast", loop_order="weight")[0] is None
    big = np.full(64, 2**27, np.int64)  # 16 * acc could pass 2^31
    name, why = KL.packed_choice("conv", pw, w4, big, "fast")
    assert name is None and "overflow" in why
    with pytest.raises(ValueError, match="pack_weights 'on'"):
        KL.packed_choice("conv", pw, w4, None, "fast", pack_weights="on")


@pytest.mark.slow
def test_packed_kernels_on_emulated_m7(tmp_path):
    """The DSP paths (masked shifts, SXTB16, LDRD, SMLAD, SMMULR/SSAT) of every packed kernel, built
    for the Cortex-M7 and run on the emulator, equal the integer reference (5x6x12 input, zero point
    -128: rows that end inside a packed word, odd output channel counts, padding, full and partial
    passes of 4 pixels, the depthwise 3x3 path)."""
    from test_deploy_kernels import _m7_or_fail, m7_kernel_project

    mcu = _m7_or_fail()
    rng = np.random.default_rng(37)
    x = rng.integers(-128, 128, (1, 5, 6, 12)).astype(np.int8)
    in_zp = -128
    calls, want = [], []
    for bits in (4, 2):
        for ws, stride, pad, names in [((5, 1, 1, 12), (1, 1), (0, 0, 0, 0), [f"tkws_pw_s{bits}_fast"]),
                                       ((6, 3, 3, 12), (2, 1), (1, 1, 1, 1),
                                        [f"tkws_conv_s{bits}_ref", f"tkws_conv_s{bits}_fast"])]:
            w = _small(rng, ws, bits)
            bias = rng.integers(-3000, 3000, ws[0]).astype(np.int32)
            mult, shift = _requant(rng, ws[0], bool(rng.integers(0, 2)))
            out_zp = _zp(rng)
            qmin, qmax = _clamp(rng, out_zp)
            y = K.conv2d(x, in_zp, w, bias, stride, pad, mult, shift, out_zp, qmin, qmax)
            c = dict(x=x, w=w, stride=stride, pad=pad, dm=1, in_zp=in_zp, out_zp=out_zp, qmin=qmin, qmax=qmax)
            for name in names:
                calls.append((name, "conv", _conv_params(c, y), w, bias, mult, shift, y.size))
                want.append(y.reshape(-1))
        w = _small(rng, (1, 3, 3, 12), bits)  # depthwise, the 3x3 path (C % 4 == 0)
        bias = rng.integers(-3000, 3000, 12).astype(np.int32)
        mult, shift = _requant(rng, 12, bool(rng.integers(0, 2)))
        out_zp = _zp(rng)
        y = K.depthwise_conv2d(x, in_zp, w, bias, (1, 1), (1, 1, 1, 1), mult, shift, out_zp, -128, 127, 1)
        c = dict(x=x, w=w, stride=(1, 1), pad=(1, 1, 1, 1), dm=1, in_zp=in_zp, out_zp=out_zp, qmin=-128, qmax=127)
        for name in (f"tkws_dw_s{bits}_ref", f"tkws_dw_s{bits}_fast"):
            calls.append((name, "conv", _conv_params(c, y), w, bias, mult, shift, y.size))
            want.append(y.reshape(-1))
        w = _small(rng, (7, x.size), bits)
        bias = rng.integers(-3000, 3000, 7).astype(np.int32)
        mult, shift = _requant(rng, 7, True)
        y = K.fully_connected(x, in_zp, w, bias, mult, shift, 3, -128, 127)
        p = dict(in_n=x.size, out_n=7, in_offset=-in_zp, out_offset=3, act_min=-128, act_max=127)
        for name in (f"tkws_fc_s{bits}_ref", f"tkws_fc_s{bits}_fast"):
            calls.append((name, "fc", p, w, bias, mult, shift, 7))
            want.append(y.reshape(-1))
    m7_kernel_project(tmp_path / "proj", calls, x)
    r = mcu.run_m7(mcu.build_m7(tmp_path / "proj", opt="O2", dsp=True), x.reshape(1, -1))
    got, at = r.outputs.reshape(-1), 0
    for (name, *_), yv in zip(calls, want):
        np.testing.assert_array_equal(got[at: at + yv.size], yv, err_msg=f"{name} on the emulated Cortex-M7")
        at += yv.size


@pytest.mark.slow
def test_generated_4bit_model_packed_bit_exact(tmp_path, mini_dir):
    """A DS-CNN quantized with 4-bit weights (two layers narrowed to 2 bits) generated with the default
    pack_weights="auto": its conv, depthwise, pointwise and fc layers get the 4- and 2-bit kernels and
    say why, the constants shrink against pack_weights="off",
    and the host build equals the integer reference on real clips and random inputs."""
    import torch

    from tinykws.deploy import generate, run_host
    from tinykws.deploy.mcu import clip_inputs
    from tinykws.models import create_model
    from tinykws.quant import PTQConfig, quantize_, to_integer

    torch.manual_seed(0)
    m = create_model("dscnn_s").eval()
    quantize_(m, PTQConfig(weight_bits=4), calib=torch.randn(16, *m.input_shape))
    im = to_integer(m)
    convs = [op for op in im.ops if op.kind in ("conv", "fc")]
    for op in (convs[2], convs[-1]):  # a pointwise layer and the classifier at 2 bits
        t = im.tensors[op.inputs[1]]
        t.data = np.clip(t.data, -1, 1).astype(np.int8)
    x = np.concatenate([clip_inputs(im, mini_dir, n=3),
                        np.random.default_rng(0).integers(-128, 128, (2, *im.tensors[im.input].shape[1:]), np.int8)])
    gen = generate(im, tmp_path / "p", kernels="fast")
    kernels = [l["kernel"] for l in gen.layers if l["op"] in ("conv", "fc")]
    assert kernels[0] == "tkws_conv_s4_fast" and kernels[2] == "tkws_pw_s2_fast" and kernels[-1] == "tkws_fc_s2_fast"
    assert all(k.startswith("tkws_pw_s4_fast") for i, k in enumerate(kernels[1:-1]) if i != 1), kernels
    assert all("packed" in l["kernel_choice"] for l in gen.layers if l["op"] in ("conv", "depthwise", "fc"))
    assert all(l["kernel"] == "tkws_dw_s4_fast" for l in gen.layers if l["op"] == "depthwise")
    np.testing.assert_array_equal(run_host(tmp_path / "p", x), im.run(x).reshape(len(x), -1))
    dense = generate(im, tmp_path / "d", kernels="fast", pack_weights="off")
    assert not any("_s4_" in l["kernel"] or "_s2_" in l["kernel"] for l in dense.layers)
    assert gen.const_bytes < 0.6 * dense.const_bytes, (gen.const_bytes, dense.const_bytes)


@pytest.mark.slow
def test_cli_pack_weights_bad_value(tmp_path, shared_dir):
    from test_deploy_codegen import _deploy

    src = shared_dir / "peers" / "mlperf_tiny_kws" / "kws_ref_model.tflite"
    r = _deploy(src, "--out", tmp_path / "o", "--pack-weights", "on", ok=False)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "--pack-weights 'on'" in lines[0] and "off | auto" in lines[0]
    assert not (tmp_path / "o").exists()


def test_bench_mcu_pack_weights_bad_value():
    """`tinykws bench-mcu --pack-weights` takes off | auto; anything else fails before any work."""
    import typer
    from typer.testing import CliRunner

    from tinykws.cli import mcu_cmds
    from tinykws.deploy.mcu import McuError

    app = typer.Typer()
    mcu_cmds.register(app)
    app.command("noop")(lambda: None)
    r = CliRunner().invoke(app, ["bench-mcu", "dscnn-kws", "--pack-weights", "on"])
    assert isinstance(r.exception, McuError) and "--pack-weights 'on': use off | auto" in str(r.exception)
