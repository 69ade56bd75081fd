"""The fast kernels at channel counts that are not multiples of 4 (a channel-pruned model without
rounding has 42 to 44 channels a layer): the wide pointwise and im2col GEMM with its input-pair and
odd-channel tails, the packed 3x3 depthwise with its C % 4 tail, the average pool's tail. Golden
tests against the integer reference on the host (the library's functions, and a generated model
whose per-layer instances have constant shapes), and a generated model on the emulated Cortex-M7."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_deploy_kernels import _call_conv, _clamp, _conv_params, _requant, _zp, lib  # noqa: F401

from tinykws.deploy import kernels as KL
from tinykws.quant import kernels as K

CHANNELS = (1, 3, 5, 42, 43, 44)


def _case(rng, ic, oc, k, pad, dw=False, h=6, w=5):
    x = rng.integers(-128, 128, (1, h, w, ic)).astype(np.int8)
    wt = rng.integers(-127, 128, (1, k[0], k[1], ic) if dw else (oc, k[0], k[1], ic)).astype(np.int8)
    extreme = bool(rng.integers(0, 2))
    bias = rng.integers(-(2**16), 2**16, oc).astype(np.int32)
    mult, shift = _requant(rng, oc, extreme)
    in_zp, out_zp = _zp(rng), _zp(rng)
    qmin, qmax = _clamp(rng, out_zp)
    return dict(x=x, in_zp=in_zp, w=wt, bias=bias, stride=(1, 1), pad=pad, mult=mult, shift=shift, out_zp=out_zp,
                qmin=qmin, qmax=qmax, dm=1)


def _run(lib, c, name, dw=False):  # noqa: F811
    f = K.depthwise_conv2d if dw else K.conv2d
    y = f(c["x"], c["in_zp"], c["w"], c["bias"], c["stride"], c["pad"], c["mult"], c["shift"], c["out_zp"],
          c["qmin"], c["qmax"])
    p = _conv_params(c, y)
    assert KL.select("depthwise" if dw else "conv", p, kernels="fast").name == name
    got = _call_conv(lib, name, p, c["x"], c["w"], c["bias"], c["mult"], c["shift"])
    np.testing.assert_array_equal(got, y, err_msg=f"{name} {p}")


def test_pointwise_and_conv_any_channel_count_bit_exact(lib):  # noqa: F811
    """The default fast selection is the wide (int16 GEMM) kernel at every channel count; odd pixel
    counts (a last pass of one pixel) included."""
    rng = np.random.default_rng(3)
    for ic in CHANNELS:
        for oc in CHANNELS:
            _run(lib, _case(rng, ic, oc, (1, 1), (0, 0, 0, 0), h=5, w=3), "tkws_pw_s8_fast_wide")
        for oc in (42, 43):  # the im2col conv: k = 9 * in_c and the stem's 10x4x1 = 40
            _run(lib, _case(rng, ic, oc, (3, 3), (1, 1, 1, 1)), "tkws_conv_s8_fast_wide")
    _run(lib, _case(rng, 1, 43, (10, 4), (4, 5, 1, 2), h=13, w=5), "tkws_conv_s8_fast_wide")


def test_depthwise_any_channel_count_bit_exact(lib):  # noqa: F811
    """The packed 3x3 path at every channel count (interior and border pixels, SAME and VALID)."""
    rng = np.random.default_rng(4)
    for c in CHANNELS:
        for pad in ((1, 1, 1, 1), (0, 0, 0, 0), (0, 2, 1, 0)):
            cc = _case(rng, c, c, (3, 3), pad, dw=True, h=7, w=5)
            assert KL.dw_packed({"k_h": 3, "k_w": 3, "out_c": c})
            _run(lib, cc, "tkws_dw_s8_fast", dw=True)


def test_pointwise_wide_in_place_any_in_c(lib):  # noqa: F811
    """The wide pointwise kernel widens the input tails into scratch too, so it may write over its
    input for any in_c (stride 1, out_c <= in_c); the int8 kernel still needs whole groups of 4."""
    import ctypes

    from test_deploy_kernels import CONV_FIELDS, _ptr, _struct

    rng = np.random.default_rng(6)
    for ic, oc in ((43, 43), (42, 41), (43, 42)):
        c = _case(rng, ic, oc, (1, 1), (0, 0, 0, 0), h=5, w=5)
        y = K.conv2d(c["x"], c["in_zp"], c["w"], c["bias"], (1, 1), (0, 0, 0, 0), c["mult"], c["shift"], c["out_zp"],
                     c["qmin"], c["qmax"])
        p = _conv_params(c, y)
        v = KL.VARIANTS["tkws_pw_s8_fast_wide"]
        assert KL.supports_in_place(v, p) and not KL.supports_in_place(KL.VARIANTS["tkws_pw_s8_fast"], p)
        packed = np.ascontiguousarray(v.pack_weights(c["w"], p)[0], np.int16)
        b = v.fold_bias(c["bias"], c["w"], p["in_offset"])
        m, s, mode = v.pack_requant(c["mult"], c["shift"], p, c["w"], c["bias"])
        buf = np.ascontiguousarray(c["x"].reshape(-1)).copy()
        scratch = np.zeros(v.scratch_bytes(p), np.int8)
        lib.tkws_pw_s8_fast_wide(_ptr(_struct(CONV_FIELDS, {**p, "requant": mode})), _ptr(buf), _ptr(packed),
                                 _ptr(b), _ptr(m), _ptr(s), _ptr(buf), _ptr(scratch))
        np.testing.assert_array_equal(buf[: y.size], y.reshape(-1), err_msg=f"in place {ic} -> {oc}")
        assert ctypes  # the library is called through ctypes (lib fixture)


def test_avgpool_channel_tail_bit_exact(lib):  # noqa: F811
    from test_deploy_kernels import POOL_FIELDS, _buf, _check_guard, _ptr, _struct

    rng = np.random.default_rng(8)
    for c in CHANNELS:
        x = rng.integers(-128, 128, (1, 25, 5, c)).astype(np.int8)
        y = K.average_pool(x, (25, 5), (1, 1), (0, 0, 0, 0), -128, 127)
        p = dict(in_h=25, in_w=5, channels=c, out_h=1, out_w=1, f_h=25, f_w=5, stride_h=1, stride_w=1, pad_top=0,
                 pad_left=0, act_min=-128, act_max=127)
        out = _buf(y.size)
        lib.tkws_avgpool_s8_fast(_ptr(_struct(POOL_FIELDS, p)), _ptr(x), _ptr(out), None)
        _check_guard(out, y.size, "avgpool")
        np.testing.assert_array_equal(out[: y.size].view(np.int8).reshape(y.shape), y, err_msg=f"C={c}")


@pytest.fixture(scope="module")
def pruned_int8():
    """dscnn-kws channel-pruned one shot without rounding (39, 43, 42, 45, 51 channels),
    int8 post-training quantized on random inputs."""
    from tinykws.prune import PruneConfig, prune_
    from tinykws.quant import PTQConfig, quantize_, to_integer
    from tinykws.train import load_model

    torch.manual_seed(0)
    net = copy.deepcopy(load_model("dscnn-kws")[0]).eval()
    prune_(net, PruneConfig(method="channel", sparsity=0.31, round_to=1, scope="global"))  # 39 to 51
    counts = [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert any(c % 4 for c in counts) and any(c % 2 for c in counts), counts
    quantize_(net, PTQConfig(), calib=torch.randn(32, *net.input_shape))
    return to_integer(net.eval())


@pytest.mark.slow
def test_generated_pruned_model_bit_exact_host(pruned_int8, tmp_path):
    """The per-layer instances (constant shapes: the unrolled 4-channel GEMM with its 2- and 1-channel
    remainders) of a model with channel counts that are not multiples of 4 equal the integer model,
    and no layer falls back to the int8 or generic kernels."""
    from tinykws.deploy import generate, run_host
    from tinykws.deploy.mcu import default_inputs

    im = pruned_int8
    gen = generate(im, tmp_path / "c", kernels="fast")
    kinds = {l["kernel"] for l in gen.layers if l.get("kernel")}
    assert "tkws_pw_s8_fast" not in kinds and "tkws_conv_s8_fast" not in kinds, kinds
    x = default_inputs(im, n_random=4)
    assert np.array_equal(run_host(tmp_path / "c", x), im.run(x).reshape(len(x), -1))


@pytest.mark.slow
def test_generated_pruned_model_on_emulated_m7(pruned_int8):
    from test_deploy_kernels import _m7_or_fail

    mcu = _m7_or_fail()
    d = mcu.bench_m7(pruned_int8, "fast", "input", "O2", inputs=mcu.default_inputs(pruned_int8, n_random=1))
    assert d["bit_exact"], d
    pw = [l for l in d["layers"] if l["kernel"] == "tkws_pw_s8_fast_wide"]
    assert len(pw) == 4 and all(l["instructions_per_mac"] < 1.4 for l in pw), pw
