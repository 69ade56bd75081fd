"""Quantized inference throughput on the MLPerf Tiny KWS int8 model and the shipped DS-CNN after
PTQ-8; prints one JSON object.

    python benchmarks/bench_quant.py [--clips 256] [--threads 1]

integer_ref_clips_per_s: tinykws's numpy integer reference (batched); tflm_clips_per_s: the
TFLite Micro interpreter (one clip per invoke, reference kernels on the host CPU);
fake_quant_clips_per_s: the fake-quantized torch model; qat_step_ms: one QAT training step
(batch 100, 4-bit); convert_s: quantize_ + to_integer + .tflite serialization.
"""
import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from tinykws.quant import PTQConfig, QATConfig, quantize_, read_tflite, tflm_run, to_integer, to_tflite_bytes
from tinykws.train import load_model

SHARED = Path(os.environ.get("TINYKWS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
p = argparse.ArgumentParser()
p.add_argument("--clips", type=int, default=256)
p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)

rng = np.random.default_rng(0)
mlperf = SHARED / "peers/mlperf_tiny_kws/kws_ref_model.tflite"
im = read_tflite(mlperf)
x = rng.integers(-128, 128, (a.clips, 49, 10, 1)).astype(np.int8)


def rate(fn, n):
    fn()  # warm up
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


out = {"clips": a.clips, "torch_threads": torch.get_num_threads()}
out["mlperf_integer_ref_clips_per_s"] = round(rate(lambda: im.run(x), a.clips), 1)
n_tflm = min(a.clips, 64)
out["mlperf_tflm_clips_per_s"] = round(rate(lambda: tflm_run(mlperf, x[:n_tflm]), n_tflm), 1)
out["mlperf_bit_exact"] = bool(np.array_equal(im.run(x[:n_tflm]), tflm_run(mlperf, x[:n_tflm])))

model, _ = load_model("dscnn-kws")
feats = torch.randn(a.clips, 49, 10) * 5
t = time.perf_counter()
quantize_(model, PTQConfig(), calib=feats)
ours = to_integer(model)
blob = to_tflite_bytes(ours)
out["convert_s"] = round(time.perf_counter() - t, 2)
out["tflite_bytes"] = len(blob)
with torch.no_grad():
    out["fake_quant_clips_per_s"] = round(rate(lambda: model(feats), a.clips), 1)
out["integer_ref_clips_per_s"] = round(rate(lambda: ours.predict(feats.numpy()), a.clips), 1)
out["tflm_clips_per_s"] = round(rate(lambda: tflm_run(blob, ours.quantize_input(feats[:n_tflm].numpy())), n_tflm), 1)

qat, _ = load_model("dscnn-kws")
quantize_(qat, QATConfig(weight_bits=4), calib=feats)
opt = torch.optim.AdamW(qat.parameters(), lr=1e-4)
xb, yb = feats[:100], torch.randint(0, 12, (100,))
qat.train()


def step():
    loss = torch.nn.functional.cross_entropy(qat(xb), yb)
    opt.zero_grad()
    loss.backward()
    opt.step()


step()
t = time.perf_counter()
for _ in range(10):
    step()
out["qat_step_ms"] = round((time.perf_counter() - t) / 10 * 1000, 1)
print(json.dumps(out))
