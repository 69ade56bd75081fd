"""CLI command of the deploy stage: `tinykws deploy` (an int8 model as a C99 project)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..deploy.stream_c import StreamCConfig
from .options import calib_clips_option, config_option, Json, Overwrite, emit_json, err

KERNELS = ("ref", "fast", "cmsis-nn")
LOOP_ORDERS = ("input", "weight")
PACK_WEIGHTS = ("off", "auto")
SPARSE = ("off", "auto", "on")


def register(app: typer.Typer) -> None:
    """Add this stage's command to the `tinykws` app."""

    @app.command("deploy")
    def deploy_cmd(
        source: Optional[str] = typer.Argument(None, help="an int8 .tflite or a model file (or use --model)"),
        out: Path = typer.Option(..., help="new folder for the C project"),
        model: Optional[str] = typer.Option(None, help="shipped model name (dscnn-kws, nas-kws) or model file"),
        kernels: str = typer.Option("fast", help="ref | fast | cmsis-nn"),
        loop_order: str = typer.Option("input", help="input (for each output, sum its window) | weight "
                                                     "(for each weight, accumulate into the outputs it touches)"),
        cmsis_nn: Optional[Path] = typer.Option(None, "--cmsis-nn", help="CMSIS-NN source folder (--kernels cmsis-nn)"),
        pack_weights: str = typer.Option("auto", help="auto: layers whose weights all fit 4 or 2 signed bits "
                                                      "(QAT at those widths) store them packed | off: int8 weights"),
        sparse: str = typer.Option("off", help="off (dense kernels) | auto (a pointwise layer gets a sparse kernel, "
                                               "zero-skip or 1x4 / 1x8 block-sparse SIMD, past its measured "
                                               "break-even) | on (the cheapest sparse kernel that fits); "
                                               "--kernels fast; the choice is printed per layer"),
        specialize: bool = typer.Option(True, help="fast kernels: one instance per layer with its shapes as "
                                                   "compile-time constants (--no-specialize: the generic functions)"),
        data: Optional[Path] = typer.Option(None, help="calibration data for PTQ int8 of a float model "
                                                       "(default: the data set it was trained on)"),
        calib_clips: int = calib_clips_option(),
        flash_kb: Optional[float] = typer.Option(None, help="flash budget (kB, 1000 bytes): fail if the model needs more"),
        ram_kb: Optional[float] = typer.Option(None, help="RAM budget (kB, 1000 bytes): fail if the model needs more"),
        check: int = typer.Option(16, help="random inputs to run the host build on against the integer reference "
                                           "(0: do not build on the host)"),
        stream: bool = typer.Option(False, "--stream", help="also write the C streaming loop (tkws_stream.c/.h: int16 "
                                                            "audio in, device MFCC, network every --hop-ms, detection)"),
        hop_ms: int = config_option(StreamCConfig, "hop_ms"),
        window_ms: int = config_option(StreamCConfig, "window_ms"),
        threshold: int = config_option(StreamCConfig, "threshold"),
        suppression_ms: int = config_option(StreamCConfig, "suppression_ms"),
        min_count: int = config_option(StreamCConfig, "min_count"),
        cmsis_dsp: Optional[Path] = typer.Option(None, "--cmsis-dsp", help="CMSIS-DSP source folder for --stream "
                                                                            "(default: $TINYKWS_CMSIS_DSP or .cache/cmsisdsp)"),
        overwrite: Overwrite = False,
        as_json: Json = False,
    ):
        """Generate a C99 project (model.c/.h, kernels, Makefile) from an int8 model; print its memory plan."""
        import numpy as np

        from ..deploy import DeployError, generate, prepare_out_dir, run_host
        from ..recipes import load_int_model
        from ..deploy.mcu import flash_ram

        if source and model:
            raise DeployError("give the model once: as an argument or with --model, not both")
        if kernels not in KERNELS:
            raise DeployError(f"--kernels {kernels!r}: use {' | '.join(KERNELS)}")
        if loop_order not in LOOP_ORDERS:
            raise DeployError(f"--loop-order {loop_order!r}: use {' | '.join(LOOP_ORDERS)}")
        if pack_weights not in PACK_WEIGHTS:
            raise DeployError(f"--pack-weights {pack_weights!r}: use {' | '.join(PACK_WEIGHTS)}")
        if kernels == "cmsis-nn" and cmsis_nn is None:
            raise DeployError("--kernels cmsis-nn needs --cmsis-nn DIR (a CMSIS-NN source folder)")
        if sparse not in SPARSE:
            raise DeployError(f"--sparse {sparse!r}: use {' | '.join(SPARSE)}")
        if sparse != "off" and kernels != "fast":
            raise DeployError(f"--sparse {sparse} takes --kernels fast (the sparse kernels are fast variants), "
                              f"not {kernels}")
        log = (lambda *a: None) if as_json else (lambda *a: err.print(*a, highlight=False, markup=False))
        scfg = StreamCConfig(hop_ms, window_ms, threshold, suppression_ms, min_count) if stream else None
        if stream and kernels == "cmsis-nn":
            raise DeployError("--stream takes the tinykws kernels (--kernels ref | fast), not cmsis-nn")
        prepare_out_dir(out, overwrite, create=False)  # fail before any work
        im = load_int_model(source or model, data, calib_clips=calib_clips, log=log)
        if stream:
            from ..deploy.frontend import find_cmsis_dsp
            from ..deploy.stream_c import stream_params

            stream_params(im, scfg)  # a front end the device cannot compute, a bad hop: fail before writing
            find_cmsis_dsp(cmsis_dsp)
        if kernels == "cmsis-nn":
            from ..deploy.cmsis import generate_cmsis

            gen = generate_cmsis(im, out, cmsis_dir=cmsis_nn, overwrite=overwrite)
        else:
            gen = generate(im, out, kernels=kernels, loop_order=loop_order, overwrite=overwrite, specialize=specialize,
                           pack_weights=pack_weights, sparse=sparse)
        info = {"out": str(out), "kernels": kernels, "loop_order": loop_order if kernels != "cmsis-nn" else None,
                "sparse": sparse if kernels != "cmsis-nn" else None,
                "layers": len(gen.layers), "macs": int(sum(l["macs"] for l in gen.layers)),
                "arena_bytes": gen.plan.arena_bytes, "plan": gen.plan.to_dict(),
                "packed_layers": [l["name"] for l in gen.layers
                                  if any(s in (l.get("kernel") or "") for s in ("_s4_", "_s2_"))]}
        log(gen.plan.table())
        if sparse != "off":
            info["kernel_choices"] = [{"layer": l.get("name"), "kernel": l["kernel"], "why": l["kernel_choice"]}
                                      for l in gen.layers if "kernel_choice" in l]
            for c in info["kernel_choices"]:
                log(f"sparse {sparse}, {c['layer']}: {c['why']}")
        if check > 0:
            rng = np.random.default_rng(0)
            x = rng.integers(-128, 128, size=(check, *im.tensors[im.input].shape[1:]), dtype=np.int8)
            y = run_host(out, x)
            ref = im.run(x).reshape(len(x), -1)
            info["bit_exact"] = bool(np.array_equal(y, ref))
            info["checked_inputs"] = check
            if not info["bit_exact"]:
                raise DeployError(f"{out}: the host build differs from the integer reference on "
                                  f"{int((y != ref).any(1).sum())} of {check} random inputs")
            log(f"host build (gcc) == integer reference on {check} random inputs")
        size = flash_ram(out, gen, im)  # the network alone (before the loop's files join the folder)
        if stream:
            from ..deploy.stream_c import write_stream_sources

            write_stream_sources(im, out, scfg, cmsis_dsp)
            info["stream"] = scfg.to_dict()
            log(f"streaming loop: tkws_stream.c/.h (network every {scfg.hop_ms} ms); make stream-host builds "
                "build/host/tkws_stream (int16 audio on stdin, detections on stdout)")
            if check > 0:
                info["stream_bit_exact"] = _check_stream(im, out, scfg, cmsis_dsp)
                log("streaming loop (gcc) == Python device streaming path on 2 s of test audio")
        info.update(size)
        log(f"flash {size['flash_bytes']:,} bytes ({size['flash_source']}), RAM {size['ram_bytes']:,} bytes "
            f"({size['ram_source']})")
        over = []
        if flash_kb is not None and size["flash_bytes"] > flash_kb * 1000:
            over.append(f"flash {size['flash_bytes']:,} bytes > --flash-kb {flash_kb:g} ({flash_kb * 1000:,.0f} bytes)")
        if ram_kb is not None and size["ram_bytes"] > ram_kb * 1000:
            over.append(f"RAM {size['ram_bytes']:,} bytes > --ram-kb {ram_kb:g} ({ram_kb * 1000:,.0f} bytes)")
        info["fits"] = not over
        if as_json:
            emit_json(info)
        else:
            err.print(f"C project in [bold]{out}[/bold]: {info['layers']} layers, {info['macs']:,} MACs, "
                      f"arena {info['arena_bytes']:,} bytes", highlight=False)
        if over:
            err.print(f"[red]error:[/red] the model does not fit: {'; '.join(over)}", highlight=False)
            raise typer.Exit(1)


def _check_stream(im, out, scfg, cmsis_dsp) -> bool:
    """The host build of the loop against tinykws.stream.device on 2 s of a seeded noisy tone."""
    import numpy as np

    from ..deploy import DeployError
    from ..deploy.stream_c import build_stream_host, run_stream_host
    from ..stream.device import device_results

    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000.0
    a = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))
    build_stream_host(out, cmsis_dsp)
    _, (tc, sc) = run_stream_host(out, a, chunk=500)
    tp, sp = device_results(im, a, scfg.hop_ms, cmsis_dsp)
    if not (np.array_equal(tc, tp) and np.array_equal(sc, sp)):
        raise DeployError(f"{out}: the streaming loop's host build differs from the Python device streaming path")
    return True
