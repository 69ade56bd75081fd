"""Integer inference against TFLite Micro: the MLPerf reference model imported bit-exactly, the
shipped model quantized, exported and run by the interpreter, ONNX export, the CLI."""
import numpy as np
import pytest
import torch

from tinykws.audio import get_preset
from tinykws.train import evaluate_tflite
from tinykws.quant import (QuantizationError, export_onnx, read_tflite, run_onnx, tflm_run,
                           to_integer, to_tflite_bytes)
from tinykws.recipes.quantize import accuracy, int8_summary, quantize_model, split_features
from tinykws.train import load_model

from cli_helpers import last_json, run

MLPERF_LABELS = ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "_silence_", "_unknown_"]


class _Labels:  # what split_features needs of a bundle
    def __init__(self, labels, frontend):
        self.labels, self.frontend = labels, frontend


@pytest.fixture(scope="module")
def mlperf_path(shared_dir):
    return shared_dir / "peers" / "mlperf_tiny_kws" / "kws_ref_model.tflite"


@pytest.fixture(scope="module")
def shipped_ptq(mini_dir):
    """The shipped DS-CNN after PTQ-8 (400 calibration clips), its integer model and test features."""
    bundle = quantize_model("dscnn-kws", "ptq8", mini_dir, log=lambda *a: None)
    net = bundle.build()
    im = to_integer(net, meta={"labels": bundle.labels, "frontend": bundle.frontend.to_dict()})
    test = split_features(bundle, mini_dir, "testing")
    return bundle, net, im, test


def test_mlperf_reference_is_reproduced_bit_exactly(mlperf_path, mini_dir):
    """Our integer reference reproduces TFLite Micro on the MLPerf Tiny int8 model: logits and
    softmax outputs, every clip of the mini testing list."""
    im = read_tflite(mlperf_path)
    assert [op.kind for op in im.ops] == ["conv"] + ["depthwise", "conv"] * 4 + ["avgpool", "reshape", "fc", "softmax"]
    feats, labels = split_features(_Labels(MLPERF_LABELS, get_preset("mlperf")), mini_dir, "testing")
    x = im.quantize_input(feats.numpy())
    assert im.tensors[im.input].zp == 83
    ours, tensors = im.run(x, keep=True)
    theirs = tflm_run(mlperf_path, x)
    assert len(x) > 600 and np.array_equal(ours, theirs)
    assert (ours.argmax(1) == labels).mean() > 0.88  # about 92% (README of the peer model)
    # int8 logits (the FULLY_CONNECTED output) too, read from the interpreter's preserved tensors
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(mlperf_path.read_bytes(),
                                        intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    fc = next(op for op in im.ops if op.kind == "fc").output
    for i in range(0, len(x), 37):
        it.set_input(x[i : i + 1], 0)
        it.invoke()
        assert np.array_equal(np.array(it.GetTensor(fc, 0)["tensor_data"]).reshape(-1), tensors[fc][i])


def test_shipped_model_ptq8_integer_and_tflm_agree(shipped_ptq, tmp_path, mini_dir):
    bundle, net, im, (feats, labels) = shipped_ptq
    with torch.no_grad():
        fake = net(feats).argmax(1).numpy()
    ref = im.predict(feats.numpy())
    assert (ref.argmax(1) == fake).mean() >= 0.995, "integer reference == fake-quantized model"
    float_net, _ = load_model("dscnn-kws")
    assert accuracy(net, feats, labels) >= accuracy(float_net, feats, labels) - 0.01, "PTQ-8 within 1 point"
    path = tmp_path / "kws.tflite"
    path.write_bytes(to_tflite_bytes(im))
    tflm = tflm_run(path, im.quantize_input(feats.numpy()))
    assert np.array_equal(tflm, ref), "TFLite Micro runs the exported model bit-exactly"
    back = read_tflite(path)
    assert back.meta["labels"] == bundle.labels and np.array_equal(back.predict(feats.numpy()), ref)
    res = evaluate_tflite(path, mini_dir)
    assert res.n == len(labels) and abs(res.accuracy - (ref.argmax(1) == labels).mean()) < 1e-9


def test_onnx_float_and_qdq(shipped_ptq, tmp_path):
    import onnx

    bundle, net, im, (feats, labels) = shipped_ptq
    x = feats[:200]
    float_net, _ = load_model("dscnn-kws")
    export_onnx(float_net, tmp_path / "f.onnx")
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(tmp_path / "f.onnx", x), float_net(x).numpy(), atol=1e-4)
    export_onnx(net, tmp_path / "q.onnx")
    ops = {n.op_type for n in onnx.load(tmp_path / "q.onnx").graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    with torch.no_grad():
        fake = net(x).argmax(1).numpy()
    assert (run_onnx(tmp_path / "q.onnx", x).argmax(1) == fake).mean() >= 0.97  # ONNX rounds half to even


def test_tflite_import_errors(shared_dir, tmp_path, mlperf_path):
    with pytest.raises(QuantizationError, match="FLOAT32"):  # the hybrid float model
        read_tflite(shared_dir / "peers" / "mlperf_tiny_kws" / "kws_ref_model_float32.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(QuantizationError, match="junk.tflite: not a readable .tflite"):
        read_tflite(junk)
    # the same model with its SOFTMAX swapped for TANH: named in the error
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    import flatbuffers

    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(mlperf_path.read_bytes(), 0))
    for code in m.operatorCodes:
        if max(code.builtinCode, code.deprecatedBuiltinCode) == fb.BuiltinOperator.SOFTMAX:
            code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.TANH
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    with pytest.raises(QuantizationError, match="unsupported TFLite ops TANH"):
        read_tflite(bytes(b.Output()))


# ---------------------------------------------------------------- CLI



def test_cli_quantize_export_eval(tiny_dataset, tmp_path, mini_dir):
    q = tmp_path / "qat2.pt"
    d = last_json(run("quantize", "--method", "qat2", "--data", tiny_dataset, "--epochs", "1", "--out", q, "--json"))
    assert d["weight_bits"] == 2 and q.is_file()
    net, bundle = load_model(q)
    assert bundle.quant["method"] == "qat" and bundle.quant["weight_bits"] == 2
    d = last_json(run("export", "--model", q, "--format", "tflite", "--out", tmp_path / "qat2.tflite", "--json"))
    assert d["bytes"] > 10_000 and d["quantized"] is True
    d = last_json(run("eval", "--model", q, "--data", tiny_dataset, "--json"))
    assert 0 <= d["accuracy"] <= 1 and d["n"] > 0
    d = last_json(run("export", "--format", "onnx", "--out", tmp_path / "f.onnx", "--json"))  # the shipped model
    assert d["quantized"] is False and (tmp_path / "f.onnx").stat().st_size > 50_000


def test_cli_quantize_report(tiny_dataset, tmp_path):
    from tinykws.recipes.quantize import quant_report

    rep = quant_report("dscnn-kws", tiny_dataset, methods=("ptq8", "qat4"), epochs=1, log=lambda *a: None)
    assert [r["method"] for r in rep["rows"]] == ["float", "ptq8", "qat4"]
    rows = {r["method"]: r for r in rep["rows"]}
    assert rows["ptq8"]["weight_bits"] == 8 and rows["qat4"]["weight_bits"] == 4
    assert rows["qat4"]["weight_kb"] == pytest.approx(rows["ptq8"]["weight_kb"] / 2)
    assert rows["float"]["weight_kb"] > 4 * rows["ptq8"]["weight_kb"] - 1
    assert "| qat4 |" in rep["table"] and rows["ptq8"]["int_agreement"] >= 0.99


def test_cli_errors_are_clear(tmp_path):
    r = run("quantize", "--method", "qat9", "--out", tmp_path / "x.pt", ok=False)
    assert r.returncode == 2 and "between 2 and 8" in r.stderr and "Traceback" not in r.stderr
    r = run("quantize", "--method", "ptq8", "--data", tmp_path / "nowhere", "--out", tmp_path / "x.pt", ok=False)
    assert r.returncode == 2 and "calibration needs data" in r.stderr and "Traceback" not in r.stderr
    r = run("export", "--format", "tflite", "--model", "dscnn-kws", "--data", tmp_path, "--out", tmp_path / "x.tflite", ok=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_int8_summary_for_the_main_job(tiny_dataset):
    s = int8_summary("dscnn-kws", tiny_dataset)
    assert 0 <= s["test_accuracy"] <= 1 and s["n_test"] > 0
    assert s["weight_bytes"] == 22_016 and s["bias_bytes"] == 4 * 588 and s["tflite_bytes"] > s["weight_bytes"]
