"""Long test streams built reproducibly (seeded) from a data set's clips of one split: keywords and
unknown words at known times over background noise (the data set's `_background_noise_`, at
chosen SNRs) and gaps of digital silence. The schedule is made up front (a few numbers per
word); the audio is generated chunk by chunk, so a stream of hours is never held in memory.

    s = build_stream("speech_commands_mini", StreamConfig(minutes=10), keywords=KEYWORDS_10)
    for chunk in s.chunks():   # float32 at 16 kHz
        ...
    s.truth                    # [{"word", "kind", "start", "end", "speech_start", "speech_end", ...}]
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from ..audio.io import SAMPLE_RATE, AudioError, AudioWarning
from ..checks import ConfigError, setting, validate
from ..data.clips import load_background, read_clip
from ..data.speech_commands import SILENCE, SPLITS, UNKNOWN, DatasetError, SpeechCommands

FADE = 160  # 10 ms fades at noise segment edges (no clicks)


@dataclass
class StreamConfig:
    minutes: float = setting(10.0, lo=0, lo_open=True, help="stream length in minutes")
    split: str = setting("testing", choices=SPLITS, help="the split whose clips (speakers) the stream uses")
    keywords_per_minute: float = setting(10.0, lo=0, help="keywords per minute of stream")
    unknown_per_minute: float = setting(5.0, lo=0, help="other (unknown) words per minute of stream")
    min_gap_s: float = setting(1.0, lo=0, help="shortest gap between the end of one 1 s clip and the next one")
    snr_db: tuple = setting(default_factory=lambda: (40.0, 30.0, 20.0),
                            help="SNRs (dB) of the noise segments, drawn evenly (speech level over noise level)")
    silence_frac: float = setting(0.25, lo=0, hi=1, help="fraction of noise segments that are digital silence")
    speech_dbfs: float = setting(-24.0, lo=-60, hi=0, help="RMS level of the spoken part of each word (dBFS)")
    segment_s: float = setting(15.0, lo=1, help="mean length of a background segment (s)")
    seed: int = setting(0, help="random seed: the same seed gives the same stream")

    def __post_init__(self):
        validate(self)
        self.snr_db = tuple(float(v) for v in self.snr_db)
        if not self.snr_db:
            raise ConfigError("--snr-db: give at least one SNR")
        rate = self.keywords_per_minute + self.unknown_per_minute
        if rate <= 0:
            raise ConfigError("--keywords-per-minute and --unknown-per-minute: at least one must be > 0")
        if 60.0 / rate <= 1.0 + self.min_gap_s:
            raise ConfigError(f"{rate:g} words per minute do not fit 1 s clips with gaps of at least "
                              f"{self.min_gap_s:g} s (--min-gap-s); ask for fewer words per minute")

    def to_dict(self) -> dict:
        return asdict(self)


def speech_bounds(x: np.ndarray, sr: int = SAMPLE_RATE, floor_db: float = 30.0) -> tuple[int, int, float]:
    """(first, last + 1) sample of the spoken part of a clip (10 ms frames within `floor_db` of the
    loudest one) and the RMS level of that part."""
    n = sr // 100
    frames = x[: len(x) // n * n].reshape(-1, n).astype(np.float64)
    rms = np.sqrt((frames ** 2).mean(1))
    if rms.max() <= 0:
        return 0, len(x), 0.0
    on = np.flatnonzero(rms >= rms.max() * 10 ** (-floor_db / 20))
    a, b = int(on[0]) * n, int(on[-1] + 1) * n
    return a, b, float(np.sqrt(np.mean(x[a:b].astype(np.float64) ** 2)))


@dataclass
class SynthStream:
    """A scheduled stream: `truth` lists the words, `chunks()` makes the audio."""

    root: Path
    cfg: StreamConfig
    sample_rate: int
    truth: list[dict]
    words: list[tuple[int, str, float]]  # (start sample, clip path, gain)
    segments: list[tuple[int, int, int, int, float]]  # (start, end, noise index or -1, noise offset, gain)
    noise: list[np.ndarray]

    @property
    def samples(self) -> int:
        return int(round(self.cfg.minutes * 60 * self.sample_rate))

    @property
    def hours(self) -> float:
        return self.samples / self.sample_rate / 3600

    def keywords(self) -> list[dict]:
        return [t for t in self.truth if t["kind"] == "keyword"]

    def chunks(self, chunk_seconds: float = 10.0) -> Iterator[np.ndarray]:
        n = max(1, int(chunk_seconds * self.sample_rate))
        starts = np.array([w[0] for w in self.words], np.int64)
        for a in range(0, self.samples, n):
            b = min(a + n, self.samples)
            out = np.zeros(b - a, np.float32)
            for s, e, k, off, g in self.segments:
                if k < 0 or e <= a or s >= b:
                    continue
                lo, hi = max(s, a), min(e, b)
                src = self.noise[k]
                seg = np.take(src, np.arange(lo - s + off, hi - s + off), mode="wrap") * g
                pos = np.arange(lo, hi)
                fade = np.minimum(1.0, np.minimum(pos - s + 1, e - pos) / FADE)
                out[lo - a : hi - a] += (seg * fade).astype(np.float32)
            first = np.searchsorted(starts, a - self.sample_rate * 2, side="left")
            for s, path, g in self.words[first:]:
                if s >= b:
                    break
                x = _clip(str(self.root / path)) * np.float32(g)
                lo, hi = max(s, a), min(s + len(x), b)
                if hi > lo:
                    out[lo - a : hi - a] += x[lo - s : hi - s]
            yield np.clip(out, -1.0, 1.0)

    def audio(self) -> np.ndarray:
        """The whole stream in memory (short streams only)."""
        return np.concatenate(list(self.chunks()))


@lru_cache(maxsize=128)
def _clip(path: str) -> np.ndarray:
    x, _ = read_clip(path)
    return x


def _noise_sources(ds: SpeechCommands) -> list[np.ndarray]:
    """Background noise: the data set's _background_noise_ recordings; in the official test-set
    layout (no such folder) its _silence_ clips; without either, seeded white noise (a warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AudioWarning)
        noise = [b for b in load_background(ds) if len(b) >= SAMPLE_RATE // 10 and np.any(b)]
        if not noise and SILENCE in ds.words:
            noise = [c for c in (_safe_clip(ds.root / p) for p in ds.words[SILENCE][:50]) if c is not None and np.any(c)]
    if not noise:
        warnings.warn(f"{ds.root}: no background noise recordings; the stream uses white noise", AudioWarning,
                      stacklevel=3)
        noise = [np.random.default_rng(0).standard_normal(SAMPLE_RATE * 30).astype(np.float32) * 0.1]
    return noise


def _safe_clip(path) -> np.ndarray | None:
    try:
        return read_clip(path)[0]
    except AudioError:
        return None


def build_stream(data_dir: str | Path, cfg: StreamConfig | None = None, keywords=None) -> SynthStream:
    """Schedule a stream from the clips of `cfg.split` of a data set folder (or an official test-set
    folder). `keywords`: the words that count as keywords (the model's; default the 10 keywords)."""
    from ..data.speech_commands import KEYWORDS_10

    cfg = cfg or StreamConfig()
    ds = SpeechCommands.open(data_dir)
    keywords = tuple(keywords or KEYWORDS_10)
    files = [p for w, ps in ds.words.items() for p in ps if w != SILENCE] if ds.test_set_layout else ds.files(cfg.split)
    kw = sorted(p for p in files if p.split("/")[0] in keywords)
    unk = sorted(p for p in files if p.split("/")[0] not in keywords and p.split("/")[0] != SILENCE)
    if not kw and cfg.keywords_per_minute > 0:
        raise DatasetError(f"{data_dir}: no clips of the keywords {list(keywords)} in the {cfg.split} split")
    rng = np.random.default_rng(cfg.seed)
    sr = SAMPLE_RATE
    total = int(round(cfg.minutes * 60 * sr))
    rate = (cfg.keywords_per_minute if kw else 0.0) + (cfg.unknown_per_minute if unk else 0.0)
    if rate <= 0:
        raise DatasetError(f"{data_dir}: no clips in the {cfg.split} split to build a stream from")
    p_kw = cfg.keywords_per_minute / rate
    mean_gap = 60.0 / rate - 1.0
    pools = {"keyword": _cycler(kw, rng), "unknown": _cycler(unk, rng)}
    sched = []
    t = rng.uniform(0.5, 0.5 + mean_gap)
    while (t + 1.0) * sr <= total:
        kind = "keyword" if rng.random() < p_kw else "unknown"
        sched.append((int(round(t * sr)), kind, next(pools[kind])))
        t += 1.0 + cfg.min_gap_s + rng.exponential(mean_gap - cfg.min_gap_s)
    noise = _noise_sources(ds)
    noise_rms = [float(np.sqrt(np.mean(n.astype(np.float64) ** 2))) for n in noise]
    segments, s = [], 0
    while s < total:
        e = min(total, s + int(rng.uniform(0.3, 1.7) * cfg.segment_s * sr))
        if rng.random() < cfg.silence_frac:
            segments.append((s, e, -1, 0, 0.0, None))
        else:
            k = int(rng.integers(len(noise)))
            snr = float(cfg.snr_db[int(rng.integers(len(cfg.snr_db)))])
            g = 10 ** ((cfg.speech_dbfs - snr) / 20) / max(noise_rms[k], 1e-9)
            segments.append((s, e, k, int(rng.integers(len(noise[k]))), g, snr))
        s = e
    seg_starts = np.array([g[0] for g in segments])
    truth, words = [], []
    for start, kind, path in sched:
        x = _clip(str(ds.root / path))
        a, b, level = speech_bounds(x, sr)
        gain = 10 ** (cfg.speech_dbfs / 20) / level if level > 0 else 1.0
        gain = min(gain, 0.99 / max(float(np.abs(x).max()), 1e-9))  # never clip a word
        seg = segments[int(np.searchsorted(seg_starts, start + (a + b) // 2, side="right")) - 1]
        words.append((start, path, gain))
        truth.append({"word": path.split("/")[0] if kind == "keyword" else UNKNOWN, "said": path.split("/")[0],
                      "kind": kind, "clip": path, "start": start / sr, "end": (start + len(x)) / sr,
                      "speech_start": (start + a) / sr, "speech_end": (start + b) / sr,
                      "snr_db": seg[5]})
    return SynthStream(ds.root, cfg, sr, truth, words, [g[:5] for g in segments], noise)


def _cycler(items: list[str], rng: np.random.Generator):
    """Every item once in a shuffled order, then again in a new order, ..."""
    while True:
        if not items:
            yield None
            return
        for i in rng.permutation(len(items)):
            yield items[i]
