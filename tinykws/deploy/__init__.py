"""Deployment: an int8 IntModel as a self-contained C99 project for Cortex-M (and the host).

    im = load_int_model("dscnn-kws", data="speech_commands_mini")   # PTQ int8 of a float model
    gen = generate(im, "out/kws", kernels="fast")                   # model.c/.h, kernels, Makefile
    print(gen.plan.table())
    y = run_host("out/kws", x)                                      # == im.run(x), bit for bit

See docs/deploy.md.
"""
from __future__ import annotations

from pathlib import Path


class DeployError(ValueError):
    """A model, option or folder the deployment stage cannot use; the message names it."""


from .plan import MemoryPlan, plan_memory  # noqa: E402
from .codegen import GeneratedModel, generate, prepare_out_dir  # noqa: E402
from .host import build_host, run_host  # noqa: E402


def load_int_model(source: str | Path | None = None, data: str | Path | None = None, calib_clips: int = 400,
                   log=lambda *a: None):
    """An IntModel from an int8 .tflite, a quantized tinykws model file, or a float model file / shipped
    name (None: the shipped default), which gets PTQ int8 calibrated on `data` (default: the data set
    it was trained on)."""
    from ..quant import read_tflite, to_integer
    from ..quant.recipes import quantize_model
    from ..train import load_model

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


__all__ = ["DeployError", "MemoryPlan", "plan_memory", "GeneratedModel", "generate", "prepare_out_dir",
           "build_host", "run_host", "load_int_model"]
