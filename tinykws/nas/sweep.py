"""Sweeps over beta, cost targets, widths and front ends (MFCC count, or raw), run by Optuna.

Each grid point is one Optuna trial: search -> train the derived model from scratch -> test
(:func:`tinykws.nas.search.run_trial`). The study lives in an Optuna storage (default: SQLite
``<out>/sweep.db``), so a sweep is resumable (finished trials are kept; trials cut off by a
crash are run again, continuing their own checkpoints in ``<out>/trials/<name>``) and can be
inspected with Optuna's tools. ``jobs`` > 1 runs trials in that many worker processes
on the shared storage (Optuna's distributed mode), one torch thread each by default. Objectives: validation accuracy (maximise) and the cost of
the derived model (minimise); test accuracy is recorded as a trial attribute, never optimised.
Grid points whose target no architecture can meet (e.g. too low for a width) are recorded as
pruned with the reason.
"""
from __future__ import annotations

import itertools
import json
import signal
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..checks import setting, validate
from .search import SearchConfig, check_search_config, run_trial


@dataclass
class SweepConfig:
    data: str = setting("", help="Speech Commands folder")
    out: str = setting("runs/sweep", help="sweep folder: trials/, sweep.db, rows.json, table.md, pareto.png")
    frontends: list = field(default_factory=lambda: ["paper10"])  # presets; "raw" = the end-to-end space
    betas: list = field(default_factory=lambda: [0.0, 1.0, 2.0, 4.0])
    targets: list = field(default_factory=lambda: [2.5e6])
    widths: list = field(default_factory=lambda: [0.75])
    search: dict = field(default_factory=dict)  # other SearchConfig settings (cost, epochs, ...)
    train_epochs: int = setting(40, lo=1, help="epochs of training each derived model from scratch")
    jobs: int = setting(1, lo=1, help="trials in parallel: worker processes on the shared Optuna storage")
    storage: str = setting("", help="Optuna storage URL (default: sqlite:///OUT/sweep.db)")
    study: str = "tinykws-nas"

    def __post_init__(self):
        validate(self)

    def grid(self) -> list[dict]:
        return [{"frontend": f, "width": float(w), "target": float(t), "beta": float(b)}
                for f, w, t, b in itertools.product(self.frontends, self.widths, self.targets, self.betas)]

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.out).resolve() / 'sweep.db'}"


def trial_name(p: dict) -> str:
    return f"{p['frontend']}_w{p['width']:g}_t{p['target']:g}_b{p['beta']:g}"


def trial_config(cfg: SweepConfig, p: dict) -> SearchConfig:
    base = {**cfg.search, "data": cfg.data}
    if p["frontend"] == "raw":
        base.pop("first_stride", None)  # a 2-D stride (frames x coefficients) is for the MFCC trials
    return SearchConfig.from_dict({**base, "out": str(Path(cfg.out) / "trials" / trial_name(p)),
                                   "space": "raw" if p["frontend"] == "raw" else "mfcc", "frontend": p["frontend"],
                                   "width": p["width"], "target": p["target"], "beta": p["beta"]})


def _study(cfg: SweepConfig):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    return optuna.create_study(study_name=cfg.study, storage=cfg.storage_url(), directions=["maximize", "minimize"],
                               load_if_exists=True)


KEYS = ("frontend", "width", "target", "beta")


def run_sweep(cfg: SweepConfig, log=print, progress: bool = False, threads: int = 0) -> list[dict]:
    """Run every grid point not finished yet; returns the rows of all finished trials.

    ``cfg.jobs`` > 1 starts that many worker processes on the same storage (Optuna's
    distributed mode; threads would share the GIL), each with ``threads`` torch threads (1 by
    default) and its own share of the grid points."""
    from optuna.trial import TrialState

    from ..audio import build_frontend, get_preset
    from ..data.features import cached_features
    from ..train.evaluate import split_features
    from ..outputs import open_report_dir
    from ..train.trainer import load_train_data

    grid = cfg.grid()
    if not grid:
        raise ValueError("empty sweep: give at least one front end, width, target and beta")
    for p in grid:  # bad settings fail here, before any work; infeasible targets are pruned later
        try:
            check_search_config(trial_config(cfg, p))
        except ValueError as exc:
            if "target" not in str(exc):
                raise
    open_report_dir(cfg.out, [cfg.data])  # a sweep continues in its folder: only in one tinykws wrote
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
        # load the data and features once here, so that the caches are written by one process
        data = load_train_data(trial_config(cfg, todo[0]).train_config(), progress=progress)
        for fe in {p["frontend"] for p in todo}:
            fcfg = get_preset(fe)
            cached_features(data.val, build_frontend(fcfg), fcfg.key())
            split_features(cfg.data, "testing", data.labels, fcfg)
        jobs = max(1, min(cfg.jobs, len(todo)))
        if jobs == 1:
            _run_points(cfg, todo, data, log)
        else:
            _run_workers(cfg, todo, jobs, threads or 1, log)
    rows = sweep_rows(cfg)
    (Path(cfg.out) / "rows.json").write_text(json.dumps(rows, indent=1))
    return rows


def _run_workers(cfg: SweepConfig, todo: list[dict], jobs: int, threads: int, log) -> None:
    """Grid points dealt round-robin to `jobs` worker processes; a killed sweep takes its workers with it."""
    import multiprocessing as mp
    import threading

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(asdict(cfg), todo[i::jobs], threads)) for i in range(jobs)]
    main = threading.current_thread() is threading.main_thread()  # signal handlers: main thread only
    previous = signal.signal(signal.SIGTERM, _terminate) if main else None
    try:
        for pr in procs:
            pr.start()
        for pr in procs:
            pr.join()
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        for pr in procs:
            if pr.is_alive():
                pr.terminate()
                pr.join()
    bad = [pr.exitcode for pr in procs if pr.exitcode != 0]
    if bad:
        log(f"sweep: {len(bad)} of {jobs} workers exited with an error (codes {bad}); "
            f"run the sweep again to redo their unfinished trials")


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def _worker(cfg_dict: dict, points: list[dict], threads: int) -> None:
    """One worker process of a parallel sweep: its grid points, one after the other."""
    import torch

    from ..train.trainer import load_train_data

    torch.set_num_threads(threads)
    cfg = SweepConfig(**cfg_dict)
    data = load_train_data(trial_config(cfg, points[0]).train_config(), progress=False)
    _run_points(cfg, points, data, lambda s: print(s, flush=True))


def _run_points(cfg: SweepConfig, points: list[dict], data, log) -> None:
    """Each grid point as one Optuna trial (asked with the point's values fixed, then told)."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState

    study = _study(cfg)
    grid = cfg.grid()
    space = {k: CategoricalDistribution(sorted({g[k] for g in grid})) for k in KEYS}
    for p in points:
        name = trial_name(p)
        with warnings.catch_warnings():  # PartialFixedSampler is marked experimental
            warnings.simplefilter("ignore")
            study.sampler = optuna.samplers.PartialFixedSampler({k: p[k] for k in KEYS},
                                                                optuna.samplers.RandomSampler())
        trial = study.ask(space)
        trial.set_user_attr("name", name)
        tc = trial_config(cfg, p)
        try:
            check_search_config(tc)
        except ValueError as exc:
            trial.set_user_attr("pruned_reason", str(exc))
            log(f"[{name}] skipped: {exc}")
            study.tell(trial, state=TrialState.PRUNED)
            continue
        log(f"[{name}] search + training ...")
        try:
            row = run_trial(tc, cfg.train_epochs, progress=False, log=lambda s: log(f"[{name}] {s}"), resume=True,
                            data=data, train_kw={})
        except (RuntimeError, ValueError, OSError) as exc:
            log(f"[{name}] failed: {exc}")
            study.tell(trial, state=TrialState.FAIL)
            continue
        for k, v in row.items():
            trial.set_user_attr(k, v)
        log(f"[{name}] {row['arch']}: val {row['val_acc']:.4f}, test {row['test_acc']:.4f}, "
            f"{row['macs'] / 1e6:.3f} M MACs")
        cost_key = tc.cost if tc.cost in ("ops", "weight_bytes", "peak_act_bytes") else "macs"
        study.tell(trial, [row["val_acc"], row[cost_key]])


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
