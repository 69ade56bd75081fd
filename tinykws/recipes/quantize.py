"""Recipes on model files: quantize (PTQ, QAT, learned bit-widths) with the data set a model was
trained on, evaluate, and build the accuracy / memory report.

    bundle = quantize_model("dscnn-kws", "qat4", data="speech_commands_mini", epochs=15)
    save_bundle(bundle, "dscnn_qat4.pt")        # loads with load_model() like a float model
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..checks import check_value
from ..quant.config import LearnedBitsConfig, PTQConfig, QATConfig, QuantConfig, config_to_dict, preset
from ..quant.graph import QuantizationError
from ..quant.integer import IntModel, to_integer
from ..quant.tflite import read_tflite
from ..quant.quantize import bit_penalty, bit_stats, freeze_bits, meet_bit_targets, quantize_, set_weight_bits
from ..prune import keep_masks, masks_from_zeros
from ..train import evaluate
from ..train.checkpoint import load_model
from ..train.evaluate import predict_logits

CALIB_CLIPS = 400
AUGMENT = ("full", "spec")
REPORT_METHODS = ("ptq8", "qat8", "qat4", "qat2", "learned")


def data_dir_of(bundle, data: str | Path | None) -> Path:
    """The data set to calibrate and fine-tune on: `data`, else the one the model was trained on."""
    path = data or bundle.train_config.get("data")
    if not path:
        raise QuantizationError("calibration needs data: pass --data DIR (a Speech Commands folder)")
    path = Path(path)
    if not path.is_dir():
        raise QuantizationError(f"calibration needs data: {path} is not a folder; pass --data DIR")
    return path


def split_features(bundle, data_dir, split: str, limit: int | None = None, seed: int = 0):
    """Features and labels of a split for a model file's labels and front end (see
    `tinykws.train.evaluate.split_features`); an empty split is a QuantizationError."""
    try:
        return evaluate.split_features(data_dir, split, bundle.labels, bundle.frontend, limit, seed)
    except ValueError as exc:
        raise QuantizationError(f"{exc} to calibrate or evaluate on") from None


def _as_config(method) -> QuantConfig:
    return preset(method) if isinstance(method, str) else method


def _bundle_of(model, bundle, config: QuantConfig, metrics: dict):
    from ..train import ModelBundle

    return ModelBundle(bundle.arch, bundle.labels, bundle.frontend, {k: v.detach().clone() for k, v in model.state_dict().items()},
                       bundle.model_kwargs, metrics, bundle.train_config, name=bundle.name, quant=config_to_dict(config),
                       prune=bundle.prune)


def quantize_model(model=None, method="ptq8", data=None, epochs: int | None = None, lr: float = 1e-3,
                   calib_clips: int = CALIB_CLIPS, log=print, progress: bool = False, seed: int = 0,
                   device: str = "auto", augment: str = "full"):
    """Quantize a model file (or shipped name; None: the shipped model) and return a ModelBundle.

    PTQ calibrates on `calib_clips` training clips. QAT and learned bit-widths then fine-tune with
    the model's own training settings for `epochs` (default 15; learned: that many with the
    memory penalty, then half as many with the bit-widths frozen) at learning rate `lr`, on `device`
    (auto, cpu, cuda, cuda:N; in fp32: fake quantization needs exact ranges). `augment`: "full" (the
    model's own augmentation) or "spec" (SpecAugment only, on cached features: several times faster).
    """
    from ..train import TrainConfig, load_model, train

    check_value("epochs", epochs, {"lo": 1})
    check_value("calib_clips", calib_clips, {"lo": 1})
    check_value("lr", lr, {"lo": 0, "lo_open": True})
    check_value("augment", augment, {"choices": AUGMENT})
    config = _as_config(method)
    net, bundle = load_model(model)
    data_dir = data_dir_of(bundle, data)
    calib, _ = split_features(bundle, data_dir, "training", limit=calib_clips, seed=seed)
    stages = config.stages() if isinstance(config, QATConfig) else []
    # progressive lowering: calibrate at the first stage's weight bits (the activations at their own)
    quantize_(net, replace(config, weight_bits=stages[0], start_bits=None) if len(stages) > 1 else config, calib=calib)
    # a pruned model keeps its zeros through fine-tuning: the masks are re-applied after every step
    # (rounding is symmetric, so a zero weight is a zero integer weight)
    masks = masks_from_zeros(net) if bundle.prune else {}
    keep = dict(prune=bundle.prune, after_step=keep_masks(masks) if masks else None)
    if isinstance(config, PTQConfig):
        return _bundle_of(net, bundle, config, {"calib_clips": len(calib)})
    epochs = epochs or 15
    cfg = TrainConfig.from_dict({**bundle.train_config, "data": str(data_dir)}) if bundle.train_config else \
        TrainConfig(data=str(data_dir), model=bundle.arch, model_kwargs=bundle.model_kwargs)
    cfg = replace(cfg, lr=lr, warmup_epochs=1, seed=seed, device=device)
    if augment == "spec":  # no waveform augmentation: the trainer takes the features from its cache
        cfg = replace(cfg, augment=replace(cfg.augment, time_shift_ms=0.0, noise_prob=0.0, gain_db=0.0, speed=0.0))
    quant = config_to_dict(config)
    with tempfile.TemporaryDirectory(prefix="tinykws-qat-") as tmp:
        if isinstance(config, LearnedBitsConfig):
            log(f"learning bit-widths ({epochs} epochs, targets {config.weight_bits} b/weight, {config.act_bits} b/act)")
            train(replace(cfg, out=f"{tmp}/bits", epochs=epochs), model=net, quant=quant, progress=progress, log=log,
                  extra_loss=bit_penalty(net, config), **keep)
            s = bit_stats(net)
            t = meet_bit_targets(net, config)
            log(f"learned {s['weight_bits']:.2f} bits/weight, {s['act_bits']:.2f} bits/activation; at the targets "
                f"{t['weight_bits']:.2f} / {t['act_bits']:.2f}; fine-tuning with the bit-widths frozen")
            freeze_bits(net)
            epochs = max(1, epochs // 2)
        for i, bits in enumerate(stages[:-1]):  # progressive lowering: each stage starts from the last one's best
            log(f"stage {i + 1}/{len(stages)}: weights at {bits} bits ({epochs} epochs)")
            best = train(replace(cfg, out=f"{tmp}/stage{i}", epochs=epochs), model=net, quant=quant, progress=progress,
                         log=log, **keep)
            net = set_weight_bits(best.build(), stages[i + 1])
            if masks:
                masks = masks_from_zeros(net)
                keep["after_step"] = keep_masks(masks)
        best = train(replace(cfg, out=f"{tmp}/qat", epochs=epochs), model=net, quant=quant, progress=progress, log=log,
                     **keep)
    best.name = bundle.name
    best.metrics = {**best.metrics, "calib_clips": len(calib)}
    return best


# ---------------------------------------------------------------------------- evaluation and report

def accuracy(model, feats, labels, batch_size: int = 512) -> float:
    return float((predict_logits(model, feats, batch_size).argmax(1).numpy() == labels).mean())


def integer_agreement(model, feats) -> dict:
    """Top-1 agreement between the fake-quantized model and its integer reference."""
    im = to_integer(model)
    fake = predict_logits(model, feats).argmax(1).numpy()
    ref = im.predict(feats.numpy()).argmax(1)
    return {"agreement": float((fake == ref).mean()), "n": len(ref)}


def memory_row(model) -> dict:
    """Average bits and packed weight memory of a quantized model (float: 32 bits, 4 bytes a weight)."""
    if getattr(model, "quant_config", None) is None:
        n = sum(m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)))
        return {"weight_bits": 32.0, "act_bits": 32.0, "weight_kb": 4 * n / 1000, "weights": n}
    s = bit_stats(model)
    return {"weight_bits": float(s["weight_bits"]), "act_bits": float(s["act_bits"]),
            "weight_kb": s["weight_bytes"] / 1000, "bias_kb": s["bias_bytes"] / 1000, "weights": s["weights"]}


def quant_report(model=None, data=None, methods=REPORT_METHODS, epochs: int = 15, lr: float = 1e-3,
                 out_dir: str | Path | None = None, log=print, progress: bool = False) -> dict:
    """Float vs quantized accuracy (validation, test) and memory, one row per method.
    Quantized models are saved in `out_dir` (if given) as <method>.pt."""
    from ..train import load_model, save_bundle

    check_value("epochs", epochs, {"lo": 1})
    float_net, bundle = load_model(model)
    data_dir = data_dir_of(bundle, data)
    val = split_features(bundle, data_dir, "validation")
    test = split_features(bundle, data_dir, "testing")
    rows = [{"method": "float", "val_acc": accuracy(float_net, *val), "test_acc": accuracy(float_net, *test),
             **memory_row(float_net)}]
    log(_row_text(rows[-1]))
    for method in methods:
        t0 = time.time()
        name = method if isinstance(method, str) else _as_config(method).method
        qb = quantize_model(model, method, data_dir, epochs=epochs, lr=lr, log=log, progress=progress)
        net = qb.build()
        if out_dir is not None:
            save_bundle(qb, Path(out_dir) / f"{name}.pt")
        row = {"method": name, "config": qb.quant, "val_acc": accuracy(net, *val), "test_acc": accuracy(net, *test), **memory_row(net),
               "int_agreement": integer_agreement(net, test[0])["agreement"], "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        log(_row_text(row))
    return {"model": str(model or "dscnn-kws"), "data": str(data_dir), "epochs": epochs, "lr": lr,
            "float_val_acc_stored": bundle.metrics.get("val_acc"),
            "n_val": len(val[1]), "n_test": len(test[1]), "rows": rows, "table": report_table(rows)}


def _row_text(r: dict) -> str:
    return (f"{r['method']:<8} val {100 * r['val_acc']:.2f}%  test {100 * r['test_acc']:.2f}%  "
            f"{r['weight_bits']:.2f} b/weight  {r['act_bits']:.2f} b/act  {r['weight_kb']:.2f} kB")


def report_table(rows: list[dict]) -> str:
    """The report as a Markdown table."""
    lines = ["| method | val acc | test acc | bits/weight | bits/activation | weights (kB, packed) | int ref = fake-quant |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        agree = f"{100 * r['int_agreement']:.1f}%" if "int_agreement" in r else "-"
        lines.append(f"| {r['method']} | {100 * r['val_acc']:.2f}% | {100 * r['test_acc']:.2f}% | {r['weight_bits']:.2f} | "
                     f"{r['act_bits']:.2f} | {r['weight_kb']:.2f} | {agree} |")
    return "\n".join(lines)


def int8_summary(model_path, data_dir, calib_clips: int = CALIB_CLIPS, im: IntModel | None = None) -> dict:
    """For the main job's report: PTQ int8 test accuracy of the integer reference and its size
    (`im`: the model's int8 IntModel if already made by `load_int_model`)."""
    from ..audio import FrontendConfig
    from ..quant.tflite import to_tflite_bytes

    im = im or load_int_model(model_path, data_dir, calib_clips)
    labels = im.meta["labels"]
    feats, y = evaluate.split_features(data_dir, "testing", labels, FrontendConfig.from_dict(im.meta["frontend"]))
    acc = float((im.predict(feats.numpy()).argmax(1) == y).mean())
    size = im.summary()
    return {"method": "ptq8", "test_accuracy": acc, "weight_bytes": size["weight_bytes"], "bias_bytes": size["bias_bytes"],
            "tflite_bytes": len(to_tflite_bytes(im)), "calib_clips": calib_clips, "n_test": len(y)}


def load_int_model(source: str | Path | None = None, data: str | Path | None = None, calib_clips: int = 400,
                   log=lambda *a: None):
    """An IntModel from an int8 .tflite, a quantized tinykws model file, or a float model file / shipped
    name (None: the shipped default), which gets PTQ int8 calibrated on `data` (default: the data set
    it was trained on)."""
    if source is not None and str(source).endswith(".tflite"):
        if not Path(source).is_file():
            raise FileNotFoundError(f"{source}: no such .tflite file")
        return read_tflite(source)
    net, bundle = load_model(source)
    if not bundle.quant:
        log(f"{source or 'dscnn-kws'}: float model; post-training int8 quantization ({calib_clips} calibration clips)")
        bundle = quantize_model(source, "ptq8", data, calib_clips=calib_clips, log=log)
        net = bundle.build()
    return to_integer(net, meta={"labels": bundle.labels, "frontend": bundle.frontend.to_dict(), "arch": bundle.arch,
                                 "quant": bundle.quant, "name": bundle.name or str(source)})
