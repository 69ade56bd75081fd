"""The main job: data -> train -> evaluate -> int8 -> a short architecture search, in one report folder."""
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
             synth: SynthConfig | None = None, search_epochs: int = 4, search_train_epochs: int = 10) -> dict:
    """Train and evaluate a DS-CNN; without `data`, on freshly generated synthetic speech. Then a
    short architecture search (`search_epochs`, 0 = none) whose model is trained from scratch for
    `search_train_epochs` and tested, next to the DS-CNN.

    Writes to `out`: metrics.json, report.md, confusion.png, model.pt, run/ (checkpoints, metrics.jsonl),
    nas/ (the search, its trained model, report.md) and, for synthetic data, data/.
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
    from .recipes.quantize import int8_summary

    int8 = int8_summary(out / "model.pt", data)  # post-training int8, run by the integer reference
    nas = None
    if search_epochs > 0:
        from .nas.search import short_search_demo

        log(f"short architecture search ({search_epochs} epochs, at most 2 M MACs) ...")
        nas = short_search_demo(data, out / "nas", epochs=search_epochs, train_epochs=search_train_epochs,
                                progress=progress, log=log)
    report = {"data": str(data), "synthetic": synthetic, "model": model, "epochs": epochs,
              "val_accuracy": bundle.metrics["val_acc"], "test": test.to_dict(),
              "cost": {k: cost[k] for k in ("params", "macs", "weight_bytes", "peak_activation_bytes")},
              "int8": int8, "nas": nas, "search_train_epochs": search_train_epochs if nas else None, "seconds": round(time.time() - t0, 1)}
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
        f".tflite {int8['tflite_bytes'] / 1024:.1f} KiB\n\n"
        f"```\n{format_result(test)}\n```\n\n![confusion](confusion.png)\n\n{nas_md}Time: {report['seconds']} s\n")
    log(format_result(test))
    return report
