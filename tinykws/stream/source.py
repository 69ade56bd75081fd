"""Audio streams read chunk by chunk: a file of any length (never held in memory whole), an array,
or a generator; stereo is downmixed and another sample rate is resampled on the fly (soxr), each
with an AudioWarning."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import soundfile as sf

from ..audio.io import SAMPLE_RATE, AudioError, AudioWarning, wav_header_frames


class AudioSource:
    """Float32 mono chunks at `sample_rate` from an audio file (WAV, FLAC, ...), read `chunk_seconds`
    at a time.

        for chunk in AudioSource("hour.wav"):   # never more than one chunk in memory
            ...
    """

    def __init__(self, path: str | Path, sample_rate: int = SAMPLE_RATE, chunk_seconds: float = 10.0,
                 warn: bool = True):
        self.path = Path(path)
        self.sample_rate = sample_rate
        if not self.path.is_file():
            raise AudioError(f"{self.path}: no such file")
        try:
            info = sf.info(str(self.path))
        except Exception as exc:  # libsndfile's errors are terse RuntimeErrors
            raise AudioError(f"{self.path}: cannot be read as audio ({exc})") from None
        if info.frames == 0:
            raise AudioError(f"{self.path}: contains no samples")
        promised = wav_header_frames(self.path)
        if promised is not None and promised > info.frames:
            raise AudioError(f"{self.path}: truncated (the header promises {promised} samples, "
                             f"the file holds {info.frames})")
        self.file_rate, self.channels, self.frames = info.samplerate, info.channels, info.frames
        self.chunk_frames = max(1, int(round(chunk_seconds * self.file_rate)))
        self.notes: list[str] = []
        if self.channels > 1:
            self._note(f"{self.path}: {self.channels} channels, downmixed to mono", warn)
        if self.file_rate != sample_rate:
            self._note(f"{self.path}: sample rate {self.file_rate} Hz, resampled to {sample_rate} Hz", warn)

    def _note(self, msg: str, warn: bool) -> None:
        self.notes.append(msg)
        if warn:
            warnings.warn(msg, AudioWarning, stacklevel=3)

    @property
    def seconds(self) -> float:
        return self.frames / self.file_rate

    def __iter__(self) -> Iterator[np.ndarray]:
        resampler = None
        if self.file_rate != self.sample_rate:
            import soxr

            resampler = soxr.ResampleStream(self.file_rate, self.sample_rate, 1, dtype="float32")
        with sf.SoundFile(str(self.path)) as f:
            while True:
                block = f.read(self.chunk_frames, dtype="float32", always_2d=True)
                last = len(block) < self.chunk_frames
                x = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
                if not np.all(np.isfinite(x)):
                    raise AudioError(f"{self.path}: contains NaN or infinite samples")
                if resampler is not None:
                    x = resampler.resample_chunk(np.ascontiguousarray(x, dtype=np.float32), last=last)
                if len(x):
                    yield np.ascontiguousarray(x, dtype=np.float32)
                if last:
                    return


def array_chunks(x: np.ndarray, chunk_samples: int = 160_000) -> Iterator[np.ndarray]:
    """An in-memory signal as chunks (for tests and short clips)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise AudioError(f"expected mono audio (1-D), got shape {x.shape}")
    for i in range(0, len(x), chunk_samples):
        yield x[i : i + chunk_samples]


def as_chunks(source, sample_rate: int = SAMPLE_RATE) -> Iterable[np.ndarray]:
    """Chunks from a file path, an AudioSource, an array or any iterable of 1-D arrays."""
    if isinstance(source, (str, Path)):
        return AudioSource(source, sample_rate)
    if isinstance(source, np.ndarray):
        return array_chunks(source)
    return source


def mic_chunks(sample_rate: int = SAMPLE_RATE, chunk_seconds: float = 0.1, seconds: float | None = None,
               device=None) -> Iterator[np.ndarray]:
    """Chunks from the default microphone through `sounddevice` (optional: pip install sounddevice);
    `seconds` None listens until interrupted."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library is missing
        raise AudioError(f"--mic needs the sounddevice package and PortAudio (pip install sounddevice): {exc}") from None
    block = int(chunk_seconds * sample_rate)
    left = None if seconds is None else int(seconds * sample_rate)
    with sd.InputStream(samplerate=sample_rate, channels=1, dtype="float32", blocksize=block, device=device) as s:
        while left is None or left > 0:
            data, _ = s.read(block if left is None else min(block, left))
            if left is not None:
                left -= len(data)
            yield np.ascontiguousarray(data[:, 0])
