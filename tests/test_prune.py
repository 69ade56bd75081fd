"""Pruning: mask granularity and sparsity, scopes, channel removal, schedule, masks through int8 /
QAT / TFLite, reload of a channel-pruned file, the CLI and its errors."""
import copy

import numpy as np
import pytest
import torch

from cli_helpers import last_json, run
from tinykws.checks import ConfigError
from tinykws.models import count_cost
from tinykws.prune import (PruneConfig, PruneError, compute_masks, masks_from_zeros, plan_steps, polynomial_schedule,
                           prune_, prune_dict, sparsity_stats)
from tinykws.quant import PTQConfig, quantize_, read_tflite, to_integer, to_tflite_bytes
from tinykws.train import ModelBundle, load_model, save_bundle


@pytest.fixture(scope="module")
def dscnn():
    return load_model("dscnn-kws")


def _net(dscnn):
    return copy.deepcopy(dscnn[0])


@pytest.mark.parametrize("method,block", [("unstructured", 1), ("vector4", 4), ("vector8", 8), ("kernel", 0)])
def test_masks_have_the_sparsity_and_granularity(dscnn, method, block):
    net = _net(dscnn)
    masks = compute_masks(net, PruneConfig(method=method, sparsity=0.75))
    if method == "kernel":  # kernels of the depthwise layers when named
        dw = compute_masks(net, PruneConfig(method=method, sparsity=0.75, layers=["blocks.0.dw.conv"]))
        assert set(dw) == {"blocks.0.dw.conv"} and (~dw["blocks.0.dw.conv"]).flatten(1).all(1).sum() == 48
    # by default the first layer and the depthwise layers (one input channel per group) are left whole
    assert set(masks) == {f"blocks.{i}.pw.conv" for i in range(4)} | {"fc"}
    for name, m in masks.items():
        w = net.get_submodule(name).weight
        assert m.shape == w.shape and m.dtype == torch.bool
        units = m.numel() // (m[0, 0].numel() if method == "kernel" and m.dim() > 2 else max(block, 1))
        assert abs((~m).sum().item() / m.numel() - 0.75) <= 1 / units + 1e-9, name
        if block > 1:  # (out, in, kh, kw): blocks of `block` consecutive input channels, all kept or all pruned
            b = m.movedim(1, -1).reshape(*m.movedim(1, -1).shape[:-1], -1, block)
            assert bool(((b.all(-1)) | (~b.any(-1))).all()), name
        if method == "kernel" and m.dim() > 2:
            flat = m.flatten(2)
            assert bool((flat.all(-1) | ~flat.any(-1)).all()), name
        # magnitude: every pruned element/block is no larger than every kept one of the layer
        if method == "unstructured":
            assert w[~m].abs().max() <= w[m].abs().min()
    prune_(net, PruneConfig(method=method, sparsity=0.75))
    for name, m in masks.items():
        assert bool((net.get_submodule(name).weight[~m] == 0).all())


def test_global_and_layer_scope(dscnn):
    layer = compute_masks(_net(dscnn), PruneConfig(sparsity=0.6, scope="layer"))
    glob = compute_masks(_net(dscnn), PruneConfig(sparsity=0.6, scope="global"))
    net = _net(dscnn)
    per_layer = {n: (~m).float().mean().item() for n, m in glob.items()}
    total = sum((~m).sum().item() for m in glob.values()) / sum(m.numel() for m in glob.values())
    assert abs(total - 0.6) < 1e-3
    assert max(per_layer.values()) - min(per_layer.values()) > 0.2  # one threshold: layers end up differently sparse
    pruned = torch.cat([net.get_submodule(n).weight[~m].abs() for n, m in glob.items()])
    kept = torch.cat([net.get_submodule(n).weight[m].abs() for n, m in glob.items()])
    assert pruned.max() <= kept.min()
    assert all(abs((~m).float().mean().item() - 0.6) < 0.01 for m in layer.values())


def test_schedule_values():
    s = polynomial_schedule(0.9, 4)
    expected = [0.9 * (1 - (1 - t / 4) ** 3) for t in range(1, 5)]
    assert s == pytest.approx(expected) and s[-1] == pytest.approx(0.9)
    assert all(a < b for a, b in zip(s, s[1:]))
    assert s[0] > 0.5 * 0.9  # cubic: the big step comes first
    plan = plan_steps(PruneConfig(sparsity=0.9, epochs=8, steps=4))
    assert [e for _, e in plan] == [1, 1, 1, 5] and [p for p, _ in plan] == pytest.approx(s)
    assert plan_steps(PruneConfig(sparsity=0.5, epochs=0)) == [(0.5, 0)]
    assert plan_steps(PruneConfig(sparsity=0.5, epochs=6, schedule="oneshot")) == [(0.5, 6)]


def test_channel_pruning_halves_the_macs_and_reloads(dscnn, tmp_path):
    net, bundle = _net(dscnn), dscnn[1]
    dense = count_cost(net).macs
    cfg = PruneConfig(method="channel", sparsity=0.5, target="macs")
    prune_(net, cfg)
    macs = count_cost(net).macs
    assert 0.4 * dense <= macs <= 0.5 * dense
    x = torch.randn(3, 49, 10)
    assert net(x).shape == (3, 12)
    # the depthwise layer follows the channels of the layer before it, the classifier its inputs
    for i in range(4):
        dw = net.get_submodule(f"blocks.{i}.dw.conv")
        assert dw.groups == dw.in_channels == dw.out_channels
    assert net.fc.out_features == 12 and net.fc.in_features == net.blocks[3].pw.conv.out_channels
    # channel counts stay multiples of 4 (round_to), which the SIMD kernels need
    assert all(m.out_channels % 4 == 0 for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    path = tmp_path / "ch.pt"
    save_bundle(ModelBundle(bundle.arch, bundle.labels, bundle.frontend, net.state_dict(), bundle.model_kwargs,
                            prune=prune_dict(net, cfg)), path)
    again, b2 = load_model(path)
    assert count_cost(again).macs == macs and b2.prune["config"]["method"] == "channel"
    with torch.no_grad():
        assert torch.equal(again(x), net.eval()(x))


@torch.no_grad()
def test_removing_zero_channels_keeps_the_outputs(dscnn):
    """Channels whose every coupled weight is zero carry nothing: channel pruning must remove exactly
    those, and the smaller network computes what the masked one did."""
    net = _net(dscnn).eval()
    gone = torch.arange(0, 64, 2)  # every other channel of every coupled group

    def zero_bn(bn):
        for t in (bn.weight, bn.bias, bn.running_mean):
            t[gone] = 0

    net.stem.conv.weight[gone] = 0
    zero_bn(net.stem.bn)
    for blk in net.blocks:
        blk.dw.conv.weight[gone] = 0
        zero_bn(blk.dw.bn)
        blk.pw.conv.weight[:, gone] = 0
        blk.pw.conv.weight[gone] = 0
        zero_bn(blk.pw.bn)
    net.fc.weight[:, gone] = 0
    x = torch.randn(4, 49, 10)
    before = net(x)
    prune_(net, PruneConfig(method="channel", sparsity=0.5))
    assert net.fc.in_features == 32 and net.stem.conv.out_channels == 32
    assert bool((net.stem.conv.weight.flatten(1).abs().sum(1) > 0).all())  # the zero channels are the ones gone
    assert torch.allclose(net(x), before, atol=1e-5)


def test_masks_survive_int8_and_tflite(dscnn):
    net = _net(dscnn)
    prune_(net, PruneConfig(method="vector4", sparsity=0.75))
    masks = dict(net.prune_masks)
    quantize_(net, PTQConfig(), calib=torch.randn(32, 49, 10))
    im = to_integer(net.eval())
    back = read_tflite(to_tflite_bytes(im))
    for model in (im, back):
        weights = {t.name: t for t in model.tensors if t.name.endswith(".weight")}
        for name, m in masks.items():
            t = weights[name + ".weight"]
            assert np.all(t.zero_point == 0)  # symmetric weights: zero is zero
            q = t.data.transpose(0, 3, 1, 2) if t.data.ndim == 4 else t.data  # OHWI -> OIHW
            assert np.all(q[~m.numpy()] == 0), name
            assert (q != 0).sum() <= m.sum().item()
    zeros = sum(int((t.data == 0).sum()) for t in back.tensors if t.name.endswith(".weight"))
    assert zeros >= sum((~m).sum().item() for m in masks.values())


def test_masks_from_zeros_roundtrip(dscnn):
    net = _net(dscnn)
    prune_(net, PruneConfig(method="kernel", sparsity=0.5))
    found = masks_from_zeros(net)
    assert set(found) == set(net.prune_masks)
    assert all(torch.equal(found[n], m) for n, m in net.prune_masks.items())
    assert sparsity_stats(net)["zeros"] == sum((~m).sum().item() for m in found.values())


def test_bad_settings_and_layers(dscnn):
    for bad in ({"sparsity": 1.0}, {"sparsity": -0.1}, {"method": "block"}, {"scope": "net"}):
        with pytest.raises(ConfigError, match="--" + list(bad)[0]):
            PruneConfig(**bad)
    with pytest.raises(ConfigError, match="--target macs"):
        PruneConfig(method="vector4", target="macs")
    net = _net(dscnn)
    with pytest.raises(PruneError, match=r"'stem.conv'.*vector8.*divisible by 8; it has 1"):
        compute_masks(net, PruneConfig(method="vector8", layers=["stem.conv"]))
    with pytest.raises(PruneError, match=r"'blocks.0.dw.bn' \(BatchNorm2d\) cannot be pruned"):
        compute_masks(net, PruneConfig(layers=["blocks.0.dw.bn"]))
    with pytest.raises(PruneError, match="no layer 'nope'"):
        prune_(net, PruneConfig(method="channel", layers=["nope"]))
    quantize_(net, PTQConfig(), calib=torch.randn(8, 49, 10))
    with pytest.raises(PruneError, match="quantized"):
        prune_(net, PruneConfig())


def test_cli_errors_are_one_line(tmp_path, tiny_dataset):
    for args, text in ((["--method", "vector8", "--layers", "blocks.0.dw.conv", "--sparsity", "0.5"],
                        "layer 'blocks.0.dw.conv' (Conv2d): vector8 needs input channels (per group) divisible by 8"),):
        r = run("prune", "--data", tiny_dataset, "--out", tmp_path / "x.pt", "--epochs", "0", *args, ok=False)
        assert r.returncode == 2 and text in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_cli_prune_then_eval_info_and_qat_keep_the_zeros(tmp_path, tiny_dataset):
    from tinykws.recipes.quantize import quantize_model

    out = tmp_path / "v4.pt"
    r = run("prune", "--data", tiny_dataset, "--method", "vector4", "--sparsity", "0.5", "--epochs", "2",
            "--steps", "2", "--out", out, "--json")
    row = last_json(r)
    assert row["method"] == "vector4" and 0.3 < row["sparsity"] < 0.5 and 0 <= row["val_acc"] <= 1
    info = last_json(run("info", out, "--json"))
    assert info["sparsity"] == pytest.approx(row["sparsity"]) and info["pruning"]["method"] == "vector4"
    assert "accuracy" in last_json(run("eval", "--data", tiny_dataset, "--model", out, "--json"))
    net, bundle = load_model(out)
    masks = masks_from_zeros(net)
    assert masks and bundle.prune["config"]["sparsity"] == 0.5
    # QAT moves every weight; the recipe re-applies the masks after each step
    qb = quantize_model(out, "qat8", tiny_dataset, epochs=1, calib_clips=16, log=lambda *a: None)
    assert qb.prune == bundle.prune
    im = to_integer(qb.build())
    for t in im.tensors:
        name = t.name.removesuffix(".weight")
        if t.name.endswith(".weight") and name in masks:
            q = t.data.transpose(0, 3, 1, 2) if t.data.ndim == 4 else t.data
            assert np.all(q[~masks[name].numpy()] == 0), name
    # a quantized file cannot be pruned
    qpath = tmp_path / "q.pt"
    save_bundle(qb, qpath)
    r = run("prune", "--data", tiny_dataset, "--model", qpath, "--out", tmp_path / "y.pt", ok=False)
    assert r.returncode == 2 and "quantized model file" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_channel_pruned_file_quantizes_and_exports(tmp_path, tiny_dataset):
    out = tmp_path / "ch.pt"
    row = last_json(run("prune", "--data", tiny_dataset, "--method", "channel", "--sparsity", "0.5", "--target",
                        "macs", "--epochs", "1", "--teacher", "dscnn-kws", "--kd-alpha", "0.7", "--out", out,
                        "--json"))
    assert row["macs"] <= 0.5 * row["dense_macs"]
    stored = load_model(out)[1].prune["config"]  # fine-tuned with distillation from the unpruned model
    assert stored["teacher"] == ["dscnn-kws"] and stored["kd_alpha"] == 0.7
    r = last_json(run("export", "--model", out, "--data", tiny_dataset, "--out", tmp_path / "ch.tflite", "--json"))
    im = read_tflite(tmp_path / "ch.tflite")
    fc = [t for t in im.tensors if t.name == "fc.weight"][0]
    assert r["bytes"] > 0 and fc.shape[1] == load_model(out)[0].fc.in_features < 64


@pytest.mark.slow
def test_pruned_int8_model_generates_bit_exact_c(dscnn, tmp_path):
    from tinykws.deploy import generate, run_host

    net = _net(dscnn)
    prune_(net, PruneConfig(method="unstructured", sparsity=0.9))
    quantize_(net, PTQConfig(), calib=torch.randn(32, 49, 10))
    im = read_tflite(to_tflite_bytes(to_integer(net.eval())))
    generate(im, tmp_path / "c", kernels="fast")
    x = np.random.default_rng(0).integers(-128, 128, (6, 49, 10, 1), dtype=np.int8)
    x = x.reshape(len(x), *im.tensors[im.input].shape[1:])
    assert np.array_equal(run_host(tmp_path / "c", x), im.run(x).reshape(len(x), -1))
