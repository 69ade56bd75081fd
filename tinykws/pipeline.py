"""The main job: data -> train -> evaluate -> int8 -> C for a Cortex-M7 (emulated cost) -> a short
architecture search, in one report folder."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .data.synth import SynthConfig, generate_synthetic
from .models import count_cost, create_model
from .outputs import check_output_dir, clear_dir, mark
from .train import TrainConfig, evaluate_dir, format_result, plot_confusion, save_bundle, train


def run_demo(data: str | Path | None = None, out: str | Path = "tinykws-demo", epochs: int = 60,
             model: str = "dscnn_mlperf", overwrite: bool = False, progress: bool = True, log=print,
             synth: SynthConfig | None = None, search_epochs: int = 4, search_train_epochs: int = 10,
             stream_minutes: float = 2.0) -> dict:
    """Train and evaluate a DS-CNN; without `data`, on freshly generated synthetic speech. Then a
    short architecture search (`search_epochs`, 0 = none) whose model is trained from scratch for
    `search_train_epochs` and tested, next to the DS-CNN. Then a short streaming evaluation: the
    detector tuned on `stream_minutes` of stream from the validation clips, reported on as much
    from the testing clips.

    Writes to `out`: metrics.json, report.md, confusion.png, model.pt, run/ (checkpoints, metrics.jsonl),
    c/ (the int8 model as a C99 project), stream_det.png, nas/ (the search, its trained model, report.md) and, for
    synthetic data, data/.
    """
    out = Path(out)
    # every input is checked before the report folder is touched
    check_output_dir(out, overwrite, [data], busy="pass --overwrite to replace a report folder tinykws wrote")
    for name, v, lo in (("epochs", epochs, 1), ("search_epochs", search_epochs, 0),
                        ("search_train_epochs", search_train_epochs, 1 if search_epochs > 0 else 0)):
        if v < lo:
            raise ValueError(f"--{name.replace('_', '-')} {v}: must be at least {lo}")
    if data is not None:
        from .data.speech_commands import SpeechCommands

        SpeechCommands.open(data)  # a missing or wrong data folder fails here
    create_model(model, num_classes=12)  # an unknown model name fails here
    if out.exists() and any(out.iterdir()):
        clear_dir(out)
    mark(out)
    t0 = time.time()
    synthetic = data is None
    if synthetic:
        log("generating synthetic speech (espeak-ng) ...")
        data = generate_synthetic(out / "data", synth or SynthConfig(clips_per_word=100), progress=progress)
    cfg = TrainConfig(data=str(data), out=str(out / "run"), model=model, epochs=epochs)
    bundle = train(cfg, progress=progress, log=log)
    save_bundle(bundle, out / "model.pt")
    test, _ = evaluate_dir(out / "model.pt", data, "testing")
    plot_confusion(test, out / "confusion.png")
    cost = count_cost(bundle.build()).to_dict()
    from .recipes.quantize import int8_summary, load_int_model

    im = load_int_model(out / "model.pt", data)  # post-training int8
    int8 = int8_summary(out / "model.pt", data, im=im)  # run by the integer reference
    log("generating C and measuring it on the emulated Cortex-M7 ...")
    mcu = deploy_summary(im, data, out / "c")
    log(f"streaming evaluation ({stream_minutes:g} + {stream_minutes:g} minutes of stream) ...")
    stream = stream_summary(out / "model.pt", data, stream_minutes, out / "stream_det.png")
    nas = None
    if search_epochs > 0:
        from .nas.search import short_search_demo

        log(f"short architecture search ({search_epochs} epochs, at most 2 M MACs) ...")
        nas = short_search_demo(data, out / "nas", epochs=search_epochs, train_epochs=search_train_epochs,
                                progress=progress, log=log)
    report = {"data": str(data), "synthetic": synthetic, "model": model, "epochs": epochs,
              "val_accuracy": bundle.metrics["val_acc"], "test": test.to_dict(),
              "cost": {k: cost[k] for k in ("params", "macs", "weight_bytes", "peak_activation_bytes")},
              "int8": int8, "mcu": mcu, "stream": stream, "nas": nas, "search_train_epochs": search_train_epochs if nas else None, "seconds": round(time.time() - t0, 1)}
    nas_md = "" if nas is None else (
        f"## Short architecture search\n\nDerived architecture `{nas['arch']}` (MBConv space, width 0.5): "
        f"{nas['macs'] / 1e6:.3f} M MACs, {nas['params']:,} parameters; test accuracy {100 * nas['test_acc']:.2f}% "
        f"after {search_train_epochs} training epochs from scratch.\n\n"
        + (f"This shows the search at work; it is not a comparison with the DS-CNN above, which trained "
           f"{epochs} epochs, not {search_train_epochs}: accuracy is not yet converged after so few epochs. "
           f"For a like-for-like comparison run `tinykws demo --search-train-epochs {epochs}`. "
           if search_train_epochs != epochs else
           f"Both models trained {epochs} epochs from scratch on the same data. ")
        + "Details in nas/.\n\n")
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(
        f"# tinykws report\n\nData: `{data}`{' (SYNTHETIC speech from espeak-ng)' if synthetic else ''}\n\n"
        f"Model: `{model}`, {cost['params']:,} parameters, {cost['macs'] / 1e6:.3f} M MACs, "
        f"{cost['weight_bytes'] / 1024:.1f} KiB weights (int8), {cost['peak_activation_bytes'] / 1024:.1f} KiB peak activations\n\n"
        f"Validation accuracy (best epoch): {100 * bundle.metrics['val_acc']:.2f}%\n\n"
        f"Quantized (int8 post-training, integer reference): test accuracy {100 * int8['test_accuracy']:.2f}%, "
        f"{int8['weight_bytes'] / 1024:.1f} KiB int8 weights + {int8['bias_bytes'] / 1024:.1f} KiB int32 biases, "
        f".tflite {int8['tflite_bytes'] / 1024:.1f} KiB\n\n{mcu_markdown(mcu)}{stream_markdown(stream)}"
        f"```\n{format_result(test)}\n```\n\n![confusion](confusion.png)\n\n{nas_md}Time: {report['seconds']} s\n")
    log(format_result(test))
    return report


def deploy_summary(im, data, c_dir: Path, clips: int = 2) -> dict:
    """The int8 model as a C project in `c_dir` (tinykws fast kernels), and its cost on the emulated
    Cortex-M7 (-O2) on a few test clips; a missing Arm toolchain or emulator is recorded, not fatal."""
    from .deploy import generate
    from .deploy.mcu import McuError, bench_m7, clip_inputs

    gen = generate(im, c_dir, kernels="fast")
    try:
        r = bench_m7(im, kernels="fast", inputs=clip_inputs(im, data, n=clips), model="model.pt")
    except McuError as exc:
        return {"c_dir": str(c_dir), "arena_bytes": gen.plan.arena_bytes, "skipped": str(exc)}
    keep = ("kernels", "opt", "inputs", "bit_exact", "instructions", "macs", "instructions_per_mac", "flash_bytes",
            "flash", "ram_bytes", "arena_bytes", "stack_bytes", "est_ms", "clock_mhz", "est_note", "counting")
    return {"c_dir": str(c_dir), **{k: r[k] for k in keep}}


def mcu_markdown(m: dict) -> str:
    if "skipped" in m:
        return (f"Generated C in `c/` (activation arena {m['arena_bytes']:,} bytes); not measured on the emulated "
                f"Cortex-M7: {m['skipped']}\n\n")
    return (f"On a Cortex-M7 (generated C in `c/`, tinykws `{m['kernels']}` kernels, arm-none-eabi-gcc -{m['opt']}, "
            f"emulated): {m['instructions'] / 1e6:.2f} M instructions per inference "
            f"({m['instructions_per_mac']:.2f} per MAC; about {m['est_ms']:.1f} ms at {m['clock_mhz']:.0f} MHz, "
            f"an estimate from instruction counts), flash {m['flash_bytes']:,} bytes (model "
            f"{m['flash']['model']:,} + kernels {m['flash']['kernels']:,}), RAM {m['ram_bytes']:,} bytes (arena "
            f"{m['arena_bytes']:,} + stack {m['stack_bytes']:,} + other); outputs "
            f"{'bit-exact with' if m['bit_exact'] else 'DIFFERENT from'} the integer reference on "
            f"{m['inputs']} test clips\n\n")


def stream_summary(model_path, data, minutes: float, png: Path) -> dict:
    """The detector's operating point chosen on a short stream of validation clips (at most 0.5
    false alarms per hour, else the fewest), and its hits and false alarms on a testing stream."""
    from .stream import ListenConfig, StreamConfig
    from .stream.tune import TuneConfig, tune

    r = tune(data, model_path, ListenConfig(), TuneConfig(val_minutes=minutes, test_minutes=minutes),
             StreamConfig(), png=png)
    t, d = r["testing"], r["testing_recognize_commands_defaults"]
    keep = ("keywords", "hits", "misses", "false_alarms", "hours", "false_alarms_per_hour", "false_reject_rate",
            "mean_latency_ms")
    return {"minutes": minutes, "hop_ms": r["listen"]["hop_ms"], "chosen": r["chosen"],
            "hit_rate": t["hits"] / t["keywords"] if t["keywords"] else 0.0, **{k: t[k] for k in keep},
            "recognize_commands_defaults": {k: d[k] for k in keep},
            "real_time_factor": r["testing_stream"]["real_time_factor"], "det_png": str(png)}


def stream_markdown(s: dict) -> str:
    c = s["chosen"]
    lat = f", mean latency {s['mean_latency_ms']:.0f} ms" if s["mean_latency_ms"] is not None else ""
    return (f"Streaming ({s['minutes']:g} minutes of stream from the testing clips over noise and silence, "
            f"hop {s['hop_ms']} ms; detector threshold {c['threshold']:g}, window {c['window_ms']} ms, suppression "
            f"{c['suppression_ms']} ms, chosen on as long a stream of validation clips): {s['hits']} of "
            f"{s['keywords']} keywords found (hit rate {100 * s['hit_rate']:.1f}%), {s['false_alarms']} false alarms "
            f"({s['false_alarms_per_hour']:.1f} per hour){lat}; real-time factor {s['real_time_factor']:.3f}. "
            f"With RecognizeCommands' defaults: {s['recognize_commands_defaults']['hits']} found, "
            f"{s['recognize_commands_defaults']['false_alarms']} false alarms. A stream this short resolves false "
            f"alarms per hour only to {1 / s['hours']:.0f}; see docs/streaming.md. ![DET](stream_det.png)\n\n")
