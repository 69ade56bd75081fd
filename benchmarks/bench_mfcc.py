"""Throughput of the tinykws MFCC (batched torch, CPU) vs librosa on the "mlperf" settings; prints one JSON object.

    python benchmarks/bench_mfcc.py [--clips 512] [--preset mlperf]

Uses real Speech Commands clips from ../shared/data/speech_commands_mini (or $TINYKWS_SHARED) when present,
otherwise noise. librosa has no TF-style mel matrix, so the reference gets the same HTK matrix built from
librosa's mel helpers; frames follow TF (window zero-padded at its end to n_fft).
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import librosa
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tinykws.audio import fix_length, get_preset, load_audio  # noqa: E402
from tinykws.audio.frontend import MFCC  # noqa: E402


def load_clips(n):
    shared = Path(os.environ.get("TINYKWS_SHARED") or Path(__file__).resolve().parents[2] / "shared")
    files = sorted((shared / "data" / "speech_commands_mini").glob("[!_]*/*.flac"))[:n]
    if not files:
        return np.random.default_rng(0).uniform(-0.5, 0.5, (n, 16000)).astype(np.float32), "noise"
    x = np.stack([fix_length(load_audio(f)) for f in files])
    return np.resize(x, (n, x.shape[1])), "speech_commands_mini"


def librosa_mfcc(x, cfg, mel):
    """The same features with librosa: x (..., T) -> (..., n_frames, n_mfcc)."""
    if cfg.input_norm == "peak":
        x = x / x.max(axis=-1, keepdims=True)
    win = np.pad(librosa.filters.get_window(cfg.window, cfg.win_length, fftbins=True), (0, cfg.n_fft - cfg.win_length))
    x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, cfg.n_fft - cfg.win_length)])
    s = np.abs(librosa.stft(x, n_fft=cfg.n_fft, hop_length=cfg.hop_length, window=win, center=False))
    s = s ** 2 if cfg.spectrum == "power" else s
    m = librosa.feature.mfcc(S=np.log(np.einsum("mf,...ft->...mt", mel, s) + cfg.log_offset), n_mfcc=cfg.n_mfcc,
                             norm="ortho")
    if cfg.dct == "tf":
        m[..., 0, :] *= np.sqrt(2.0)
    return np.swapaxes(m, -1, -2)


def htk_mel(cfg):
    """tf.signal.linear_to_mel_weight_matrix from librosa's HTK helpers: (n_mels, n_fft//2+1)."""
    bins = librosa.hz_to_mel(librosa.fft_frequencies(sr=cfg.sample_rate, n_fft=cfg.n_fft), htk=True)[None]
    e = librosa.hz_to_mel(librosa.mel_frequencies(cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax, htk=True), htk=True)
    lo, c, hi = e[:-2, None], e[1:-1, None], e[2:, None]
    w = np.clip(np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), 0, None)
    w[:, 0] = 0.0
    return w


def timed(fn, reps):
    """Output and best-of-reps seconds (the minimum is the least disturbed by other load on the machine)."""
    out, best = fn(), float("inf")  # first call warms up
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=512)
    ap.add_argument("--preset", default="mlperf")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = get_preset(args.preset)
    if cfg.kind != "mfcc" or cfg.mel_scale != "htk":
        raise SystemExit(f"preset {args.preset!r}: this benchmark covers kind='mfcc', mel_scale='htk'")
    x, source = load_clips(args.clips)
    mfcc, mel, xt = MFCC(cfg), htk_mel(cfg), torch.from_numpy(x)

    with torch.inference_mode():
        ours, t_ours = timed(lambda: mfcc(xt).numpy(), args.reps)
    ref_loop, t_loop = timed(lambda: np.stack([librosa_mfcc(c.astype(np.float64), cfg, mel) for c in x]), 3)
    ref_batch, t_batch = timed(lambda: librosa_mfcc(x.astype(np.float64), cfg, mel), args.reps)
    n = len(x)
    print(json.dumps({
        "preset": args.preset, "feature_shape": list(cfg.feature_shape), "clips": n, "source": source,
        "torch_threads": torch.get_num_threads(),
        "tinykws_clips_per_s": round(n / t_ours, 1),
        "librosa_per_clip_clips_per_s": round(n / t_loop, 1),
        "librosa_batched_clips_per_s": round(n / t_batch, 1),
        "speedup_vs_librosa_per_clip": round(t_loop / t_ours, 1),
        "speedup_vs_librosa_batched": round(t_batch / t_ours, 1),
        "max_abs_diff": float(np.abs(ours - ref_loop).max()),
        "max_abs_diff_batched": float(np.abs(ours - ref_batch).max()),
        "feature_abs_max": float(np.abs(ref_loop).max()),
    }))


if __name__ == "__main__":
    main()
