"""CLI commands of the streaming stage: `tinykws listen`, `tinykws stream-eval`, `tinykws stream-tune`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..stream.detector import DetectorConfig
from ..stream.listen import ListenConfig
from ..stream.metrics import MatchConfig
from ..stream.synth_stream import StreamConfig
from ..stream.tune import TuneConfig
from .options import DataDir, Json, ModelRef, Overwrite, calib_clips_option, check_new_output, config_option, emit_json, err

D, L, S, T = DetectorConfig, ListenConfig, StreamConfig, TuneConfig


def _scorer(model: Optional[str], int8: bool, data: Optional[Path], calib_clips: int, log, engine: str = "ref"):
    """A float model, or (--int8, or a .tflite) the integer model bit-exact with TFLite Micro,
    run by `engine` (see tinykws.stream.listen.IntScorer)."""
    from ..stream import make_scorer
    from ..stream.listen import ENGINES, IntScorer

    if engine not in ENGINES:
        raise typer.BadParameter(f"must be one of {', '.join(ENGINES)} (got {engine!r})", param_hint="--engine")
    if int8 or (model or "").endswith(".tflite"):
        from ..recipes.quantize import load_int_model

        return IntScorer(load_int_model(model, data, calib_clips, log=log), name=model or "dscnn-kws", engine=engine)
    if engine != "ref":
        raise typer.BadParameter(f"{engine} runs the integer model: add --int8", param_hint="--engine")
    return make_scorer(model)


ENGINE_HELP = ("with --int8: ref (numpy integer reference), tflite (the TFLite interpreter's reference kernels: "
               "the same scores, faster) or tflite-fast (its optimized kernels: fastest, scores off by a few steps)")


def _list_default(cls, name):
    from dataclasses import fields

    f = {f.name: f for f in fields(cls)}[name]
    return list(f.default_factory())


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the `tinykws` app."""

    @app.command("listen")
    def listen_cmd(
        file: Optional[Path] = typer.Argument(None, help="audio file (WAV, FLAC; any length, rate, channels)"),
        model: ModelRef = None,
        int8: bool = typer.Option(False, "--int8", help="run the integer model (a float model gets PTQ int8 first)"),
        data: Optional[Path] = typer.Option(None, "--data", help="with --int8: data set to calibrate a float model on "
                                                                 "(default: the one it was trained on)"),
        calib_clips: int = calib_clips_option(),
        engine: str = typer.Option("ref", "--engine", help=ENGINE_HELP),
        mic: bool = typer.Option(False, "--mic", help="listen to the microphone (needs the sounddevice package)"),
        seconds: Optional[float] = typer.Option(None, help="with --mic: stop after this many seconds"),
        hop_ms: int = config_option(L, "hop_ms"),
        peak_norm: str = config_option(L, "peak_norm"),
        window_ms: int = config_option(D, "window_ms"),
        threshold: float = config_option(D, "threshold"),
        suppression_ms: int = config_option(D, "suppression_ms"),
        min_count: int = config_option(D, "min_count"),
        as_json: Json = False,
    ):
        """Detect keywords in a stream: one line per detection (keyword, time, score), then the real-time factor."""
        from ..audio import AudioError
        from ..stream import listen, mic_chunks

        if (file is None) == (not mic):
            raise AudioError("give an audio FILE or --mic (not both)")
        lcfg = ListenConfig(hop_ms=hop_ms, peak_norm=peak_norm)
        dcfg = DetectorConfig(window_ms=window_ms, threshold=threshold, suppression_ms=suppression_ms,
                              min_count=min_count)
        log = (lambda *a: None) if as_json else (lambda *a: err.print(*a, highlight=False, markup=False))
        scorer = _scorer(model, int8, data, calib_clips, log, engine)
        source = mic_chunks(scorer.frontend.sample_rate, seconds=seconds) if mic else file
        if mic:
            err.print("listening (Ctrl-C stops) ...")

        def show(e):
            if as_json:
                print(json.dumps(e.to_dict()), flush=True)
            else:
                print(f"{e.time:9.2f} s  {e.keyword:<10} score {e.score:.0f}", flush=True)

        import warnings

        from ..audio import AudioWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AudioWarning)
            res = listen(source, scorer, lcfg, dcfg, on_event=show)
        notes = [str(w.message) for w in caught]
        for n in notes if not as_json else ():
            err.print(f"[yellow]warning:[/yellow] {n}", highlight=False)
        summary = {"file": str(file) if file else "mic", "model": scorer.name, "integer": scorer.integer,
                   **res.summary(), "notes": notes, "listen": lcfg.to_dict(), "detector": dcfg.to_dict()}
        if as_json:
            emit_json(summary)
        else:
            err.print(f"{len(res.events)} detections in {res.audio_seconds:.1f} s of audio; real-time factor "
                      f"{res.real_time_factor:.4f} ({res.compute_seconds:.2f} s of processing)", highlight=False)

    @app.command("stream-eval")
    def stream_eval_cmd(
        data: DataDir,
        model: ModelRef = None,
        int8: bool = typer.Option(False, "--int8", help="run the integer model (a float model gets PTQ int8 on --data)"),
        calib_clips: int = calib_clips_option(),
        engine: str = typer.Option("ref", "--engine", help=ENGINE_HELP),
        minutes: float = config_option(S, "minutes"),
        split: str = config_option(S, "split"),
        snr_db: List[float] = typer.Option(_list_default(S, "snr_db"), "--snr-db",
                                           help="SNR of the noise segments (dB); repeat for several"),
        keywords_per_minute: float = config_option(S, "keywords_per_minute"),
        unknown_per_minute: float = config_option(S, "unknown_per_minute"),
        silence_frac: float = config_option(S, "silence_frac"),
        seed: int = config_option(S, "seed"),
        hop_ms: int = config_option(L, "hop_ms"),
        peak_norm: str = config_option(L, "peak_norm"),
        window_ms: int = config_option(D, "window_ms"),
        threshold: float = config_option(D, "threshold"),
        suppression_ms: int = config_option(D, "suppression_ms"),
        min_count: int = config_option(D, "min_count"),
        tolerance_ms: int = config_option(MatchConfig, "tolerance_ms"),
        as_json: Json = False,
    ):
        """Detection on a long synthetic stream of a split's clips: hits, misses, false alarms per hour, latency."""
        from ..stream.evaluate import evaluate_stream
        from ..train.progress import Progress

        scfg = StreamConfig(minutes=minutes, split=split, snr_db=tuple(snr_db), keywords_per_minute=keywords_per_minute,
                            unknown_per_minute=unknown_per_minute, silence_frac=silence_frac, seed=seed)
        lcfg = ListenConfig(hop_ms=hop_ms, peak_norm=peak_norm)
        dcfg = DetectorConfig(window_ms=window_ms, threshold=threshold, suppression_ms=suppression_ms,
                              min_count=min_count)
        MatchConfig(tolerance_ms=tolerance_ms)
        log = (lambda *a: None) if as_json else (lambda *a: err.print(*a, highlight=False, markup=False))
        scorer = _scorer(model, int8, data, calib_clips, log, engine)
        bar = Progress(not as_json, total=int(-(-minutes * 6 // 1)), description="stream")
        try:
            r = evaluate_stream(data, scorer, scfg, lcfg, dcfg, tolerance_ms, progress=lambda s: bar.step("stream"))
        finally:
            bar.close()
        if as_json:
            emit_json(r)
            return
        lat = f"{r['mean_latency_ms']:.0f} ms" if r["mean_latency_ms"] is not None else "-"
        print(f"{r['model']} ({'int8' if r['integer'] else 'float'}) on {60 * r['hours']:.1f} min of {split} stream: "
              f"{r['hits']}/{r['keywords']} keywords found (false reject rate {100 * r['false_reject_rate']:.1f}%), "
              f"{r['false_alarms']} false alarms ({r['false_alarms_per_hour']:.2f} per hour), mean latency {lat}, "
              f"real-time factor {r['real_time_factor']:.4f}")

    @app.command("stream-tune")
    def stream_tune_cmd(
        data: DataDir,
        out: Path = typer.Option(..., "--out", help="new folder for det.png and tune.json"),
        model: ModelRef = None,
        int8: bool = typer.Option(False, "--int8", help="run the integer model (a float model gets PTQ int8 on --data)"),
        calib_clips: int = calib_clips_option(),
        engine: str = typer.Option("ref", "--engine", help=ENGINE_HELP),
        val_minutes: float = config_option(T, "val_minutes"),
        test_minutes: float = config_option(T, "test_minutes"),
        max_fa_per_hour: float = config_option(T, "max_false_alarms_per_hour", "--max-fa-per-hour"),
        thresholds: List[float] = typer.Option(_list_default(T, "thresholds"), "--threshold", help="thresholds to try"),
        windows_ms: List[int] = typer.Option(_list_default(T, "windows_ms"), "--window-ms", help="windows to try (ms)"),
        suppressions_ms: List[int] = typer.Option(_list_default(T, "suppressions_ms"), "--suppression-ms",
                                                  help="suppression times to try (ms)"),
        min_count: int = config_option(T, "min_count"),
        snr_db: List[float] = typer.Option(_list_default(S, "snr_db"), "--snr-db",
                                           help="SNR of the noise segments (dB); repeat for several"),
        seed: int = config_option(S, "seed"),
        hop_ms: int = config_option(L, "hop_ms"),
        peak_norm: str = config_option(L, "peak_norm"),
        tolerance_ms: int = config_option(MatchConfig, "tolerance_ms"),
        overwrite: Overwrite = False,
        as_json: Json = False,
    ):
        """Sweep threshold, window and suppression on a validation-speaker stream, report on a testing one (DET PNG)."""
        from ..outputs import atomic_write_text, prepare_output_dir
        from ..stream.tune import tune

        tcfg = TuneConfig(thresholds=tuple(thresholds), windows_ms=tuple(windows_ms),
                          suppressions_ms=tuple(suppressions_ms), min_count=min_count,
                          max_false_alarms_per_hour=max_fa_per_hour, val_minutes=val_minutes, test_minutes=test_minutes)
        scfg = StreamConfig(snr_db=tuple(snr_db), seed=seed)
        lcfg = ListenConfig(hop_ms=hop_ms, peak_norm=peak_norm)
        MatchConfig(tolerance_ms=tolerance_ms)
        inputs = [data] + ([model] if model and Path(model).exists() else [])
        check_new_output(out, overwrite, inputs, folder=True)
        log = (lambda *a: None) if as_json else (lambda *a: err.print(*a, highlight=False, markup=False))
        scorer = _scorer(model, int8, data, calib_clips, log, engine)
        prepare_output_dir(out, overwrite, inputs)
        r = tune(data, scorer, lcfg, tcfg, scfg, tolerance_ms, png=out / "det.png", log=log)
        atomic_write_text(out / "tune.json", json.dumps(r, indent=2))
        brief = {k: r[k] for k in ("model", "integer", "chosen", "validation", "testing",
                                   "testing_recognize_commands_defaults", "target")}
        if as_json:
            emit_json({**brief, "out": str(out)})
            return
        v, t = r["validation"], r["testing"]
        print(f"operating point (validation): threshold {r['chosen']['threshold']:g}, window {r['chosen']['window_ms']} ms, "
              f"suppression {r['chosen']['suppression_ms']} ms: {v['false_alarms_per_hour']:.2f} FA/h, "
              f"{100 * v['false_reject_rate']:.1f}% false rejects")
        print(f"testing: {t['false_alarms_per_hour']:.2f} FA/h, {100 * t['false_reject_rate']:.1f}% false rejects "
              f"({t['hits']}/{t['keywords']}); DET curve in {out / 'det.png'}")
