"""CLI command of the MCU cost stage: `tinykws bench-mcu` (a model on an emulated Cortex-M7)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ..deploy.stream_c import StreamCConfig
from .options import calib_clips_option, config_option, Json, emit_json, err


def format_bench(d: dict) -> str:
    """The bench-mcu result as printable text: one row per layer, then the totals."""
    lines = [f"{d['model']}: kernels {d['kernels']}" + (f", loop order {d['loop_order']}" if d["loop_order"] else "")
             + f", -{d['opt']}{'' if d['dsp'] else ' (no DSP)'}, {d['inputs']} inputs, "
             + ("bit-exact with the integer reference" if d["bit_exact"] else "NOT bit-exact with the integer reference"),
             f"{'layer':<14} {'kernel':<32} {'MACs':>10} {'instructions':>13} {'per MAC':>8}"]
    for l in d["layers"]:
        n = l["instructions"]
        lines.append(f"{l['name'] or l['op']:<14} {l['kernel'] or '':<32} {l['macs']:>10,} "
                     f"{(f'{n:,}' if n is not None else '-'):>13} {l['instructions_per_mac'] or '':>8}")
    f, r = d["flash"], d["ram"]
    lines += [f"instructions {d['instructions']:,} ({d['instructions_per_mac']} per MAC, {d['macs']:,} MACs)",
              f"flash {d['flash_bytes']:,} B (model {f['model']:,}, kernels {f['kernels']:,}, other {f['other']:,})",
              f"RAM {d['ram_bytes']:,} B (arena {r['arena']:,}, stack {r['stack']:,}, other {r['other']:,})",
              f"{d['est_ms']} ms at {d['clock_mhz']:g} MHz ({d['est_note']})"]
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add this stage's command to the `tinykws` app."""

    @app.command("bench-mcu")
    def bench_mcu_cmd(
        model: str = typer.Argument(..., help="shipped model name (dscnn-kws, nas-kws), a model file or an int8 .tflite"),
        kernels: str = typer.Option("fast", help="ref | fast | cmsis-nn"),
        loop_order: str = typer.Option("input", help="input | weight (tinykws kernels)"),
        opt: str = typer.Option("O2", help="O2 | Os | O3"),
        pack_weights: str = typer.Option("auto", help="auto: layers whose weights all fit 4 or 2 signed bits store "
                                                      "them packed | off: int8 weights (tinykws kernels)"),
        no_dsp: bool = typer.Option(False, "--no-dsp", help="build without the DSP source paths (-U__ARM_FEATURE_DSP)"),
        clock_mhz: float = typer.Option(216.0, help="clock for the ms estimate"),
        cmsis_nn: Optional[Path] = typer.Option(None, "--cmsis-nn", help="CMSIS-NN source folder (--kernels cmsis-nn; "
                                                                           "default: $CMSIS_NN_DIR)"),
        data: Optional[Path] = typer.Option(None, help="run the test split's clips of this data set (default: the "
                                                       "quantized zero input and random inputs)"),
        clips: int = typer.Option(3, help="clips to run with --data"),
        calib_clips: int = calib_clips_option(),
        stream: bool = typer.Option(False, "--stream", help="the whole streaming pipeline (device MFCC + network + "
                                                            "detection, tinykws deploy --stream): cost per hop, per "
                                                            "network run, per classification; duty cycle"),
        hop_ms: int = config_option(StreamCConfig, "hop_ms"),
        seconds: float = typer.Option(1.2, min=1.0, max=10.0, help="--stream: seconds of audio to run (a seeded "
                                                                     "noisy tone)"),
        cmsis_dsp: Optional[Path] = typer.Option(None, "--cmsis-dsp", help="CMSIS-DSP source folder (--stream)"),
        as_json: Json = False,
    ):
        """Instructions (total, per layer, per MAC), flash, RAM and stack of a model on an emulated Cortex-M7."""
        from ..recipes import load_int_model
        from ..deploy.mcu import McuError, bench_m7, clip_inputs, default_inputs

        if pack_weights not in ("off", "auto"):
            raise McuError(f"--pack-weights {pack_weights!r}: use off | auto")
        log = (lambda *a: None) if as_json else (lambda *a: err.print(*a, highlight=False, markup=False))
        cmsis = cmsis_nn or (Path(os.environ["CMSIS_NN_DIR"]) if os.environ.get("CMSIS_NN_DIR") else None)
        im = load_int_model(model, data, calib_clips=calib_clips, log=log)
        if stream:
            _bench_stream(im, model, kernels, opt, hop_ms, seconds, cmsis_dsp, clock_mhz, as_json)
            return
        x = clip_inputs(im, data, clips) if data else default_inputs(im)
        d = bench_m7(im, kernels, loop_order, opt, dsp=not no_dsp, inputs=x, cmsis_dir=cmsis,
                     clock_mhz=clock_mhz, model=model, pack_weights=pack_weights)
        if as_json:
            emit_json(d)
        else:
            typer.echo(format_bench(d))
        if not d["bit_exact"]:
            raise typer.Exit(1)


def format_stream_bench(d: dict) -> str:
    f, r = d["flash"], d["ram"]
    return "\n".join([
        f"{d['model']}: streaming pipeline on the emulated Cortex-M7, kernels {d['kernels']}, -{d['opt']}, "
        f"{d['audio_ms']} ms of audio, {d['hops']} hops, {d['network_runs']} network runs, "
        + ("results identical to the Python device streaming path" if d["bit_exact"] else "results DIFFER from the Python path"),
        f"MFCC per new hop (20 ms of audio)   {d['instructions_per_hop_mfcc']:>12,} instructions",
        f"network per run                     {d['instructions_per_network_run']:>12,}",
        f"detection per run                   {d['instructions_per_detection']:>12,}",
        f"one classification every {d['stream']['hop_ms']} ms ({d['frames_per_classification']} new frames + network) "
        f"{d['instructions_per_classification']:,} = {d['est_ms_per_classification']} ms at {d['clock_mhz']:g} MHz, "
        f"duty cycle {100 * d['duty_cycle']:.1f}% (target <= 4.0 M: {'met' if d['meets_target'] else 'not met'})",
        f"flash {d['flash_bytes']:,} B (network {f['network']:,}, MFCC + CMSIS-DSP {f['mfcc']:,}, loop {f['loop']:,})",
        f"RAM {d['ram_bytes']:,} B (network arena {r['network']:,}, loop state incl. MFCC ring {r['loop']:,}, "
        f"MFCC {r['mfcc']:,}, stack {r['stack']:,})",
        f"({d['est_note']})"])


def _bench_stream(im, model, kernels, opt, hop_ms, seconds, cmsis_dsp, clock_mhz, as_json) -> None:
    import numpy as np

    from ..deploy.stream_c import bench_stream_m7
    from ..stream.device import device_results

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000.0
    a = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.02 * rng.standard_normal(len(t))
    d = bench_stream_m7(im, StreamCConfig(hop_ms=hop_ms), a, kernels=kernels, opt=opt, cmsis_dsp=cmsis_dsp,
                        clock_mhz=clock_mhz)
    _, sp = device_results(im, a, hop_ms, cmsis_dsp)
    d["model"] = model
    d["bit_exact"] = bool(np.array_equal(np.asarray(d["results"]).reshape(sp.shape), sp))
    if as_json:
        emit_json(d)
    else:
        typer.echo(format_stream_bench(d))
    if not d["bit_exact"]:
        raise typer.Exit(1)
