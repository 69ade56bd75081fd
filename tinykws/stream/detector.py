"""Posterior smoothing and detection with the semantics of TFLite Micro's `RecognizeCommands`
(tensorflow/lite/micro/examples/micro_speech/recognize_commands.cc).

Scores are on TFLite Micro's 0-255 scale: the int8 output of an int8 softmax (scale 1/256, zero
point -128) plus 128, so a score s means probability s / 256 (the default threshold 200 is
p = 0.781). The integer model gives these exactly; a float model's probabilities become
min(255, 256 p), kept as floats.

For every new result at time t (ms), as RecognizeCommands does:
  * the results with time >= t - window_ms are kept (the window includes its start);
  * fewer than `min_count` results, or kept results spanning less than window_ms / 4: no decision;
  * the average score per class (integer division for integer scores, as the C code) and the top
    class (the first of equal maxima);
  * a command fires when its average exceeds `threshold` and it differs from the label that fired
    last, or more than `suppression_ms` passed since that one fired (no suppression after the
    first label, `_silence_`, as in TFLite Micro where it is label 0).
`_silence_` and `_unknown_` go through the same state machine (they can fire and so end a
keyword's suppression), but only keywords become events.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..checks import setting, validate

NOT_KEYWORDS = ("_silence_", "_unknown_")


@dataclass
class DetectorConfig:
    window_ms: int = setting(1000, lo=0, help="posterior averaging window in ms (RecognizeCommands: 1000)")
    threshold: float = setting(200, lo=0, hi=255,
                               help="detection threshold on the 0-255 score scale, score = 256 x probability "
                                    "(RecognizeCommands: 200)")
    suppression_ms: int = setting(1500, lo=0, help="no new detection of the same label for this long (ms) "
                                                     "(RecognizeCommands: 1500)")
    min_count: int = setting(3, lo=1, help="fewest results in the window to decide at all (RecognizeCommands: 3)")

    def __post_init__(self):
        validate(self)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Event:
    keyword: str
    time: float  # seconds: the end of the analysis window whose result fired
    score: float  # averaged score, 0-255

    def to_dict(self) -> dict:
        return {"keyword": self.keyword, "time": round(self.time, 3), "score": round(float(self.score), 2)}


def smooth(times_ms: np.ndarray, scores: np.ndarray, window_ms: int, min_count: int, integer: bool,
           start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Averaged scores for results start.. of a time-ordered sequence (vectorized RecognizeCommands
    averaging): (averages (N-start, C), decided (N-start,) bool)."""
    t = np.asarray(times_ms, dtype=np.int64)
    s = np.asarray(scores, dtype=np.int64 if integer else np.float64)
    csum = np.concatenate([np.zeros((1, s.shape[1]), s.dtype), np.cumsum(s, axis=0)])
    idx = np.arange(start, len(t))
    first = np.searchsorted(t, t[idx] - window_ms, side="left")  # keeps time >= t - window
    count = idx + 1 - first
    total = csum[idx + 1] - csum[first]
    avg = total // count[:, None] if integer else total / count[:, None]
    decided = (count >= min_count) & (t[idx] - t[first] >= window_ms // 4)
    return avg, decided


def fire(times_ms, top, top_score, decided, labels: list[str], threshold: float, suppression_ms: int,
         state: list | None = None) -> list[Event]:
    """The RecognizeCommands state machine over smoothed results (top class and its average per
    result); `state` [label that fired last or None, its time] is updated in place."""
    state = state if state is not None else [None, 0]
    silence = labels.index("_silence_") if "_silence_" in labels else 0
    events = []
    for i in np.flatnonzero(decided & (top_score > threshold)):  # a loop over candidate results only
        lab, now = int(top[i]), int(times_ms[i])
        prev, prev_time = state
        free = prev is None or prev == silence or now - prev_time > suppression_ms
        if lab != prev or free:
            state[0], state[1] = lab, now
            if labels[lab] not in NOT_KEYWORDS:
                events.append(Event(labels[lab], now / 1000.0, float(top_score[i])))
    return events


class Detector:
    """Incremental RecognizeCommands: feed batches of (times in ms, scores (N, C)) in time order,
    get the keyword events. Keeps only the last window of results."""

    def __init__(self, labels: list[str], cfg: DetectorConfig | None = None, integer: bool = False):
        self.labels = list(labels)
        self.cfg = cfg or DetectorConfig()
        self.integer = integer
        self._t = np.zeros(0, np.int64)
        self._s = np.zeros((0, len(self.labels)), np.int64 if integer else np.float64)
        self.prev_label: int | None = None  # the label that fired last (None: nothing yet)
        self.prev_time: int = 0

    def feed(self, times_ms, scores) -> list[Event]:
        times_ms = np.asarray(times_ms, dtype=np.int64)
        scores = np.asarray(scores)
        if len(times_ms) == 0:
            return []
        if scores.shape != (len(times_ms), len(self.labels)):
            raise ValueError(f"scores of shape {scores.shape}; expected ({len(times_ms)}, {len(self.labels)})")
        if (len(self._t) and times_ms[0] < self._t[-1]) or np.any(np.diff(times_ms) < 0):
            raise ValueError("results must come in time order")
        cfg = self.cfg
        start = len(self._t)
        t = np.concatenate([self._t, times_ms])
        s = np.concatenate([self._s, scores.astype(self._s.dtype)])
        avg, decided = smooth(t, s, cfg.window_ms, cfg.min_count, self.integer, start)
        top = avg.argmax(axis=1)
        top_score = avg[np.arange(len(top)), top]
        state = [self.prev_label, self.prev_time]
        events = fire(t[start:], top, top_score, decided, self.labels, cfg.threshold, cfg.suppression_ms, state)
        self.prev_label, self.prev_time = state
        keep = np.searchsorted(t, t[-1] - cfg.window_ms, side="left")
        self._t, self._s = t[keep:], s[keep:]
        return events


def detect(times_ms, scores, labels: list[str], cfg: DetectorConfig | None = None,
           integer: bool | None = None) -> list[Event]:
    """All keyword events of a whole sequence of results."""
    scores = np.asarray(scores)
    integer = np.issubdtype(scores.dtype, np.integer) if integer is None else integer
    return Detector(labels, cfg, integer).feed(times_ms, scores)
