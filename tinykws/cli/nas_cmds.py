"""CLI commands of the nas stage: search, sweep, pareto, arch-info, random-arch, lut-template."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..nas.search import SearchConfig
from ..nas.sweep import SweepConfig
from .options import DataDir, Json, Overwrite, check_new_output, config_option, emit_json, err, given_options

S, W = SearchConfig, SweepConfig


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--{what}: expected comma-separated numbers, got {text!r}") from None


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--{what}: expected comma-separated integers, got {text!r}") from None


# Options describing a search space, shared by search, random-arch and lut-template (functions:
# Typer consumes an option object, so every command needs its own).
def _space_opts() -> dict:
    return dict(
        space=typer.Option("mfcc", help="search space: mfcc (MFCC features) or raw (16 kHz waveform)"),
        frontend=typer.Option(None, help="front-end preset (MFCC count): paper10..paper40, mlperf; raw for --space raw "
                                         "(default: paper10 / raw)"),
        width=typer.Option(1.0, help="width multiplier omega"),
        layers=typer.Option(12, help="searchable layers"),
        kernels=typer.Option("3,5,7", help="depthwise kernels of the candidate blocks"),
        expansions=typer.Option("1,2,3,4,5,6", help="expansion ratios of the candidate blocks"),
        first_stride=typer.Option(None, help="stride of the first searchable layer: frames x coefficients for mfcc "
                                             "(1x2 keeps the 25x5 map of the MLPerf DS-CNN), one number for raw "
                                             "(default 2: the papers' space)"))


def _stride(text: str | None) -> list[int]:
    """'1x2' -> [1, 2]; None -> [] (the space's default)."""
    if not text:
        return []
    try:
        return [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise ValueError(f"--first-stride: expected a stride like 2 or 1x2, got {text!r}") from None


def _space(space: str, frontend: str | None, width: float, layers: int, kernels: str, expansions: str,
           first_stride: str | None = None):
    from ..nas.spaces import make_space

    return make_space(space, frontend, width, layers, _ints(kernels, "kernels"), _ints(expansions, "expansions"),
                      first_stride=_stride(first_stride))


def _log(quiet: bool):
    return (lambda s: None) if quiet else (lambda s: err.print(s, highlight=False, markup=False, soft_wrap=True))


def _write_pareto(rows: list, out: Path, as_json: bool) -> None:
    """The report files (nas.pareto.write_report); the table, or the JSON contract, on stdout."""
    from ..nas.pareto import format_table, write_report

    files = write_report(rows, out)
    if as_json:
        emit_json({"rows": rows, **{k: str(v) for k, v in files.items()}})
    else:
        print(format_table(rows))
        err.print(f"table: {files['table']}, plot: {files['plot']}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the `tinykws` app."""

    @app.command("search")
    def search_cmd(
        ctx: typer.Context,
        data: DataDir,
        out: Path = config_option(S, "out"),
        space: str = _space_opts()["space"],
        frontend: Optional[str] = _space_opts()["frontend"],
        target: float = config_option(S, "target"),
        cost: str = config_option(S, "cost"),
        beta: float = config_option(S, "beta", help="weight of the cost term: CE * (log E[cost] / log target) ** beta"),
        width: float = _space_opts()["width"],
        layers: int = _space_opts()["layers"],
        kernels: str = _space_opts()["kernels"],
        expansions: str = _space_opts()["expansions"],
        first_stride: Optional[str] = _space_opts()["first_stride"],
        raw_frontend: str = config_option(S, "raw_frontend"),
        epochs: int = config_option(S, "epochs"),
        warmup_epochs: int = config_option(S, "warmup_epochs"),
        batch_size: int = config_option(S, "batch_size"),
        lr: float = config_option(S, "lr"),
        optimizer: str = config_option(S, "optimizer"),
        arch_lr: float = config_option(S, "arch_lr"),
        quant_bits: int = config_option(S, "quant_bits"),
        weight_bits: int = config_option(S, "weight_bits"),
        act_bits: int = config_option(S, "act_bits"),
        share_weights: bool = typer.Option(True, help="candidates of a layer share weights (--no-share-weights: "
                                                      "separate weights, as ProxylessNAS)"),
        train_epochs: int = typer.Option(0, help="then train the derived model from scratch for this many epochs "
                                                 "and test it (0: search only)"),
        seed: int = config_option(S, "seed"),
        threads: int = config_option(S, "threads"),
        device: str = config_option(S, "device"),
        resume: bool = typer.Option(False, help="continue the search in --out (options that contradict it are an error)"),
        overwrite: Overwrite = False,
        as_json: Json = False,
    ):
        """Search an architecture for a cost target (ProxylessNAS-style, cost-aware loss)."""
        from ..nas.search import run_trial, search

        cfg = SearchConfig(data=str(data), out=str(out), space=space, frontend=frontend or "", width=width,
                           layers=layers, kernels=_ints(kernels, "kernels"), expansions=_ints(expansions, "expansions"),
                           raw_frontend=raw_frontend, first_stride=_stride(first_stride), cost=cost, target=target,
                           beta=beta, weight_bits=weight_bits, act_bits=act_bits, quant_bits=quant_bits,
                           share_weights=share_weights, epochs=epochs, warmup_epochs=warmup_epochs,
                           batch_size=batch_size, optimizer=optimizer, lr=lr, arch_lr=arch_lr, seed=seed,
                           threads=threads, device=device)
        log = _log(as_json)
        if train_epochs > 0:
            row = run_trial(cfg, train_epochs, progress=not as_json, log=log, resume=resume, overwrite=overwrite)
            if as_json:
                emit_json(row)
            else:
                print(f"architecture: {row['arch']}")
                print(f"{row['macs'] / 1e6:.3f} M MACs, {row['params']:,} parameters, {row['weight_bytes'] / 1024:.1f} KiB "
                      f"weights (int8); test accuracy {100 * row['test_acc']:.2f}% ({row['test_n']} clips); "
                      f"model: {row['model_file']}")
            return

        given = given_options(ctx) & set(SearchConfig.__dataclass_fields__)
        res = search(cfg, resume=resume, overwrite=overwrite, progress=not as_json, log=log, given=given)
        if as_json:
            emit_json({k: v for k, v in res.to_dict().items() if k not in ("history", "probs")})
            return
        c = res.cost
        print(f"architecture: {res.arch}")
        print(f"{c['macs'] / 1e6:.3f} M MACs, {c['params']:,} parameters, {c['weight_bytes'] / 1024:.1f} KiB weights "
              f"(int8), {c['peak_act_bytes'] / 1024:.1f} KiB peak activations")
        print(f"train it: tinykws train --data {data} --model {res.model} --arch '{res.arch}' --frontend {res.frontend}")

    @app.command("sweep")
    def sweep_cmd(
        data: DataDir,
        out: Path = config_option(W, "out"),
        frontends: str = typer.Option("paper10", help="comma-separated front-end presets; raw = the end-to-end space"),
        betas: str = typer.Option("0,1,2,4", help="comma-separated beta values"),
        targets: str = typer.Option("2.5e6", help="comma-separated cost targets"),
        widths: str = typer.Option("0.75", help="comma-separated width multipliers"),
        cost: str = config_option(S, "cost"),
        epochs: int = config_option(S, "epochs", help="search epochs per trial"),
        warmup_epochs: int = config_option(S, "warmup_epochs"),
        arch_lr: float = config_option(S, "arch_lr"),
        device: str = config_option(S, "device"),
        layers: int = config_option(S, "layers"),
        first_stride: Optional[str] = typer.Option(None, help="first-layer stride of the MFCC trials (e.g. 1x2; "
                                                               "default 2, the papers' space)"),
        train_epochs: int = config_option(W, "train_epochs"),
        jobs: int = config_option(W, "jobs"),
        threads: int = typer.Option(0, min=0, help="torch threads per trial (0: default; 1 with --jobs > 1)"),
        storage: str = config_option(W, "storage"),
        heartbeat: int = config_option(W, "heartbeat"),
        baseline: List[str] = typer.Option(["dscnn-kws"], help="trained models to show for comparison"),
        as_json: Json = False,
    ):
        """Sweep beta, targets, widths and front ends; write the table and the Pareto plot."""
        from ..nas.pareto import baseline_rows
        from ..nas.sweep import run_sweep

        cfg = SweepConfig(data=str(data), out=str(out), frontends=[f for f in frontends.split(",") if f],
                          betas=_floats(betas, "betas"), targets=_floats(targets, "targets"),
                          widths=_floats(widths, "widths"),
                          search={"cost": cost, "epochs": epochs, "warmup_epochs": warmup_epochs, "arch_lr": arch_lr,
                                  "layers": layers, "threads": threads, "device": device,
                                  "first_stride": _stride(first_stride)},
                          train_epochs=train_epochs, jobs=jobs, storage=storage, heartbeat=heartbeat)
        rows = run_sweep(cfg, log=_log(as_json), threads=threads)
        _write_pareto(rows + baseline_rows(data, baseline), out, as_json)

    @app.command("pareto")
    def pareto_cmd(
        results: List[Path] = typer.Argument(..., help="sweep folders, trial folders (row.json), rows JSON files, "
                                                   "or trained model files (.pt; tested on --data)"),
        out: Path = typer.Option(Path("pareto"), help="folder for table.md and pareto.png"),
        data: Optional[Path] = typer.Option(None, help="data set to test the baselines on (their testing list)"),
        baseline: List[str] = typer.Option(["dscnn-kws"], help="trained models to show for comparison"),
        as_json: Json = False,
    ):
        """Table and Pareto plot (accuracy vs MACs and vs weight memory) of searched models and baselines."""
        from ..nas.pareto import baseline_rows, model_row
        from ..nas.sweep import sweep_rows

        rows = []
        for r in results:
            if r.is_dir() and (r / "sweep.json").exists():
                rows += sweep_rows(r)
            elif r.is_dir() and (r / "row.json").exists():
                rows.append(json.loads((r / "row.json").read_text()))
            elif r.is_file() and r.suffix == ".pt":
                rows.append(model_row(r, data))
            elif r.is_file():
                d = json.loads(r.read_text())
                rows += [x for x in (d if isinstance(d, list) else d.get("rows", [d])) if not x.get("baseline")]
            else:
                raise FileNotFoundError(f"{r}: not a sweep folder, a trial folder (row.json), a rows JSON file "
                                        f"or a model file")
        _write_pareto(rows + baseline_rows(data, baseline), out, as_json)

    @app.command("arch-info")
    def arch_info_cmd(
        arch: str = typer.Argument(..., help="architecture string, e.g. w0.5-ir_k3_e2-ir_k5_e3-skip"),
        frontend: Optional[str] = typer.Option(None, help="front-end preset (default: paper10, or raw)"),
        weight_bits: int = typer.Option(8),
        act_bits: int = typer.Option(8),
        as_json: Json = False,
    ):
        """Decode an architecture string: model, parameters, MACs, weight and activation memory."""
        from ..models.arch import parse_arch
        from ..nas.cost import arch_cost

        a = parse_arch(arch)
        c = arch_cost(arch, frontend, weight_bits=weight_bits, act_bits=act_bits)
        d = {"arch": str(a), "model": a.model_name, "blocks": a.depth, **c}
        if as_json:
            emit_json(d)
            return
        print(f"{d['arch']}\n  model {d['model']}, {a.depth} MBConv blocks, {c['params']:,} parameters, "
              f"{c['macs'] / 1e6:.3f} M MACs ({c['ops'] / 1e6:.2f} M ops), weights {c['weight_bytes'] / 1024:.1f} KiB "
              f"at {weight_bits} bit, peak activations {c['peak_act_bytes'] / 1024:.1f} KiB at {act_bits} bit")

    @app.command("random-arch")
    def random_arch_cmd(
        target: float = typer.Option(..., help="cost limit in the cost's unit (e.g. 2.65e6 MACs)"),
        cost: str = typer.Option("macs", help="macs, ops, weight_bytes, peak_act_bytes, or lut:PATH"),
        space: str = _space_opts()["space"],
        frontend: Optional[str] = _space_opts()["frontend"],
        width: float = _space_opts()["width"],
        layers: int = _space_opts()["layers"],
        kernels: str = _space_opts()["kernels"],
        expansions: str = _space_opts()["expansions"],
        first_stride: Optional[str] = _space_opts()["first_stride"],
        seed: int = typer.Option(0),
        as_json: Json = False,
    ):
        """Random-search baseline: a random architecture within the target, derived like a searched one."""
        from ..nas.cost import CostTable, arch_cost, make_cost_model
        from ..nas.search import random_arch

        sp = _space(space, frontend, width, layers, kernels, expansions, first_stride)
        table = CostTable(sp, make_cost_model(cost))
        table.check_target(target)
        arch = sp.arch(random_arch(table, target, seed))
        c = arch_cost(arch, frontend)
        if as_json:
            emit_json({"arch": arch, "seed": seed, "cost": cost, "target": target, **c})
            return
        print(arch)
        err.print(f"{c['macs'] / 1e6:.3f} M MACs, {c['params']:,} parameters, {c['weight_bytes'] / 1024:.1f} KiB "
                  f"weights (int8), {c['peak_act_bytes'] / 1024:.1f} KiB peak activations", highlight=False)

    @app.command("lut-template")
    def lut_template_cmd(
        out: Path = typer.Argument(..., help="JSON file to write"),
        space: str = _space_opts()["space"],
        frontend: Optional[str] = _space_opts()["frontend"],
        width: float = _space_opts()["width"],
        layers: int = _space_opts()["layers"],
        kernels: str = _space_opts()["kernels"],
        expansions: str = _space_opts()["expansions"],
        first_stride: Optional[str] = _space_opts()["first_stride"],
        overwrite: Overwrite = False,
    ):
        """Write a per-layer cost lookup table for a space (MAC-based latency estimates to replace by
        measurements), for `tinykws search --cost lut:FILE`."""
        from ..nas.cost import write_lut_template
        from ..outputs import check_output_file

        check_output_file(out, overwrite)
        sp = _space(space, frontend, width, layers, kernels, expansions, first_stride)
        t = write_lut_template(sp, out)
        err.print(f"{len(t['blocks'])} entries written to {out}")
