"""The compression study: what pruning and bit-width buy on the emulated Cortex-M7.

For each model and each (granularity, sparsity) the model is pruned on the gradual schedule and
fine-tuned (tinykws.prune.prune_model; a file already in OUT is reused), quantized int8 (PTQ), its
testing-list accuracy taken from the integer reference (bit-exact with TFLite Micro), and the C code
generated for every kernel configuration asked for (dense SIMD, sparse kernels, each in both loop
orders, with and without the DSP extension) is built -O2 and run on the emulated Cortex-M7 on one
testing clip: instructions per inference, flash (weights + kernel code), RAM (arena + stack +
static), each run checked bit-exact against the integer reference. Quantized model files
(`--quant-files`, e.g. QAT-4 / QAT-2 / learned bit-widths) are measured the same way, with packed
sub-byte weights where the generator supports them. CMSIS-NN runs the dense model for reference.

Every measurement appends one JSON line to OUT/study.jsonl (a line already there is not measured
again: the study resumes); the last stdout line is one JSON object with every row; --markdown
prints the tables of docs/compression.md; --plots DIR writes accuracy against instructions and
against flash.

    nice -n 10 python benchmarks/bench_compress.py --data ../shared/data/speech_commands_mini \\
        --out runs/compress --models dscnn-kws,nas-kws --methods unstructured,vector4,vector8,channel \\
        --sparsities 0.5,0.75,0.9 --cmsis-nn ../shared/peers/cmsis-nn --plots docs --markdown
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinykws.deploy.codegen import generate  # noqa: E402
from tinykws.deploy.mcu import build_m7, clip_inputs, run_m7  # noqa: E402
from tinykws.prune import PruneConfig, prune_model  # noqa: E402
from tinykws.recipes.quantize import load_int_model  # noqa: E402
from tinykws.train import load_model, save_bundle  # noqa: E402
from tinykws.train.evaluate import split_features  # noqa: E402

# (name, kernels, loop order, dsp, sparse): the kernel configurations of the study
CONFIGS = {
    "dense": ("fast", "input", True, "off"),
    "dense-wo": ("fast", "weight", True, "off"),
    "dense-nodsp": ("fast", "input", False, "off"),
    "sparse": ("fast", "input", True, "on"),
    "sparse-wo": ("fast", "weight", True, "on"),
    "sparse-nodsp": ("fast", "input", False, "on"),
    "auto": ("fast", "input", True, "auto"),
    "ref": ("ref", "input", True, "off"),
}
DEFAULT_CONFIGS = "dense,dense-wo,dense-nodsp,sparse,sparse-wo,sparse-nodsp,auto"
GEN_KW = set(inspect.signature(generate).parameters)


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def int8_accuracy(path, data) -> tuple[object, float]:
    """The PTQ int8 (or the file's own quantization) integer model and its testing-list accuracy."""
    im = load_int_model(path, data)
    _, bundle = load_model(path) if not str(path).endswith(".tflite") else (None, None)
    feats, y = split_features(data, "testing", bundle.labels, bundle.frontend)
    return im, float((im.predict(np.asarray(feats)).argmax(1) == np.asarray(y)).mean())


def measure(im, config: str, x: np.ndarray, cmsis_dir: str | None = None, pack: str | None = None) -> dict:
    """Generate, build -O2, run on the emulated M7: instructions, flash, RAM, kernels, bit-exactness."""
    with tempfile.TemporaryDirectory(prefix="tkws_study_") as tmp:
        proj = Path(tmp) / "p"
        if config == "cmsis-nn":
            from tinykws.deploy.cmsis import generate_cmsis

            layers, dsp = generate_cmsis(im, proj, cmsis_dir).layers, True
        else:
            kernels, loop_order, dsp, sparse = CONFIGS[config]
            kw = {"sparse": sparse}
            if pack and "pack_weights" in GEN_KW:
                kw["pack_weights"] = pack
            layers = generate(im, proj, kernels=kernels, loop_order=loop_order, **kw).layers
        r = run_m7(build_m7(proj, opt="O2", dsp=dsp), x)
    ref = im.run(x).reshape(len(x), -1)
    kinds: dict[str, int] = {}
    for l in layers:
        kinds[l.get("kernel", "?")] = kinds.get(l.get("kernel", "?"), 0) + 1
    return {"config": config, "instructions": r.instructions, "flash_bytes": r.flash_bytes,
            "flash_model_bytes": r.flash.get("model"), "flash_kernel_bytes": r.flash.get("kernels"),
            "ram_bytes": r.ram_bytes, "arena_bytes": r.ram.get("arena"), "stack_bytes": r.stack_bytes,
            "bit_exact": bool((r.outputs == ref).all() and not any(r.status)), "kernels": kinds}


def prune_file(args, model: str, method: str, s: float) -> Path:
    out = Path(args.out) / model / f"{method}_{s:g}.pt"
    if out.exists():
        return out
    cfg = PruneConfig(method=method, sparsity=s, epochs=args.epochs, steps=args.steps, lr=args.lr, seed=args.seed,
                      target="macs" if method == "channel" else "weights", augment=args.augment,
                      round_to=args.round_to)
    log(f"{model}: pruning {method} {s:g} ({args.epochs} epochs)")
    save_bundle(prune_model(model, cfg, args.data, log=log), out)
    return out


def zero_fraction(path) -> tuple[float, int]:
    """(fraction of zero conv/linear weights, MACs) of a model file or shipped name."""
    from tinykws.models import count_cost
    from tinykws.prune import sparsity_stats

    net, _ = load_model(path)
    return float(sparsity_stats(net)["sparsity"]), int(count_cost(net).macs)


def study(args) -> list[dict]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jl = out / "study.jsonl"
    rows = [json.loads(line) for line in jl.read_text().splitlines() if line.strip()] if jl.exists() else []
    have = {(r["model"], r["method"], r["sparsity"], r["config"]) for r in rows}
    configs = args.configs.split(",")
    for c in configs:
        if c not in CONFIGS:
            raise SystemExit(f"--configs: unknown {c!r}; use {', '.join(CONFIGS)}")
    jobs = []
    for model in filter(None, args.models.split(",")):
        jobs.append((model, "dense", 0.0, lambda m=model: m))
        for method in args.methods.split(","):
            for s in (float(v) for v in args.sparsities.split(",")):
                jobs.append((model, method, s, lambda m=model, me=method, s=s: prune_file(args, m, me, s)))
    for qf in filter(None, args.quant_files.split(",")):
        jobs.append((args.quant_model, f"bits:{Path(qf).stem}", 0.0, lambda q=qf: q))
    for model, method, s, get in jobs:
        todo = [c for c in configs + (["cmsis-nn"] if args.cmsis_nn and method == "dense" else [])
                if (model, method, s, c) not in have]
        if method == "channel":
            todo = [c for c in todo if not c.startswith("sparse") and c != "auto"]  # a channel-pruned model is dense
        if not todo:
            continue
        src = get()
        im, acc = int8_accuracy(src, args.data)
        zeros, macs = zero_fraction(src)
        x = clip_inputs(im, args.data, n=1)
        for c in todo:
            t = time.time()
            try:
                m = measure(im, c, x, args.cmsis_nn, pack="auto" if method.startswith("bits:") else None)
            except Exception as exc:  # one failing configuration must not hide the others
                m = {"config": c, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
            row = {"model": model, "method": method, "sparsity": s, "zero_weights": zeros, "macs": macs,
                   "int8_test_acc": acc, "file": str(src), **m, "seconds": round(time.time() - t, 1)}
            rows.append(row)
            with jl.open("a") as f:
                f.write(json.dumps(row) + "\n")
            log(json.dumps({k: row.get(k) for k in ("model", "method", "sparsity", "config", "instructions",
                                                     "flash_bytes", "bit_exact", "int8_test_acc", "error")}))
    return rows


def best_rows(rows: list[dict]) -> list[dict]:
    """Per model file, the configuration with the fewest instructions (the deployable choice)."""
    best: dict = {}
    for r in rows:
        if "error" in r or r["config"] == "cmsis-nn" or not r.get("bit_exact"):
            continue
        k = (r["model"], r["method"], r["sparsity"])
        if k not in best or r["instructions"] < best[k]["instructions"]:
            best[k] = r
    return list(best.values())


def markdown(rows: list[dict]) -> str:
    dense = {r["model"]: r for r in rows if r["method"] == "dense" and r["config"] == "dense" and "error" not in r}
    configs = [c for c in [*CONFIGS, "cmsis-nn"] if any(r["config"] == c for r in rows)]
    head = ("| model | granularity | sparsity | zero weights | int8 test acc | "
            + " | ".join(f"{c} instr" for c in configs) + " | best vs dense | flash (best) | RAM (best) |")
    out = [head, "|" + "---|" * (8 + len(configs))]
    keys = sorted({(r["model"], r["method"], r["sparsity"]) for r in rows},
                  key=lambda k: (k[0], k[1] != "dense", k[1], k[2]))
    best = {(r["model"], r["method"], r["sparsity"]): r for r in best_rows(rows)}
    for k in keys:
        group = {r["config"]: r for r in rows if (r["model"], r["method"], r["sparsity"]) == k}
        any_r = next(iter(group.values()))
        cells = []
        for c in configs:
            r = group.get(c)
            cells.append("-" if r is None else r.get("error", "error")[:40] if "error" in r
                         else f"{r['instructions']:,}{'' if r['bit_exact'] else ' (NOT bit-exact)'}")
        b, d = best.get(k), dense.get(k[0])
        ratio = f"{d['instructions'] / b['instructions']:.2f}x" if b and d else "-"
        tail = f" | {ratio} | {b['flash_bytes']:,} B | {b['ram_bytes']:,} B |" if b else " | - | - | - |"
        sp = f"{100 * k[2]:.0f}%{' of MACs' if k[1] == 'channel' else ''}" if not k[1].startswith("bits:") else "-"
        out.append(f"| {k[0]} | {k[1]} | {sp} | {100 * any_r.get('zero_weights', 0):.1f}% | "
                   f"{100 * any_r['int8_test_acc']:.2f}% | " + " | ".join(cells) + tail)
    return "\n".join(out)


def plots(rows: list[dict], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = best_rows(rows)
    files = []
    for model in sorted({r["model"] for r in best}):
        mine = [r for r in best if r["model"] == model]
        cm = next((r for r in rows if r["model"] == model and r["config"] == "cmsis-nn" and "error" not in r), None)
        for xkey, xlabel, tag in (("instructions", "instructions per inference (emulated Cortex-M7)", "instr"),
                                  ("flash_bytes", "flash (weights + kernels), bytes", "flash")):
            fig, ax = plt.subplots(figsize=(6.4, 4.4))
            for method in sorted({r["method"] for r in mine} - {"dense"}):
                pts = sorted((r for r in mine if r["method"] == method), key=lambda r: r["sparsity"])
                ax.plot([r[xkey] for r in pts], [100 * r["int8_test_acc"] for r in pts], "o-" if
                        not method.startswith("bits:") else "s", label=method)
                for r in pts:
                    if not method.startswith("bits:"):
                        ax.annotate(f"{100 * r['sparsity']:.0f}%", (r[xkey], 100 * r["int8_test_acc"]), fontsize=7,
                                    textcoords="offset points", xytext=(3, 3))
            d = next((r for r in mine if r["method"] == "dense"), None)
            if d:
                ax.plot([d[xkey]], [100 * d["int8_test_acc"]], "k*", ms=14, label="dense int8")
            if cm:
                ax.plot([cm[xkey]], [100 * cm["int8_test_acc"]], "rX", ms=11, label="dense int8, CMSIS-NN")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("int8 test accuracy (%), mini testing list")
            ax.set_title(f"{model}: accuracy against {'instructions' if tag == 'instr' else 'flash'}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            p = out_dir / f"compress_{model}_{tag}.png"
            fig.savefig(p, dpi=110)
            plt.close(fig)
            files.append(str(p))
    return files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="Speech Commands folder (calibration, fine-tuning, testing list)")
    ap.add_argument("--out", required=True, help="folder of the pruned models and study.jsonl")
    ap.add_argument("--models", default="dscnn-kws,nas-kws")
    ap.add_argument("--methods", default="unstructured,vector4,vector8,channel")
    ap.add_argument("--sparsities", default="0.5,0.75,0.9")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"of {', '.join(CONFIGS)}")
    ap.add_argument("--quant-files", default="", help="comma-separated quantized model files (bit-width rows)")
    ap.add_argument("--quant-model", default="dscnn-kws", help="the model the --quant-files were quantized from (their rows' label)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--round-to", type=int, default=4)
    ap.add_argument("--augment", default="spec", help="model | spec (fine-tuning augmentation)")
    ap.add_argument("--cmsis-nn", default=None, help="CMSIS-NN source folder: the dense model through CMSIS-NN too")
    ap.add_argument("--plots", default=None, help="folder for the accuracy-against-cost plots")
    ap.add_argument("--markdown", action="store_true", help="also print the table (stderr)")
    a = ap.parse_args(argv)
    t0 = time.time()
    rows = study(a)
    files = plots(rows, Path(a.plots)) if a.plots else []
    if a.markdown:
        log(markdown(rows))
    print(json.dumps({"benchmark": "compress", "seconds": round(time.time() - t0, 1), "plots": files, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
