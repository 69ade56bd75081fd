"""Synthetic Speech Commands: spoken words from espeak-ng, in the data set's own layout.

`generate_synthetic(out_dir)` writes one folder per word with 1 s, 16 kHz, mono WAV clips
named `<speaker>_nohash_<k>.wav`, a `_background_noise_/` folder, speaker-disjoint
`validation_list.txt` / `testing_list.txt` and a README, so the rest of the toolkit reads it
like the real data. A "speaker" is a voice + base speed + base pitch profile; each clip adds a
little jitter, a random placement in the 1 s window, a random peak level and a little noise.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from tinykws.audio.io import CLIP_SAMPLES, SAMPLE_RATE, resample, save_audio
from tinykws.outputs import check_output_dir, swap_in, temp_sibling

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
OTHER_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
               "zero", "one", "two", "three", "four")
# Voices and voice+variant pairs that each sound different under espeak-ng 1.51
# (some names, e.g. en-gb+f2 or en-us-nyc, render the same audio as a plain voice).
VOICES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan",
          "en-gb-x-gbcwmd", "en-us+f3", "en+m3", "en+f2", "en+f4", "en-gb-x-rp+f2",
          "en-us+m7", "en-gb-scotland+m3", "en-029+f4", "en+m1", "en+f1", "en+klatt2",
          "en+Andy", "en+steph")


class SynthesisError(RuntimeError):
    """espeak-ng is missing or failed."""


@dataclass
class SynthConfig:
    words: list[str] = field(default_factory=lambda: [*KEYWORDS, *OTHER_WORDS])
    clips_per_word: int = 60
    seed: int = 0
    voices: list[str] = field(default_factory=lambda: list(VOICES))
    speakers: int = 60  # size of the pool of (voice, speed, pitch) speaker profiles
    speed: tuple[int, int] = (120, 220)  # words per minute (espeak-ng -s)
    pitch: tuple[int, int] = (0, 99)  # espeak-ng -p
    amplitude: int = 100  # espeak-ng -a
    peak: tuple[float, float] = (0.1, 0.9)  # peak level of the spoken word in the clip
    noise_level: tuple[float, float] = (0.0005, 0.005)  # RMS of the added white/pink noise
    val_fraction: float = 0.1  # fractions of the speakers (not of the clips)
    test_fraction: float = 0.1
    background_seconds: float = 60.0


def generate_synthetic(out_dir: str | Path, config: SynthConfig | None = None,
                       progress: bool = True, overwrite: bool = False) -> Path:
    """Write a synthetic Speech Commands data set to `out_dir` and return its path.

    Refuses (FileExistsError) when `out_dir` exists and is not empty, unless `overwrite` and it is
    a folder tinykws wrote (it holds the `.tinykws` marker); never the current folder or its parents.
    Same config (seed included) gives byte-identical files.
    """
    config = config or SynthConfig()
    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite)
    _check_config(config)
    _check_espeak(config.voices)

    rng = np.random.default_rng(config.seed)
    speakers = _speaker_pool(config, rng)
    jobs = []  # (word, speaker id, k, voice, speed, pitch, clip seed)
    for word in config.words:
        counts: dict[str, int] = {}
        # speakers in turn, so every split gets each word once clips_per_word >= speakers
        for i in rng.permutation(np.resize(rng.permutation(len(speakers)), config.clips_per_word)):
            sid, voice, speed, pitch = speakers[i]
            k = counts[sid] = counts.get(sid, -1) + 1
            speed = int(np.clip(speed + rng.integers(-8, 9), *config.speed))
            pitch = int(np.clip(pitch + rng.integers(-4, 5), *config.pitch))
            jobs.append((word, sid, k, voice, speed, pitch, int(rng.integers(2**32))))
    ids = sorted({s[0] for s in speakers})
    order = rng.permutation(len(ids))
    n_test, n_val = _split_sizes(len(ids), config)
    test_ids = {ids[i] for i in order[:n_test]}
    val_ids = {ids[i] for i in order[n_test:n_test + n_val]}
    noise_seed = int(rng.integers(2**32))

    tmp = temp_sibling(out_dir)  # filled, then swapped in: an old folder is replaced only at the end
    try:
        for word in config.words:
            (tmp / word).mkdir()
        with _progress(progress) as bar, ThreadPoolExecutor(max_workers=(os.cpu_count() or 1) * 2) as pool:
            task = bar.add_task("synthesizing", total=len(jobs) + 1) if bar else None
            futures = [pool.submit(_make_clip, tmp, config, *job) for job in jobs]
            futures.append(pool.submit(_write_background, tmp / "_background_noise_",
                                       config.background_seconds, noise_seed))
            try:
                for fut in as_completed(futures):
                    fut.result()
                    if bar:
                        bar.advance(task)
            except BaseException:
                for fut in futures:  # stop at the first failure instead of finishing the rest
                    fut.cancel()
                raise
        lists = {"validation_list.txt": [], "testing_list.txt": []}
        for word, sid, k, *_ in jobs:
            name = f"{word}/{sid}_nohash_{k}.wav"
            if sid in val_ids:
                lists["validation_list.txt"].append(name)
            elif sid in test_ids:
                lists["testing_list.txt"].append(name)
        for fname, names in lists.items():
            (tmp / fname).write_text("".join(n + "\n" for n in sorted(names)))
        (tmp / "README.md").write_text(_readme(config, len(jobs), len(ids), n_val, n_test,
                                               {k: len(v) for k, v in lists.items()}))
        swap_in(tmp, out_dir, overwrite)  # checks again: the folder may have appeared while generating
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def synthesize_word(word: str, voice: str, speed: int, pitch: int, amplitude: int = 100) -> np.ndarray:
    """One espeak-ng utterance (22050 Hz WAV) as float32 at 16 kHz, leading/trailing silence trimmed."""
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "tmp.wav"
        cmd = ["espeak-ng", "-w", str(wav), "-v", voice, "-s", str(speed), "-p", str(pitch),
               "-a", str(amplitude), word]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise SynthesisError(f"espeak-ng failed for {word!r} (voice {voice}): {res.stderr.strip()}")
        x, sr = sf.read(str(wav), dtype="float32")
    if x.ndim > 1:
        x = x.mean(axis=1)
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak == 0.0:
        raise SynthesisError(f"espeak-ng produced silence for {word!r} (voice {voice})")
    loud = np.flatnonzero(np.abs(x) > 0.01 * peak)
    pad = sr // 100  # keep 10 ms around the speech
    x = x[max(loud[0] - pad, 0):loud[-1] + pad + 1]
    return resample(x, sr, SAMPLE_RATE)


def colored_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1] if n > 1 else 1.0
    spec /= f ** (exponent / 2)
    spec[0] = 0.0  # no DC
    x = np.fft.irfft(spec, n)
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def _make_clip(root: Path, config: SynthConfig, word: str, sid: str, k: int,
               voice: str, speed: int, pitch: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    speech = synthesize_word(word, voice, speed, pitch, config.amplitude)
    if len(speech) > CLIP_SAMPLES:  # too long for 1 s: keep the start, fade out the cut
        speech = speech[:CLIP_SAMPLES].copy()
        speech[-160:] *= np.linspace(1, 0, 160, dtype=np.float32)
    slack = CLIP_SAMPLES - len(speech)
    margin = min(SAMPLE_RATE // 20, slack // 2)  # keep 50 ms from the edges when there is room
    offset = int(rng.integers(margin, slack - margin + 1))
    clip = np.zeros(CLIP_SAMPLES, np.float32)
    clip[offset:offset + len(speech)] = speech * (rng.uniform(*config.peak) / np.abs(speech).max())
    clip += rng.uniform(*config.noise_level) * colored_noise(CLIP_SAMPLES, float(rng.integers(2)), rng)
    save_audio(root / word / f"{sid}_nohash_{k}.wav", np.clip(clip, -0.99, 0.99))


def _write_background(folder: Path, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SAMPLE_RATE))
    folder.mkdir()
    t = np.arange(n) / SAMPLE_RATE
    hum = sum(np.sin(2 * np.pi * 50 * h * t + rng.uniform(0, 2 * np.pi)) / h for h in (1, 2, 3, 5))
    tones = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1000 * t + 1.0)
    hum_mix = hum + tones + 0.1 * colored_noise(n, 1, rng)
    noises = {
        "white_noise": colored_noise(n, 0, rng),
        "pink_noise": colored_noise(n, 1, rng),
        "brown_noise": colored_noise(n, 2, rng),
        "hum_and_tones": hum_mix / np.sqrt(np.mean(hum_mix**2)),
    }
    for name, x in noises.items():  # RMS 0.1 (peaks around 0.4-0.5)
        save_audio(folder / f"{name}.wav", np.clip(0.1 * x, -0.99, 0.99))


def _speaker_pool(config: SynthConfig, rng: np.random.Generator) -> list[tuple[str, str, int, int]]:
    """Distinct (id, voice, speed, pitch) profiles; the id is 8 hex chars of their hash."""
    pool: dict[str, tuple[str, str, int, int]] = {}
    for _ in range(config.speakers * 20):
        if len(pool) == config.speakers:
            break
        voice = config.voices[rng.integers(len(config.voices))]
        speed = int(rng.integers(config.speed[0], config.speed[1] + 1))
        pitch = int(rng.integers(config.pitch[0], config.pitch[1] + 1))
        sid = hashlib.sha1(f"{voice}|{speed}|{pitch}".encode()).hexdigest()[:8]
        pool.setdefault(sid, (sid, voice, speed, pitch))
    return list(pool.values())


def _split_sizes(n: int, config: SynthConfig) -> tuple[int, int]:
    """Speakers for testing and validation: at least one each when asked for, one left for training."""
    n_test = max(int(round(n * config.test_fraction)), int(config.test_fraction > 0 and n >= 3))
    n_val = max(int(round(n * config.val_fraction)), int(config.val_fraction > 0 and n >= 3))
    if n_test + n_val >= n:
        raise ValueError(f"{n} speakers are too few for val_fraction={config.val_fraction} "
                         f"and test_fraction={config.test_fraction}")
    return n_test, n_val


def _check_config(config: SynthConfig) -> None:
    for word in config.words:
        if not re.fullmatch(r"[A-Za-z][A-Za-z']*", word):
            raise ValueError(f"word {word!r}: use letters only (it becomes a folder name)")
    if len(set(config.words)) != len(config.words):
        raise ValueError("words contains duplicates")
    if config.clips_per_word < 1 or config.speakers < 1 or not config.voices:
        raise ValueError("clips_per_word, speakers and voices must be at least 1")
    if config.val_fraction < 0 or config.test_fraction < 0 or config.background_seconds <= 0:
        raise ValueError("val_fraction/test_fraction must be >= 0 and background_seconds > 0")


def _check_espeak(voices: list[str]) -> None:
    if shutil.which("espeak-ng") is None:
        raise SynthesisError("espeak-ng is not installed (or not on PATH); "
                             "install it with: sudo apt-get install espeak-ng")
    def names(kind: str) -> set[str]:  # languages, voice names and files that `-v` accepts
        out = subprocess.run(["espeak-ng", f"--voices={kind}"], capture_output=True, text=True).stdout
        rows = [line.split() for line in out.splitlines()[1:]]
        found = {w.lower() for r in rows if len(r) >= 5 for w in (r[1], r[3], r[4], r[4].split("/")[-1])}
        return found | {m.lower() for m in re.findall(r"\((\S+) \d+\)", out)}

    languages, variants = names(""), names("variant")
    for voice in sorted(set(voices)):
        base, _, variant = voice.partition("+")
        if base.lower() not in languages or (variant and variant.lower() not in variants):
            raise ValueError(f"espeak-ng voice {voice!r} does not exist on this machine "
                             "(see: espeak-ng --voices=en and espeak-ng --voices=variant)")


def _progress(enabled: bool):
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def _espeak_version() -> str:
    res = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True)
    return res.stdout.split(":")[1].split("Data")[0].strip() if ":" in res.stdout else "unknown"


def _readme(config: SynthConfig, n_clips: int, n_speakers: int, n_val: int, n_test: int,
            list_sizes: dict[str, int]) -> str:
    settings = "\n".join(f"- {k}: {v}" for k, v in asdict(config).items())
    return f"""# SYNTHETIC speech commands

**This data is SYNTHETIC**: every clip was generated with the espeak-ng speech synthesizer
(version {_espeak_version()}) by `tinykws.data.synth.generate_synthetic`. No human speech.
Use it to test pipelines and tooling; accuracy on it says little about real speech.

Layout is the Speech Commands data set's own: one folder per word with 1 s, 16 kHz, mono,
16-bit WAV clips named `<speaker>_nohash_<k>.wav`, `_background_noise_/` (generated white,
pink, brown noise and a hum/tone mixture, {config.background_seconds:g} s each),
`validation_list.txt` and `testing_list.txt` (paths relative to this folder); every clip in
neither list is for training.

- {n_clips} clips: {len(config.words)} words x {config.clips_per_word}
- {n_speakers} "speakers": each is an espeak-ng voice with a base speed and pitch (the 8 hex
  chars of the file name encode that combination); each clip jitters speed (+-8 wpm) and
  pitch (+-4), is placed at a random offset, scaled to a random peak and gets a little
  white or pink noise
- split by speaker: {n_val} validation speakers ({list_sizes['validation_list.txt']} clips),
  {n_test} testing speakers ({list_sizes['testing_list.txt']} clips); different speakers can
  share the same espeak-ng voice

Settings:
{settings}
"""
