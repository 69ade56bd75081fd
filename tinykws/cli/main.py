"""The `tinykws` command: a thin layer over the library."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from typing_extensions import Annotated

from ..checks import DEVICE_HELP
from ..data.augment import AugmentConfig
from ..pipeline import run_demo
from ..train.trainer import TrainConfig
from .options import (DataDir, Json, ModelRef, Overwrite, check_new_output, config_option, default_of, emit_json,
                      err, given_options)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Keyword spotting for microcontrollers.")
data_app = typer.Typer(no_args_is_help=True, help="Get data: the real data set, or synthetic speech.")
app.add_typer(data_app, name="data")


@data_app.command("download")
def data_download(
    version: str = typer.Option("v0.02", help="v0.01, v0.02 or test-v0.02"),
    dest: Path = typer.Option(Path("data"), help="folder to download and extract into"),
    force: bool = typer.Option(False, help="extract again even if the folder exists"),
):
    """Download and extract Google Speech Commands from its official location."""
    from ..data.download import download_dataset

    path = download_dataset(version, dest, force=force)
    err.print(f"data set ready in [bold]{path}[/bold]")


@data_app.command("synth")
def data_synth(
    out: Path = typer.Argument(..., help="new folder for the synthetic data set"),
    clips_per_word: int = typer.Option(60, help="clips per word"),
    seed: int = typer.Option(0),
    overwrite: Overwrite = False,
):
    """Generate a SYNTHETIC Speech-Commands-style data set with espeak-ng."""
    from ..data.synth import SynthConfig, generate_synthetic

    path = generate_synthetic(out, SynthConfig(clips_per_word=clips_per_word, seed=seed), overwrite=overwrite)
    err.print(f"synthetic data set written to [bold]{path}[/bold]")


# the training settings each `train` option sets (to tell which ones a --resume contradicts)
_TRAIN_FIELDS = {"data": "data", "model": "model", "arch": "model_kwargs", "dropout": "model_kwargs",
                 "frontend": "frontend", "task": "task", "keywords": "task", "extra_data": "extra_data",
                 "epochs": "epochs", "batch_size": "batch_size", "optimizer": "optimizer", "lr": "lr",
                 "weight_decay": "weight_decay", "label_smoothing": "label_smoothing", "unknown_frac": "unknown_frac",
                 "speed": "augment", "specaug": "augment", "shift_ms": "augment", "noise_prob": "augment",
                 "noise_snr_db": "augment", "gain_db": "augment", "partial_prob": "augment", "init": "init", "threads": "threads", "seed": "seed"}


def given_options(ctx: typer.Context) -> set[str]:
    """Names of the options the user gave on the command line (not defaults)."""
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}
    return {name for name, src in sources.items() if src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")}


# the training settings each `train` option sets (to tell which ones a --resume contradicts)
_TRAIN_FIELDS = {"data": "data", "model": "model", "arch": "model_kwargs", "dropout": "model_kwargs",
                 "frontend": "frontend", "task": "task", "keywords": "task", "extra_data": "extra_data",
                 "epochs": "epochs", "batch_size": "batch_size", "optimizer": "optimizer", "lr": "lr",
                 "weight_decay": "weight_decay", "label_smoothing": "label_smoothing", "unknown_frac": "unknown_frac",
                 "speed": "augment", "specaug": "augment", "shift_ms": "augment", "noise_prob": "augment",
                 "noise_snr_db": "augment", "gain_db": "augment", "partial_prob": "augment", "init": "init", "threads": "threads", "seed": "seed",
                 "device": "device", "precision": "precision",
                 "model_args": "model_kwargs", "teacher": "teacher", "kd_temperature": "kd_temperature",
                 "kd_alpha": "kd_alpha"}
T = TrainConfig


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    data: DataDir,
    out: Path = config_option(T, "out"),
    model: str = config_option(T, "model"),
    arch: Optional[str] = typer.Option(None, help="architecture string for mbnet/mbnet_raw (from `tinykws search`)"),
    frontend: str = config_option(T, "frontend"),
    task: str = config_option(T, "task"),
    keywords: Optional[str] = typer.Option(None, help="your own keywords, e.g. marvin,sheila (overrides --task)"),
    extra_data: List[Path] = typer.Option([], help="more folders whose clips all serve training (e.g. synthetic)"),
    epochs: int = config_option(T, "epochs", help="training epochs; with --resume a larger value extends the run "
                                                  "(its learning-rate schedule becomes that of the new length)"),
    batch_size: int = config_option(T, "batch_size"),
    optimizer: str = config_option(T, "optimizer"),
    lr: float = config_option(T, "lr"),
    weight_decay: float = config_option(T, "weight_decay"),
    label_smoothing: float = config_option(T, "label_smoothing"),
    dropout: Optional[float] = typer.Option(None, help="dropout rate, for models that take one"),
    model_args: Optional[str] = typer.Option(None, help='more model settings as JSON, e.g. \'{"tau": 2}\' for '
                                                        'bcresnet or \'{"width": 1.5}\' for tcresnet8'),
    teacher: Optional[str] = typer.Option(None, help="distil from these model files / shipped names (FILE[,FILE...]: "
                                                      "an ensemble averages their soft targets)"),
    kd_temperature: float = config_option(T, "kd_temperature"),
    kd_alpha: float = config_option(T, "kd_alpha"),
    unknown_frac: float = config_option(T, "unknown_frac"),
    speed: float = config_option(AugmentConfig, "speed"),
    specaug: bool = typer.Option(True, help="SpecAugment time and coefficient masks"),
    shift_ms: float = config_option(AugmentConfig, "time_shift_ms", "--shift-ms"),
    noise_prob: float = config_option(AugmentConfig, "noise_prob"),
    noise_snr_db: str = typer.Option("", "--noise-snr-db", help="background noise at an SNR drawn from LO,HI dB "
                                     "(speech RMS over its spoken part against the noise's), e.g. 10,40; "
                                     "default: the noise gains of the papers' recipe (about 45 dB and more)"),
    gain_db: float = config_option(AugmentConfig, "gain_db"),
    partial_prob: float = config_option(AugmentConfig, "partial_prob"),
    init: str = config_option(T, "init"),
    threads: int = config_option(T, "threads"),
    device: str = config_option(T, "device"),
    precision: str = config_option(T, "precision"),
    seed: int = config_option(T, "seed"),
    resume: bool = typer.Option(False, help="continue the run in --out with its stored settings (options that "
                                            "contradict them are an error)"),
    overwrite: Overwrite = False,
):
    """Train a keyword spotter."""
    from ..models.arch import parse_arch
    from ..train import train

    aug = AugmentConfig(speed=speed, time_shift_ms=shift_ms, noise_prob=noise_prob, noise_snr_db=noise_snr_db,
                        gain_db=gain_db, partial_prob=partial_prob,
                        **({} if specaug else {"time_masks": 0, "freq_masks": 0}))
    try:
        extra_kw = json.loads(model_args) if model_args else {}
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON ({exc.msg})", param_hint="--model-args") from None
    if not isinstance(extra_kw, dict):
        raise typer.BadParameter("must be a JSON object such as '{\"tau\": 2}'", param_hint="--model-args")
    teachers = [t.strip() for t in teacher.split(",") if t.strip()] if teacher else []
    if arch and model == T.model:  # an architecture string names a searched network
        model = parse_arch(arch).model_name
    cfg = TrainConfig(data=str(data), out=str(out), model=model, frontend=frontend, task=keywords or task,
                      extra_data=[str(p) for p in extra_data], epochs=epochs, batch_size=batch_size,
                      optimizer=optimizer, lr=lr, weight_decay=weight_decay, label_smoothing=label_smoothing,
                      unknown_frac=unknown_frac, augment=aug, seed=seed, threads=threads,
                      device=device, precision=precision,
                      teacher=teachers, kd_temperature=kd_temperature, kd_alpha=kd_alpha, init=init,
                      model_kwargs={**extra_kw, **({"dropout": dropout} if dropout is not None else {}),
                                    **({"arch": arch} if arch else {})})
    given = {_TRAIN_FIELDS[o] for o in given_options(ctx) if o in _TRAIN_FIELDS}
    bundle = train(cfg, resume=resume, overwrite=overwrite, given=given)
    err.print(f"best validation accuracy {100 * bundle.metrics['val_acc']:.2f}% (epoch {bundle.metrics['epoch']}); "
              f"model: [bold]{out / 'best.pt'}[/bold]")


@app.command("eval")
def eval_cmd(
    data: DataDir,
    model: Optional[str] = typer.Option(None, help="model file (.pt or int8 .tflite) or shipped model name "
                                                   "(default: the shipped dscnn-kws)"),
    split: str = typer.Option("testing", help="training, validation or testing"),
    confusion: Optional[Path] = typer.Option(None, help="save the confusion matrix as PNG here"),
    overwrite: Overwrite = False,
    frontend: Optional[str] = typer.Option(None, help="for a .tflite without tinykws metadata: front-end preset"),
    labels: Optional[str] = typer.Option(None, help="for a .tflite without tinykws metadata: output labels, in order"),
    device: str = typer.Option("auto", help="where a .pt model runs: " + DEVICE_HELP),
    as_json: Json = False,
):
    """Top-1 and per-class accuracy, confusion matrix. MODEL may be a .tflite (run by TFLite Micro)."""
    from ..train import evaluate_dir, format_result, plot_confusion

    check_new_output(confusion, overwrite)
    if model is not None and model.endswith(".tflite"):
        from ..train import evaluate_tflite

        result = evaluate_tflite(model, data, split, labels=labels.split(",") if labels else None,
                                 frontend=frontend, progress=not as_json)
        name = model
    else:
        result, bundle = evaluate_dir(model, data, split, progress=not as_json, device=device)
        name = bundle.name
    if confusion is not None:
        plot_confusion(result, confusion)
    if as_json:
        emit_json({"model": name, **result.to_dict()})
    else:
        Console().print(format_result(result), highlight=False)


@app.command("predict")
def predict_cmd(
    files: List[Path] = typer.Argument(..., help="audio files (WAV, FLAC)"),
    model: ModelRef = None,
    as_json: Json = False,
):
    """Classify audio files: the readable ones first, then one error line per unusable file (exit 2)."""
    from ..train import predict_files

    res = predict_files(files, model, errors="collect")
    good, bad = [r for r in res if "error" not in r], [r for r in res if "error" in r]
    for r in good:
        if r["notes"]:
            err.print(f"[yellow]warning:[/yellow] {r['file']}: {', '.join(sorted(r['notes']))}", highlight=False)
    if as_json:
        emit_json({"predictions": good, "errors": bad})
    else:
        for r in good:
            others = ", ".join(f"{t['label']} {t['score']:.2f}" for t in r["top"][1:])
            print(f"{r['file']}: {r['label']} ({r['score']:.2f}; then {others})")
    for r in bad:
        err.print(f"[red]error:[/red] {r['error']}", highlight=False)
    if bad:
        if good:
            err.print(f"{len(bad)} of {len(res)} files could not be classified", highlight=False)
        raise typer.Exit(2)


@app.command("info")
def info_cmd(
    model: str = typer.Argument(..., help="registry architecture (e.g. dscnn_s), model file (.pt or int8 .tflite), "
                                          "or shipped name"),
    weight_bits: int = typer.Option(8, help="bits per weight for the weight memory"),
    act_bits: int = typer.Option(8, help="bits per activation for the activation memory"),
    as_json: Json = False,
):
    """Cost of a model: parameters, MACs, weight memory, peak activation memory (a .tflite: its int8 ops)."""
    from ..models import count_cost, create_model, list_models
    from ..prune import sparsity_stats
    from ..train import load_model

    if model.lower().endswith(".tflite"):
        _info_tflite(model, as_json)
        return
    pruned = {}
    if model in list_models():
        net = create_model(model)
    else:
        net, bundle = load_model(model)
        pruned = bundle.prune.get("config", {})
    cost = count_cost(net, weight_bits=weight_bits, act_bits=act_bits)
    sp = sparsity_stats(net)
    d = {"model": model, **cost.to_dict(), "sparsity": sp["sparsity"], "zero_weights": sp["zeros"],
         "pruning": pruned or None}
    if as_json:
        emit_json(d)
        return
    print(f"{model}:\n{cost.summary()}")
    how = (f" (pruned: {pruned['method']} at {pruned['sparsity']:g} of the {'MACs' if pruned.get('target') == 'macs' else 'weights'}, "
           f"scope {pruned['scope']})" if pruned else "")
    print(f"sparsity: {100 * sp['sparsity']:.1f}% of the conv/linear weights are zero ({sp['zeros']:,} of "
          f"{sp['weights']:,}){how}")


def _info_tflite(path: str, as_json: bool) -> None:
    """The ops and tensors of an int8 .tflite as tinykws reads it (its bit widths are those of the file)."""
    from ..quant import read_tflite

    im = read_tflite(path)
    T = im.tensors
    ops = [{"kind": op.kind, "output": T[op.output].name, "shape": list(T[op.output].shape)} for op in im.ops]
    const = sum(int(t.data.nbytes) for t in T if t.data is not None)
    d = {"model": path, "ops": len(ops), "constant_bytes": const, "input_shape": list(T[im.input].shape),
         "output_shape": list(T[im.output].shape), "labels": im.meta.get("labels"), "layers": ops}
    if as_json:
        emit_json(d)
        return
    print(f"{path}: int8 .tflite, {len(ops)} ops, constants {const / 1024:.1f} KiB, "
          f"input {tuple(d['input_shape'])}, output {tuple(d['output_shape'])}")
    for o in ops:
        print(f"  {o['output']:<40} {o['kind']:<10} {tuple(o['shape'])}")


@app.command("models")
def models_cmd():
    """List the architectures in the registry and the shipped models."""
    from ..models import list_models
    from ..pretrained import PRETRAINED

    print("architectures:", ", ".join(list_models()))
    print("shipped models:", ", ".join(PRETRAINED))


@app.command("demo")
def demo_cmd(
    data: Optional[Path] = typer.Option(None, help="a Speech Commands folder; default: generate synthetic speech"),
    out: Path = default_of(run_demo, "out", help="report folder"),
    epochs: int = default_of(run_demo, "epochs", help="training epochs of the DS-CNN"),
    overwrite: Overwrite = False,
    search_epochs: int = default_of(run_demo, "search_epochs",
                                    help="epochs of the short architecture search at the end (0: none)"),
    search_train_epochs: int = default_of(run_demo, "search_train_epochs",
                                          help="training epochs of the searched model (set it to --epochs for a "
                                               "like-for-like comparison with the DS-CNN)"),
):
    """The main job: data -> train -> evaluate -> int8 -> C on a Cortex-M7 -> short search, with a report folder."""
    report = run_demo(data=data, out=out, epochs=epochs, overwrite=overwrite, search_epochs=search_epochs,
                      search_train_epochs=search_train_epochs)
    err.print(f"report in [bold]{out}[/bold]: test accuracy {100 * report['test']['accuracy']:.2f}%")


def main() -> None:
    """Entry point: known errors become one clear line and exit code 2, not a stack trace."""
    from ..audio import AudioError
    from ..data.download import DownloadError
    from ..data.speech_commands import DatasetError
    from ..data.synth import SynthesisError
    from ..quant.tflite import TFLiteError
    from ..train import ModelFileError

    try:
        app()
    except (AudioError, DatasetError, DownloadError, ModelFileError, SynthesisError, TFLiteError, FileExistsError, FileNotFoundError, ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


def _register_stages() -> None:
    from . import deploy_cmds, mcu_cmds, nas_cmds, prune_cmds, quant_cmds, stream_cmds

    quant_cmds.register(app)
    deploy_cmds.register(app)
    mcu_cmds.register(app)
    nas_cmds.register(app)
    prune_cmds.register(app)
    stream_cmds.register(app)


_register_stages()
