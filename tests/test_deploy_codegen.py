"""Code generation: the memory planner, the generated C project built with gcc on the host
(bit-exact with the integer reference on every clip of the mini testing list, every variant),
`tinykws deploy` (budgets, errors, folders)."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from tinykws.audio import get_preset
from tinykws.deploy import DeployError, generate, plan_memory, run_host
from tinykws.deploy.host import model_defines
from tinykws.deploy.plan import ARENA
from tinykws.models import create_model
from tinykws.quant import IntOp, PTQConfig, QTensor, quantize_, read_tflite, to_integer
from tinykws.recipes.quantize import quantize_model, split_features

from cli_helpers import last_json

MLPERF_LABELS = ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "_silence_", "_unknown_"]
VARIANTS = [("ref", "input"), ("ref", "weight"), ("fast", "input"), ("fast", "weight")]
VARIANT_IDS = [f"{k}-{o}" for k, o in VARIANTS]


class _Labels:  # what split_features needs of a bundle
    def __init__(self, labels, frontend):
        self.labels, self.frontend = labels, frontend


def _check_plan(im, plan):
    """No two buffers alive at the same time share a byte; offsets 4-byte aligned; inside the arena;
    every activation tensor has a place."""
    arena = [b for b in plan.buffers if b.where == ARENA]
    for i, a in enumerate(arena):
        assert a.offset % 4 == 0 and a.offset + a.size <= plan.arena_bytes
        for b in arena[i + 1 :]:
            if a.overlaps(b):
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a.name, b.name)
    acts = {t for op in im.ops for t in [op.output] + op.inputs[:1]}
    assert acts <= set(plan.where)
    assert plan.arena_bytes >= plan.lower_bound


# ---------------------------------------------------------------- models and their test clips

@pytest.fixture(scope="module")
def mlperf(shared_dir, mini_dir):
    im = read_tflite(shared_dir / "peers" / "mlperf_tiny_kws" / "kws_ref_model.tflite")
    feats, _ = split_features(_Labels(MLPERF_LABELS, get_preset("mlperf")), mini_dir, "testing")
    return im, im.quantize_input(feats.numpy())


def _shipped(name, mini_dir):
    bundle = quantize_model(name, "ptq8", mini_dir, log=lambda *a: None)  # calibrated on training clips
    im = to_integer(bundle.build(), meta={"labels": bundle.labels})
    feats, _ = split_features(bundle, mini_dir, "testing")
    return im, im.quantize_input(feats.numpy())


@pytest.fixture(scope="module")
def dscnn_kws(mini_dir):
    return _shipped("dscnn-kws", mini_dir)


@pytest.fixture(scope="module")
def nas_kws(mini_dir):
    return _shipped("nas-kws", mini_dir)


def _random_model(name, **kw):
    torch.manual_seed(0)
    m = create_model(name, **kw).eval()
    x = torch.randn(16, *m.input_shape)
    quantize_(m, PTQConfig(), calib=x)
    im = to_integer(m)
    return im, im.quantize_input(torch.randn(4, *m.input_shape).numpy())


SMALL = {"cnn_m7": dict(name="cnn_m7"),
         "mbnet": dict(name="mbnet", arch="w0.5-ir_k3_e2-ir_k5_e3-skip-ir_k3_e1"),
         "mbnet_raw": dict(name="mbnet_raw", input_shape=(16000,))}


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """(model key, kernels, loop order) -> generated project folder, each generated and built once."""
    cache = {}

    def get(key, im, kernels, loop_order):
        if (key, kernels, loop_order) not in cache:
            out = tmp_path_factory.mktemp(f"{key}-{kernels}-{loop_order}")
            cache[(key, kernels, loop_order)] = (generate(im, out / "p", kernels=kernels, loop_order=loop_order),
                                                 out / "p")
        return cache[(key, kernels, loop_order)]

    return get


# ---------------------------------------------------------------- planner

def test_mlperf_memory_plan_fits_two_maps(mlperf):
    """The MLPerf DS-CNN's activations (scratch of the fast kernels included) fit 16,000 bytes,
    two 25x5x64 maps; the reshape is a view; the input and output stay in the caller's buffers."""
    im, _ = mlperf
    for kernels in ("fast", "ref"):
        plan = plan_memory(im, kernels=kernels)
        _check_plan(im, plan)
        assert plan.arena_bytes <= 16_000, plan.table()
        assert plan.where[im.input] == "input" and plan.where[im.output] == "output"
        reshape = next(op for op in im.ops if op.kind == "reshape")
        assert plan.offsets[reshape.output] == plan.offsets[reshape.inputs[0]]
        for k, t in plan.in_place:
            assert plan.location(im.ops[k].output) == plan.location(t)
    text = plan.table()
    assert "arena" in text and "8000" in text and "input" in text


def test_planner_reuse_in_place_and_residuals():
    """A chain with a residual: the residual input stays alive until the add; in place only where
    allowed and where the input dies; scratch placed beside what is alive."""
    T = [QTensor(f"t{i}", (1, 4, 4, 8), np.ones(1, np.float32), np.zeros(1, np.int64)) for i in range(5)]
    ops = [IntOp("maxpool", [0], 1, {"filter": (1, 1), "stride": (1, 1), "pad": (0, 0, 0, 0)}),
           IntOp("maxpool", [1], 2, {"filter": (1, 1), "stride": (1, 1), "pad": (0, 0, 0, 0)}),
           IntOp("maxpool", [2], 3, {"filter": (1, 1), "stride": (1, 1), "pad": (0, 0, 0, 0)}),
           IntOp("add", [3, 1], 4, {})]
    from tinykws.quant import IntModel

    im = IntModel(T, ops, 0, 4)
    plan = plan_memory(im, scratch={1: 10}, in_place=())
    _check_plan(im, plan)
    b1 = next(b for b in plan.buffers if 1 in b.tensors)
    assert (b1.first, b1.last) == (0, 3), "the residual lives until the add"
    assert plan.arena_bytes == 3 * 128 and plan.scratch_sizes == {1: 10}  # t1, t2, t3 / scratch fits beside
    plan = plan_memory(im, scratch={}, in_place={(2, 2), (1, 1)})
    assert plan.in_place == [(2, 2)], "t1 is still needed by the add: op 1 cannot write over it"
    assert plan.offsets[3] == plan.offsets[2] and plan.arena_bytes == 2 * 128


# ---------------------------------------------------------------- bit-exact on the host

@pytest.mark.slow
@pytest.mark.parametrize("kernels,loop_order", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("key", ["mlperf", "dscnn_kws", "nas_kws"])
def test_generated_c_is_bit_exact_on_the_testing_list(key, kernels, loop_order, request, projects):
    im, x = request.getfixturevalue(key)
    gen, out = projects(key, im, kernels, loop_order)
    assert len(x) > 600
    y = run_host(out, x)
    assert np.array_equal(y, im.run(x).reshape(len(x), -1))
    _check_plan(im, gen.plan)
    d = model_defines(out)
    assert d["TKWS_ARENA_SIZE"] == max(gen.plan.arena_bytes, 4) and d["TKWS_NUM_LAYERS"] == len(gen.layers)
    src = (out / "model.c").read_text()
    assert "malloc" not in src and "float" not in src.split("int tkws_invoke")[1], "integers only in the network"
    assert src.count("TKWS_LAYER_MARK(") == len(gen.layers) + 1
    assert {l["kernel"] for l in gen.layers} <= set(src.split("int tkws_invoke")[1].replace("(", " ").split())


@pytest.mark.slow
def test_generic_fast_functions_bit_exact(tmp_path, mlperf):
    """--no-specialize: every layer calls the library's generic fast functions (the per-layer
    instances are what the other tests run); same outputs, no per-layer instances in model.c."""
    im, x = mlperf
    gen = generate(im, tmp_path / "generic", kernels="fast", specialize=False)
    src = (tmp_path / "generic" / "model.c").read_text()
    assert "_run(" not in src and "tkws_pw_s8_fast_wide(&" in src
    assert np.array_equal(run_host(tmp_path / "generic", x[:200]), im.run(x[:200]).reshape(200, -1))
    spec = (tmp_path / "spec")
    generate(im, spec, kernels="fast")
    assert "static TKWS_NOINLINE" in (spec / "model.c").read_text()
    assert len(gen.layers) == 12


@pytest.mark.slow
@pytest.mark.parametrize("kernels,loop_order", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("key", list(SMALL))
def test_small_models_bit_exact(key, kernels, loop_order, projects):
    im, x = _random_model(**SMALL[key])
    gen, out = projects(key, im, kernels, loop_order)
    _check_plan(im, gen.plan)
    assert np.array_equal(run_host(out, x), im.run(x).reshape(len(x), -1))


def test_unsupported_op_is_named(tmp_path, mlperf):
    im, _ = mlperf
    import copy

    im = copy.deepcopy(im)
    im.ops[9] = IntOp("pad", [im.ops[9].inputs[0]], im.ops[9].output, {"pad": (1, 1, 1, 1)})
    with pytest.raises(DeployError, match=r"op 'pad' \(layer 9, 'functional_1/average_pooling2d/AvgPool'\) cannot be emitted"):
        generate(im, tmp_path / "p")
    assert not (tmp_path / "p").exists(), "nothing written"


# ---------------------------------------------------------------- CLI

# `tinykws deploy` through the real entry point (errors -> one line, exit 2), registered here if
# the installed command table does not list it yet
_CLI = ("import sys; from tinykws.cli import main as m, deploy_cmds as d; "
        "'deploy' in [c.name for c in m.app.registered_commands] or d.register(m.app); sys.argv[0] = 'tinykws'; m.main()")


def _deploy(*args, ok=True):
    r = subprocess.run([sys.executable, "-c", _CLI, "deploy", *map(str, args)], capture_output=True, text=True,
                       timeout=900)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


@pytest.mark.slow
def test_cli_deploy_tflite_budgets_and_folders(tmp_path, shared_dir):
    tfl = shared_dir / "peers" / "mlperf_tiny_kws" / "kws_ref_model.tflite"
    out = tmp_path / "kws"
    d = last_json(_deploy(tfl, "--out", out, "--json"))
    assert d["bit_exact"] is True and d["arena_bytes"] == d["plan"]["arena_bytes"] > 8000 and d["macs"] == 2_656_768
    assert (out / ".tinykws").is_file() and (out / "Makefile").is_file() and (out / "README.md").is_file()
    assert d["flash_bytes"] > 20_000 and d["ram_bytes"] >= d["arena_bytes"]
    r = _deploy(tfl, "--out", out, ok=False)
    assert r.returncode == 2 and "not empty" in r.stderr and "--overwrite" in r.stderr
    r = _deploy(tfl, "--out", out, "--overwrite", "--kernels", "ref", "--loop-order", "weight", "--ram-kb", "4",
                "--check", "0", ok=False)
    assert r.returncode == 1 and "does not fit" in r.stderr and "--ram-kb 4" in r.stderr
    assert "memory plan" in r.stderr
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    r = _deploy(tfl, "--out", mine, "--overwrite", ok=False)
    assert r.returncode == 2 and "not a folder tinykws wrote" in r.stderr
    assert (mine / "notes.txt").read_text() == "keep me"


def test_cli_deploy_errors_are_one_line(tmp_path, shared_dir):
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    import flatbuffers

    src = shared_dir / "peers" / "mlperf_tiny_kws" / "kws_ref_model.tflite"
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(src.read_bytes(), 0))
    for code in m.operatorCodes:
        if max(code.builtinCode, code.deprecatedBuiltinCode) == fb.BuiltinOperator.SOFTMAX:
            code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.TANH
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    bad = tmp_path / "tanh.tflite"
    bad.write_bytes(bytes(b.Output()))
    r = _deploy(bad, "--out", tmp_path / "o", ok=False)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "unsupported TFLite ops TANH" in lines[0]
    r = _deploy(src, "--out", tmp_path / "o", "--kernels", "turbo", ok=False)
    assert r.returncode == 2 and "--kernels 'turbo'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _deploy(src, "--out", tmp_path / "o", "--kernels", "cmsis-nn", ok=False)
    assert r.returncode == 2 and "--cmsis-nn DIR" in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cli_deploy_cmsis_nn_back_end(tmp_path, shared_dir):
    tfl = shared_dir / "peers" / "mlperf_tiny_kws" / "kws_ref_model.tflite"
    d = last_json(_deploy(tfl, "--out", tmp_path / "c", "--kernels", "cmsis-nn", "--cmsis-nn",
                          shared_dir / "peers" / "cmsis-nn", "--check", "4", "--json"))
    assert d["bit_exact"] is True and d["kernels"] == "cmsis-nn" and d["flash_kernel_bytes"] > 0
