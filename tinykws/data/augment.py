"""Batched, seeded augmentation.

Time shift and background noise as in the papers; speed perturbation and SpecAugment masks on top
(both help a lot on small data sets; set `speed=0, time_masks=0, freq_masks=0` for the papers' recipe).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..checks import setting, validate


@dataclass
class AugmentConfig:
    time_shift_ms: float = setting(100.0, lo=0, help="random time shift up to +/- this many ms, zero fill")
    noise_prob: float = setting(0.8, lo=0, hi=1, help="probability of mixing in background noise")
    noise_volume: float = setting(0.1, lo=0, help="noise gain drawn uniformly from [0, noise_volume]")
    gain_db: float = setting(0.0, lo=0, help="random speech gain in [-gain_db, +gain_db] dB")
    speed: float = setting(0.15, lo=0, hi=1, hi_open=True,
                           help="speed perturbation: rate drawn from [1-speed, 1+speed] (0: off)")
    time_masks: int = setting(2, lo=0, help="SpecAugment: time masks per example")
    time_mask_width: int = setting(5, lo=0, help="SpecAugment: max frames per time mask")
    freq_masks: int = setting(2, lo=0, help="SpecAugment: coefficient masks per example")
    freq_mask_width: int = setting(2, lo=0, help="SpecAugment: max coefficients per mask")

    def __post_init__(self):
        validate(self)

    def to_dict(self) -> dict:
        return asdict(self)


class WaveAugment:
    """Augments a float batch (B, T) of 16 kHz clips; all randomness comes from the generator given."""

    def __init__(self, cfg: AugmentConfig, background: list[np.ndarray], sample_rate: int = 16000):
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.background = [torch.from_numpy(np.asarray(b, dtype=np.float32)) for b in background if len(b) > 0]

    @property
    def active(self) -> bool:
        """Whether this changes waveforms at all."""
        c = self.cfg
        return bool(c.gain_db > 0 or c.speed > 0 or c.time_shift_ms > 0 or (self.background and c.noise_prob > 0))

    def __call__(self, x: torch.Tensor, g: torch.Generator, silence_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T = x.shape
        cfg = self.cfg
        if cfg.gain_db > 0:
            db = (torch.rand(B, 1, generator=g) * 2 - 1) * cfg.gain_db
            x = x * 10 ** (db / 20)
        if cfg.speed > 0:
            x = _resample_rate(x, 1 + (torch.rand(B, 1, generator=g) * 2 - 1) * cfg.speed)
        shift = int(cfg.time_shift_ms * self.sample_rate / 1000)
        if shift > 0:
            s = torch.randint(-shift, shift + 1, (B, 1), generator=g)
            idx = torch.arange(T).unsqueeze(0) - s
            valid = (idx >= 0) & (idx < T)
            x = torch.gather(x, 1, idx.clamp(0, T - 1)) * valid
        if self.background and cfg.noise_prob > 0:
            use = torch.rand(B, generator=g) < cfg.noise_prob
            if silence_mask is not None:
                use |= silence_mask
            vol = torch.rand(B, generator=g) * cfg.noise_volume
            which = torch.randint(len(self.background), (B,), generator=g)
            starts = torch.rand(B, generator=g)
            noise = torch.zeros_like(x)
            for i in torch.nonzero(use).flatten().tolist():
                b = self.background[which[i]]
                st = int(starts[i] * max(0, len(b) - T))
                seg = b[st : st + T]
                noise[i, : len(seg)] = seg * vol[i]
            x = x + noise
        return x.clamp(-1.0, 1.0)


def _resample_rate(x: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """Play each clip at its own rate (linear interpolation about the clip's centre, zero outside)."""
    B, T = x.shape
    pos = (torch.arange(T, dtype=torch.float32) - T / 2) * rate + T / 2  # (B, T)
    valid = (pos >= 0) & (pos <= T - 1)
    i0 = pos.floor().long().clamp(0, T - 2)
    frac = pos - i0
    y = torch.gather(x, 1, i0) * (1 - frac) + torch.gather(x, 1, i0 + 1) * frac
    return y * valid


def spec_augment(f: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Zero random bands of frames and coefficients in features (B, T, F); waveforms pass unchanged."""
    if f.ndim != 3:
        return f
    B, T, F = f.shape
    keep = torch.ones_like(f, dtype=torch.bool)
    for n, width, size, dim in ((cfg.time_masks, cfg.time_mask_width, T, 1), (cfg.freq_masks, cfg.freq_mask_width, F, 2)):
        pos = torch.arange(size)
        for _ in range(n if width > 0 else 0):
            w = torch.randint(0, width + 1, (B, 1), generator=g)
            s = (torch.rand(B, 1, generator=g) * (size - w + 1)).long()
            band = (pos >= s) & (pos < s + w)  # (B, size)
            keep &= ~(band.unsqueeze(2) if dim == 1 else band.unsqueeze(1))
    return f * keep
