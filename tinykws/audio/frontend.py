"""Feature front ends: batched MFCC in torch (bit-compatible with the MLPerf Tiny KWS features) and raw waveform.

The "mlperf" preset reproduces benchmark/training/keyword_spotting/get_dataset.py of mlcommons/tiny:
    x = int16 / max(int16)                   (the clip's signed maximum, not 32768, not max |x|)
    zero-pad to 16000
    tf.signal.stft(frame 480, step 320, fft_length=None -> 512, periodic Hann; frame zero-padded at its end)
    |stft| @ tf.signal.linear_to_mel_weight_matrix(40, 257, 16000, 20, 4000)
    log(mel + 1e-6) -> tf.signal.mfccs_from_log_mel_spectrograms -> first 10  => 49 x 10
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .io import CLIP_SAMPLES, SAMPLE_RATE

DEFAULT_PRESET = "mlperf"

_CHOICES = {
    "kind": ("mfcc", "raw"),
    "window": ("hann", "hamming"),
    "spectrum": ("magnitude", "power"),
    "mel_scale": ("htk", "slaney"),
    "dct": ("ortho", "tf"),
    "input_norm": ("none", "peak"),
}


@dataclass(frozen=True)
class FrontendConfig:
    """All settings of a front end; the defaults are the MLPerf Tiny KWS features.

    mel_scale "htk": HTK mel (1127 ln(1 + f/700)) with triangles linear in mel and the DC bin zeroed,
    as tf.signal.linear_to_mel_weight_matrix (unnormalized). "slaney": librosa's default filterbank
    (Slaney mel, triangles linear in Hz, area-normalized).
    dct "ortho": orthonormal DCT-II. "tf": tf.signal.mfccs_from_log_mel_spectrograms, i.e. every
    coefficient scaled by sqrt(2 / n_mels) (c0 is sqrt(2) larger than with "ortho").
    input_norm "peak": divide each clip by its signed maximum max(x) as MLPerf does (see module doc).
    center: zero-pad win_length // 2 samples on both sides so frame i is centred on sample i * hop.
    """

    kind: str = "mfcc"
    sample_rate: int = SAMPLE_RATE
    clip_samples: int = CLIP_SAMPLES
    win_length: int = 480
    hop_length: int = 320
    n_fft: int = 512
    window: str = "hann"
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float = 4000.0
    n_mfcc: int = 10
    log_offset: float = 1e-6
    spectrum: str = "magnitude"
    mel_scale: str = "htk"
    dct: str = "tf"
    input_norm: str = "peak"
    center: bool = False

    def __post_init__(self):
        for f in dataclasses.fields(self):  # 20 -> 20.0 etc., so equal settings give equal keys
            cast = {"int": int, "float": float, "bool": bool, "str": str}[f.type]
            object.__setattr__(self, f.name, cast(getattr(self, f.name)))
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"FrontendConfig.{name}={getattr(self, name)!r}; expected one of {choices}")
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"need 0 < win_length ({self.win_length}) <= n_fft ({self.n_fft})")
        if self.hop_length <= 0 or self.n_frames < 1:
            raise ValueError(f"hop_length {self.hop_length} / clip_samples {self.clip_samples} give no frames")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= fmin ({self.fmin}) < fmax ({self.fmax}) <= sample_rate / 2")
        if not 0 < self.n_mfcc <= self.n_mels:
            raise ValueError(f"need 0 < n_mfcc ({self.n_mfcc}) <= n_mels ({self.n_mels})")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FrontendConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown FrontendConfig keys {unknown}; valid keys: {sorted(names)}")
        return cls(**d)

    @property
    def n_frames(self) -> int:
        pad = 2 * (self.win_length // 2) if self.center else 0
        return 1 + (self.clip_samples + pad - self.win_length) // self.hop_length

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return (self.n_frames, self.n_mfcc) if self.kind == "mfcc" else (self.clip_samples,)

    def key(self) -> str:
        """Short stable hash of all settings (keys an on-disk feature cache)."""
        blob = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


# paperN (Peter et al.): window = FFT = 640 (40 ms), hop 320 (20 ms), N MFCCs. The papers do not give the
# rest; we follow TF's speech_commands MFCC (audio_ops.mfcc, also the basis of Hello Edge): 40 HTK mel bands
# over 20-4000 Hz on the magnitude spectrum, sqrt(2/40) DCT, audio as int16 / 32768 (no peak normalization).
# raw: waveform as int16 / 32768, as MLPerf's own time-domain ("td_samples") input.
_PAPER = dict(win_length=640, hop_length=320, n_fft=640, input_norm="none")
# device: what the fixed-point C front end (tinykws.deploy.frontend, CMSIS-DSP q31) computes frame by frame
# on a stream: 512-sample (32 ms) frames = the FFT size (CMSIS-DSP FFTs are powers of two), 20 ms hop,
# 49 x 10 as MLPerf, audio as int16 / 32768 with NO per-clip normalization; level is handled by a fixed
# log floor: log(mel + 1e-4), 1e-4 being about the mel energy of int16 quantization noise.
DEVICE = FrontendConfig(win_length=512, hop_length=320, n_fft=512, input_norm="none", log_offset=1e-4)
PRESETS: dict[str, FrontendConfig] = {
    **{f"paper{n}": FrontendConfig(n_mfcc=n, **_PAPER) for n in (10, 20, 30, 40)},
    "mlperf": FrontendConfig(),
    "device": DEVICE,
    "raw": FrontendConfig(kind="raw", input_norm="none"),
}


def get_preset(name: str) -> FrontendConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown front-end preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]


# ----------------------------------------------------------------------------- matrices (numpy, float64)

def _window(kind: str, n: int) -> np.ndarray:
    k = np.arange(n)
    a = 0.5 if kind == "hann" else 0.54
    return a - (1 - a) * np.cos(2 * np.pi * k / n)  # periodic, as tf.signal.hann_window / scipy fftbins=True


def _hz_to_mel_htk(f):
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def _mel_htk(cfg: FrontendConfig) -> np.ndarray:
    """tf.signal.linear_to_mel_weight_matrix: (n_fft//2+1, n_mels), triangles in mel, DC row zero."""
    n_bins = cfg.n_fft // 2 + 1
    bin_mel = _hz_to_mel_htk(np.linspace(0.0, cfg.sample_rate / 2, n_bins)[1:])[:, None]
    edges = np.linspace(_hz_to_mel_htk(cfg.fmin), _hz_to_mel_htk(cfg.fmax), cfg.n_mels + 2)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    w = np.maximum(0.0, np.minimum((bin_mel - lo) / (mid - lo), (hi - bin_mel) / (hi - mid)))
    return np.concatenate([np.zeros((1, cfg.n_mels)), w])


def _hz_to_mel_slaney(f):
    f = np.asarray(f, dtype=np.float64)
    logstep = math.log(6.4) / 27.0
    return np.where(f < 1000.0, f * 3 / 200, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / logstep)


def _mel_to_hz_slaney(m):
    logstep = math.log(6.4) / 27.0
    return np.where(m < 15.0, m * 200 / 3, 1000.0 * np.exp(logstep * (m - 15.0)))


def _mel_slaney(cfg: FrontendConfig) -> np.ndarray:
    """librosa.filters.mel(htk=False, norm="slaney"), transposed to (n_fft//2+1, n_mels)."""
    freqs = np.fft.rfftfreq(cfg.n_fft, 1.0 / cfg.sample_rate)
    hz = _mel_to_hz_slaney(np.linspace(_hz_to_mel_slaney(cfg.fmin), _hz_to_mel_slaney(cfg.fmax), cfg.n_mels + 2))
    ramps = hz[:, None] - freqs[None, :]
    fdiff = np.diff(hz)[:, None]
    w = np.maximum(0.0, np.minimum(-ramps[:-2] / fdiff[:-1], ramps[2:] / fdiff[1:]))
    w *= (2.0 / (hz[2:] - hz[:-2]))[:, None]
    return w.T


def _dct(cfg: FrontendConfig) -> np.ndarray:
    """DCT-II as an (n_mels, n_mfcc) matrix."""
    n, k = np.arange(cfg.n_mels)[:, None], np.arange(cfg.n_mfcc)[None, :]
    d = np.cos(np.pi * k * (2 * n + 1) / (2 * cfg.n_mels)) * math.sqrt(2.0 / cfg.n_mels)
    if cfg.dct == "ortho":
        d[:, 0] /= math.sqrt(2.0)
    return d


# ----------------------------------------------------------------------------- modules

def _as_batch(wave, cfg: FrontendConfig) -> tuple[torch.Tensor, bool]:
    x = torch.as_tensor(wave).float()
    single = x.dim() == 1
    if single:
        x = x[None]
    if x.dim() != 2 or x.shape[-1] != cfg.clip_samples:
        n = cfg.clip_samples
        raise ValueError(f"expected audio of shape (B, {n}) or ({n},), got {tuple(x.shape)}")
    return x, single


def peak_normalize(x: torch.Tensor) -> torch.Tensor:
    """MLPerf's x / max(x) per clip (signed max). Falls back to max |x| when max(x) <= 0; silence stays 0."""
    peak = x.amax(dim=-1, keepdim=True)
    peak = torch.where(peak > 0, peak, x.abs().amax(dim=-1, keepdim=True))
    return x / torch.where(peak > 0, peak, torch.ones_like(peak))


class MFCC(nn.Module):
    """Batched MFCC: (B, T) or (T,) float audio -> (B, n_frames, n_mfcc) or (n_frames, n_mfcc) float32.

    Frames are taken as tf.signal.stft does: frame i = x[i*hop : i*hop + win_length] times the window,
    zero-padded at its end to n_fft, no centre padding unless cfg.center.
    """

    def __init__(self, cfg: FrontendConfig):
        super().__init__()
        if cfg.kind != "mfcc":
            raise ValueError(f"MFCC needs kind='mfcc', got {cfg.kind!r}")
        self.cfg = cfg
        mel = _mel_htk(cfg) if cfg.mel_scale == "htk" else _mel_slaney(cfg)
        for name, a in (("window", _window(cfg.window, cfg.win_length)), ("mel", mel), ("dct", _dct(cfg))):
            self.register_buffer(name, torch.tensor(a, dtype=torch.float32), persistent=False)

    def forward(self, wave) -> torch.Tensor:
        cfg = self.cfg
        x, single = _as_batch(wave, cfg)
        x = x.to(self.window.device)
        if cfg.input_norm == "peak":
            x = peak_normalize(x)
        if cfg.center:
            x = nn.functional.pad(x, (cfg.win_length // 2, cfg.win_length // 2))
        frames = x.unfold(-1, cfg.win_length, cfg.hop_length) * self.window  # (B, F, win)
        spec = torch.fft.rfft(frames, n=cfg.n_fft)  # (B, F, n_fft//2+1)
        power = spec.real.square() + spec.imag.square()
        s = power if cfg.spectrum == "power" else power.sqrt()
        out = torch.log(s @ self.mel + cfg.log_offset) @ self.dct
        return out[0] if single else out

    def extra_repr(self) -> str:
        return f"{self.cfg.feature_shape}, key={self.cfg.key()}"


class RawFrontend(nn.Module):
    """Waveform input for end-to-end models: (B, T) -> (B, T) float32, optionally peak-normalized."""

    def __init__(self, cfg: FrontendConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, wave) -> torch.Tensor:
        x, single = _as_batch(wave, self.cfg)
        if self.cfg.input_norm == "peak":
            x = peak_normalize(x)
        return x[0] if single else x


def build_frontend(cfg: FrontendConfig | str) -> nn.Module:
    """A front-end module from a config or a preset name."""
    if isinstance(cfg, str):
        cfg = get_preset(cfg)
    return MFCC(cfg) if cfg.kind == "mfcc" else RawFrontend(cfg)
