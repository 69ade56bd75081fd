"""Streaming evaluation: a synthetic stream from a data set split, the detector over it, the metrics.

    r = evaluate_stream("speech_commands_mini", "dscnn-kws", stream=StreamConfig(minutes=10))
    r["false_alarms_per_hour"], r["false_reject_rate"], r["real_time_factor"]
"""
from __future__ import annotations

from pathlib import Path

from ..data.speech_commands import SILENCE, UNKNOWN
from .detector import DetectorConfig
from .listen import ListenConfig, listen, make_scorer
from .metrics import match
from .synth_stream import StreamConfig, build_stream


def stream_for(data_dir, scorer, cfg: StreamConfig):
    """The synthetic stream of `cfg` with the scorer's keywords."""
    return build_stream(data_dir, cfg, [l for l in scorer.labels if l not in (SILENCE, UNKNOWN)])


def run_stream(data_dir, scorer, stream: StreamConfig, listen_cfg: ListenConfig | None = None,
               detector: DetectorConfig | None = None, keep_scores: bool = False, progress=None):
    """(stream, ListenResult) of the detector over a synthetic stream."""
    s = stream_for(data_dir, scorer, stream)
    return s, listen(s.chunks(), scorer, listen_cfg, detector, keep_scores=keep_scores, progress=progress)


def evaluate_stream(data_dir: str | Path, model=None, stream: StreamConfig | None = None,
                    listen_cfg: ListenConfig | None = None, detector: DetectorConfig | None = None,
                    tolerance_ms: int = 1000, progress=None) -> dict:
    """Hits, misses, false alarms per hour, latency and real-time factor of a model (file, shipped
    name, IntModel or scorer) on a synthetic stream (see `StreamConfig`)."""
    scorer = make_scorer(model)
    stream = stream or StreamConfig()
    listen_cfg = listen_cfg or ListenConfig()
    detector = detector or DetectorConfig()
    s, res = run_stream(data_dir, scorer, stream, listen_cfg, detector, progress=progress)
    m = match(res.events, s.truth, s.hours, tolerance_ms)
    return {"model": scorer.name, "integer": scorer.integer, "data": str(data_dir), **m,
            "unknown_words": sum(t["kind"] == "unknown" for t in s.truth), "real_time_factor": res.real_time_factor,
            "compute_seconds": res.compute_seconds, "windows": res.windows, "stream": stream.to_dict(),
            "listen": listen_cfg.to_dict(), "detector": detector.to_dict()}
