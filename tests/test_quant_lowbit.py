"""Low-bit quantization: first/last layers kept at 8 bits, progressive lowering, the CLI options."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from tinykws.checks import ConfigError
from tinykws.models import create_model
from tinykws.quant import (LearnedBitsConfig, QATConfig, QuantizationError, bit_stats, config_from_dict, config_to_dict,
                           preset, quantize_, tflm_run, to_integer, to_tflite_bytes)
from tinykws.quant.quantize import set_weight_bits
from tinykws.train import load_model

from cli_helpers import last_json, run


def _dscnn(seed=0):
    torch.manual_seed(seed)
    m = create_model("dscnn_mlperf")
    g = torch.Generator().manual_seed(seed)
    for b in m.modules():
        if isinstance(b, nn.BatchNorm2d):
            b.running_mean.copy_(torch.rand(b.num_features, generator=g) - 0.5)
            b.running_var.copy_(torch.rand(b.num_features, generator=g) + 0.5)
    return m.eval()


def _weight_ranges(im):
    """max |integer weight| of every conv/fc op of an IntModel, in order."""
    return [int(np.abs(im.tensors[op.inputs[1]].data.astype(np.int64)).max()) for op in im.ops
            if op.kind in ("conv", "depthwise", "fc")]


def test_keep_8bit_config_presets_and_errors():
    cfg = preset("qat2", act_bits=8, keep_8bit="first,last", start_bits=8)
    assert cfg == QATConfig(weight_bits=2, act_bits=8, keep_8bit="first,last", start_bits=8)
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert config_from_dict({"method": "qat", "weight_bits": 4}).keep_8bit == "none"  # model files written before
    assert cfg.stages() == [8, 4, 2] and QATConfig(2, start_bits=3).stages() == [3, 2] and QATConfig(4).stages() == [4]
    assert preset("learned", weight_bits=2.5, keep_8bit="last").keep_8bit == "last"
    with pytest.raises(ConfigError, match="--keep-8bit must be one of none, first, last, first,last"):
        QATConfig(2, keep_8bit="middle")
    with pytest.raises(QuantizationError, match="must start above the weight bits"):
        QATConfig(4, start_bits=4)
    with pytest.raises(ConfigError, match="--start-bits must be in"):
        QATConfig(2, start_bits=9)
    with pytest.raises(QuantizationError, match="takes no setting start_bits"):
        preset("learned", start_bits=4)


def test_first_and_last_layers_stay_8bit_in_the_integer_model_and_tflite():
    x = torch.randn(32, 49, 10)
    m = _dscnn()
    quantize_(m, QATConfig(weight_bits=2, act_bits=4, keep_8bit="first,last"), calib=x)
    im = to_integer(m)
    r = _weight_ranges(im)
    assert r[0] > 1 and r[-1] > 1, "the first conv and the classifier use the int8 range"
    assert all(v <= 1 for v in r[1:-1]), "every other layer is ternary (2 bits)"
    s = bit_stats(m)
    n = [layer["weights"] for layer in s["layers"]]
    assert [layer["weight_bits"] for layer in s["layers"]] == [8] + [2] * (len(n) - 2) + [8]
    assert s["weight_bits"] == pytest.approx((8 * (n[0] + n[-1]) + 2 * sum(n[1:-1])) / sum(n))
    q = im.predict(x.numpy())
    assert np.array_equal(tflm_run(to_tflite_bytes(im), im.quantize_input(x[:8].numpy())), q[:8])

    m = _dscnn()
    quantize_(m, LearnedBitsConfig(keep_8bit="last"), calib=x)
    s = bit_stats(m)
    assert [layer["weight_bits"] for layer in s["layers"]][-2:] == [6, 8]
    assert not m.fc.wq.learn_bits and m.blocks[0].pw.conv.wq.learn_bits


def test_progressive_lowering_requantizes_only_the_lowered_layers():
    x = torch.randn(32, 49, 10)
    m = _dscnn()
    quantize_(m, QATConfig(weight_bits=4, act_bits=8, keep_8bit="first"), calib=x)
    alpha4 = m.blocks[0].pw.conv.wq.log_alpha.item()
    set_weight_bits(m, 2)
    r = _weight_ranges(to_integer(m))
    assert r[0] > 7 and all(v <= 1 for v in r[1:])
    assert m.blocks[0].pw.conv.wq.log_alpha.item() < alpha4, "the clipping is re-optimised for 2 bits"
    with torch.no_grad():  # the fake-quantized weights are the integer weights times their scales
        conv = m.blocks[0].pw.conv
        q, s = conv.wq.integer(conv.weight)
        torch.testing.assert_close(conv.qweight(), (q * s[:, None, None, None]).float())


def test_per_channel_step_starts_at_each_channels_best_clipping_and_learns():
    """weight_step="channel": one learned clipping ratio per output channel, each at its own
    squared-error optimum (never worse than the per-layer one), with gradients of the STE."""
    x = torch.randn(32, 49, 10)
    layer, chan = _dscnn(), _dscnn()
    quantize_(layer, QATConfig(weight_bits=2, act_bits=8), calib=x)
    quantize_(chan, QATConfig(weight_bits=2, act_bits=8, weight_step="channel"), calib=x)
    cl, cc = layer.blocks[1].pw.conv, chan.blocks[1].pw.conv
    assert cl.wq.log_alpha.shape == () and cc.wq.log_alpha.shape == (64,)
    assert cc.wq.log_alpha.unique().numel() > 1, "channels get different ratios"
    with torch.no_grad():
        e_l = (cl.qweight() - cl.weight).square().flatten(1).sum(1)
        e_c = (cc.qweight() - cc.weight).square().flatten(1).sum(1)
    assert (e_c <= e_l + 1e-6).all() and e_c.sum() < e_l.sum()
    q, s = cc.wq.integer(cc.weight)
    assert set(q.unique().tolist()) <= {-1, 0, 1} and s.shape == (64,)
    chan.train()
    nn.functional.cross_entropy(chan(x), torch.randint(0, 12, (32,))).backward()
    assert cc.wq.log_alpha.grad.shape == (64,) and (cc.wq.log_alpha.grad != 0).sum() > 8
    im = to_integer(chan.eval())
    assert np.array_equal(tflm_run(to_tflite_bytes(im), im.quantize_input(x[:4].numpy())), im.predict(x[:4].numpy()))


@pytest.mark.slow
def test_cli_qat2_with_8bit_io_layers_and_progressive_lowering(tiny_dataset, tmp_path):
    q = tmp_path / "w2.pt"
    d = last_json(run("quantize", "--method", "qat2", "--act-bits", "8", "--keep-8bit", "first,last", "--start-bits", "4",
                      "--augment", "spec", "--data", tiny_dataset, "--epochs", "1", "--out", q, "--json"))
    assert d["config"]["keep_8bit"] == "first,last" and d["config"]["start_bits"] == 4 and d["act_bits"] == 8
    assert 2 < d["weight_bits"] < 8
    net, bundle = load_model(q)
    assert bundle.quant == d["config"]
    r = _weight_ranges(to_integer(net))
    assert r[0] > 1 and r[-1] > 1 and all(v <= 1 for v in r[1:-1])


def test_cli_low_bit_option_errors(tmp_path, monkeypatch, capsys):
    from tinykws.cli.main import main

    for args, msg in ((["--method", "qat2", "--keep-8bit", "middle"], "--keep-8bit must be one of"),
                      (["--method", "qat4", "--start-bits", "4"], "must start above the weight bits"),
                      (["--method", "learned", "--act-bits", "4"], "--act-bits cannot be used with --method learned"),
                      (["--method", "qat2", "--weight-target", "2.5"], "--weight-target cannot be used"),
                      (["--method", "qat2", "--act-bits", "9"], "between 2 and 8"),
                      (["--method", "qat2", "--weight-step", "tensor"], "--weight-step must be one of layer, channel"),
                      (["--method", "ptq8", "--weight-step", "channel"], "--weight-step cannot be used"),
                      (["--method", "qat2", "--augment", "wave"], "--augment must be one of full, spec")):
        monkeypatch.setattr("sys.argv", ["tinykws", "quantize", *args, "--out", str(tmp_path / "x.pt")])
        with pytest.raises(SystemExit) as exc:
            main()
        err = capsys.readouterr().err
        assert exc.value.code == 2 and msg in err and "Traceback" not in err, (args, err)
        assert not (tmp_path / "x.pt").exists()
