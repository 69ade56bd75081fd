"""ONNX export of a float model, or of a quantized one in QDQ form (QuantizeLinear/DequantizeLinear
around every quantized tensor, int8 per-channel weights), with torch's TorchScript-based exporter
(it maps torch.fake_quantize_* to QDQ pairs; the torch.export-based one needs onnxscript).

run_onnx keeps onnxruntime from fusing QDQ pairs into its integer kernels (QLinearConv): measured
with onnxruntime 1.32 on an x86 CPU with AVX2 and no VNNI, the fused stem conv of the int8 DS-CNN is
wrong (38% of its outputs differ, the model then predicts one class), likely the saturating int16
pair products of that kernel path with the full int8 weight range. The graph itself is exact QDQ;
unfused, onnxruntime runs it in float as the fake-quantized model does (99% top-1 agreement). Other
runtimes that fuse QDQ into integer kernels may need the same setting."""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from .fake import ActQuant, WeightQuant
from .graph import QuantizationError, leaf_kind

OPSET = 17


@contextlib.contextmanager
def _export_mode(model: nn.Module):
    qs = [m for m in model.modules() if isinstance(m, (ActQuant, WeightQuant))]
    for q in qs:
        q.export_mode = True
    try:
        yield
    finally:
        for q in qs:
            q.export_mode = False


def export_onnx(model: nn.Module, path: str | Path, opset: int = OPSET) -> Path:
    """Write `model` (float, or quantized by quantize_: then QDQ) as ONNX with a dynamic batch.
    Input "features" (B, *model.input_shape), output "logits" (B, classes)."""
    for name, m in model.named_modules():
        if not any(True for _ in m.children()) and leaf_kind(m) is None and not isinstance(m, (ActQuant, WeightQuant)):
            if any(True for _ in m.parameters(recurse=False)):
                raise QuantizationError(f"layer {name!r} ({type(m).__name__}) cannot be exported to ONNX by tinykws")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was = model.training
    model.eval()
    example = torch.zeros(1, *model.input_shape)
    try:
        with _export_mode(model), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=["features"], output_names=["logits"],
                              dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}})
    except QuantizationError:
        raise
    except Exception as exc:  # the exporter's own errors name the op it could not handle
        msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise QuantizationError(f"ONNX export of {type(model).__name__} failed: {msg}") from None
    finally:
        model.train(was)
    return path


def run_onnx(path: str | Path, feats):
    """Outputs of an exported model under onnxruntime."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.disable_quant_qdq", "1")  # see the module doc
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"features": np.asarray(feats, dtype=np.float32)})[0]
