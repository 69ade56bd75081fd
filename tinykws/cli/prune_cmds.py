"""CLI command of the prune stage: `tinykws prune`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..prune.config import PruneConfig as P
from .options import DataDir, Json, ModelRef, Overwrite, check_new_output, config_option, emit_json, err


def register(app: typer.Typer) -> None:
    """Add this stage's command to the `tinykws` app."""

    @app.command("prune")
    def prune_cmd(
        data: DataDir,
        out: Path = typer.Option(..., help="pruned model file (.pt)"),
        model: ModelRef = None,
        method: str = config_option(P, "method"),
        sparsity: float = config_option(P, "sparsity"),
        scope: str = config_option(P, "scope"),
        target: str = config_option(P, "target"),
        round_to: int = config_option(P, "round_to"),
        schedule: str = config_option(P, "schedule"),
        steps: int = config_option(P, "steps"),
        epochs: int = config_option(P, "epochs"),
        ramp: float = config_option(P, "ramp"),
        lr: float = config_option(P, "lr"),
        layers: Optional[str] = typer.Option(None, help="comma-separated layers to prune (default: every conv/linear "
                                                        "layer the granularity fits, except the first and the depthwise ones)"),
        augment: str = config_option(P, "augment"),
        seed: int = config_option(P, "seed"),
        teacher: Optional[str] = typer.Option(None, help="comma-separated model files / shipped names to distill "
                                                         "from while fine-tuning (e.g. the unpruned model)"),
        kd_alpha: float = config_option(P, "kd_alpha"),
        overwrite: Overwrite = False,
        as_json: Json = False,
    ):
        """Prune a float model by magnitude (masks or whole channels) with gradual fine-tuning."""
        from ..prune import PruneConfig, prune_model
        from ..train import save_bundle

        config = PruneConfig(method=method, sparsity=sparsity, scope=scope, target=target, round_to=round_to, schedule=schedule,
                             steps=steps, epochs=epochs, ramp=ramp, lr=lr, seed=seed, augment=augment,
                             layers=[n.strip() for n in layers.split(",") if n.strip()] if layers else [],
                             teacher=[n.strip() for n in teacher.split(",") if n.strip()] if teacher else [],
                             kd_alpha=kd_alpha)
        check_new_output(out, overwrite, [model, data])
        log = (lambda *a: None) if as_json else (lambda *a: err.print(*a, highlight=False, markup=False))
        bundle = prune_model(model, config, data, log=log)
        save_bundle(bundle, out)
        m = bundle.metrics
        row = {"model": str(out), "method": method, "sparsity": m["sparsity"], "macs": m["macs"],
               "dense_macs": m["dense_macs"], "val_acc": m.get("val_acc"), "epochs": epochs}
        if as_json:
            emit_json(row)
        else:
            acc = f", validation accuracy {100 * m['val_acc']:.2f}%" if m.get("val_acc") is not None else ""
            err.print(f"{method}: {100 * m['sparsity']:.1f}% zero weights, {m['macs']:,} of {m['dense_macs']:,} MACs"
                      f"{acc}; model: [bold]{out}[/bold]", highlight=False)
