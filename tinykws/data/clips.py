"""Decoded clips in memory: one int16 array per split, cached on disk, broken files skipped and counted."""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio.io import CLIP_SAMPLES, AudioError, AudioWarning, load_audio
from .speech_commands import BACKGROUND, SILENCE, DatasetError, Entry, SpeechCommands


def cache_root() -> Path:
    """Where tinykws caches decoded audio and features ($TINYKWS_CACHE, default ~/.cache/tinykws)."""
    return Path(os.environ.get("TINYKWS_CACHE", Path.home() / ".cache" / "tinykws"))


@dataclass
class ClipSet:
    """Clips of one split as int16 samples (N, 16000) with integer labels."""

    audio: np.ndarray
    labels: np.ndarray
    names: list[str]
    label_names: list[str]
    key: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.labels)

    def waves(self, idx=slice(None)) -> np.ndarray:
        return self.audio[idx].astype(np.float32) / 32768.0

    def summary(self) -> str:
        parts = [f"{len(self)} clips"]
        parts += [f"{n} {what}" for what, n in sorted(self.notes.items())]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        return ", ".join(parts)


def read_clip(path: str | Path, n: int = CLIP_SAMPLES) -> tuple[np.ndarray, list[str]]:
    """One clip as exactly `n` float samples, and notes on what was fixed.

    Shorter clips are zero-padded (as the data set's own tools do); longer ones keep their loudest
    second. Stereo and other sample rates are fixed by `load_audio`.
    """
    notes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AudioWarning)
        x = load_audio(path)
    for w in caught:
        msg = str(w.message)
        notes.append("resampled" if "resampled" in msg else "downmixed" if "downmixed" in msg else msg)
    if len(x) > n:
        notes.append("longer than 1 s (loudest second kept)")
        energy = np.convolve(x.astype(np.float64) ** 2, np.ones(n), mode="valid")[:: max(1, n // 100)]
        start = int(np.argmax(energy)) * max(1, n // 100)
        x = x[start : start + n]
    elif len(x) < n:
        x = np.pad(x, (0, n - len(x)))
    return x, notes


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def _cache_key(ds: SpeechCommands, entries: list[Entry], seed: int) -> str:
    h = hashlib.sha1(f"{ds.root.resolve()}|{seed}|v1".encode())
    for e in entries:
        h.update(f"{e.path}|{e.label}\n".encode())
        if e.path is not None:
            st = (ds.root / e.path).stat()
            h.update(f"{st.st_size}|{st.st_mtime_ns}\n".encode())
    for b in ds.background:
        st = (ds.root / b).stat()
        h.update(f"{b}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load_background(ds: SpeechCommands) -> list[np.ndarray]:
    """The background-noise recordings as float arrays; an unreadable one is skipped with an AudioWarning."""
    out = []
    for b in ds.background:
        try:
            out.append(load_audio(ds.root / b))
        except AudioError as exc:
            warnings.warn(f"background noise skipped: {exc}", AudioWarning, stacklevel=2)
    return out


def load_clips(
    ds: SpeechCommands,
    entries: list[Entry],
    label_names: list[str],
    seed: int = 0,
    cache: bool = True,
    progress=None,
) -> ClipSet:
    """Decode every entry (silence entries are cut from background noise at a random volume).

    Unreadable or empty files are skipped and listed in `ClipSet.skipped`, never fatal. With
    `cache`, the decoded array is stored under `cache_root()` keyed by the file list and stats.
    """
    key = _cache_key(ds, entries, seed)
    path = cache_root() / "clips" / f"{key}.npz"
    if cache and path.exists():
        try:
            z = np.load(path, allow_pickle=False)
            meta = json.loads(str(z["meta"]))
            return ClipSet(z["audio"], z["labels"], meta["names"], label_names, key,
                           [tuple(s) for s in meta["skipped"]], Counter(meta["notes"]))
        except Exception:  # a damaged cache file is rebuilt, not trusted
            path.unlink(missing_ok=True)

    rng = np.random.default_rng(seed)
    background = load_background(ds) if any(e.path is None for e in entries) else []
    if any(e.path is None for e in entries) and not background:
        raise DatasetError(f"{ds.root}: no readable {BACKGROUND}/ clip to cut silence from")
    files = [e for e in entries if e.path is not None]

    def work(e: Entry):
        try:
            return read_clip(ds.root / e.path)
        except AudioError as exc:
            return exc

    audio, labels, names, skipped, notes = [], [], [], [], Counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(work, files)
        for e, r in zip(files, _progress(results, len(files), progress, "decoding audio")):
            if isinstance(r, Exception):
                skipped.append((e.path, str(r)))
                continue
            x, fixes = r
            notes.update(fixes)
            audio.append(_to_int16(x))
            labels.append(e.label)
            names.append(e.path)
    for i, e in enumerate(x for x in entries if x.path is None):
        b = background[rng.integers(len(background))]
        start = rng.integers(0, max(1, len(b) - CLIP_SAMPLES))
        audio.append(_to_int16(np.pad(b[start : start + CLIP_SAMPLES], (0, max(0, CLIP_SAMPLES - len(b)))) * rng.uniform(0, 1)))
        labels.append(e.label)
        names.append(f"{SILENCE}/{i}")
    cs = ClipSet(np.stack(audio) if audio else np.zeros((0, CLIP_SAMPLES), np.int16),
                 np.asarray(labels, dtype=np.int64), names, label_names, key, skipped, notes)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        meta = json.dumps({"names": names, "skipped": skipped, "notes": dict(notes)})
        np.savez(tmp, audio=cs.audio, labels=cs.labels, meta=np.array(meta))
        os.replace(tmp, path)
    return cs


def _progress(it, total, progress, description):
    """Wrap an iterable in a rich progress bar when `progress` is true."""
    if not progress:
        yield from it
        return
    from rich.progress import track

    yield from track(it, total=total, description=description, transient=True)
