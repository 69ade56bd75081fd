"""Decoded clips: one int16 array per split, cached on disk and memory-mapped, broken files skipped and counted.

The cache of a clip list is a folder `<cache>/clips/<key>/` holding `audio.i16` (the raw int16 samples,
N x 16000: 3.4 GB for the full data set's 105k clips, read through np.memmap, so only the batches in
use are in RAM) and `meta.json` (count, labels, names, skips, notes). Speech Commands is 16-bit audio,
so int16 holds the decoded samples exactly. The folder is written under a temporary name and renamed
into place: a cache is complete or absent."""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
import shutil
from concurrent.futures import ProcessPoolExecutor
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


def _decode(path: str):
    """One file as int16 samples and its notes, or the AudioError (a worker process's task)."""
    try:
        x, notes = read_clip(path)
        return _to_int16(x), notes
    except AudioError as exc:
        return exc


# below this many files decoding stays in this process (starting worker processes costs more)
PARALLEL_MIN_FILES = 256


def decode_files(paths: list, workers: int | None = None, progress=None):
    """(int16 clip, notes) or AudioError for each path, in order; `workers` processes decode in
    parallel (default: one per CPU core; 1 or few files: this process)."""
    auto = workers is None
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or (auto and len(paths) < PARALLEL_MIN_FILES):
        yield from _progress(map(_decode, map(str, paths)), len(paths), progress, "decoding audio")
        return
    import multiprocessing as mp

    # fork where there is one: the workers only decode (no torch), and a user's script needs no
    # `if __name__ == "__main__"` guard, as spawn and forkserver would require
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        results = pool.map(_decode, map(str, paths), chunksize=32)
        yield from _progress(results, len(paths), progress, f"decoding audio ({workers} processes)")


def _cache_key(ds: SpeechCommands, entries: list[Entry], seed: int) -> str:
    h = hashlib.sha1(f"{ds.root.resolve()}|{seed}|v2".encode())
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
    workers: int | None = None,
) -> ClipSet:
    """Decode every entry (silence entries are cut from background noise at a random volume).

    Unreadable or empty files are skipped and listed in `ClipSet.skipped`, never fatal. With
    `cache`, the decoded clips are stored under `cache_root()` keyed by the file list and stats, and
    `ClipSet.audio` is a read-only memory map of them. `workers` decoding processes (default: one per
    CPU core) for lists of `PARALLEL_MIN_FILES` files or more.
    """
    key = _cache_key(ds, entries, seed)
    folder = cache_root() / "clips" / key
    if cache and (folder / "meta.json").exists():
        try:
            return _read_cache(folder, label_names, key)
        except Exception:  # a damaged cache is rebuilt, not trusted
            shutil.rmtree(folder, ignore_errors=True)

    rng = np.random.default_rng(seed)
    background = load_background(ds) if any(e.path is None for e in entries) else []
    if any(e.path is None for e in entries) and not background:
        raise DatasetError(f"{ds.root}: no readable {BACKGROUND}/ clip to cut silence from")
    files = [e for e in entries if e.path is not None]
    tmp = folder.with_name(f"{key}.tmp{os.getpid()}")
    if cache:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    out = open(tmp / "audio.i16", "wb") if cache else None
    kept: list[np.ndarray] = []  # without a cache the clips stay in memory

    def put(x: np.ndarray):
        if out is not None:
            out.write(np.ascontiguousarray(x, dtype=np.int16).tobytes())
        else:
            kept.append(x)

    labels, names, skipped, notes = [], [], [], Counter()
    try:
        for e, r in zip(files, decode_files([ds.root / e.path for e in files], workers, progress)):
            if isinstance(r, Exception):
                skipped.append((e.path, str(r)))
                continue
            x, fixes = r
            notes.update(fixes)
            put(x)
            labels.append(e.label)
            names.append(e.path)
        for i, e in enumerate(x for x in entries if x.path is None):
            b = background[rng.integers(len(background))]
            start = rng.integers(0, max(1, len(b) - CLIP_SAMPLES))
            put(_to_int16(np.pad(b[start : start + CLIP_SAMPLES], (0, max(0, CLIP_SAMPLES - len(b)))) * rng.uniform(0, 1)))
            labels.append(e.label)
            names.append(f"{SILENCE}/{i}")
        if out is None:
            audio = np.stack(kept) if kept else np.zeros((0, CLIP_SAMPLES), np.int16)
            return ClipSet(audio, np.asarray(labels, dtype=np.int64), names, label_names, key, skipped, notes)
        out.close()
        meta = {"n": len(labels), "samples": CLIP_SAMPLES, "labels": labels, "names": names, "skipped": skipped,
                "notes": dict(notes)}
        (tmp / "meta.json").write_text(json.dumps(meta))
        if folder.exists() and not (folder / "meta.json").exists():
            shutil.rmtree(folder, ignore_errors=True)  # an incomplete entry of the cache (no meta.json): replace it
        try:
            os.replace(tmp, folder)  # atomic; fails if another process has just put the same cache in place
        except OSError:
            if not (folder / "meta.json").exists():
                raise
    finally:
        if out is not None and not out.closed:
            out.close()
        if cache:
            shutil.rmtree(tmp, ignore_errors=True)
    return _read_cache(folder, label_names, key)


def _read_cache(folder: Path, label_names: list[str], key: str) -> ClipSet:
    meta = json.loads((folder / "meta.json").read_text())
    n, t = int(meta["n"]), int(meta["samples"])
    path = folder / "audio.i16"
    if path.stat().st_size != n * t * 2:
        raise ValueError(f"{path}: {path.stat().st_size} bytes, expected {n * t * 2}")
    audio = np.memmap(path, dtype=np.int16, mode="r", shape=(n, t)) if n else np.zeros((0, t), np.int16)
    return ClipSet(audio, np.asarray(meta["labels"], dtype=np.int64), meta["names"], label_names, key,
                   [tuple(x) for x in meta["skipped"]], Counter(meta["notes"]))


def _progress(it, total, progress, description):
    """Wrap an iterable in a rich progress bar when `progress` is true."""
    if not progress:
        yield from it
        return
    from rich.progress import track

    yield from track(it, total=total, description=description, transient=True)
