"""Training and evaluation throughput on the real mini data set; prints one JSON object.

    python benchmarks/bench_train.py [--data DIR] [--model dscnn_mlperf] [--steps 30] [--threads 2] [--device auto]

A training step is what `tinykws train` does per batch: waveform augmentation (shift, speed, noise),
MFCC, forward, backward and an AdamW step, with the trainer's own model layout and optimizer, on
the chosen device (augmentation and MFCC included).
"""
import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tinykws.audio import build_frontend, get_preset
from tinykws.data import AugmentConfig, WaveAugment
from tinykws.models import create_model
from tinykws.checks import resolve_device
from tinykws.train import TrainConfig, load_train_data
from tinykws.train.trainer import make_optimizer, prepare_model

p = argparse.ArgumentParser()
p.add_argument("--data", default=os.environ.get("TINYKWS_DATA", Path(__file__).resolve().parents[2] / "shared/data/speech_commands_mini"))
p.add_argument("--model", default="dscnn_mlperf")
p.add_argument("--steps", type=int, default=30)
p.add_argument("--batch-size", type=int, default=100)
p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
dev = resolve_device(a.device)

data = load_train_data(TrainConfig(data=str(a.data)), progress=False)
fe_cfg = get_preset("mlperf")
fe = build_frontend(fe_cfg).to(dev)
model = prepare_model(create_model(a.model, num_classes=len(data.labels), input_shape=fe_cfg.feature_shape), dev)
opt = make_optimizer(model.parameters(), TrainConfig(lr=1e-3, weight_decay=0.01))  # AdamW's default decay
aug = WaveAugment(AugmentConfig(), data.background)
g = torch.Generator().manual_seed(0)
rng = np.random.default_rng(0)

def step():
    bi = rng.integers(0, len(data.train), a.batch_size)
    with torch.no_grad():
        f = fe(aug(torch.from_numpy(data.train.waves(bi)).to(dev), g))
    loss = F.cross_entropy(model(f), torch.from_numpy(data.train.labels[bi]).to(dev))
    opt.zero_grad()
    loss.backward()
    opt.step()

def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)

model.train()
for _ in range(3):
    step()
t, c = time.perf_counter(), time.process_time()
for _ in range(a.steps):
    step()
sync()
train_sps = a.steps * a.batch_size / (time.perf_counter() - t)
# CPU seconds of this process (all its threads): steadier than wall time when other jobs share the cores
train_cpu = a.steps * a.batch_size / (time.process_time() - c)

model.eval()
waves = torch.from_numpy(data.val.waves()).to(dev)
with torch.no_grad():
    model(fe(waves[:64]))
    sync()
    t = time.perf_counter()
    for _ in range(5):
        model(fe(waves))
    sync()
    eval_cps = 5 * len(waves) / (time.perf_counter() - t)

print(json.dumps({"benchmark": "train_eval", "model": a.model, "device": str(dev), "threads": torch.get_num_threads(),
                  "batch_size": a.batch_size, "train_samples_per_s": round(train_sps, 1), "train_samples_per_cpu_s": round(train_cpu, 1),
                  "eval_clips_per_s": round(eval_cps, 1), "eval_includes": "MFCC + model, batched",
                  "load_avg_1min": os.getloadavg()[0]}))
