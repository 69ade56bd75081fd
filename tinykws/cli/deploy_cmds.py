"""CLI command of the deploy stage: `tinykws deploy` (an int8 model as a C99 project)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import calib_clips_option, Json, Overwrite, emit_json, err

KERNELS = ("ref", "fast", "cmsis-nn")
LOOP_ORDERS = ("input", "weight")


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
        specialize: bool = typer.Option(True, help="fast kernels: one instance per layer with its shapes as "
                                                   "compile-time constants (--no-specialize: the generic functions)"),
        data: Optional[Path] = typer.Option(None, help="calibration data for PTQ int8 of a float model "
                                                       "(default: the data set it was trained on)"),
        calib_clips: int = calib_clips_option(),
        flash_kb: Optional[float] = typer.Option(None, help="flash budget (kB, 1000 bytes): fail if the model needs more"),
        ram_kb: Optional[float] = typer.Option(None, help="RAM budget (kB, 1000 bytes): fail if the model needs more"),
        check: int = typer.Option(16, help="random inputs to run the host build on against the integer reference "
                                           "(0: do not build on the host)"),
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
        if kernels == "cmsis-nn" and cmsis_nn is None:
            raise DeployError("--kernels cmsis-nn needs --cmsis-nn DIR (a CMSIS-NN source folder)")
        log = (lambda *a: None) if as_json else (lambda *a: err.print(*a, highlight=False, markup=False))
        prepare_out_dir(out, overwrite, create=False)  # fail before any work
        im = load_int_model(source or model, data, calib_clips=calib_clips, log=log)
        if kernels == "cmsis-nn":
            from ..deploy.cmsis import generate_cmsis

            gen = generate_cmsis(im, out, cmsis_dir=cmsis_nn, overwrite=overwrite)
        else:
            gen = generate(im, out, kernels=kernels, loop_order=loop_order, overwrite=overwrite, specialize=specialize)
        info = {"out": str(out), "kernels": kernels, "loop_order": loop_order if kernels != "cmsis-nn" else None,
                "layers": len(gen.layers), "macs": int(sum(l["macs"] for l in gen.layers)),
                "arena_bytes": gen.plan.arena_bytes, "plan": gen.plan.to_dict()}
        log(gen.plan.table())
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
        size = flash_ram(out, gen, im)
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
