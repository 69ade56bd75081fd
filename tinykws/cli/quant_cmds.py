"""CLI commands of the quant stage: `tinykws quantize` and `tinykws export`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..checks import DEVICE_HELP
from ..quant.config import QATConfig
from .options import calib_clips_option, config_option, Json, Overwrite, check_new_output, emit_json, err


def _config(method: str, weight_target, act_target, act_bits, keep_8bit: str, start_bits, weight_step: str):
    """The quantization config the options name; an option the method does not take is an error."""
    from ..quant import QuantizationError, preset

    qat = method.startswith("qat")
    step = None if weight_step == "layer" else weight_step
    given = {"--weight-target": weight_target, "--act-target": act_target} if method != "learned" else \
        {"--act-bits": act_bits}
    given.update({} if qat else {"--start-bits": start_bits, "--weight-step": step})
    wrong = [k for k, v in given.items() if v is not None]
    if wrong:
        raise QuantizationError(f"{', '.join(wrong)} cannot be used with --method {method}")
    if method == "learned":
        return preset(method, weight_bits=weight_target, act_bits=act_target, keep_8bit=keep_8bit)
    if qat:
        return preset(method, act_bits=act_bits, keep_8bit=keep_8bit, start_bits=start_bits, weight_step=weight_step)
    return preset(method, act_bits=act_bits, keep_8bit=keep_8bit)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the `tinykws` app."""

    @app.command("quantize")
    def quantize_cmd(
        out: Path = typer.Option(..., help="quantized model file (.pt); with --report: a report folder"),
        model: Optional[str] = typer.Option(None, help="float model file or shipped name (default: the shipped one)"),
        method: str = typer.Option("ptq8", help="ptq8 | qat8 | qat4 | qat2 (any qatN, N in 2..8) | learned"),
        data: Optional[Path] = typer.Option(None, help="data set to calibrate / fine-tune on (default: the model's own)"),
        epochs: int = typer.Option(15, help="fine-tuning epochs for QAT and learned bit-widths"),
        lr: float = typer.Option(1e-3, help="fine-tuning learning rate"),
        calib_clips: int = calib_clips_option(),
        weight_target: Optional[float] = typer.Option(None, help="learned: target average bits per weight (default 3)"),
        act_target: Optional[float] = typer.Option(None, help="learned: target average bits per activation (default 4)"),
        act_bits: Optional[int] = typer.Option(None, help="ptqN / qatN: activation bits, 2..8 (default N)"),
        keep_8bit: str = config_option(QATConfig, "keep_8bit"),
        start_bits: Optional[int] = config_option(QATConfig, "start_bits", help="qatN: progressive lowering: "
                                                  "fine-tune the weights at this many bits first, then halve down to N "
                                                  "(each stage gets --epochs)"),
        weight_step: str = config_option(QATConfig, "weight_step", help="qatN: learned weight clipping (the "
                                         "step): one ratio per layer, or per output channel (LSQ-style)"),
        augment: str = typer.Option("full", help="fine-tuning augmentation: full (the model's own) or spec "
                                    "(SpecAugment only on cached features: faster)"),
        device: str = typer.Option("auto", help="where QAT fine-tuning runs: " + DEVICE_HELP),
        report: bool = typer.Option(False, "--report", help="float vs ptq8, qat8, qat4, qat2, learned: accuracy and memory table"),
        overwrite: Overwrite = False,
        as_json: Json = False,
    ):
        """Quantize a trained model (post-training, QAT, or trained bit-widths)."""
        from ..quant import preset
        from ..recipes.quantize import quant_report, quantize_model
        from ..train import save_bundle

        from ..outputs import prepare_output_dir

        check_new_output(out, overwrite, [model, data], folder=report)
        log = (lambda *a: None) if as_json else (lambda *a: err.print(*a, highlight=False))
        if report:
            prepare_output_dir(out, overwrite, [i for i in (model, data) if i is not None and Path(i).exists()])
            learned = preset("learned", weight_bits=weight_target, act_bits=act_target)
            methods = ("ptq8", "qat8", "qat4", "qat2", learned)
            rep = quant_report(model, data, methods=methods, epochs=epochs, lr=lr, out_dir=out, log=log)
            (out / "report.json").write_text(json.dumps(rep, indent=2))
            (out / "report.md").write_text(f"# Quantization report\n\nModel `{rep['model']}`, data `{rep['data']}` "
                                           f"({rep['n_val']} validation, {rep['n_test']} test clips), {epochs} "
                                           f"fine-tuning epochs at lr {lr}.\n\n{rep['table']}\n")
            if as_json:
                emit_json(rep)
            else:
                print(rep["table"])
            return
        config = _config(method, weight_target, act_target, act_bits, keep_8bit, start_bits, weight_step)  # fails before any work
        bundle = quantize_model(model, config, data, epochs=epochs, lr=lr, calib_clips=calib_clips, log=log,
                                progress=False, device=device, augment=augment)
        save_bundle(bundle, out)
        from ..recipes.quantize import memory_row

        row = {"model": str(out), "method": method, "config": bundle.quant, **memory_row(bundle.build()), **bundle.metrics}
        if as_json:
            emit_json(row)
        else:
            err.print(f"{method}: {row['weight_bits']:.2f} bits/weight, {row['act_bits']:.2f} bits/activation, "
                      f"{row['weight_kb']:.2f} kB packed weights; model: [bold]{out}[/bold]", highlight=False)

    @app.command("export")
    def export_cmd(
        out: Path = typer.Option(..., help="output file (.tflite or .onnx)"),
        model: Optional[str] = typer.Option(None, help="model file or shipped name (default: the shipped one)"),
        format: str = typer.Option("tflite", "--format", help="tflite (int8; float models get PTQ-8 first) or onnx"),
        data: Optional[Path] = typer.Option(None, help="calibration data for PTQ-8 of a float model (default: its own)"),
        overwrite: Overwrite = False,
        as_json: Json = False,
    ):
        """Export a model to TFLite (int8, runs on TFLite Micro) or ONNX (float, or QDQ when quantized)."""
        from ..quant import QuantizationError
        from ..quant.onnx_export import export_onnx
        from ..recipes.quantize import quantize_model
        from ..quant.integer import to_integer
        from ..quant.tflite import export_tflite
        from ..train import load_model

        if format not in ("tflite", "onnx"):
            raise QuantizationError(f"unknown --format {format!r}: use tflite or onnx")
        check_new_output(out, overwrite, [model, data])
        net, bundle = load_model(model)
        info = {"out": str(out), "format": format, "quantized": bool(bundle.quant)}
        if format == "tflite":
            if not bundle.quant:
                bundle = quantize_model(model, "ptq8", data, log=lambda *a: None)
                net = bundle.build()
                info["quantized"] = "ptq8 (on export)"
            im = to_integer(net, meta={"labels": bundle.labels, "frontend": bundle.frontend.to_dict(),
                                       "arch": bundle.arch, "quant": bundle.quant})
            export_tflite(im, out)
        else:
            export_onnx(net, out)
        info["bytes"] = out.stat().st_size
        if as_json:
            emit_json(info)
        else:
            err.print(f"wrote [bold]{out}[/bold] ({info['bytes']:,} bytes, {format}"
                      f"{', quantized' if info['quantized'] else ', float'})", highlight=False)
