"""Detections against the ground truth of a stream: hits, misses, false alarms per hour, latency.

Matching: a detection of keyword w at time t (the end of the window that fired) is a hit when a
not yet matched keyword w of the truth has speech_start <= t <= speech_end + tolerance_ms (the
first such one); otherwise it is a false alarm (a second detection of a word already hit, a wrong
keyword, a detection on an unknown word or in noise). Latency = t - speech_end (the spoken
part's end, 10 ms frames within 30 dB of the loudest; negative when the detector fires before
the word ends). Every keyword of the truth without a hit is a miss. Hits are also counted per
keyword and per SNR of the noise under the word (`silence`: a gap without noise).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import setting, validate
from .detector import Event


@dataclass
class MatchConfig:
    tolerance_ms: int = setting(1000, lo=0, help="a detection may come this long after the spoken word ends (ms)")

    def __post_init__(self):
        validate(self)


def match(events: list[Event], truth: list[dict], hours: float, tolerance_ms: int = 1000) -> dict:
    """Metrics of detections on a stream with known words (see the module doc)."""
    truth = sorted(truth, key=lambda t: t["speech_start"])
    ss = np.array([t["speech_start"] for t in truth], np.float64)
    longest = max((t["speech_end"] - t["speech_start"] for t in truth), default=0.0)
    tol = tolerance_ms / 1000.0
    hit = np.zeros(len(truth), bool)
    latency, kinds = [], {"repeat": 0, "wrong_keyword": 0, "unknown_word": 0, "background": 0}
    for e in sorted(events, key=lambda e: e.time):
        j = int(np.searchsorted(ss, e.time, side="right"))
        near = [i for i in range(j - 1, -1, -1) if e.time - ss[i] <= longest + tol][::-1]
        near = [i for i in near if e.time <= truth[i]["speech_end"] + tol]
        same = [i for i in near if truth[i]["kind"] == "keyword" and truth[i]["word"] == e.keyword]
        free = [i for i in same if not hit[i]]
        if free:
            hit[free[0]] = True
            latency.append(e.time - truth[free[0]]["speech_end"])
        elif same:
            kinds["repeat"] += 1
        elif any(truth[i]["kind"] == "keyword" for i in near):
            kinds["wrong_keyword"] += 1
        elif near:
            kinds["unknown_word"] += 1
        else:
            kinds["background"] += 1
    is_kw = np.array([t["kind"] == "keyword" for t in truth], bool)
    fa, n, hits = sum(kinds.values()), int(is_kw.sum()), int(hit.sum())
    per_kw: dict[str, dict] = {}
    per_snr: dict[str, dict] = {}
    for t, h in zip(truth, hit):
        if t["kind"] == "keyword":
            for d in (per_kw.setdefault(t["word"], {"keywords": 0, "hits": 0}),
                      per_snr.setdefault("silence" if t.get("snr_db") is None else f"{t['snr_db']:g} dB",
                                         {"keywords": 0, "hits": 0})):
                d["keywords"] += 1
                d["hits"] += int(h)
    return {"keywords": n, "hits": hits, "misses": n - hits, "false_alarms": fa,
            "hours": hours, "false_alarms_per_hour": fa / hours if hours > 0 else 0.0,
            "false_reject_rate": (n - hits) / n if n else 0.0, "hit_rate": hits / n if n else 0.0,
            "mean_latency_ms": float(1000 * np.mean(latency)) if latency else None,
            "median_latency_ms": float(1000 * np.median(latency)) if latency else None,
            "false_alarm_kinds": kinds, "per_keyword": dict(sorted(per_kw.items())),
            "per_snr": per_snr, "tolerance_ms": tolerance_ms}
