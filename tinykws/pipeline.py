"""The main job: data -> train -> evaluate -> int8 -> a short architecture search, in one report folder."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from .data.synth import SynthConfig, generate_synthetic
from .models import count_cost
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
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out}: report folder exists and is not empty; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
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
              "int8": int8, "nas": nas, "seconds": round(time.time() - t0, 1)}
    nas_md = "" if nas is None else (
        f"## Short architecture search\n\nDerived architecture `{nas['arch']}` (MBConv space, width 0.5): "
        f"{nas['macs'] / 1e6:.3f} M MACs, {nas['params']:,} parameters; after {search_train_epochs} training "
        f"epochs from scratch: test accuracy {100 * nas['test_acc']:.2f}% (the DS-CNN above: "
        f"{100 * test.accuracy:.2f}% after {epochs} epochs). Details in nas/.\n\n")
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
