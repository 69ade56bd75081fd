"""Quantization: configs, batch-norm folding, fake quantization, integer conversion, errors."""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from tinykws.models import create_model, list_models
from tinykws.quant import (LearnedBitsConfig, PTQConfig, QATConfig, QuantizationError, apply_quant_dict, bit_penalty,
                           bit_stats, config_from_dict, config_to_dict, fold_batchnorm, preset, quantize_, to_integer,
                           to_tflite_bytes, tflm_run)
from tinykws.quant import kernels as K
from tinykws.train import ModelBundle, load_model, save_bundle


def _randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model.eval()


def _lsb_diff(im, q, fake):
    """|integer - fake-quantized| output in units of the output step."""
    return np.abs(im.dequantize(q) - fake) / im.tensors[im.output].scale[0]


def _model(name):
    torch.manual_seed(0)
    kw = {"input_shape": (16000,)} if name == "mbnet_raw" else {}
    if name == "mbnet_s1x2":  # a searched model whose first block strides only the MFCC axis
        name, kw = "mbnet", {"arch": "w0.5-s1x2-ir_k3_e2-ir_k5_e1-skip"}
    return _randomize_bn(create_model(name, **kw))


# ---------------------------------------------------------------- configs and errors

def test_configs_and_presets():
    assert preset("ptq8") == PTQConfig(8, 8)
    assert preset("qat4") == QATConfig(4, 4) and preset("qat2").act_bits == 2
    assert isinstance(preset("learned"), LearnedBitsConfig)
    for cfg in (PTQConfig(), QATConfig(weight_bits=3, act_bits=5), LearnedBitsConfig(weight_bits=2.5, act_bits=3)):
        assert config_from_dict(config_to_dict(cfg)) == cfg
    for bad in (lambda: QATConfig(weight_bits=9), lambda: QATConfig(weight_bits=1), lambda: PTQConfig(act_bits=0),
                lambda: LearnedBitsConfig(weight_bits=1.5), lambda: preset("qat9"), lambda: preset("fp16")):
        with pytest.raises(QuantizationError, match="bit|method"):
            bad()
    with pytest.raises(QuantizationError, match="between 2 and 8"):
        QATConfig(weight_bits=12)


def test_unsupported_layers_are_named():
    class WithGRU(nn.Module):
        input_shape = (49, 10)

        def __init__(self):
            super().__init__()
            self.rnn_head = nn.GRU(10, 8, batch_first=True)

        def forward(self, x):
            return self.rnn_head(x)[0][:, -1]

    with pytest.raises(QuantizationError, match="rnn_head"):
        quantize_(WithGRU(), PTQConfig())

    class WithCat(nn.Module):
        input_shape = (49, 10)

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(20, 3)

        def forward(self, x):
            return self.fc(torch.cat([x[:, 0], x[:, 1]], dim=1))

    with pytest.raises(QuantizationError, match="cannot be quantized"):
        quantize_(WithCat(), PTQConfig())

    class LoneBN(nn.Module):
        input_shape = (49, 10)

        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm1d(49)
            self.fc = nn.Linear(490, 3)

        def forward(self, x):
            return self.fc(self.norm(x).flatten(1))

    with pytest.raises(QuantizationError, match="'norm'.*cannot be folded"):
        quantize_(LoneBN(), PTQConfig())


def test_calibration_needs_data():
    m = _model("dscnn_mlperf")
    with pytest.raises(QuantizationError, match="calibration needs data"):
        quantize_(m, PTQConfig(), calib=torch.empty(0, 49, 10))
    from tinykws.recipes.quantize import data_dir_of

    bundle = ModelBundle("dscnn_mlperf", ["a", "b"], None, {}, train_config={})
    with pytest.raises(QuantizationError, match="calibration needs data"):
        data_dir_of(bundle, None)


# ---------------------------------------------------------------- folding, fake quantization

def test_fold_batchnorm_keeps_outputs():
    for name in ("dscnn_mlperf", "mbnet", "rawcnn"):
        m = _model(name)
        x = torch.randn(4, *m.input_shape)
        with torch.no_grad():
            ref = m(x)
            fold_batchnorm(m)
            got = m(x)
        assert not any(isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)) for mod in m.modules())
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_ptq8_is_close_to_float_and_reloads():
    m = _model("dscnn_mlperf")
    x = torch.randn(64, 49, 10)
    with torch.no_grad():
        ref = m(x)
    quantize_(m, PTQConfig(), calib=x)
    with torch.no_grad():
        y = m(x)
    assert (y - ref).abs().max() < 0.05 * ref.abs().max()
    s = bit_stats(m)
    assert s["weight_bits"] == 8 and s["act_bits"] == 8 and s["weight_bytes"] == s["weights"]
    again = apply_quant_dict(create_model("dscnn_mlperf"), config_to_dict(PTQConfig()))
    again.load_state_dict(m.state_dict())
    with torch.no_grad():
        assert torch.equal(again.eval()(x), y)
    with torch.no_grad():
        assert torch.equal(copy.deepcopy(m)(x), y)  # hooks follow the copy


def test_weight_grid_and_clipping():
    m = _model("dscnn_mlperf")
    quantize_(m, QATConfig(weight_bits=2), calib=torch.randn(32, 49, 10))
    conv = m.blocks[0].pw.conv
    q, scale = conv.wq.integer(conv.weight)
    assert set(q.unique().tolist()) <= {-1, 0, 1} and scale.shape == (64,)
    torch.testing.assert_close(conv.qweight(), (q * scale[:, None, None, None]).float())
    assert conv.wq.log_alpha.item() < 0, "2-bit weights clip below the channel maximum (MSE init)"


def test_qat_gradients_flow_and_learned_bits_follow_the_penalty():
    m = _model("dscnn_mlperf")
    x, y = torch.randn(32, 49, 10), torch.randint(0, 12, (32,))
    quantize_(m, QATConfig(weight_bits=4), calib=x)
    m.train()
    nn.functional.cross_entropy(m(x), y).backward()
    conv = m.blocks[1].pw.conv
    assert conv.weight.grad.abs().sum() > 0 and conv.wq.log_alpha.grad is not None and conv.aq.log_hi.grad is not None

    m = _model("dscnn_mlperf")
    cfg = LearnedBitsConfig(weight_bits=3, act_bits=3, init_bits=6)
    quantize_(m, cfg, calib=x)
    before = bit_stats(m)
    assert before["weight_bits"] == 6
    params = [p for n, p in m.named_parameters() if "bits_p" in n]
    assert params, "learned bit-widths are parameters"
    opt = torch.optim.Adam(params, lr=2e-3)
    penalty = bit_penalty(m, cfg)
    for _ in range(40):
        opt.zero_grad()
        penalty(m).backward()
        opt.step()
    after = bit_stats(m)
    assert after["weight_bits"] < before["weight_bits"] - 1 and after["act_bits"] < before["act_bits"] - 1


def test_quantized_bundle_loads_with_load_model(tmp_path):
    m = _model("dscnn_mlperf")
    x = torch.randn(16, 49, 10)
    cfg = LearnedBitsConfig()
    quantize_(m, cfg, calib=x)
    from tinykws.audio import get_preset

    b = ModelBundle("dscnn_mlperf", [str(i) for i in range(12)], get_preset("mlperf"), m.state_dict(), quant=config_to_dict(cfg))
    save_bundle(b, tmp_path / "q.pt")
    net, bundle = load_model(tmp_path / "q.pt")
    assert bundle.quant["method"] == "learned"
    with torch.no_grad():
        assert torch.equal(net(x), m.eval()(x))


# ---------------------------------------------------------------- integer representation

def test_fixed_point_primitives():
    assert K.quantize_multiplier(0.5) == (1 << 30, 0)
    assert K.quantize_multiplier(1.0) == (1 << 30, 1)
    m, s = K.quantize_multiplier(0.0123)
    assert abs(m * 2.0 ** (s - 31) - 0.0123) < 1e-9
    assert K.srdhm(K.INT32_MIN, K.INT32_MIN) == K.INT32_MAX
    assert K.srdhm(1 << 30, 1 << 30) == 1 << 29
    np.testing.assert_array_equal(K.rounding_divide_by_pot(np.array([5, -5, 6, -6, 7, -7]), 1), [3, -3, 3, -3, 4, -4])
    # TFLite's double rounding: 4.4998 rounds first to 4.5 at 2^-7, then away from zero
    x = np.array([745])
    m, s = K.quantize_multiplier(4.499844817453706 / 745)
    assert K.multiply_by_quantized_multiplier(x, m, s)[0] == 5


@pytest.mark.parametrize("name", list_models() + ["mbnet_s1x2"])
def test_every_registered_model_converts_exactly(name):
    """PTQ-8 -> integer reference == fake-quantized model (<= 1 LSB) and == TFLite Micro (bit-exact)."""
    m = _model(name)
    x = torch.randn(24, *m.input_shape)
    quantize_(m, PTQConfig(), calib=x)
    with torch.no_grad():
        fake = m(x).numpy()
    im = to_integer(m)
    q = im.predict(x.numpy())
    d = _lsb_diff(im, q, fake)  # float32 rounding in the fake model may flip a rare tie: 1 LSB here and there
    assert d.max() <= 1.01 and (d > 0.5).mean() < 0.05
    assert np.array_equal(tflm_run(to_tflite_bytes(im), im.quantize_input(x[:4].numpy())), q[:4])


def test_sub8bit_models_run_and_export_rules():
    """DS-CNN at 4 bits (all ReLU outputs, 8-bit logits) exports exactly; a 4-bit signed activation
    (an MBConv residual) runs on the integer reference but has no TFLite activation to say so."""
    x = torch.randn(24, 49, 10)
    m = _model("dscnn_mlperf")
    quantize_(m, QATConfig(weight_bits=4), calib=x)
    im = to_integer(m)
    q = im.predict(x.numpy())
    conv_out = im.tensors[im.ops[0].output]
    assert conv_out.zp == 127 - 15, "a 4-bit ReLU output uses the top 16 codes of int8"
    assert np.array_equal(tflm_run(to_tflite_bytes(im), im.quantize_input(x[:4].numpy())), q[:4])
    mb = _model("mbnet")
    quantize_(mb, QATConfig(weight_bits=4), calib=x)
    with torch.no_grad():
        fake = mb(x).numpy()
    im = to_integer(mb)
    d = _lsb_diff(im, im.predict(x.numpy()), fake)  # a rare flipped tie moves a 4-bit map a lot: look at the bulk
    assert (d > 1.01).mean() < 0.1 and np.median(d) < 0.5
    with pytest.raises(QuantizationError, match="not a TFLite activation"):
        to_tflite_bytes(im)


def test_to_integer_needs_a_quantized_model():
    with pytest.raises(QuantizationError, match="not quantized"):
        to_integer(create_model("dscnn_s"))
