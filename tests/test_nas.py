"""Architecture search: codec, decoded models, cost tables, supernet sampling, search, sweep, CLI."""
import json
import random
from pathlib import Path
import sys

import pytest
import torch
from cli_helpers import last_json, run

from tinykws.models import count_cost, create_model, list_models
from tinykws.models.arch import ArchError, parse_arch, parse_block
from tinykws.nas.cost import CostTable, LookupTableCost, make_cost_model, write_lut_template
from tinykws.nas.search import SearchConfig, SearchResult, check_search_config, derive, random_arch, search
from tinykws.nas.spaces import SearchSpace, make_space
from tinykws.nas.supernet import SuperNet

ARCH = "w0.5-ir_k3_e2-ir_k5_e3-skip-ir_k7_e1"
RAW_ARCH = "w0.5-sinc_c8_k63_s32_p4-ir_k5_e2-skip-ir_k3_e1"


def tiny_cfg(data, out, **kw):
    base = dict(data=str(data), out=str(out), width=0.5, layers=4, kernels=[3, 5], expansions=[1, 3, 6],
                target=1e6, epochs=3, warmup_epochs=1, arch_lr=0.1, batch_size=16, threads=1)
    return SearchConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- strings and models

def test_arch_string_round_trip_and_blocks():
    a = parse_arch(ARCH)
    assert str(a) == ARCH and a.width == 0.5 and a.depth == 3 and a.space == "mfcc"
    assert [str(b) for b in a.blocks] == ["ir_k3_e2", "ir_k5_e3", "skip", "ir_k7_e1"]
    assert parse_block("ir_k5_e3").kernel == 5 and parse_block("IR_K5_E3").expand == 3
    assert str(parse_arch("ir_k3_e1-skip")) == "w1-ir_k3_e1-skip"  # width defaults to 1
    r = parse_arch(RAW_ARCH)
    assert r.space == "raw" and r.frontend.kind == "sinc" and r.frontend.channels == 8 and str(r) == RAW_ARCH


@pytest.mark.parametrize("text, msg", [
    ("w1-ir_k3_e1-conv3x3", "unknown block 'conv3x3'"),
    ("w1-ir_k4_e2", "odd"),
    ("w1-ir_k3_e0", "at least 1"),
    ("w1-skip-ir_k3_e1", "cannot be 'skip'"),
    ("ir_k3_e1-w0.5", "must come first"),
    ("", "empty architecture"),
    ("w1-fft_c8_k3_s2-ir_k3_e1", "unknown block 'fft_c8_k3_s2'"),
    ("w1-sinc_c8-ir_k3_e1", "unknown front end"),
    ("w1-ir_k3_e1-s1x2", "right after the width"),
    ("w1-s2-ir_k3_e1", "does not fit a MFCC"),
    ("w1-s1x2-conv_c16_k64_s32_p4-ir_k3_e1", "does not fit a raw"),
    ("w1-s0x2-ir_k3_e1", "at least 1"),
])
def test_bad_arch_strings_say_what_is_wrong(text, msg):
    with pytest.raises(ArchError, match=msg):
        parse_arch(text)


def test_registered_models_decode_strings():
    assert {"mbnet", "mbnet_raw"} <= set(list_models())
    m = create_model("mbnet", arch=ARCH)
    assert m.input_kind == "mfcc" and m(torch.randn(2, 49, 10)).shape == (2, 12)
    assert m.model_kwargs["arch"] == ARCH and m.arch_string == ARCH
    r = create_model("mbnet_raw", input_shape=(16000,), arch=RAW_ARCH, num_classes=5)
    assert r.input_kind == "raw" and r(torch.randn(2, 16000)).shape == (2, 5)
    # the paper's stem: 5 (MFCC) x 11 (time), stride 2 along time, 72 x omega channels
    stem = create_model("mbnet", arch="w1-ir_k3_e1").stem.conv
    assert stem.kernel_size == (11, 5) and stem.stride == (2, 1) and stem.out_channels == 72


def test_first_stride_token_sets_the_resolution_of_the_blocks():
    a = parse_arch("w0.5-s1x2-ir_k3_e1-skip")
    assert a.stride == (1, 2) and str(a) == "w0.5-s1x2-ir_k3_e1-skip" and parse_arch("w1-ir_k3_e1").stride is None
    default, kept = create_model("mbnet", arch="w0.5-ir_k3_e1-ir_k3_e1"), create_model("mbnet", arch="w0.5-s1x2-ir_k3_e1-ir_k3_e1")
    assert default.blocks[-1].out_size == (13, 5) and kept.blocks[-1].out_size == (25, 5)  # the DS-CNN's 25 x 5 map
    assert kept(torch.randn(2, 49, 10)).shape == (2, 12) and kept.arch_string == "w0.5-s1x2-ir_k3_e1-ir_k3_e1"
    assert count_cost(kept).macs > count_cost(default).macs
    drop = create_model("mbnet", arch="w0.5-ir_k3_e1", stem_dropout=0.5, dropout=0.0)  # the DS-CNN's stem dropout
    x = torch.randn(2, 49, 10)
    assert not torch.equal(drop.train()(x), drop(x)) and torch.equal(drop.eval()(x), drop(x))
    raw = create_model("mbnet_raw", input_shape=(16000,), arch="w0.5-s1-conv_c16_k64_s32_p4-ir_k3_e1-ir_k3_e1")
    assert raw.blocks[0].out_size == raw.stem.out_size  # stride 1 keeps the frames
    space = make_space("mfcc", "paper10", 0.5, layers=3, first_stride=(1, 2))
    assert space.arch([0, 0, len(space.ops) - 1]).startswith("w0.5-s1x2-") and space.layer_shapes()[0].stride == (1, 2)
    assert space.layer_shapes()[0].key(space.ops[0]) == "ir_k3_e1|c36>36|s1x2|25x10"
    assert SearchSpace.from_dict(space.to_dict()) == space
    with pytest.raises(ArchError, match="stride token does not match"):
        space.choices("w0.5-ir_k3_e1-ir_k3_e1-skip")
    with pytest.raises(ValueError, match="frames x coefficients"):
        make_space("mfcc", "paper10", first_stride=(2,))


def test_mismatched_front_end_and_space_are_clear_errors():
    with pytest.raises(ValueError, match="use mbnet_raw"):
        create_model("mbnet", input_shape=(16000,), arch=ARCH)
    with pytest.raises(ArchError, match="mbnet_raw"):
        create_model("mbnet", arch=RAW_ARCH)
    with pytest.raises(ArchError, match="needs a front-end token"):
        create_model("mbnet_raw", input_shape=(16000,), arch=ARCH)
    with pytest.raises(ValueError, match="--space raw"):
        make_space("mfcc", "raw")
    with pytest.raises(ValueError, match="--space mfcc"):
        make_space("raw", "paper20")
    with pytest.raises(ValueError, match="unknown search space"):
        make_space("spectrogram")


def test_sinc_front_end_learns_cut_offs_and_counts_as_a_conv():
    from tinykws.models.mbnet import SincConv1d

    m = create_model("mbnet_raw", input_shape=(16000,), arch=RAW_ARCH)
    sinc = m.stem[0].conv
    assert isinstance(sinc, SincConv1d) and sum(p.numel() for p in sinc.parameters()) == 2 * 8
    m(torch.randn(3, 16000)).sum().backward()
    assert sinc.low_hz_.grad.abs().sum() > 0 and sinc.band_hz_.grad.abs().sum() > 0
    assert torch.allclose(sinc.weight, sinc.filters().detach())
    c = count_cost(m)
    first = c.layers[0]
    assert first.type == "SincConv1d" and first.macs == 8 * 63 * 500  # 500 frames at stride 32
    m2 = create_model("mbnet_raw", input_shape=(16000,), arch=RAW_ARCH)
    m2.load_state_dict(m.state_dict())  # filters are rebuilt from the cut-offs
    m.eval(), m2.eval()
    x = torch.randn(1, 16000)
    assert torch.allclose(m(x), m2(x), atol=1e-5)


# ----------------------------------------------------------------------------- costs

@pytest.mark.parametrize("kind, fe, width, stride", [("mfcc", "paper10", 0.5, ()), ("mfcc", "paper20", 0.25, ()),
                                                     ("mfcc", "paper10", 0.5, (1, 2)), ("raw", "raw", 0.5, ())])
def test_cost_tables_match_the_cost_counter(kind, fe, width, stride):
    space = make_space(kind, fe, width, layers=5, kernels=(3, 7), expansions=(1, 4), first_stride=stride)
    tables = {k: CostTable(space, make_cost_model(k)) for k in ("macs", "ops", "weight_bytes", "peak_act_bytes")}
    rng = random.Random(0)
    for _ in range(4):
        ch = [rng.randrange(len(space.ops) - 1)] + [rng.randrange(len(space.ops)) for _ in range(space.layers - 1)]
        c = count_cost(space.build(space.arch(ch)))
        assert tables["macs"].of(ch) == c.macs
        assert tables["ops"].of(ch) == 2 * c.macs
        assert tables["weight_bytes"].of(ch) == c.weight_bytes
        assert tables["peak_act_bytes"].of(ch) == c.peak_activation_bytes
        assert space.choices(space.arch(ch)) == ch
    # the expected cost under one-hot probabilities is that architecture's cost
    probs = torch.nn.functional.one_hot(torch.tensor(ch), len(space.ops)).double()
    assert float(tables["macs"].expected(probs)) == pytest.approx(tables["macs"].of(ch))
    lo, hi = tables["macs"].range()
    assert lo == count_cost(space.build(space.smallest_arch())).macs < hi


def test_lookup_table_cost_model(tmp_path):
    space = make_space("mfcc", "paper10", 0.5, layers=3, kernels=(3, 5), expansions=(1, 2))
    path = tmp_path / "lut.json"
    table = write_lut_template(space, path)
    lut = CostTable(space, make_cost_model(f"lut:{path}"))
    macs = CostTable(space, make_cost_model("macs"))
    ch = [1, 3, 4]
    assert lut.of(ch) == pytest.approx(macs.of(ch) / 0.69 / 216e3, rel=1e-3)  # ms from MACs in the template
    key = next(iter(table["blocks"]))
    del table["blocks"][key]
    path.write_text(json.dumps(table))
    with pytest.raises(ValueError, match="no entry"):
        CostTable(space, LookupTableCost.from_json(path))
    with pytest.raises(ValueError, match="unknown cost"):
        make_cost_model("latency")


def test_impossible_targets_are_rejected_with_the_range(tmp_path):
    cfg = tiny_cfg(tmp_path, tmp_path / "s")
    _, table = check_search_config(cfg)
    lo, hi = table.range()
    with pytest.raises(ValueError, match="below the smallest architecture"):
        check_search_config(tiny_cfg(tmp_path, tmp_path / "s", target=lo / 2))
    with pytest.raises(ValueError, match="above the largest architecture"):
        check_search_config(tiny_cfg(tmp_path, tmp_path / "s", target=hi * 2))
    with pytest.raises(ValueError, match="> 1"):
        check_search_config(tiny_cfg(tmp_path, tmp_path / "s", target=0.5))
    with pytest.raises(ValueError, match="--space raw"):
        check_search_config(tiny_cfg(tmp_path, tmp_path / "s", frontend="raw"))


@pytest.mark.parametrize("kind", ["mfcc", "raw"])
def test_random_architectures_meet_the_limit_and_depend_only_on_the_seed(kind):
    space = make_space(kind, width=0.5)
    table = CostTable(space, make_cost_model("macs"))
    lo, hi = table.range()
    limit = lo + 0.1 * (hi - lo)
    archs = [random_arch(table, limit, seed) for seed in range(8)]
    assert all(lo <= table.of(c) <= limit for c in archs)
    assert all(table.allowed[l, j] for c in archs for l, j in enumerate(c))  # no skip in layer 1
    assert len({tuple(c) for c in archs}) == 8  # different seeds, different architectures
    assert random_arch(table, limit, 3) == archs[3]  # the same seed, the same architecture
    assert table.of(random_arch(table, None, 0)) > limit  # no limit: the random draw's argmax


def test_cli_random_arch(monkeypatch, capsys):
    code, stdout, _ = cli_in_process(monkeypatch, capsys, "random-arch", "--target", "2.65e6", "--width", "0.5",
                                     "--seed", "1", "--json")
    d = json.loads(stdout.strip().splitlines()[-1])
    assert code == 0 and d["macs"] <= 2.65e6 and parse_arch(d["arch"]).width == 0.5
    code, stdout2, _ = cli_in_process(monkeypatch, capsys, "random-arch", "--target", "2.65e6", "--width", "0.5",
                                      "--seed", "1")
    assert code == 0 and stdout2.strip() == d["arch"]
    code, _, err = cli_in_process(monkeypatch, capsys, "random-arch", "--target", "1e3", "--width", "0.5")
    assert code == 2 and "below the smallest architecture" in " ".join(err.split())
    code, stdout, _ = cli_in_process(monkeypatch, capsys, "random-arch", "--target", "2.65e6", "--width", "0.5",
                                     "--first-stride", "1x2", "--json")
    d = json.loads(stdout.strip().splitlines()[-1])
    assert code == 0 and d["macs"] <= 2.65e6 and parse_arch(d["arch"]).stride == (1, 2)
    code, _, err = cli_in_process(monkeypatch, capsys, "random-arch", "--target", "2.65e6", "--first-stride", "1by2")
    assert code == 2 and "--first-stride" in err


# ----------------------------------------------------------------------------- supernet

@pytest.mark.parametrize("share, stride", [(False, ()), (True, ()), (True, (1, 2))])
def test_binarized_path_sampling_and_gradients(share, stride):
    space = make_space("mfcc", "paper10", 0.25, layers=3, kernels=(3, 5), expansions=(1, 2), first_stride=stride)
    net = SuperNet(space, quant_bits=8, share_weights=share)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 49, 10)
    assert net.probs()[0, -1] == 0  # layer 0 cannot be skipped
    choices = net.sample_single(g)
    net(x).sum().backward()
    assert net.alpha.grad is None  # weight steps do not touch the architecture
    net.set_path(choices)
    ref = space.build(space.arch(choices))  # the same path as a normal model has the same cost
    table = CostTable(space, make_cost_model("macs"))
    assert len(choices) == 3 and count_cost(ref).macs == table.of(choices)
    with torch.no_grad():
        net.alpha.normal_()
    before = net.probs().detach().clone()
    net.sample_pair(g)
    pairs = net._pairs.clone()
    net.zero_grad()
    net(x).logsumexp(1).mean().backward()
    grad = net.alpha.grad
    mask = torch.zeros_like(grad, dtype=torch.bool).scatter_(1, pairs, True)
    assert grad[~mask].abs().sum() == 0 and grad[mask].abs().sum() > 0  # only the sampled pair learns
    with torch.no_grad():
        net.alpha -= 0.5 * grad
    net.rescale_pair()
    after = net.probs().detach()
    assert torch.allclose(after[~mask], before[~mask], atol=1e-6)  # the others keep their probability
    assert torch.allclose(after.sum(1), torch.ones(3))


# ----------------------------------------------------------------------------- search

def test_beta_steers_the_derived_cost_and_search_resumes(tiny_dataset, tmp_path):
    costs, results = {}, {}
    for beta in (0.0, 6.0):  # the most probable architecture (no hard limit), to see beta alone
        res = search(tiny_cfg(tiny_dataset, tmp_path / f"b{beta}", beta=beta, hard_limit=False), progress=False,
                     log=lambda s: None)
        costs[beta], results[beta] = (res.searched_cost, res.expected_cost), res
        assert res.cost["macs"] == res.searched_cost and res.model == "mbnet"
        assert count_cost(create_model("mbnet", arch=res.arch)).macs == res.cost["macs"]
    assert costs[6.0][0] < costs[0.0][0], costs  # a large beta derives a cheaper architecture
    assert costs[6.0][1] < costs[0.0][1], costs  # and lowers the expected cost

    # with the hard limit (default), the derived architecture meets the target
    space, table = check_search_config(tiny_cfg(tiny_dataset, tmp_path))
    probs = torch.tensor(results[0.0].probs)
    assert table.of(derive(probs, table)) == costs[0.0][0] > 1e6
    limited = derive(probs, table, 1e6)
    assert table.of(limited) <= 1e6
    unlimited = derive(probs, table)
    assert all(table.values[l, j] <= table.values[l, k] for l, (j, k) in enumerate(zip(limited, unlimited)))

    # cut off after epoch 2, then resumed: the same result as the uninterrupted run
    class Stop(Exception):
        pass

    def stop_after_2(msg):
        if msg.startswith("epoch 2/"):
            raise Stop

    out = tmp_path / "cut"
    with pytest.raises(Stop):
        search(tiny_cfg(tiny_dataset, out, beta=6.0, hard_limit=False), progress=False, log=stop_after_2)
    with pytest.raises(FileExistsError, match="--resume"):
        search(tiny_cfg(tiny_dataset, out, beta=6.0), progress=False, log=lambda s: None)
    res = search(tiny_cfg(tiny_dataset, out), resume=True, progress=False, log=lambda s: None)
    full = SearchResult.load(tmp_path / "b6.0")
    assert res.arch == full.arch and res.probs == full.probs
    assert [h["epoch"] for h in res.history] == [1, 2, 3]


def test_trial_trains_the_derived_model_and_sweep_builds_the_table(tiny_dataset, tmp_path, monkeypatch, capsys):
    from tinykws.nas.pareto import baseline_rows, format_table, pareto_front, plot_pareto
    from tinykws.nas.sweep import SweepConfig, run_sweep, sweep_rows
    from tinykws.train import load_model

    base = tiny_cfg(tiny_dataset, tmp_path, epochs=2, warmup_epochs=1, layers=3)
    cfg = SweepConfig(data=str(tiny_dataset), out=str(tmp_path / "sweep"), frontends=["paper10", "raw"],
                      betas=[4.0], targets=[1.5e6, 1e5], widths=[0.5],
                      search={k: v for k, v in base.__dict__.items() if k in
                              ("layers", "kernels", "expansions", "epochs", "warmup_epochs", "arch_lr", "batch_size")}
                      | {"first_stride": [1, 2]},  # for the MFCC trials; the raw one keeps its 1-D default
                      train_epochs=1, jobs=2)
    rows = run_sweep(cfg, log=lambda s: None)  # two worker processes on one Optuna storage
    # 1e5 MACs is below every architecture: those grid points are pruned, not failed
    assert {(r["frontend"], r["target"]) for r in rows} == {("paper10", 1.5e6), ("raw", 1.5e6)}
    for r in rows:
        net, bundle = load_model(r["model_file"])
        assert bundle.arch == r["model"] and bundle.model_kwargs["arch"] == r["arch"]
        assert count_cost(net).macs == r["macs"] and 0 <= r["test_acc"] <= 1
        assert parse_arch(r["arch"]).stride == ((1, 2) if r["frontend"] == "paper10" else None)
    assert rows == sweep_rows(tmp_path / "sweep")  # kept in the Optuna storage
    again = run_sweep(cfg, log=lambda s: None)  # resumed: nothing left to run
    assert len(again) == 2
    import optuna

    trials = optuna.load_study(study_name=cfg.study, storage=cfg.storage_url()).trials
    assert sorted(t.user_attrs["name"] for t in trials) == sorted(  # each grid point ran exactly once
        f"{f}_w0.5_t{t:g}_b4" for f in ("paper10", "raw") for t in (1.5e6, 1e5))
    allrows = rows + baseline_rows(None, models=())
    table = format_table(allrows)
    assert "MLPerf Tiny KWS reference" in table and "2.657" in table and table.count("\n") == 3 + 1
    assert pareto_front(rows) and all(r in rows for r in pareto_front(rows))
    plot_pareto(allrows, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    # `tinykws pareto`: a sweep plus a trained model file (a searched model) and a baseline file
    code, stdout, err = cli_in_process(monkeypatch, capsys, "pareto", tmp_path / "sweep", rows[0]["model_file"],
                                       "--data", tiny_dataset, "--baseline", rows[1]["model_file"],
                                       "--out", tmp_path / "par", "--json")
    assert code == 0, err
    d = json.loads(stdout.strip().splitlines()[-1])
    kinds = [(r["name"], bool(r.get("baseline"))) for r in d["rows"]]
    assert len(kinds) == 2 + 1 + 1 + 1 and sum(b for _, b in kinds) == 2  # 2 trials, the file, baseline, MLPerf
    added = [r for r in d["rows"] if r["name"] == str(Path(rows[0]["model_file"]).parent)]
    assert added and added[0]["macs"] == rows[0]["macs"] and added[0]["test_acc"] == rows[0]["test_acc"]
    assert (tmp_path / "par" / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_pareto_front_definition():
    from tinykws.nas.pareto import pareto_front

    rows = [{"name": "a", "macs": 1, "test_acc": 0.5}, {"name": "b", "macs": 2, "test_acc": 0.7},
            {"name": "c", "macs": 3, "test_acc": 0.6}, {"name": "d", "macs": 2, "test_acc": 0.7 - 1e-9}]
    assert [r["name"] for r in pareto_front(rows)] == ["a", "b"]


# ----------------------------------------------------------------------------- CLI

def cli_in_process(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """`tinykws ARGS` through the real entry point (errors -> exit code 2), without a new interpreter."""
    from tinykws.cli.main import main

    monkeypatch.setattr(sys, "argv", ["tinykws", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_search_and_clear_errors(tiny_dataset, tmp_path, monkeypatch, capsys):
    out = tmp_path / "s"
    r = run("search", "--data", tiny_dataset, "--out", out, "--width", "0.5", "--layers", "3", "--kernels", "3",
                "--expansions", "1,2", "--target", "1e6", "--beta", "2", "--epochs", "2", "--warmup-epochs", "1",
                "--batch-size", "16", "--threads", "1", "--json")
    d = last_json(r)
    assert d["model"] == "mbnet" and parse_arch(d["arch"]).width == 0.5 and (out / "search.json").exists()
    assert d["searched_cost"] <= 1e6  # hard limit: the derived model meets the target
    code, stdout, _ = cli_in_process(monkeypatch, capsys, "arch-info", d["arch"], "--json")
    assert code == 0 and json.loads(stdout.strip().splitlines()[-1])["macs"] == d["cost"]["macs"]
    for args, msg in [(("--target", "1e3"), "below the smallest architecture"),
                      (("--target", "1e12"), "above the largest architecture"),
                      (("--frontend", "raw"), "--space raw"),
                      (("--space", "raw", "--frontend", "paper20"), "--space mfcc")]:
        code, _, err = cli_in_process(monkeypatch, capsys, "search", "--data", tiny_dataset, "--out", tmp_path / "x", *args)
        assert code == 2 and msg in " ".join(err.split()) and "Traceback" not in err, (args, err)
    code, _, err = cli_in_process(monkeypatch, capsys, "arch-info", "w1-ir_k3_e1-dwconv")
    assert code == 2 and "unknown block 'dwconv'" in err
