"""CPU milliseconds per part of a training step (the step of bench_train.py); prints one JSON object.

    python benchmarks/bench_train_parts.py [--data DIR] [--threads 2] [--steps 20]

Times are CPU seconds of this process (time.process_time, all its threads), which stay comparable
when other jobs share the cores; `samples_per_cpu_s` is the step's throughput by that clock. On a
checkout without the trainer's model layout and fused optimizer (before commit a2201b3) it times
the plain model and torch's default AdamW, so the same script measures before and after.
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
from tinykws.train import TrainConfig, load_train_data

p = argparse.ArgumentParser()
p.add_argument("--data", default=os.environ.get("TINYKWS_DATA", Path(__file__).resolve().parents[2] / "shared/data/speech_commands_mini"))
p.add_argument("--threads", type=int, default=2)
p.add_argument("--steps", type=int, default=20)
a = p.parse_args()
torch.set_num_threads(a.threads)
data = load_train_data(TrainConfig(data=str(a.data)), progress=False)
fe = build_frontend(get_preset("mlperf"))
model = create_model("dscnn_mlperf", num_classes=len(data.labels), input_shape=(49, 10))
try:
    from tinykws.train.trainer import make_optimizer, prepare_model

    model = prepare_model(model, torch.device("cpu"))
    opt = make_optimizer(model.parameters(), TrainConfig(lr=1e-3, weight_decay=0.01))
    version = "trainer layout and optimizer"
except ImportError:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    version = "plain model, default AdamW"
aug = WaveAugment(AugmentConfig(), data.background)
g, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
parts: dict = {}


def tick(name, t0):
    parts[name] = parts.get(name, 0.0) + time.process_time() - t0
    return time.process_time()


model.train()
for it in range(a.steps + 3):
    if it == 3:
        parts.clear()
    t = time.process_time()
    bi = rng.integers(0, len(data.train), 100)
    w = torch.from_numpy(data.train.waves(bi))
    t = tick("read", t)
    x = aug(w, g)
    t = tick("augment", t)
    with torch.no_grad():
        f = fe(x)
    t = tick("mfcc", t)
    loss = F.cross_entropy(model(f), torch.from_numpy(data.train.labels[bi]))
    t = tick("forward", t)
    opt.zero_grad()
    loss.backward()
    t = tick("backward", t)
    opt.step()
    tick("optimizer", t)
total = sum(parts.values())
print(json.dumps({"benchmark": "train_step_parts", "version": version, "threads": a.threads,
                  "cpu_ms_per_step": {k: round(v / a.steps * 1000, 1) for k, v in parts.items()},
                  "samples_per_cpu_s": round(a.steps * 100 / total, 1), "load_avg_1min": os.getloadavg()[0]}))
