"""Golden tests of the sparse pointwise kernels (zero-skip in both loop orders, block-sparse 1x4
SIMD): built on the host with gcc, bit-exact with the integer reference over random shapes,
strides, sparsities 0-95% (elementwise and 1x4 blocks along the input channels), extreme zero
points, multipliers and clamps; plus their weight formats and the dense/sparse selection rule."""
from __future__ import annotations

import numpy as np
import pytest
from test_deploy_kernels import MODES_SEEN, _call_conv, _check_modes, _clamp, _conv_params, _requant, _zp, lib  # noqa: F401

from tinykws.deploy import kernels as KL
from tinykws.quant import kernels as K

SPARSE_VARIANTS = ["tkws_pw_s8_sparse", "tkws_pw_s8_sparse_wo", "tkws_pw_s8_block4", "tkws_pw_s8_block8"]
BLOCK = {"tkws_pw_s8_block4": 4, "tkws_pw_s8_block8": 8}
SPARSITIES = (0.0, 0.3, 0.5, 0.75, 0.9, 0.95)


def sparse_weights(rng, oc, ic, s, blocks=False):
    """Random int8 weights [oc][1][1][ic] with a fraction s of zeros (whole 1x4 blocks if blocks is
    True or 4, 1x8 blocks if 8)."""
    w = rng.integers(-127, 128, (oc, 1, 1, ic)).astype(np.int8)
    w[w == 0] = 1
    if blocks:
        b = 4 if blocks is True else int(blocks)
        keep = rng.random((oc, ic // b)) >= s
        w *= np.repeat(keep, b, axis=1).reshape(oc, 1, 1, ic).astype(np.int8)
    else:
        w *= (rng.random(w.shape) >= s).astype(np.int8)
    return w


def _case(rng, name, s):
    blocks = BLOCK.get(name, 0)
    ic = int(rng.choice({4: [4, 8, 12, 16, 64], 8: [8, 16, 24, 48, 64]}.get(blocks, [1, 3, 5, 8, 13, 17, 64, 256])))
    oc = int(rng.choice([1, 2, 3, 5, 8, 16]))
    ih, iw = int(rng.integers(1, 8)), int(rng.integers(1, 8))
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    x = rng.integers(-128, 128, (1, ih, iw, ic)).astype(np.int8)
    w = sparse_weights(rng, oc, ic, s, blocks=blocks or (bool(rng.integers(0, 2)) and ic % 4 == 0))
    extreme = bool(rng.integers(0, 2))
    bias = rng.integers(-(2**24 if extreme else 2**16), 2**24 if extreme else 2**16, oc).astype(np.int32)
    mult, shift = _requant(rng, oc, extreme)
    in_zp, out_zp = _zp(rng), _zp(rng)
    qmin, qmax = _clamp(rng, out_zp)
    return dict(x=x, in_zp=in_zp, w=w, bias=bias, stride=stride, pad=(0, 0, 0, 0), mult=mult, shift=shift,
                out_zp=out_zp, qmin=qmin, qmax=qmax, dm=1)


@pytest.mark.parametrize("name", SPARSE_VARIANTS)
def test_sparse_pointwise_bit_exact(lib, name):  # noqa: F811
    rng = np.random.default_rng(41)
    MODES_SEEN.pop(name, None)
    for s in SPARSITIES:
        for _ in range(12):
            c = _case(rng, name, s)
            y = K.conv2d(c["x"], c["in_zp"], c["w"], c["bias"], c["stride"], c["pad"], c["mult"], c["shift"],
                         c["out_zp"], c["qmin"], c["qmax"])
            p = _conv_params(c, y)
            got = _call_conv(lib, name, p, c["x"], c["w"], c["bias"], c["mult"], c["shift"])
            np.testing.assert_array_equal(got, y, err_msg=f"{name} sparsity {s} {p}")
    _check_modes(name)


@pytest.mark.parametrize("name", SPARSE_VARIANTS)
def test_sparse_extremes(lib, name):  # noqa: F811
    """All-zero weights (bias only), fully dense weights, and an output channel with no kept weight
    between dense ones, on the DS-CNN's 25x5x64 -> 64 shape with zero points -128 and 127."""
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (1, 25, 5, 64)).astype(np.int8)
    for kind in ("zero", "dense", "holes"):
        w = rng.integers(-127, 128, (64, 1, 1, 64)).astype(np.int8)
        if kind == "zero":
            w[:] = 0
        elif kind == "holes":
            w[::3] = 0
        for in_zp, out_zp in ((-128, 127), (127, -128)):
            bias = rng.integers(-5000, 5000, 64).astype(np.int32)
            mult, shift = _requant(rng, 64, False)
            y = K.conv2d(x, in_zp, w, bias, (1, 1), (0, 0, 0, 0), mult, shift, out_zp, -128, 127)
            c = dict(x=x, w=w, stride=(1, 1), pad=(0, 0, 0, 0), dm=1, in_zp=in_zp, out_zp=out_zp, qmin=-128, qmax=127)
            got = _call_conv(lib, name, _conv_params(c, y), x, w, bias, mult, shift)
            np.testing.assert_array_equal(got, y, err_msg=f"{name} {kind} zp {in_zp}/{out_zp}")


def test_sparse_formats():
    """The compressed formats hold exactly the kept weights: flash shrinks with the sparsity."""
    rng = np.random.default_rng(3)
    w = sparse_weights(rng, 64, 64, 0.75, blocks=True)
    p = dict(in_c=64, out_c=64, k_h=1, k_w=1)
    nnz, nb = int(np.count_nonzero(w)), int(KL.block_mask(w).sum())
    zs, ctype = KL.pack_sparse(w, p)
    b4, _ = KL.pack_block4(w, p)
    assert ctype == "int32_t"
    assert zs.nbytes == 4 * 65 + 2 * nnz + (2 * nnz) % 4
    assert b4.nbytes == 4 * 65 + 6 * nb + (2 * nb) % 4
    w8 = sparse_weights(rng, 64, 64, 0.75, blocks=8)
    nb8 = int(KL.block_mask(w8, 8).sum())
    b8, _ = KL.pack_block8(w8, p)
    assert b8.nbytes == 4 * 65 + 10 * nb8 + (2 * nb8) % 4
    assert abs(KL.block_sparsity(w8, 8) - 0.75) < 0.1 and KL.block_sparsity(w8) >= KL.block_sparsity(w8, 8)
    start = zs[:65]
    assert start[0] == 0 and start[-1] == nnz and np.all(np.diff(start) == np.count_nonzero(w.reshape(64, -1), 1))
    ent = zs[65:].view(np.uint16)[:nnz]
    row = np.repeat(np.arange(64), np.diff(start))
    np.testing.assert_array_equal(w.reshape(64, -1)[row, ent >> 8], (ent & 0xFF).astype(np.uint8).view(np.int8))
    assert abs(KL.block_sparsity(w) - 0.75) < 0.05 and KL.sparsity(w) >= KL.block_sparsity(w)
    with pytest.raises(ValueError, match="multiple of 4"):
        KL.pack_block4(np.ones((2, 1, 1, 6), np.int8), p)
    with pytest.raises(ValueError, match="multiple of 8"):
        KL.pack_block8(np.ones((2, 1, 1, 12), np.int8), p)
    with pytest.raises(ValueError, match="at most 256"):
        KL.pack_sparse(np.ones((2, 1, 1, 300), np.int8), p)


def test_sparse_selection():
    """sparse=off keeps the dense kernel; auto picks a sparse one only past the measured break-even
    and says why; on always picks one where the shape allows."""
    rng = np.random.default_rng(5)
    pw = dict(in_h=25, in_w=5, in_c=64, out_h=25, out_w=5, out_c=64, k_h=1, k_w=1, stride_h=1, stride_w=1,
              pad_top=0, pad_left=0, depth_multiplier=1, in_offset=128)
    dense = "tkws_pw_s8_fast_wide"
    w0 = sparse_weights(rng, 64, 64, 0.0)
    w90 = sparse_weights(rng, 64, 64, 0.95)
    b75 = sparse_weights(rng, 64, 64, 0.75, blocks=True)
    assert KL.select("conv", pw, kernels="fast", w=w90).name == dense  # default: off
    assert KL.select("conv", pw, kernels="fast", sparse="auto", w=w0).name == dense
    assert KL.select("conv", pw, kernels="fast", sparse="auto", w=w90).name == "tkws_pw_s8_sparse"
    assert KL.select("conv", pw, kernels="fast", sparse="auto", w=b75).name == "tkws_pw_s8_block4"
    b8 = sparse_weights(rng, 64, 64, 0.75, blocks=8)  # 75% of the 1x8 blocks (so of the 1x4 ones) zero
    assert KL.select("conv", pw, kernels="fast", sparse="auto", w=b8).name == "tkws_pw_s8_block8"
    assert KL.select("conv", {**pw, "in_c": 44}, kernels="fast", sparse="on",
                     w=sparse_weights(rng, 64, 44, 0.75, blocks=4)).name == "tkws_pw_s8_block4"  # 44 % 8 != 0
    assert KL.select("conv", pw, kernels="fast", sparse="on", w=w0).name in SPARSE_VARIANTS
    assert KL.select("conv", pw, kernels="fast", loop_order="weight", sparse="on", w=w90).name == "tkws_pw_s8_sparse_wo"
    assert KL.select("conv", pw, kernels="ref", sparse="on", w=w90).name == "tkws_conv_s8_ref"
    assert KL.select("conv", {**pw, "k_h": 3}, kernels="fast", sparse="on", w=w90).name == "tkws_conv_s8_fast_wide"
    name, why = KL.sparse_choice(pw, w0, sparse="auto")
    assert name is None and "break-even" in why
    with pytest.raises(ValueError, match="sparse 'x'"):
        KL.select("conv", pw, kernels="fast", sparse="x", w=w0)


@pytest.mark.slow
def test_sparse_kernels_on_emulated_m7(tmp_path):
    """The DSP-extension paths (SXTB16/SMLAD, LDRD, SMMULR/SSAT requantization) of the sparse kernels,
    built for the Cortex-M7 and run on the emulator, equal the integer reference (5x6x8 input, zero
    point -128, 12 and 5 output channels: full and tail passes of 4 pixels, strides 1 and 2)."""
    from test_deploy_kernels import _m7_or_fail, m7_kernel_project

    mcu = _m7_or_fail()
    rng = np.random.default_rng(31)
    x = rng.integers(-128, 128, (1, 5, 6, 8)).astype(np.int8)
    in_zp = -128
    calls, want = [], []
    for oc, s, stride in ((12, 0.6, (1, 1)), (5, 0.9, (2, 2))):
        for name in SPARSE_VARIANTS:
            w = sparse_weights(rng, oc, 8, s, blocks=BLOCK.get(name, 0))
            bias = rng.integers(-3000, 3000, oc).astype(np.int32)
            mult, shift = _requant(rng, oc, bool(rng.integers(0, 2)))
            out_zp = _zp(rng)
            qmin, qmax = _clamp(rng, out_zp)
            y = K.conv2d(x, in_zp, w, bias, stride, (0, 0, 0, 0), mult, shift, out_zp, qmin, qmax)
            c = dict(x=x, w=w, stride=stride, pad=(0, 0, 0, 0), dm=1, in_zp=in_zp, out_zp=out_zp, qmin=qmin, qmax=qmax)
            calls.append((name, "conv", _conv_params(c, y), w, bias, mult, shift, y.size))
            want.append(y.reshape(-1))
    m7_kernel_project(tmp_path / "proj", calls, x)
    r = mcu.run_m7(mcu.build_m7(tmp_path / "proj", opt="O2", dsp=True), x.reshape(1, -1))
    got, at = r.outputs.reshape(-1), 0
    for (name, *_), yv in zip(calls, want):
        np.testing.assert_array_equal(got[at: at + yv.size], yv, err_msg=f"{name} on the emulated Cortex-M7")
        at += yv.size


@pytest.mark.slow
@pytest.mark.parametrize("loop_order", ["input"])
def test_generated_sparse_model_bit_exact(tmp_path, loop_order):
    """generate(..., sparse="auto"): a DS-CNN whose pointwise layers are 95% / 75% in 1x4 blocks /
    dense / 90% sparse gets zero-skip, block-sparse, dense and zero-skip kernels, says why, and the
    host build equals the integer model; the default stays dense."""
    import torch

    from tinykws.deploy import generate, run_host
    from tinykws.models import create_model
    from tinykws.quant import PTQConfig, quantize_, to_integer

    torch.manual_seed(0)
    m = create_model("dscnn_s").eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for i, (s, blocks) in enumerate([(0.95, False), (0.75, True), (0.0, False), (0.9, False)]):
            wt = m.blocks[i].pw.conv.weight  # [out, in, 1, 1]
            if blocks:
                keep = (torch.rand(wt.shape[0], wt.shape[1] // 4, generator=g) >= s).repeat_interleave(4, dim=1)
            else:
                keep = torch.rand(wt.shape[:2], generator=g) >= s
            wt.mul_(keep[:, :, None, None].float())
    quantize_(m, PTQConfig(), calib=torch.randn(16, *m.input_shape))
    im = to_integer(m)
    x = im.quantize_input(torch.randn(4, *m.input_shape).numpy())
    gen = generate(im, tmp_path / "p", kernels="fast", loop_order=loop_order, sparse="auto")
    pw = [l for l in gen.layers if "kernel_choice" in l and l["in_shape"][1:] == l["out_shape"][1:]
          and l["macs"] == 25 * 5 * 64 * 64]
    zs = "tkws_pw_s8_sparse_wo" if loop_order == "weight" else "tkws_pw_s8_sparse"
    dense = "tkws_conv_s8_fast_wo" if loop_order == "weight" else "tkws_pw_s8_fast_wide"
    want = [zs, "tkws_pw_s8_block4" if loop_order == "input" else dense, dense, zs if loop_order == "input" else dense]
    assert [l["kernel"] for l in pw] == want, [(l["kernel"], l["kernel_choice"]) for l in pw]
    assert all("sparsity" in l["kernel_choice"] for l in pw)
    assert np.array_equal(run_host(tmp_path / "p", x), im.run(x).reshape(len(x), -1))
    dense_gen = generate(im, tmp_path / "d", kernels="fast", loop_order=loop_order)
    assert not any("sparse" in l["kernel"] or "block4" in l["kernel"] for l in dense_gen.layers)


@pytest.mark.slow
def test_cli_deploy_sparse_option(tmp_path):
    """`tinykws deploy --sparse auto|on|off`: the choice printed per pointwise layer (and in the JSON),
    the host build still bit-exact; a bad value or a kernel family without sparse kernels is a
    one-line error (exit 2)."""
    import torch
    from test_deploy_codegen import _deploy
    from cli_helpers import last_json

    from tinykws.models import create_model
    from tinykws.quant import PTQConfig, quantize_, to_integer
    from tinykws.quant.tflite import to_tflite_bytes

    torch.manual_seed(0)
    m = create_model("dscnn_s").eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # pointwise layers: 90% zeros, 75% of 1x8 blocks, dense, dense
        for i, (s, b) in enumerate([(0.9, 1), (0.75, 8)]):
            wt = m.blocks[i].pw.conv.weight
            keep = (torch.rand(wt.shape[0], wt.shape[1] // b, generator=g) >= s).repeat_interleave(b, dim=1)
            wt.mul_(keep[:, :, None, None].float())
    quantize_(m, PTQConfig(), calib=torch.randn(16, *m.input_shape))
    tfl = tmp_path / "m.tflite"
    tfl.write_bytes(to_tflite_bytes(to_integer(m)))
    r = _deploy(tfl, "--out", tmp_path / "auto", "--sparse", "auto", "--check", "2", "--json")
    d = last_json(r)
    assert d["sparse"] == "auto" and d["bit_exact"] is True
    kinds = [c["kernel"] for c in d["kernel_choices"]]
    assert kinds == ["tkws_conv_s8_fast_wide", "tkws_pw_s8_sparse", "tkws_pw_s8_block8", "tkws_pw_s8_fast_wide",
                     "tkws_pw_s8_fast_wide"], kinds  # the first conv: not a pointwise layer
    assert "not a pointwise layer" in d["kernel_choices"][0]["why"]
    assert all("sparsity" in c["why"] for c in d["kernel_choices"][1:])
    r = _deploy(tfl, "--out", tmp_path / "on", "--sparse", "on", "--check", "0")
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("sparse on, ")]
    assert len(lines) == 5 and not any("fast_wide" in ln for ln in lines[1:]), r.stderr
    d = last_json(_deploy(tfl, "--out", tmp_path / "off", "--check", "0", "--json"))
    assert d["sparse"] == "off" and "kernel_choices" not in d
    for args, msg in ((["--sparse", "maybe"], "--sparse 'maybe'"), (["--sparse", "on", "--kernels", "ref"], "--kernels fast")):
        r = _deploy(tfl, "--out", tmp_path / "bad", *args, ok=False)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "bad").exists()
