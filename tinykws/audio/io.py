"""Reading audio clips: any format libsndfile reads (WAV, FLAC, ...), mono, 16 kHz, fixed length."""
from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000


class AudioError(ValueError):
    """A clip that cannot be used; the message names the file and the problem."""


class AudioWarning(UserWarning):
    """A clip that was usable only after a fix (resampled, downmixed)."""


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, warn: bool = True) -> np.ndarray:
    """Read a clip as float32 mono in [-1, 1] at `sample_rate`.

    Stereo is downmixed and another sample rate is resampled (each with an AudioWarning);
    a missing, unreadable, truncated or empty file raises AudioError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's errors are RuntimeError/LibsndfileError with terse text
        raise AudioError(f"{path}: cannot be read as audio ({exc})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples")
    promised = wav_header_frames(path)
    if promised is not None and promised > data.shape[0]:
        raise AudioError(f"{path}: truncated (the header promises {promised} samples, the file holds {data.shape[0]})")
    if data.shape[1] > 1:
        if warn:
            warnings.warn(f"{path}: {data.shape[1]} channels, downmixed to mono", AudioWarning, stacklevel=2)
        data = data.mean(axis=1, keepdims=True)
    x = data[:, 0]
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    if sr != sample_rate:
        if warn:
            warnings.warn(f"{path}: sample rate {sr} Hz, resampled to {sample_rate} Hz", AudioWarning, stacklevel=2)
        x = resample(x, sr, sample_rate)
    return np.ascontiguousarray(x, dtype=np.float32)


def wav_header_frames(path: str | Path) -> int | None:
    """The sample count a RIFF/WAVE header promises (data chunk size / block align), or None for
    other formats. libsndfile quietly reads what is there, so a cut-off WAV needs this check."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            align = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(size + (size & 1))
                    if len(fmt) < 14:
                        return None
                    align = struct.unpack("<H", fmt[12:14])[0]
                elif cid == b"data":
                    # 0 and 0xFFFFFFFF mark a stream written without a final length
                    return size // align if align and size not in (0, 0xFFFFFFFF) else None
                else:
                    f.seek(size + (size & 1), 1)
    except OSError:
        return None


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """High-quality resampling (soxr)."""
    import soxr

    return soxr.resample(x.astype(np.float32), sr_in, sr_out).astype(np.float32)


def fix_length(x: np.ndarray, n: int = CLIP_SAMPLES) -> np.ndarray:
    """Zero-pad at the end or cut to exactly `n` samples (as the data set's own tools do)."""
    if len(x) >= n:
        return x[:n]
    return np.pad(x, (0, n - len(x)))


def save_audio(path: str | Path, x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float audio as 16-bit PCM; the format follows the suffix (.wav, .flac)."""
    sf.write(str(path), np.clip(x, -1.0, 1.0), sample_rate, subtype="PCM_16")
