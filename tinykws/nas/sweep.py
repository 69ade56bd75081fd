"""Sweeps over beta, cost targets, widths and front ends (MFCC count, or raw), run by Optuna.

Each grid point is one Optuna trial: search -> train the derived model from scratch -> test
(:func:`tinykws.nas.search.run_trial`). The study lives in an Optuna storage (default: SQLite
``<out>/sweep.db``), so a sweep is resumable (finished trials are kept; trials cut off by a
crash are run again, continuing their own checkpoints in ``<out>/trials/<name>``) and can be
inspected with Optuna's tools. ``jobs`` > 1 runs trials in parallel threads (Optuna's
``n_jobs``), one torch thread each. Objectives: validation accuracy (maximise) and the cost of
the derived model (minimise); test accuracy is recorded as a trial attribute, never optimised.
Grid points whose target no architecture can meet (e.g. too low for a width) are recorded as
pruned with the reason.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .search import SearchConfig, check_search_config, run_trial


@dataclass
class SweepConfig:
    data: str = ""
    out: str = "runs/sweep"
    frontends: list = field(default_factory=lambda: ["paper10"])  # presets; "raw" = the end-to-end space
    betas: list = field(default_factory=lambda: [0.0, 1.0, 2.0, 4.0])
    targets: list = field(default_factory=lambda: [2.5e6])
    widths: list = field(default_factory=lambda: [0.75])
    search: dict = field(default_factory=dict)  # other SearchConfig settings (cost, epochs, ...)
    train_epochs: int = 40
    jobs: int = 1
    storage: str = ""  # an Optuna storage URL; "" = sqlite:///<out>/sweep.db
    study: str = "tinykws-nas"

    def grid(self) -> list[dict]:
        return [{"frontend": f, "width": float(w), "target": float(t), "beta": float(b)}
                for f, w, t, b in itertools.product(self.frontends, self.widths, self.targets, self.betas)]

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.out).resolve() / 'sweep.db'}"


def trial_name(p: dict) -> str:
    return f"{p['frontend']}_w{p['width']:g}_t{p['target']:g}_b{p['beta']:g}"


def trial_config(cfg: SweepConfig, p: dict) -> SearchConfig:
    base = {**cfg.search, "data": cfg.data}
    return SearchConfig.from_dict({**base, "out": str(Path(cfg.out) / "trials" / trial_name(p)),
                                   "space": "raw" if p["frontend"] == "raw" else "mfcc", "frontend": p["frontend"],
                                   "width": p["width"], "target": p["target"], "beta": p["beta"]})


def _study(cfg: SweepConfig):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    return optuna.create_study(study_name=cfg.study, storage=cfg.storage_url(), directions=["maximize", "minimize"],
                               load_if_exists=True)


def run_sweep(cfg: SweepConfig, log=print, progress: bool = False) -> list[dict]:
    """Run every grid point not finished yet; returns the rows of all finished trials."""
    import optuna
    import torch
    from optuna.trial import TrialState

    from ..audio import build_frontend, get_preset
    from ..data.clips import load_clips
    from ..data.features import cached_features
    from ..data.speech_commands import SpeechCommands
    from ..train.evaluate import task_of

    grid = cfg.grid()
    if not grid:
        raise ValueError("empty sweep: give at least one front end, width, target and beta")
    for p in grid:  # bad settings fail here, before any work; infeasible targets are pruned later
        tc = trial_config(cfg, p)
        try:
            check_search_config(tc)
        except ValueError as exc:
            if "target" not in str(exc):
                raise
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out) / "sweep.json").write_text(json.dumps(asdict(cfg), indent=2))
    study = _study(cfg)
    done = set()
    for t in study.get_trials(deepcopy=False):
        key = t.user_attrs.get("name")
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and key:
            done.add(key)
        elif t.state in (TrialState.RUNNING, TrialState.WAITING):  # cut off by a crash: run again
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    todo = [p for p in grid if trial_name(p) not in done]
    log(f"sweep: {len(grid)} grid points, {len(grid) - len(todo)} finished, {len(todo)} to run "
        f"(storage {cfg.storage_url()})")
    if todo:
        # load the data once, in this thread (the caches are not written by parallel threads then)
        tc0 = trial_config(cfg, todo[0])
        from ..train.trainer import load_train_data

        data = load_train_data(tc0.train_config(), progress=progress)
        ds = SpeechCommands.open(cfg.data)
        test = load_clips(ds, ds.entries("testing", task_of(data.labels), 0.1, 0.1, 0), data.labels, 0)
        for fe in {p["frontend"] for p in todo}:
            fcfg = get_preset(fe)
            for clips in (data.val, test):
                cached_features(clips, build_frontend(fcfg), fcfg.key())
        for p in todo:
            study.enqueue_trial({k: p[k] for k in ("frontend", "width", "target", "beta")})
        if cfg.jobs > 1:
            torch.set_num_threads(1)

        def objective(trial):
            p = {"frontend": trial.suggest_categorical("frontend", sorted({g["frontend"] for g in grid})),
                 "width": trial.suggest_categorical("width", sorted({g["width"] for g in grid})),
                 "target": trial.suggest_categorical("target", sorted({g["target"] for g in grid})),
                 "beta": trial.suggest_categorical("beta", sorted({g["beta"] for g in grid}))}
            name = trial_name(p)
            trial.set_user_attr("name", name)
            tc = trial_config(cfg, p)
            try:
                check_search_config(tc)
            except ValueError as exc:
                trial.set_user_attr("pruned_reason", str(exc))
                log(f"[{name}] skipped: {exc}")
                raise optuna.TrialPruned(str(exc)) from None
            log(f"[{name}] search + training ...")
            row = run_trial(tc, cfg.train_epochs, progress=False, log=lambda s: log(f"[{name}] {s}"), resume=True,
                            data=data, train_kw={})
            for k, v in row.items():
                trial.set_user_attr(k, v)
            log(f"[{name}] {row['arch']}: val {row['val_acc']:.4f}, test {row['test_acc']:.4f}, "
                f"{row['macs'] / 1e6:.3f} M MACs")
            cost_key = {"ops": "ops", "weight_bytes": "weight_bytes", "peak_act_bytes": "peak_act_bytes"}.get(tc.cost, "macs")
            return row["val_acc"], row[cost_key]

        study.optimize(objective, n_trials=len(todo), n_jobs=max(1, cfg.jobs), catch=(RuntimeError,))
    rows = sweep_rows(cfg)
    (Path(cfg.out) / "rows.json").write_text(json.dumps(rows, indent=1))
    return rows


def sweep_rows(cfg_or_out) -> list[dict]:
    """Rows (dicts) of the finished trials of a sweep (a SweepConfig or its output folder)."""
    if not isinstance(cfg_or_out, SweepConfig):
        path = Path(cfg_or_out) / "sweep.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not a sweep folder (no sweep.json)")
        d = json.loads(path.read_text())
        cfg_or_out = SweepConfig(**d)
    from optuna.trial import TrialState

    study = _study(cfg_or_out)
    rows = [dict(t.user_attrs) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return sorted(rows, key=lambda r: (r.get("frontend", ""), r.get("width", 0), r.get("target", 0), r.get("beta", 0)))
