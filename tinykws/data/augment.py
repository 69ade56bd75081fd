"""Batched, seeded augmentation.

Time shift and background noise as in the papers; speed perturbation and SpecAugment masks on top
(both help a lot on small data sets; set `speed=0, time_masks=0, freq_masks=0` for the papers' recipe).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..checks import ConfigError, setting, validate


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
    noise_snr_db: tuple = setting(default_factory=tuple,
                                  help="noise at an SNR (dB) drawn uniformly from LO,HI instead of a gain from "
                                       "noise_volume: the speech RMS over its spoken part against the noise RMS")
    noise_ref_dbfs: float = setting(-24.0, lo=-60, hi=0,
                                    help="with noise_snr_db: the speech level (dBFS) that sets the noise level of "
                                         "clips without speech (silence)")
    partial_prob: float = setting(0.0, lo=0, hi=1,
                                  help="probability that a keyword clip is shifted so far that only the start or the "
                                       "end of its spoken part stays in the window, labelled unknown")
    partial_keep: float = setting(0.4, lo=0, hi=1, lo_open=True,
                                  help="a partial-word negative keeps 10% to this fraction of the spoken part")

    def __post_init__(self):
        validate(self)
        snr = self.noise_snr_db
        if isinstance(snr, str):
            snr = [v for v in snr.replace(" ", "").split(",") if v]
        try:
            snr = tuple(float(v) for v in snr)
        except (TypeError, ValueError):
            raise ConfigError(f"--noise-snr-db must be LO,HI in dB (got {self.noise_snr_db!r})") from None
        if len(snr) == 1:
            snr = (snr[0], snr[0])
        if snr and (len(snr) != 2 or snr[0] > snr[1] or not all(np.isfinite(snr))):
            raise ConfigError(f"--noise-snr-db must be LO,HI in dB with LO <= HI (got {self.noise_snr_db!r})")
        self.noise_snr_db = snr

    def to_dict(self) -> dict:
        return asdict(self)


class WaveAugment:
    """Augments a float batch (B, T) of 16 kHz clips; all randomness comes from the generator given.

    The random draws are made on the CPU generator `g` (a few numbers per clip, in a fixed order), the
    sample work on the batch's own device, so a seed gives the same draws on every device. The work is
    done in few passes over the batch: speed perturbation and time shift are one interpolation (the
    shift moves the positions read), and the noise segments are rows of one view of the recordings
    (each followed by a clip of zeros), added in one multiply-add."""

    def __init__(self, cfg: AugmentConfig, background: list[np.ndarray], sample_rate: int = 16000):
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.background = [torch.from_numpy(np.asarray(b, dtype=np.float32)) for b in background if len(b) > 0]
        self._banks: dict = {}  # (device, clip length) -> (recordings with zeros after each, their offsets, lengths)

    @property
    def active(self) -> bool:
        """Whether this changes waveforms at all."""
        c = self.cfg
        return bool(c.gain_db > 0 or c.speed > 0 or c.time_shift_ms > 0 or c.partial_prob > 0
                    or (self.background and c.noise_prob > 0))

    def _bank(self, device: torch.device, T: int):
        key = (device, T)
        if key not in self._banks:
            parts = [p for b in self.background for p in (b, torch.zeros(T))]
            lens = torch.tensor([len(b) for b in self.background], dtype=torch.long)
            offsets = torch.cumsum(lens + T, 0) - lens - T
            self._banks[key] = (torch.cat(parts).to(device), offsets.to(device), lens.to(device))
        return self._banks[key]

    def __call__(self, x: torch.Tensor, g: torch.Generator, silence_mask: torch.Tensor | None = None,
                 partial_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The augmented batch. With `partial_prob` > 0 and `partial_mask` (B,) marking the clips that may
        become partial-word negatives, use `partials(...)` instead: it also says which clips became one."""
        return self.partials(x, g, silence_mask, partial_mask)[0]

    def partials(self, x: torch.Tensor, g: torch.Generator, silence_mask: torch.Tensor | None = None,
                 partial_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(augmented batch, (B,) bool: the clips made partial-word negatives, to be labelled unknown)."""
        B, T = x.shape
        cfg, dev = self.cfg, x.device
        if cfg.gain_db > 0:
            db = (torch.rand(B, 1, generator=g) * 2 - 1) * cfg.gain_db
            x = x * (10 ** (db / 20)).to(dev)
        rate = 1 + (torch.rand(B, 1, generator=g) * 2 - 1) * cfg.speed if cfg.speed > 0 else None
        shift = int(cfg.time_shift_ms * self.sample_rate / 1000)
        s = torch.randint(-shift, shift + 1, (B, 1), generator=g) if shift > 0 else None
        partial = torch.zeros(B, dtype=torch.bool)
        if cfg.partial_prob > 0:
            partial = torch.rand(B, generator=g) < cfg.partial_prob
            keep = 0.1 + torch.rand(B, 1, generator=g) * max(cfg.partial_keep - 0.1, 0.0)
            head = torch.rand(B, 1, generator=g) < 0.5  # keep the start of the word (at the window's end), or its end
            a, b, _ = speech_bounds(x.cpu())
            a, b = a.unsqueeze(1).float(), b.unsqueeze(1).float()
            far = torch.where(head, T - (a + keep * (b - a)), -(a + (1 - keep) * (b - a))).round().long()
            partial &= partial_mask.cpu() if partial_mask is not None else torch.zeros(B, dtype=torch.bool)
            if partial.any():
                s = torch.where(partial.unsqueeze(1), far, s if s is not None else torch.zeros(B, 1, dtype=torch.long))
        if rate is not None or s is not None:
            x = speed_and_shift(x, rate, s)
        else:
            x = x.clone()
        if self.background and cfg.noise_prob > 0:
            use = torch.rand(B, generator=g) < cfg.noise_prob
            if silence_mask is not None:
                use |= silence_mask.cpu()
            vol = torch.rand(B, generator=g) * cfg.noise_volume
            which = torch.randint(len(self.background), (B,), generator=g)
            starts = torch.rand(B, generator=g)
            snr = None
            if cfg.noise_snr_db:
                lo_db, hi_db = cfg.noise_snr_db
                snr = lo_db + torch.rand(B, generator=g) * (hi_db - lo_db)
            bank, offsets, lens = self._bank(dev, T)
            which, starts = which.to(dev), starts.to(dev)
            st = (starts * (lens[which] - T).clamp(min=0).float()).long()  # as int(start * max(0, len - T))
            seg = bank.unfold(0, T, 1)[offsets[which] + st]  # (B, T): the recording, then its zeros
            if snr is not None:  # gain = speech level / (noise RMS x 10^(SNR/20))
                level = speech_level(x)
                ref = 10 ** (cfg.noise_ref_dbfs / 20)
                quiet = level < ref * 10 ** (-40 / 20)  # no speech (silence clips): the reference level
                if silence_mask is not None:
                    quiet |= silence_mask.to(dev)
                level = torch.where(quiet, torch.full_like(level, ref), level)
                noise_rms = seg.square().mean(1).sqrt()
                vol = (level / (noise_rms.clamp(min=1e-9) * 10 ** (snr.to(dev) / 20))) * (noise_rms > 0)
            x.addcmul_(seg, (vol.to(dev) * use.to(dev)).unsqueeze(1))
        return x.clamp_(-1.0, 1.0), partial


def speech_bounds(x: torch.Tensor, sample_rate: int = 16000, floor_db: float = 30.0):
    """(B,) first and last + 1 sample of each clip's spoken part (the 10 ms frames from the first to
    the last within `floor_db` of the loudest one) and the RMS over it: batched as
    `tinykws.stream.synth_stream.speech_bounds`, the level the streams set words to."""
    B, T = x.shape
    n = sample_rate // 100
    fr = x[:, : T // n * n].reshape(B, -1, n).double().square().mean(2)  # (B, frames) mean squares
    on = fr >= fr.amax(1, keepdim=True) * 10 ** (-floor_db / 10)
    k = torch.arange(fr.shape[1], device=x.device)
    first = torch.where(on, k, fr.shape[1]).amin(1, keepdim=True)
    last = torch.where(on, k, -1).amax(1, keepdim=True)
    inside = (k >= first) & (k <= last)
    ms = (fr * inside).sum(1) / inside.sum(1).clamp(min=1)
    return first.squeeze(1) * n, (last.squeeze(1) + 1) * n, ms.sqrt().float()


def speech_level(x: torch.Tensor, sample_rate: int = 16000) -> torch.Tensor:
    """(B,) RMS of each clip's spoken part (see `speech_bounds`)."""
    return speech_bounds(x, sample_rate)[2]


def speed_and_shift(x: torch.Tensor, rate: torch.Tensor | None, s: torch.Tensor | None) -> torch.Tensor:
    """Each clip played at its own `rate` (B, 1) (linear interpolation about the clip's centre, zero
    outside), then shifted by `s` (B, 1) samples (zero fill): output sample t reads the clip at
    (t - s - T/2) * rate + T/2, and is zero where t - s or that position falls outside the clip."""
    B, T = x.shape
    dev = x.device
    rate = torch.ones(B, 1) if rate is None else rate.float()
    s = torch.zeros(B, 1) if s is None else s.float()
    t = torch.arange(T, dtype=torch.float32, device=dev).unsqueeze(0)
    base = (T / 2 - (s + T / 2) * rate).to(dev)
    pos = torch.addcmul(base, t, rate.to(dev))  # (B, T), one pass
    # pos grows with t: the valid outputs are one run [lo, hi) per clip, found on (B, 1)
    lo = torch.maximum(s, torch.ceil((s + T / 2) - (T / 2) / rate))
    hi = torch.minimum(s + T, torch.floor((s + T / 2) + (T / 2 - 1) / rate) + 1)
    i0 = pos.floor().clamp_(0, T - 2)
    frac = pos.sub_(i0)  # 1 at the last sample
    i0 = i0.long()
    y = torch.lerp(torch.gather(x, 1, i0), torch.gather(x, 1, i0 + 1), frac)
    return y.mul_((t >= lo.to(dev)) & (t < hi.to(dev)))


def spec_augment(f: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Zero random bands of frames and coefficients in features (B, T, F); waveforms pass unchanged.
    The band positions are drawn on the CPU generator `g`, the masking runs on the features' device."""
    if f.ndim != 3:
        return f
    B, T, F = f.shape
    dev = f.device
    keep = torch.ones(f.shape, dtype=torch.bool, device=dev)
    for n, width, size, dim in ((cfg.time_masks, cfg.time_mask_width, T, 1), (cfg.freq_masks, cfg.freq_mask_width, F, 2)):
        pos = torch.arange(size, device=dev)
        for _ in range(n if width > 0 else 0):
            w = torch.randint(0, width + 1, (B, 1), generator=g)
            s = (torch.rand(B, 1, generator=g) * (size - w + 1)).long()
            w, s = w.to(dev), s.to(dev)
            band = (pos >= s) & (pos < s + w)  # (B, size)
            keep &= ~(band.unsqueeze(2) if dim == 1 else band.unsqueeze(1))
    return f * keep
