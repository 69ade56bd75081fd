"""Results table and Pareto plot of searched models, with the DS-CNN baselines and the MLPerf reference.

A row is a dict with at least ``test_acc`` (or ``val_acc``), ``macs``, ``params``, ``weight_bytes``
(as :func:`tinykws.nas.search.run_trial` writes them); baseline rows add ``baseline: True``.
"""
from __future__ import annotations

import itertools
from pathlib import Path

from ..models.arch import parse_arch
from ..outputs import open_report_dir


def pareto_front(rows: list[dict], cost: str = "macs", acc: str = "test_acc") -> list[dict]:
    """Rows not dominated by another row (at most the cost and strictly more accurate, or cheaper and
    at least as accurate), sorted by cost."""
    pts = [r for r in rows if r.get(acc) is not None and r.get(cost) is not None]
    front = []
    for r in pts:
        dominated = any((o[cost] <= r[cost] and o[acc] > r[acc]) or (o[cost] < r[cost] and o[acc] >= r[acc])
                        for o in pts if o is not r)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: r[cost])


def model_row(name: str | Path, data: str | Path | None = None) -> dict:
    """A row for a trained model (a shipped name or a model file): cost, validation accuracy and,
    with ``data``, test accuracy on its testing list. Searched models (``mbnet``, ``mbnet_raw``)
    become searched rows, everything else a baseline."""
    from ..models import count_cost
    from ..train import evaluate_dir, load_model

    net, bundle = load_model(name)
    c = count_cost(net)
    arch = bundle.model_kwargs.get("arch") or bundle.arch
    label = str(Path(name).parent) if Path(name).name == "best.pt" else str(name)  # a run folder
    searched = bundle.arch in ("mbnet", "mbnet_raw")
    row = {"name": label, "baseline": not searched, "model": bundle.arch,
           "frontend": _preset_name(bundle.frontend), "arch": arch, "params": c.params, "macs": c.macs,
           "ops": 2 * c.macs, "weight_bytes": c.weight_bytes, "peak_act_bytes": c.peak_activation_bytes,
           "val_acc": bundle.metrics.get("val_acc"), "test_acc": None,
           "train_epochs": bundle.train_config.get("epochs"), "model_file": str(name)}
    if searched:
        row["width"] = parse_arch(arch).width
    if data is not None:
        res, _ = evaluate_dir(name, data, "testing")
        row["test_acc"], row["test_n"] = res.accuracy, res.n
    return row


def baseline_rows(data: str | Path | None = None, models=("dscnn-kws",), reference: str = "dscnn_mlperf") -> list[dict]:
    """Cost (and test accuracy on ``data``'s testing list, when given) of trained baseline models
    (shipped names or files; missing ones are left out), plus the cost of the MLPerf Tiny KWS
    reference architecture (``reference``, accuracy not measured here)."""
    from ..models import count_cost, create_model
    from ..train import ModelFileError

    rows = []
    for name in models:
        try:
            rows.append({**model_row(name, data), "baseline": True})
        except ModelFileError:
            continue
    if reference:
        c = count_cost(create_model(reference))
        rows.append({"name": "MLPerf Tiny KWS reference (cost only)", "baseline": True, "reference": True,
                     "model": reference, "frontend": "mlperf", "arch": reference, "params": c.params, "macs": c.macs,
                     "ops": 2 * c.macs, "weight_bytes": c.weight_bytes, "peak_act_bytes": c.peak_activation_bytes,
                     "val_acc": None, "test_acc": None})
    return rows


def _preset_name(fe) -> str:
    from ..audio.frontend import PRESETS

    for name, cfg in PRESETS.items():
        if cfg == fe:
            return name
    return f"custom ({fe.n_mfcc} MFCC)" if fe.kind == "mfcc" else "raw"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def format_table(rows: list[dict], acc: str = "test_acc") -> str:
    """A Markdown table like the papers': accuracy, ops, parameters, weight memory; ``*`` marks
    searched models on the Pareto front (accuracy vs MACs)."""
    searched = [r for r in rows if not r.get("baseline")]
    front = {id(r) for r in pareto_front(searched, "macs", acc)}
    head = ("| model | front end | omega | beta | target | train epochs | test acc % | val acc % | M MACs | M ops | params | "
            "weights KiB (int8) | peak act. KiB | architecture |")
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in sorted(rows, key=lambda r: (not r.get("baseline"), r.get("frontend", ""), r.get("macs", 0))):
        name = r.get("name", "") + (" *" if id(r) in front else "")
        tgt = r.get("target")
        lines.append(
            f"| {name} | {r.get('frontend', '')} | {r.get('width', '-') if not r.get('baseline') else '-'} | "
            f"{r.get('beta', '-') if not r.get('baseline') else '-'} | {f'{tgt / 1e6:g} M' if tgt else '-'} | "
            f"{r.get('train_epochs') or '-'} | "
            f"{_pct(r.get('test_acc'))} | {_pct(r.get('val_acc'))} | {r['macs'] / 1e6:.3f} | {2 * r['macs'] / 1e6:.2f} | "
            f"{r['params']:,} | {r['weight_bytes'] / 1024:.1f} | {r.get('peak_act_bytes', 0) / 1024:.1f} | "
            f"`{r.get('arch', '')}` |")
    return "\n".join(lines)


def plot_pareto(rows: list[dict], path: str | Path, acc: str = "test_acc", title: str = "") -> None:
    """Accuracy against MACs and against weight memory: searched models by front end, their Pareto
    front, trained baselines as stars, and the MLPerf reference model's cost as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    searched = [r for r in rows if not r.get("baseline") and r.get(acc) is not None]
    baselines = [r for r in rows if r.get("baseline")]
    groups = sorted({r.get("frontend", "") for r in searched})
    colors = dict(zip(groups, plt.cm.tab10.colors))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, (key, scale, label) in zip(axes, [("macs", 1e6, "M MACs (1 MAC = 2 ops)"),
                                              ("weight_bytes", 1024, "weight memory, KiB (int8)")]):
        for gname in groups:
            pts = [r for r in searched if r.get("frontend", "") == gname]
            ax.scatter([r[key] / scale for r in pts], [100 * r[acc] for r in pts], color=colors[gname],
                       label=f"searched, {gname}", alpha=0.8, s=30)
        front = pareto_front(searched, key, acc)
        if front:
            ax.step([r[key] / scale for r in front], [100 * r[acc] for r in front], where="post", color="gray",
                    lw=1, ls=":", label="Pareto front (searched)")
        trained = [r for r in baselines if not r.get("reference") and r.get(acc) is not None]
        for r, (marker, color) in zip(trained, itertools.cycle([("*", "black"), ("P", "dimgray"), ("X", "saddlebrown"),
                                                                ("D", "darkslateblue")])):
            ax.scatter([r[key] / scale], [100 * r[acc]], marker=marker, s=150, color=color,
                       label=f"{r['name']} ({r['model']})")
        for r in baselines:
            if r.get("reference"):
                ax.axvline(r[key] / scale, color="black", ls="--", lw=1, label=f"{r['name']}: {r[key] / scale:.2f}")
        xs = [r[key] / scale for r in searched + baselines if r.get(key)]
        if xs and max(xs) / min(xs) > 8:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(f"{'test' if acc == 'test_acc' else 'validation'} accuracy, %")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=min(4, max(1, len(labels))), frameon=False)
    fig.suptitle(title or "Searched KWS models: accuracy vs cost")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(rows: list[dict], out: str | Path) -> dict:
    """table.md and pareto.png in `out` (a new folder, or one tinykws wrote); returns their paths."""
    out = open_report_dir(out)
    files = {"table": out / "table.md", "plot": out / "pareto.png"}
    files["table"].write_text(format_table(rows) + "\n")
    plot_pareto(rows, files["plot"])
    return files
