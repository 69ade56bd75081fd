"""Tuning the detector: sweep threshold, averaging window and suppression on a stream from the
VALIDATION speakers, choose the operating point there, report it on a stream from the TESTING
speakers; the DET curve (false reject rate against false alarms per hour) as a PNG.

The network runs once per stream (scores of every window kept); each detector setting then only
re-runs the smoothing and the state machine, so a sweep of hundreds of settings takes seconds.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..checks import ConfigError, setting, validate
from .detector import DetectorConfig, fire, smooth
from .evaluate import run_stream
from .listen import ListenConfig, make_scorer
from .metrics import match
from .synth_stream import StreamConfig


@dataclass
class TuneConfig:
    thresholds: tuple = setting(default_factory=lambda: tuple(float(t) for t in range(60, 251, 10)),
                                help="thresholds to try (0-255 score scale)")
    windows_ms: tuple = setting(default_factory=lambda: (200, 400, 600, 800, 1000),
                                help="averaging windows to try (ms)")
    suppressions_ms: tuple = setting(default_factory=lambda: (750, 1500, 2500), help="suppression times to try (ms)")
    min_count: int = setting(3, lo=1, help="fewest results in the window to decide")
    max_false_alarms_per_hour: float = setting(0.5, lo=0,
                                               help="the operating point: the fewest false rejects with at most "
                                                    "this many false alarms per hour on the validation stream")
    val_minutes: float = setting(30.0, lo=0, lo_open=True, help="length of the validation stream (minutes)")
    test_minutes: float = setting(30.0, lo=0, lo_open=True, help="length of the testing stream (minutes)")

    def __post_init__(self):
        validate(self)
        for name in ("thresholds", "windows_ms", "suppressions_ms"):
            vals = tuple(sorted(float(v) if name == "thresholds" else int(v) for v in getattr(self, name)))
            if not vals:
                raise ConfigError(f"--{name.replace('_', '-')}: give at least one value")
            if any(v < 0 for v in vals) or (name == "thresholds" and vals[-1] > 255):
                raise ConfigError(f"--{name.replace('_', '-')}: values must be >= 0" +
                                  (" and <= 255" if name == "thresholds" else ""))
            setattr(self, name, vals)

    def to_dict(self) -> dict:
        return asdict(self)


def sweep(times_ms, scores, labels, truth, hours, integer: bool, cfg: TuneConfig, tolerance_ms: int = 1000,
          windows=None, suppressions=None, thresholds=None) -> list[dict]:
    """Metrics of every detector setting of the grid on one stream's kept scores."""
    rows = []
    for w in windows or cfg.windows_ms:
        avg, decided = smooth(times_ms, scores, int(w), cfg.min_count, integer)
        top = avg.argmax(axis=1)
        top_score = avg[np.arange(len(top)), top]
        for sup in suppressions or cfg.suppressions_ms:
            for thr in thresholds or cfg.thresholds:
                ev = fire(times_ms, top, top_score, decided, labels, thr, int(sup))
                m = match(ev, truth, hours, tolerance_ms)
                rows.append({"window_ms": int(w), "suppression_ms": int(sup), "threshold": float(thr),
                             **{k: m[k] for k in ("keywords", "hits", "misses", "false_alarms", "hours",
                                                  "false_alarms_per_hour", "false_reject_rate", "mean_latency_ms")}})
    return rows


def choose(rows: list[dict], max_fa_per_hour: float) -> dict:
    """The fewest false rejects among settings with at most `max_fa_per_hour` false alarms per hour
    (ties: fewer false alarms, then the higher threshold); if none qualifies, the fewest false alarms."""
    ok = [r for r in rows if r["false_alarms_per_hour"] <= max_fa_per_hour]
    if ok:
        return min(ok, key=lambda r: (r["false_reject_rate"], r["false_alarms_per_hour"], -r["threshold"]))
    return min(rows, key=lambda r: (r["false_alarms_per_hour"], r["false_reject_rate"], -r["threshold"]))


def tune(data_dir, model=None, listen_cfg: ListenConfig | None = None, cfg: TuneConfig | None = None,
         stream: StreamConfig | None = None, tolerance_ms: int = 1000, png: str | Path | None = None,
         log=lambda *a: None) -> dict:
    """Sweep on a validation stream, choose the operating point, report it on a testing stream.
    `stream` sets everything but split and length (taken from `cfg`)."""
    from ..data.speech_commands import DatasetWarning, SpeechCommands

    if SpeechCommands.open(data_dir).test_set_layout:
        warnings.warn(f"{data_dir}: an official test-set folder has no validation speakers; the operating point "
                      f"is chosen on the same clips it is reported on", DatasetWarning, stacklevel=2)
    scorer = make_scorer(model)
    cfg = cfg or TuneConfig()
    listen_cfg = listen_cfg or ListenConfig()
    base = stream or StreamConfig()
    out = {"model": scorer.name, "integer": scorer.integer, "data": str(data_dir), "listen": listen_cfg.to_dict(),
           "tune": cfg.to_dict(), "tolerance_ms": tolerance_ms}
    curves = {}
    for split, minutes in (("validation", cfg.val_minutes), ("testing", cfg.test_minutes)):
        sc = replace(base, split=split, minutes=minutes)
        log(f"{split} stream: {minutes:g} minutes ...")
        s, res = run_stream(data_dir, scorer, sc, listen_cfg, keep_scores=True)
        out[f"{split}_stream"] = {**sc.to_dict(), "keywords": len(s.keywords()), "hours": s.hours,
                                  "real_time_factor": res.real_time_factor}
        curves[split] = (res, s)
    res, s = curves["validation"]
    rows = sweep(res.times_ms, res.scores, scorer.labels, s.truth, s.hours, scorer.integer, cfg, tolerance_ms)
    best = choose(rows, cfg.max_false_alarms_per_hour)
    chosen = DetectorConfig(window_ms=best["window_ms"], threshold=best["threshold"],
                            suppression_ms=best["suppression_ms"], min_count=cfg.min_count)
    tres, ts = curves["testing"]
    test_rows = sweep(tres.times_ms, tres.scores, scorer.labels, ts.truth, ts.hours, scorer.integer, cfg,
                      tolerance_ms, windows=[chosen.window_ms], suppressions=[chosen.suppression_ms])
    test = next(r for r in test_rows if r["threshold"] == chosen.threshold)
    defaults = DetectorConfig()
    default_rows = sweep(tres.times_ms, tres.scores, scorer.labels, ts.truth, ts.hours, scorer.integer,
                         replace(cfg, min_count=defaults.min_count), tolerance_ms, windows=[defaults.window_ms],
                         suppressions=[defaults.suppression_ms], thresholds=[defaults.threshold])
    out.update({"chosen": chosen.to_dict(), "validation": best, "testing": test,
                "testing_recognize_commands_defaults": default_rows[0],
                "target": {"max_false_alarms_per_hour": 0.5, "max_false_reject_rate": 0.1,
                           "met_on_testing": test["false_alarms_per_hour"] <= 0.5 and test["false_reject_rate"] < 0.1},
                "sweep": rows, "testing_curve": test_rows})
    if png is not None:
        plot_det(out, png)
    return out


def plot_det(result: dict, path: str | Path) -> None:
    """The DET curves: validation (one per averaging window, at the chosen suppression) and testing
    (the chosen window and suppression), the operating point marked, the target region shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ch = result["chosen"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    val = [r for r in result["sweep"] if r["suppression_ms"] == ch["suppression_ms"]]
    for w in sorted({r["window_ms"] for r in val}):
        rs = sorted((r for r in val if r["window_ms"] == w), key=lambda r: r["threshold"])
        axes[0].plot([r["false_alarms_per_hour"] for r in rs], [100 * r["false_reject_rate"] for r in rs],
                     marker=".", lw=1, label=f"window {w} ms")
    rs = sorted(result["testing_curve"], key=lambda r: r["threshold"])
    axes[1].plot([r["false_alarms_per_hour"] for r in rs], [100 * r["false_reject_rate"] for r in rs],
                 marker=".", lw=1, color="C3", label=f"window {ch['window_ms']} ms (chosen)")
    for ax, r, title in ((axes[0], result["validation"], "validation speakers (tuning)"),
                         (axes[1], result["testing"], "testing speakers (report)")):
        ax.plot([r["false_alarms_per_hour"]], [100 * r["false_reject_rate"]], "k*", ms=14, zorder=5,
                label=f"operating point: threshold {r['threshold']:g}")
        ax.axvspan(0, 0.5, ymax=1, color="green", alpha=0.06)
        ax.axhline(10, color="green", lw=0.8, ls="--")
        ax.axvline(0.5, color="green", lw=0.8, ls="--", label="target: <= 0.5 FA/h, < 10% FR")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlim(left=0)
        ax.set_xlabel("false alarms per hour")
        ax.set_title(f"{title}: {result[f'{title.split()[0]}_stream']['hours']:.2f} h, "
                     f"{result[f'{title.split()[0]}_stream']['keywords']} keywords", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    d = result["testing_recognize_commands_defaults"]
    axes[1].plot([d["false_alarms_per_hour"]], [100 * d["false_reject_rate"]], "x", color="C1", ms=9,
                 label="RecognizeCommands defaults")
    axes[1].legend(fontsize=7)
    axes[0].set_ylabel("false reject rate (%)")
    fig.suptitle(f"{result['model']} ({'int8' if result['integer'] else 'float'}), hop {result['listen']['hop_ms']} ms, "
                 f"suppression {ch['suppression_ms']} ms", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
