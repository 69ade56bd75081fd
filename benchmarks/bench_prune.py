"""Accuracy of pruned models: granularity x sparsity, each pruned on the gradual schedule with short
fine-tuning, then evaluated in float and as PTQ int8 (integer reference). Every run appends one JSON
line to OUT/runs.jsonl (a run already there is skipped) and saves its model as OUT/<method>_<s>.pt;
the last stdout line is one JSON object with every row; --markdown also prints the table of
docs/compression.md. Sparsity 0 is the dense model fine-tuned with the same recipe.

    nice -n 10 python benchmarks/bench_prune.py --data ../shared/data/speech_commands_mini \\
        --out runs/prune --methods unstructured,vector4,vector8,channel --sparsities 0,0.5,0.75,0.9 --markdown

Channel rows count their sparsity in MACs removed (`--target macs`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from tinykws.prune import PruneConfig, prune_model  # noqa: E402
from tinykws.recipes.quantize import load_int_model  # noqa: E402
from tinykws.train import load_model, save_bundle  # noqa: E402
from tinykws.train.evaluate import predict_logits, split_features  # noqa: E402


def run_one(args, method: str, s: float, log) -> dict:
    t0 = time.time()
    cfg = PruneConfig(method="unstructured" if s == 0 else method, sparsity=s, epochs=args.epochs, steps=args.steps,
                      lr=args.lr, target="macs" if method == "channel" and s > 0 else "weights", seed=args.seed,
                      augment=args.augment, scope=args.scope, round_to=args.round_to,
                      layers=args.layers.split(",") if args.layers and method != "channel" else [])
    bundle = prune_model(args.model, cfg, args.data, log=log)
    path = Path(args.out) / f"{method if s else 'dense'}_{s:g}.pt"
    save_bundle(bundle, path)
    net, _ = load_model(path)
    feats, y = split_features(args.data, "testing", bundle.labels, bundle.frontend)
    test = float((predict_logits(net, feats).argmax(1).numpy() == y).mean())
    int8 = None
    if args.int8:
        im = load_int_model(path, args.data)
        int8 = float((im.predict(feats.numpy()).argmax(1) == y).mean())
    m = bundle.metrics
    return {"model": args.model, "method": method if s else "dense", "sparsity": s, "zero_weights": m["sparsity"],
            "macs": m["macs"], "dense_macs": m["dense_macs"], "val_acc": m["val_acc"], "test_acc": test,
            "int8_test_acc": int8, "epochs": args.epochs, "steps": args.steps, "lr": args.lr, "augment": args.augment, "scope": args.scope, "round_to": args.round_to, "layers": args.layers,
            "seconds": round(time.time() - t0, 1), "file": str(path)}


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def table(rows: list[dict]) -> str:
    lines = ["| model | granularity | sparsity | zero weights | MACs | fine-tuning | val acc | test acc | int8 test acc |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["method"] != "dense", r["method"], r["sparsity"])):
        lines.append(f"| {r['model']} | {r['method']} | {100 * r['sparsity']:.0f}%{' of MACs' if r['method'] == 'channel' else ''} "
                     f"| {100 * r['zero_weights']:.1f}% | {r['macs']:,} ({100 * r['macs'] / r['dense_macs']:.0f}%) "
                     f"| {r['epochs']} ep, lr {r['lr']:g}, {r.get('scope', 'layer')}, {r.get('augment', 'model')} aug"
                     f"{', channels x' + str(r.get('round_to', 1)) if r['method'] == 'channel' else ''} "
                     f"| {100 * r['val_acc']:.2f}% | {100 * r['test_acc']:.2f}% | {_pct(r.get('int8_test_acc'))} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="dscnn-kws")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--methods", default="unstructured,vector4,vector8,channel")
    ap.add_argument("--sparsities", default="0,0.5,0.75,0.9")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--round-to", type=int, default=4, help="channel: channel counts multiples of this")
    ap.add_argument("--layers", default="", help="mask methods: comma-separated layers (default: the library's)")
    ap.add_argument("--scope", default="layer", help="layer | global")
    ap.add_argument("--augment", default="model", help="model | spec (SpecAugment alone: faster)")
    ap.add_argument("--int8", action="store_true", help="also the PTQ int8 test accuracy (integer reference)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = out / "runs.jsonl"
    done = [json.loads(line) for line in runs.read_text().splitlines()] if runs.exists() else []
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    for s in [float(v) for v in args.sparsities.split(",")]:
        for method in (["dense"] if s == 0 else args.methods.split(",")):
            key = (args.model, "dense" if s == 0 else method, s, args.epochs, args.steps, args.lr, args.augment, args.scope,
                   args.round_to, args.layers)
            if any((r["model"], r["method"], r["sparsity"], r["epochs"], r["steps"], r["lr"], r.get("augment", "model"),
                    r.get("scope", "layer"), r.get("round_to", 1), r.get("layers", "")) == key for r in done):
                continue
            row = run_one(args, method, s, log)
            done.append(row)
            with runs.open("a") as f:
                f.write(json.dumps(row) + "\n")
            log(json.dumps(row))
    rows = [r for r in done if (r["epochs"], r["steps"], r["lr"], r.get("augment", "model"), r.get("scope", "layer"),
                                r.get("round_to", 1)) == (args.epochs, args.steps, args.lr, args.augment, args.scope,
                                                          args.round_to)]
    if args.markdown:
        print(table(rows))
    print(json.dumps({"rows": rows, "mean_seconds": float(np.mean([r["seconds"] for r in rows])) if rows else 0}))


if __name__ == "__main__":
    main()
