"""Reduced architecture search on the real mini data set; prints one JSON object (time and result).

    python benchmarks/bench_nas.py [--data DIR] [--out DIR] [--epochs 20] [--warmup 5] [--threads 2]

The reduced search: the full 12-layer MFCC space (MBConv k 3/5/7, e 1..6, or skip), width 0.75,
paper10 features, 20 epochs (5 of them weight warm-up), 8-bit weights, MAC target 2.5 M, beta 2.
It must finish in under 30 minutes on 2 CPU cores. Only the search is timed (the derived model is
not trained here; `tinykws train --model mbnet --arch ...` does that).
"""
import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from tinykws.nas.search import SearchConfig, search

p = argparse.ArgumentParser()
p.add_argument("--data", default=os.environ.get("TINYKWS_DATA", Path(__file__).resolve().parents[2] / "shared/data/speech_commands_mini"))
p.add_argument("--out", default="runs/bench_nas")
p.add_argument("--space", default="mfcc")
p.add_argument("--frontend", default="")
p.add_argument("--width", type=float, default=0.75)
p.add_argument("--epochs", type=int, default=20)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--target", type=float, default=2.5e6)
p.add_argument("--beta", type=float, default=2.0)
p.add_argument("--arch-lr", type=float, default=0.03)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()

torch.set_num_threads(a.threads)
cfg = SearchConfig(data=str(a.data), out=a.out, space=a.space, frontend=a.frontend, width=a.width,
                   epochs=a.epochs, warmup_epochs=a.warmup, target=a.target, beta=a.beta, arch_lr=a.arch_lr,
                   seed=a.seed)
t = time.perf_counter()
res = search(cfg, overwrite=True, progress=False, log=lambda s: print(s, flush=True))
seconds = time.perf_counter() - t
print(json.dumps({"benchmark": "nas_search", "space": a.space, "frontend": cfg.frontend_preset, "width": a.width,
                  "epochs": a.epochs, "warmup_epochs": a.warmup, "target_macs": a.target, "beta": a.beta,
                  "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
                  "seconds": round(seconds, 1), "under_30_min": seconds < 1800, "arch": res.arch,
                  "macs": res.cost["macs"], "params": res.cost["params"], "weight_bytes": res.cost["weight_bytes"],
                  "expected_macs": round(res.expected_cost), "final_val_acc_derived": res.history[-1]["val_acc_derived"]}))
