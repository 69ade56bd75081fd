"""Sweeps over beta, cost targets, widths and front ends (MFCC count, or raw), run by Optuna.

Each grid point is one Optuna trial: search -> train the derived model from scratch -> test
(:func:`tinykws.nas.search.run_trial`). The study lives in an Optuna storage (default: SQLite
``<out>/sweep.db``), so a sweep is resumable (finished trials are kept; trials cut off by a
crash are run again, continuing their own checkpoints in ``<out>/trials/<name>``) and can be
inspected with Optuna's tools. ``jobs`` > 1 runs trials in that many worker processes
on the shared storage (Optuna's distributed mode), one torch thread each by default.

Several machines join one sweep by giving the same ``storage`` (e.g. ``postgresql://...``): every
worker claims the next grid point that no trial has finished or is running, through the storage
(a trial is created WAITING with the point's name and taken RUNNING atomically; of two trials that
took the same point, the later one stands down). A running trial sends a heartbeat every
``heartbeat`` seconds; one silent for three heartbeats (its worker was killed, its machine lost) is
marked failed and its point is run again by whichever worker gets to it. Workers stay until every
grid point is finished. Objectives: validation accuracy (maximise) and the cost of
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
    storage: str = setting("", help="Optuna storage URL (default: sqlite:///OUT/sweep.db); the same URL on "
                                    "several machines runs one sweep across them")
    study: str = "tinykws-nas"
    heartbeat: int = setting(10, lo=1, help="seconds between a running trial's heartbeats; a trial silent for "
                                            "three is taken as dead and its grid point run again")

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
    with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna
        warnings.simplefilter("ignore")
        storage = optuna.storages.RDBStorage(cfg.storage_url(), heartbeat_interval=cfg.heartbeat,
                                             grace_period=3 * cfg.heartbeat, engine_kwargs={"pool_pre_ping": True})
    return optuna.create_study(study_name=cfg.study, storage=storage, directions=["maximize", "minimize"],
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
        elif t.state in (TrialState.RUNNING, TrialState.WAITING) and not cfg.storage:
            # this sweep's own database: a running trial was cut off by a crash, run it again now.
            # On a shared storage it may be another machine's: its heartbeat tells (see _claim).
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
        _wait_for_others(cfg, log)
    rows = sweep_rows(cfg)
    (Path(cfg.out) / "rows.json").write_text(json.dumps(rows, indent=1))
    return rows


def _run_workers(cfg: SweepConfig, todo: list[dict], jobs: int, threads: int, log) -> None:
    """`jobs` worker processes claiming grid points (worker i starts at the i-th free point); a killed
    sweep takes its workers with it."""
    import multiprocessing as mp
    import threading

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(asdict(cfg), todo[i:] + todo[:i], threads)) for i in range(jobs)]
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
    """Claim and run grid points (in the order of `points`) until none is left free: each one Optuna
    trial, asked with the point's values fixed, kept alive by a heartbeat, then told."""
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState

    study = _study(cfg)
    grid = cfg.grid()
    space = {k: CategoricalDistribution(sorted({g[k] for g in grid})) for k in KEYS}
    while True:
        claimed = _claim(study, points, space)
        if claimed is None:
            return
        trial, name = claimed
        p = {k: trial.params[k] for k in KEYS}
        beat = _Heartbeat(study, trial, cfg.heartbeat)
        try:
            _run_point(cfg, study, trial, name, p, data, log)
        finally:
            beat.stop()


def _claim(study, points: list[dict], space: dict):
    """(trial, name) of a grid point this worker now runs, or None when every point in `points` is
    finished or running elsewhere. The trial is enqueued with the point's name and values, then taken
    by `ask` (WAITING -> RUNNING is atomic in the storage); if an earlier trial of the same point is
    running or finished, this one stands down (recorded as failed, `duplicate_of` naming it)."""
    import optuna
    from optuna.trial import TrialState

    while True:
        _fail_stale(study)  # trials whose worker stopped beating
        trials = study.get_trials(deepcopy=False)
        taken = {t.user_attrs.get("name") for t in trials
                 if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)}
        free = [p for p in points if trial_name(p) not in taken]
        if not free:
            return None
        p = free[0]
        with warnings.catch_warnings():  # enqueue_trial's user_attrs are marked experimental
            warnings.simplefilter("ignore")
            study.enqueue_trial({k: p[k] for k in KEYS}, user_attrs={"name": trial_name(p)}, skip_if_exists=False)
        trial = study.ask(space)  # the oldest waiting trial: this one, or one left by a worker that died
        name = trial.user_attrs.get("name")
        if name is None:  # not one of ours (a trial asked by other code): leave it failed
            study.tell(trial, state=TrialState.FAIL)
            continue
        first = min((t.number for t in study.get_trials(deepcopy=False)
                     if t.user_attrs.get("name") == name and t.number != trial.number
                     and t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)), default=None)
        if first is not None and first < trial.number:
            trial.set_user_attr("duplicate_of", first)
            study.tell(trial, state=TrialState.FAIL)
            continue
        trial.set_user_attr("worker", worker_id())
        return trial, name


def worker_id() -> str:
    """host:pid of this worker process (stored on each trial it runs)."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def _fail_stale(study) -> None:
    import optuna

    with warnings.catch_warnings():  # marked experimental in Optuna
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)


class _Heartbeat:
    """Records a trial's heartbeat in the storage every `interval` seconds, from a daemon thread
    (study.optimize does this itself; ask-and-tell trials need it done for them)."""

    def __init__(self, study, trial, interval: int):
        import threading

        self.stopped = threading.Event()
        storage, tid = study._storage, trial._trial_id

        def beat():
            while not self.stopped.is_set():
                try:
                    storage.record_heartbeat(tid)
                except Exception:  # the database is briefly unreachable: try again next beat
                    pass
                self.stopped.wait(interval)

        self.thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial.number}")
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


def _wait_for_others(cfg: SweepConfig, log) -> None:
    """Wait until no grid point is still running elsewhere (another machine's worker); a point whose
    worker died is run again here."""
    import time

    from optuna.trial import TrialState

    study = _study(cfg)
    said, retried = False, set()
    while True:
        _fail_stale(study)
        trials = study.get_trials(deepcopy=False)
        finished = {t.user_attrs.get("name") for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
        left = [p for p in cfg.grid() if trial_name(p) not in finished]
        running = {t.user_attrs.get("name") for t in trials if t.state == TrialState.RUNNING}
        errored = {t.user_attrs.get("name") for t in trials if t.state == TrialState.FAIL and "error" in t.user_attrs}
        free = [p for p in left if trial_name(p) not in running | retried | errored]
        if free:  # its worker died: run it here (once per sweep command)
            from ..train.trainer import load_train_data

            retried |= {trial_name(p) for p in free}
            data = load_train_data(trial_config(cfg, free[0]).train_config(), progress=False)
            _run_points(cfg, free, data, log)
            continue
        if not {trial_name(p) for p in left} & running:
            if left:
                log(f"sweep: {len(left)} grid point(s) failed; run the sweep again to retry them")
            return
        if not said:
            log(f"sweep: waiting for {len(left)} grid point(s) running elsewhere")
            said = True
        time.sleep(min(5, cfg.heartbeat))


def _run_point(cfg: SweepConfig, study, trial, name: str, p: dict, data, log) -> None:
    from optuna.trial import TrialState

    tc = trial_config(cfg, p)
    try:
        check_search_config(tc)
    except ValueError as exc:
        trial.set_user_attr("pruned_reason", str(exc))
        log(f"[{name}] skipped: {exc}")
        study.tell(trial, state=TrialState.PRUNED)
        return
    log(f"[{name}] search + training ...")
    try:
        row = run_trial(tc, cfg.train_epochs, progress=False, log=lambda s: log(f"[{name}] {s}"), resume=True,
                        data=data, train_kw={})
    except (RuntimeError, ValueError, OSError) as exc:
        log(f"[{name}] failed: {exc}")
        trial.set_user_attr("error", str(exc))  # failed by itself, not by a dead worker: not rerun at once
        study.tell(trial, state=TrialState.FAIL)
        return
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
