import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from tinykws.models import (ConvBNAct, DepthwiseSeparable, InvertedResidual, ModelCost, count_cost, create_model,
                            list_models, register_model)
from tinykws.models.blocks import same_padding

MLPERF_MACS = 2_657_000  # published figure for the MLPerf Tiny KWS DS-CNN


# ---------------------------------------------------------------- registry / forward

def test_registered_models():
    assert {"dscnn_s", "dscnn_m", "dscnn_l", "dscnn_mlperf", "cnn_m7", "rawcnn"} <= set(list_models())
    assert list_models("dscnn_*") == ["dscnn_l", "dscnn_m", "dscnn_mlperf", "dscnn_s"]


@pytest.mark.parametrize("name", list_models())
def test_forward_shape_and_attributes(name):
    torch.manual_seed(0)
    m = create_model(name)
    assert m.arch == name and m.input_kind in ("mfcc", "raw")
    assert m.input_shape == ((16000,) if m.input_kind == "raw" else (49, 10))
    y = m(torch.randn(2, *m.input_shape))
    assert y.shape == (2, 12) and torch.isfinite(y).all()
    y.sum().backward()  # trainable end to end
    m5 = create_model(name, num_classes=5)
    assert m5.eval()(torch.randn(2, *m5.input_shape)).shape == (2, 5) and m5.num_classes == 5


def test_model_kwargs_rebuild_same_architecture():
    m = create_model("dscnn_mlperf", num_classes=7, dropout=0.1)
    again = create_model(m.arch, **m.model_kwargs)
    assert [p.shape for p in m.parameters()] == [p.shape for p in again.parameters()]
    assert again.drop.p == 0.1 and again.head_drop.p == 0.4


def test_mfcc_models_accept_other_input_sizes():
    m = create_model("dscnn_m", input_shape=(98, 40))
    assert m.input_shape == (98, 40) and m(torch.randn(2, 98, 40)).shape == (2, 12)
    assert count_cost(m).input_shape == (98, 40)


def test_unknown_model_error_lists_names():
    with pytest.raises(ValueError) as e:
        create_model("dscnn_mlpref")
    msg = str(e.value)
    assert "dscnn_mlperf" in msg.split("Available")[0]  # close-match suggestion
    for name in list_models():
        assert name in msg


def test_register_model_rejects_duplicates(monkeypatch):
    from tinykws.models import registry
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))  # keep the global registry clean

    @register_model("_tmp_test_model")
    def _tmp_test_model(num_classes=3, input_shape=(4, 4)):
        return nn.Sequential(nn.Flatten(), nn.Linear(16, num_classes))

    m = create_model("_tmp_test_model")
    assert m.arch == "_tmp_test_model" and m.input_kind == "mfcc" and m.input_shape == (4, 4)
    with pytest.raises(ValueError):
        register_model("_tmp_test_model")(lambda **kw: None)


# ---------------------------------------------------------------- blocks

@pytest.mark.parametrize("n,k,s", [(49, 10, 2), (10, 4, 2), (10, 4, 1), (25, 3, 2), (10, 3, 2), (16000, 80, 8), (7, 5, 3)])
def test_same_padding_matches_tf(n, k, s):
    (b, a), = same_padding((k,), (s,), (n,))
    out = math.ceil(n / s)
    assert (n + b + a - k) // s + 1 == out  # TF SAME output size
    assert a - b in (0, 1)  # TF puts the odd pad row at the end
    conv = ConvBNAct(1, 1, k, s, in_size=(n,), dims=1)
    assert conv.out_size == (out,) and conv(torch.randn(1, 1, n)).shape[-1] == out


def test_blocks():
    with pytest.raises(ValueError):
        ConvBNAct(1, 8, 3, 2)  # TF 'same' with stride 2 needs the input size
    ds = DepthwiseSeparable(8, 16, 3, 2, in_size=(25, 10))
    assert ds(torch.randn(1, 8, 25, 10)).shape == (1, 16, *ds.out_size) and ds.out_size == (13, 5)
    assert ds.dw.conv.groups == 8 and ds.pw.conv.kernel_size == (1, 1)
    mb = InvertedResidual(16, 16, kernel=5, stride=1, expand=3)
    assert mb.has_skip and mb.conv.expand.conv.out_channels == 48 and "act" not in dict(mb.conv.project.named_children())
    assert mb(torch.randn(2, 16, 12, 6)).shape == (2, 16, 12, 6)
    mb2 = InvertedResidual(16, 24, kernel=7, stride=2, expand=1, in_size=(12, 6))
    assert not mb2.has_skip and not hasattr(mb2.conv, "expand")
    assert mb2(torch.randn(2, 16, 12, 6)).shape == (2, 24, 6, 3) == (2, 24, *mb2.out_size)


# ---------------------------------------------------------------- cost counter

def test_count_cost_hand_computed():
    # input 2x4x4 -> pad to 2x5x5 -> conv 2x2 (4 ch, no bias) -> 4x4x4 -> BN, ReLU -> maxpool -> 4x2x2 -> FC 3
    model = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(2, 4, 2, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 3))
    c = count_cost(model, input_shape=(2, 4, 4))
    assert c.macs == 64 * 2 * 2 * 2 + 16 * 3 == 560
    assert c.params == 32 + 8 + 16 * 3 + 3 == 91
    assert c.params_deployed == 32 + 4 + 51 == 87  # BN folded: conv gains 4 biases
    assert c.weight_bytes == (32 + 4 * 4) + (48 + 3 * 4) == 108 and c.bias_bytes == 28
    assert c.peak_activation_bytes == 32 + 64 == 96 and c.peak_layer == "1"  # padding fused: input counted unpadded
    assert [(l.name, l.type, l.macs, l.params, l.out_shape) for l in c.layers] == [
        ("1", "Conv2d", 512, 32, (4, 4, 4)), ("2", "BatchNorm2d", 0, 8, (4, 4, 4)),
        ("4", "MaxPool2d", 0, 0, (4, 2, 2)), ("6", "Linear", 48, 51, (3,))]
    c4 = count_cost(model, input_shape=(2, 4, 4), weight_bits=4, act_bits=4)
    assert c4.weight_bytes == (16 + 16) + (24 + 12) and c4.peak_activation_bytes == 16 + 32
    d = json.loads(json.dumps(c.to_dict()))
    assert {"params", "macs", "weight_bytes", "peak_activation_bytes", "params_deployed", "layers"} <= set(d)
    assert d["macs"] == 560 and d["layers"][0]["out_shape"] == [4, 4, 4]


def test_count_cost_unfoldable_norm_and_depthwise():
    model = nn.Sequential(nn.BatchNorm2d(2), nn.Conv2d(2, 2, 3, padding=1, groups=2), nn.Flatten(), nn.Linear(18, 1))
    c = count_cost(model, input_shape=(2, 3, 3))
    assert c.layers[1].type == "DepthwiseConv2d" and c.layers[1].macs == 18 * 9
    assert c.params_deployed == 4 + (18 + 2) + (18 + 1)  # input BN stays as scale + shift
    assert c.weight_bytes == 4 * 4 + (18 + 8) + (18 + 4)


def test_count_cost_residual_rule():
    # 4x4x4 input, expand x2 -> 8x4x4, dw 3x3, project -> 4x4x4, + input
    block = InvertedResidual(4, 4, kernel=3, stride=1, expand=2)
    c = count_cost(block, input_shape=(4, 4, 4))
    assert c.macs == 128 * 4 + 128 * 9 + 64 * 8
    acts = {l.name: l.act_bytes for l in c.layers if l.act_bytes}
    assert acts == {"conv.expand.conv": 64 + 128,  # reads the block input: counted once
                    "conv.dw.conv": 128 + 128 + 64,  # block input kept alive for the addition
                    "conv.project.conv": 128 + 64 + 64}
    assert c.peak_activation_bytes == 320 and c.peak_layer == "conv.dw.conv"
    no_skip = count_cost(InvertedResidual(4, 8, kernel=3, stride=1, expand=2), input_shape=(4, 4, 4))
    assert no_skip.peak_activation_bytes == 128 + 128


@pytest.mark.parametrize("name", list_models())
def test_weight_bytes_halve_with_4bit(name):
    m = create_model(name)
    c8, c4 = count_cost(m, weight_bits=8), count_cost(m, weight_bits=4)
    assert c8.bias_bytes == c4.bias_bytes > 0
    assert c8.weight_bytes - c8.bias_bytes == 2 * (c4.weight_bytes - c4.bias_bytes)
    assert c8.macs == c4.macs and c8.peak_activation_bytes == c4.peak_activation_bytes
    assert count_cost(m, act_bits=4).peak_activation_bytes == c8.peak_activation_bytes // 2


# params, deployed params (BN folded), MACs, int8 weight + int32 bias bytes, peak activation bytes.
# dscnn_mlperf: 2,656,768 MACs and 16,000 activation bytes (two 25x5x64 maps) are the MLPerf Tiny
# reference's own figures; the rest were counted once and are kept so that a change shows up.
COSTS = {
    "cnn_m7": (46_636, 46_508, 1_707_840, 46_928, 19_520),
    "dscnn_l": (413_736, 410_700, 28_327_812, 419_844, 86_940),
    "dscnn_m": (136_580, 135_032, 9_816_384, 139_712, 54_180),
    "dscnn_mlperf": (23_180, 22_604, 2_656_768, 24_368, 16_000),
    "dscnn_s": (23_180, 22_604, 2_656_768, 24_368, 16_000),
    "mbnet": (32_088, 31_296, 3_012_264, 33_708, 36_000),
    "mbnet_raw": (29_612, 28_908, 2_183_904, 31_056, 24_000),
    "rawcnn": (38_268, 37_532, 4_153_600, 39_776, 48_000),
    "bcresnet": (7_684, 7_632, 549_744, 9_696, 5_880),
    "tcresnet8": (63_724, 63_412, 722_016, 64_432, 1_984),
    "tcresnet14": (134_412, 133_892, 1_511_136, 135_536, 1_984),
}


@pytest.mark.parametrize("name", list_models())
def test_cost_table(name):
    c = count_cost(create_model(name))
    assert isinstance(c, ModelCost)
    assert (c.params, c.params_deployed, c.macs, c.weight_bytes, c.peak_activation_bytes) == COSTS[name]
    assert sum(layer.macs for layer in c.layers) == c.macs


# ---------------------------------------------------------------- reference architectures

def test_mlperf_dscnn_cost():
    c = count_cost(create_model("dscnn_mlperf"))
    print(f"dscnn_mlperf: {c.macs:,} MACs, {c.params_deployed:,} deployed params, {c.params:,} trainable")
    # 10x4 conv to 25x5x64, 4 x (dw 3x3 + pw 64), FC 64->12
    assert c.macs == 25 * 5 * 64 * 40 + 4 * (25 * 5 * 64 * 9 + 25 * 5 * 64 * 64) + 64 * 12 == 2_656_768
    assert abs(c.macs - MLPERF_MACS) / MLPERF_MACS < 0.005
    assert c.params_deployed == 22_604  # "22.6k parameters" (BN folded, as in the TFLite model)
    assert c.peak_activation_bytes == 2 * 25 * 5 * 64


def test_hello_edge_dscnn_sizes():
    """Hello Edge Table: DS-CNN S/M/L memory 38.6 / 189.2 / 497.6 KB and 5.4 / 19.8 / 56.9 M ops.

    Their memory column is 8-bit weights (BN folded, biases included) plus the
    largest pair of activation buffers; ops are about 2 x MACs.
    """
    paper = {"dscnn_s": (38.6e3, 5.4e6, 22_604), "dscnn_m": (189.2e3, 19.8e6, 135_032),
             "dscnn_l": (497.6e3, 56.9e6, 410_700)}
    for name, (mem, ops, params) in paper.items():
        c = count_cost(create_model(name))
        total = c.params_deployed + c.peak_activation_bytes
        print(f"{name}: {c.params_deployed:,} deployed params ({c.params:,} trainable), "
              f"{c.peak_activation_bytes:,} B activations -> {total / 1e3:.1f} KB, {2 * c.macs / 1e6:.2f} M ops")
        assert c.params_deployed == params
        assert abs(total - mem) < 0.05e3
        assert abs(2 * c.macs - ops) / ops < 0.02


# ---------------------------------------------------------------- TFLite reference model

def _tflite(shared_dir, name):
    import ai_edge_litert.interpreter as interp_mod

    path = shared_dir / "peers" / "mlperf_tiny_kws" / name
    assert path.is_file(), f"no reference model at {path}"
    it = interp_mod.Interpreter(str(path), experimental_preserve_all_tensors=True,
                                experimental_op_resolver_type=interp_mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    ops = [o for o in it._get_ops_details() if o["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    return it, ops


def _to_tflite_layout(w: torch.Tensor, op: str) -> tuple:
    if op == "CONV_2D":  # OIHW -> OHWI
        return tuple(w.permute(0, 2, 3, 1).shape)
    if op == "DEPTHWISE_CONV_2D":  # C1HW -> 1HWC
        return tuple(w.permute(1, 2, 3, 0).shape)
    return tuple(w.shape)  # FC (out, in) in both


@pytest.mark.parametrize("fname", ["kws_ref_model.tflite", "kws_ref_model_float32.tflite"])
def test_mlperf_weight_shapes_match_tflite(shared_dir, fname):
    it, ops = _tflite(shared_dir, fname)
    det = {d["index"]: d for d in it.get_tensor_details()}
    model = create_model("dscnn_mlperf")
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [o["op_name"] for o in ops] == ["CONV_2D"] + ["DEPTHWISE_CONV_2D", "CONV_2D"] * 4 + ["FULLY_CONNECTED"]
    assert len(layers) == len(ops)
    for op, layer in zip(ops, layers):
        w, b = det[op["inputs"][1]]["shape"], det[op["inputs"][2]]["shape"]
        assert _to_tflite_layout(layer.weight, op["op_name"]) == tuple(w), (op["op_name"], w)
        out_ch = layer.weight.shape[0]
        assert tuple(b) == (out_ch,)
        assert tuple(det[op["outputs"][0]]["shape"][1:]) == tuple(
            _out_shape(model, layer)), op["op_name"]
    n_tflite = sum(int(np.prod(det[o["inputs"][i]]["shape"])) for o in ops for i in (1, 2))
    assert n_tflite == count_cost(model).params_deployed == 22_604


def _out_shape(model, layer):
    """NHWC output shape (without batch) of ``layer`` for one MFCC input."""
    out = {}
    h = layer.register_forward_hook(lambda m, i, o: out.setdefault("y", o))
    with torch.no_grad():
        model.eval()(torch.zeros(1, *model.input_shape))
    h.remove()
    y = out["y"][0]
    return tuple(y.permute(1, 2, 0).shape) if y.dim() == 3 else tuple(y.shape)


def test_mlperf_matches_tflite_numerically(shared_dir):
    """Load the reference weights; outputs agree, which checks TF 'same' padding (incl. the asymmetric stem)."""
    it, ops = _tflite(shared_dir, "kws_ref_model_float32.tflite")
    det = {d["index"]: d for d in it.get_tensor_details()}

    def value(i):
        v, q = it.get_tensor(i).astype(np.float32), det[i]["quantization_parameters"]
        if det[i]["dtype"] == np.int8:  # hybrid model: int8 conv weights with scales
            shape = [1] * v.ndim
            shape[q["quantized_dimension"]] = -1
            v = (v - q["zero_points"].reshape(shape)) * q["scales"].reshape(shape)
        return torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))

    model = create_model("dscnn_mlperf").eval()
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for i, (op, layer) in enumerate(zip(ops, layers)):
            w, b = value(op["inputs"][1]), value(op["inputs"][2])
            if op["op_name"] == "FULLY_CONNECTED":
                layer.weight.copy_(w)
                layer.bias.copy_(b)
                continue
            layer.weight.copy_(w.permute(0, 3, 1, 2) if op["op_name"] == "CONV_2D" else w.permute(3, 0, 1, 2))
            bn = norms[i]  # the folded bias goes into an identity BN
            bn.weight.fill_(1), bn.bias.copy_(b), bn.running_mean.zero_(), bn.running_var.fill_(1 - bn.eps)
        x = torch.from_numpy(np.random.RandomState(0).randn(49, 10).astype(np.float32) * 10 - 5)
        it.set_tensor(it.get_input_details()[0]["index"], x[None, :, :, None].numpy())
        it.invoke()
        stem = model.stem(x[None, None])[0].permute(1, 2, 0).numpy()
        logits = model(x[None])[0].numpy()
    stem_ref = it.get_tensor(ops[0]["outputs"][0])[0]
    logits_ref = it.get_tensor(ops[-1]["outputs"][0])[0]
    # the hybrid model quantizes activations on the fly: ~1% error; a misplaced pad row gives ~80%
    assert np.abs(stem - stem_ref).max() < 0.03 * np.abs(stem_ref).max()
    assert np.abs(logits - logits_ref).max() < 0.05 * np.abs(logits_ref).max()
    assert logits.argmax() == logits_ref.argmax()
