"""The decoded-clip cache: int16 (lossless for Speech Commands), memory-mapped, decoded in parallel
processes, written atomically, rebuilt when damaged."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tinykws.data import load_clips, make_task
from tinykws.data.clips import cache_root
from tinykws.data.speech_commands import SpeechCommands


def _entries(tiny_dataset):
    ds = SpeechCommands.open(tiny_dataset)
    return ds, ds.entries("training", make_task("12"), 0.1, None, 0)


def test_int16_cache_is_the_decoded_audio_exactly_and_memory_mapped(tiny_dataset):
    ds, ents = _entries(tiny_dataset)
    labels = make_task("12").labels
    first = load_clips(ds, ents, labels, progress=False)
    again = load_clips(ds, ents, labels, progress=False)
    for cs in (first, again):
        assert isinstance(cs.audio, np.memmap) and cs.audio.dtype == np.int16 and not cs.audio.flags.writeable
    folder = cache_root() / "clips" / first.key
    assert (folder / "audio.i16").stat().st_size == len(first) * 16000 * 2
    assert not list(folder.parent.glob(f"{first.key}.tmp*"))  # written under a temporary name, renamed
    # the files are 16-bit: their int16 samples (zero-padded to 1 s) are exactly what the cache holds
    checked = 0
    for row, name in enumerate(first.names):
        if name.startswith("_silence_"):
            continue
        raw, sr = sf.read(tiny_dataset / name, dtype="int16")
        assert sr == 16000 and raw.ndim == 1
        want = np.zeros(16000, np.int16)
        want[: min(len(raw), 16000)] = raw[:16000]
        if len(raw) <= 16000:
            assert np.array_equal(again.audio[row], want), name
            checked += 1
    assert checked > 50
    assert np.array_equal(first.labels, again.labels) and first.names == again.names


@pytest.mark.slow
def test_parallel_decoding_equals_serial_and_damaged_cache_is_rebuilt(tiny_dataset):
    ds, ents = _entries(tiny_dataset)
    labels = make_task("12").labels
    serial = load_clips(ds, ents, labels, cache=False, workers=1, progress=False)
    parallel = load_clips(ds, ents, labels, cache=False, workers=2, progress=False)
    assert len(serial) > 50 and np.array_equal(serial.audio, parallel.audio)
    assert serial.names == parallel.names and np.array_equal(serial.labels, parallel.labels)
    cached = load_clips(ds, ents, labels, workers=2, progress=False)
    assert np.array_equal(np.asarray(cached.audio), serial.audio)
    path = cache_root() / "clips" / cached.key / "audio.i16"
    with open(path, "r+b") as f:  # cut short, as by a full disk
        f.truncate(1000)
    rebuilt = load_clips(ds, ents, labels, progress=False)
    assert np.array_equal(np.asarray(rebuilt.audio), serial.audio)
