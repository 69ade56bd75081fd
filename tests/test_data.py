import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from tinykws.audio import AudioError, AudioWarning, load_audio
from tinykws.data import (SILENCE, UNKNOWN, AugmentConfig, DatasetError, SpeechCommands, WaveAugment, hash_split,
                          load_clips, make_task, read_clip, spec_augment)


def test_mini_layout_and_lists(mini_dir):
    ds = SpeechCommands.open(mini_dir)
    assert not ds.test_set_layout
    assert len(ds.background) == 6 and "yes" in ds.words and "_background_noise_" not in ds.words
    test = set(ds.files("testing"))
    listed = set((mini_dir / "testing_list.txt").read_text().split())
    assert test == listed
    assert not test & set(ds.files("training")) and not test & set(ds.files("validation"))


def test_hash_split_is_the_data_sets_rule():
    # the speaker id decides, whatever the word or utterance number
    assert hash_split("yes/0a7c2a8d_nohash_0.wav") == hash_split("no/0a7c2a8d_nohash_3.wav")
    names = [f"w/{i:08x}_nohash_0.wav" for i in range(3000)]
    shares = {s: sum(hash_split(n) == s for n in names) / len(names) for s in ("training", "validation", "testing")}
    assert abs(shares["validation"] - 0.1) < 0.02 and abs(shares["testing"] - 0.1) < 0.02


def test_hash_split_used_without_lists(tiny_dataset, tmp_path):
    root = tmp_path / "nolists"
    root.mkdir()
    for d in ("yes", "no", "_background_noise_"):
        (root / d).symlink_to(tiny_dataset / d)
    ds = SpeechCommands.open(root)
    for f in ds.files("training") + ds.files("validation") + ds.files("testing"):
        assert ds.split_of[f] == hash_split(f)


def test_tasks():
    t12 = make_task("12")
    assert t12.labels[-2:] == [SILENCE, UNKNOWN] and len(t12.labels) == 12
    assert len(make_task("35").labels) == 35
    assert make_task("marvin,sheila").labels == ["marvin", "sheila", SILENCE, UNKNOWN]
    with pytest.raises(DatasetError, match="twice"):
        make_task("yes,yes")


def test_entries_12_class_proportions(mini_dir):
    ds = SpeechCommands.open(mini_dir)
    ents = ds.entries("training", "12")
    n_kw = sum(e.word not in (SILENCE, UNKNOWN) for e in ents)
    n_unk = sum(e.word == UNKNOWN for e in ents)
    n_sil = sum(e.word == SILENCE for e in ents)
    assert n_unk == round(0.1 * n_kw) and n_sil == round(0.1 * n_kw)
    words = {e.path.split("/")[0] for e in ents if e.word == UNKNOWN}
    assert len(words) >= 10, "unknown is drawn from many words"
    assert ents == ds.entries("training", "12"), "same seed, same draw"


def test_custom_keywords(mini_dir):
    ds = SpeechCommands.open(mini_dir)
    ents = ds.entries("training", "marvin,sheila", unknown_frac=None)
    assert {e.word for e in ents} == {"marvin", "sheila", SILENCE, UNKNOWN}
    with pytest.raises(DatasetError, match="no folder for keyword"):
        ds.entries("training", "marvin,abracadabra")


def test_official_test_set_layout(tmp_path, mini_dir):
    labels = make_task("12").labels
    for w in labels:
        (tmp_path / w).mkdir()
        src = mini_dir / ("bed" if w == UNKNOWN else "yes" if w == SILENCE else w)
        for c in sorted(src.iterdir())[:2]:
            (tmp_path / w / c.name).symlink_to(c)
    ds = SpeechCommands.open(tmp_path)
    assert ds.test_set_layout
    ents = ds.entries("testing", "12")
    assert len(ents) == 24 and {e.label for e in ents} == set(range(12))


def test_missing_and_empty_folders(tmp_path, tiny_dataset):
    with pytest.raises(DatasetError, match="not found"):
        SpeechCommands.open(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no word folders"):
        SpeechCommands.open(tmp_path)
    root = tmp_path / "onelist"
    root.mkdir()
    (root / "yes").symlink_to(tiny_dataset / "yes")
    (root / "testing_list.txt").write_text("")
    with pytest.raises(DatasetError, match="validation_list.txt: missing"):
        SpeechCommands.open(root)
    # a keyword with no clips in a split is named
    root2 = tmp_path / "empty"
    root2.mkdir()
    for d in tiny_dataset.iterdir():
        (root2 / d.name).symlink_to(d)
    (root2 / "validation_list.txt").unlink()
    (root2 / "validation_list.txt").write_text("")
    with pytest.raises(DatasetError, match="no clips in the validation split"):
        SpeechCommands.open(root2).entries("validation", "12")


def _write(path, x, sr=16000):
    sf.write(path, x, sr, subtype="PCM_16")
    return path


def test_bad_audio_named_clearly(tmp_path):
    (tmp_path / "garbage.wav").write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="garbage.wav: cannot be read"):
        load_audio(tmp_path / "garbage.wav")
    good = _write(tmp_path / "good.wav", np.zeros(16000))
    (tmp_path / "trunc.wav").write_bytes(good.read_bytes()[:30])
    with pytest.raises(AudioError, match="trunc.wav"):
        load_audio(tmp_path / "trunc.wav")
    _write(tmp_path / "empty.wav", np.zeros(0))
    with pytest.raises(AudioError, match="empty.wav: contains no samples"):
        load_audio(tmp_path / "empty.wav")
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav")


def test_resample_stereo_and_length(tmp_path):
    t = np.arange(8000) / 8000
    _write(tmp_path / "8k.wav", 0.5 * np.sin(2 * np.pi * 440 * t), sr=8000)
    with pytest.warns(AudioWarning, match="8k.wav: sample rate 8000 Hz, resampled to 16000"):
        x = load_audio(tmp_path / "8k.wav")
    assert len(x) == 16000
    spec = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spec) * 16000 / len(x) - 440) < 5, "the tone survives resampling"
    st = np.stack([np.full(16000, 0.5), np.full(16000, -0.1)], axis=1)
    _write(tmp_path / "st.wav", st)
    with pytest.warns(AudioWarning, match="downmixed"):
        assert np.allclose(load_audio(tmp_path / "st.wav"), 0.2, atol=1e-3)
    long = np.zeros(40000)
    long[30000:31000] = 0.5
    _write(tmp_path / "long.wav", long)
    x, notes = read_clip(tmp_path / "long.wav")
    assert len(x) == 16000 and np.abs(x).max() > 0.4 and "longer than 1 s" in notes[0]
    _write(tmp_path / "short.wav", np.full(4000, 0.25))
    x, notes = read_clip(tmp_path / "short.wav")
    assert len(x) == 16000 and notes == [] and x[3999] > 0.2 and x[4000] == 0


def test_broken_files_are_skipped_and_counted(tiny_dataset, tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    for d in tiny_dataset.iterdir():
        if d.is_dir():
            (root / d.name).mkdir()
            for f in d.iterdir():
                (root / d.name / f.name).symlink_to(f.resolve())
        else:
            (root / d.name).write_text(d.read_text())
    (root / "yes" / "dead_nohash_0.wav").write_bytes(b"RIFF....junk")
    ds = SpeechCommands.open(root)
    ents = ds.entries("training", "12", unknown_frac=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cs = load_clips(ds, ents, make_task("12").labels, cache=False, progress=False)
    assert len(cs.skipped) == 1 and "dead_nohash_0.wav" in cs.skipped[0][0]
    assert len(cs) == len(ents) - 1 and "1 skipped" in cs.summary()
    # training goes on and says what it skipped
    from tinykws.train import TrainConfig, train

    lines = []
    train(TrainConfig(data=str(root), out=str(tmp_path / "run"), epochs=1, batch_size=16), progress=False,
          log=lines.append)
    assert "1 skipped" in lines[0] and "dead_nohash_0.wav: cannot be read" in lines[1]


def test_clip_cache_roundtrip(tiny_dataset):
    ds = SpeechCommands.open(tiny_dataset)
    ents = ds.entries("training", "12")
    a = load_clips(ds, ents, make_task("12").labels, progress=False)
    b = load_clips(ds, ents, make_task("12").labels, progress=False)
    assert a.key == b.key and np.array_equal(a.audio, b.audio) and a.names == b.names
    silence = a.audio[a.labels == 10]
    assert len(silence) and np.abs(silence).max() > 0, "silence is cut from background noise"


def test_augment_reproducible_and_bounded():
    bg = [np.random.default_rng(0).uniform(-0.5, 0.5, 48000).astype(np.float32)]
    aug = WaveAugment(AugmentConfig(speed=0), bg)
    x = torch.zeros(64, 16000)
    x[:, 8000] = 1.0  # an impulse in the middle
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # shift stays within +/-100 ms: the impulse (largest sample) stays within 1600 samples
    no_noise = WaveAugment(AugmentConfig(speed=0, noise_prob=0), bg)(x, torch.Generator().manual_seed(3))
    pos = no_noise.argmax(1)
    assert (pos - 8000).abs().max() <= 1600 and len(set(pos.tolist())) > 10
    # noise: ~80% of clips get some, at volume <= 0.1 of a +/-0.5 recording
    noisy = ((a - no_noise).abs().sum(1) > 0).float().mean()
    resid = a.clone()
    resid[torch.arange(64), a.argmax(1)] = 0
    assert 0.6 < noisy <= 1.0 and resid.abs().max() <= 0.05 + 1e-6


def test_spec_augment_masks():
    f = torch.ones(8, 49, 10)
    cfg = AugmentConfig(time_masks=2, time_mask_width=5, freq_masks=1, freq_mask_width=2)
    m = spec_augment(f, cfg, torch.Generator().manual_seed(0))
    zeros_per_clip = (m == 0).sum((1, 2))
    assert (zeros_per_clip <= 2 * 5 * 10 + 2 * 49).all() and zeros_per_clip.sum() > 0
    assert torch.equal(m, spec_augment(f, cfg, torch.Generator().manual_seed(0)))


def test_speed_perturbation_changes_pitch_within_range():
    t = torch.arange(16000) / 16000
    x = torch.sin(2 * torch.pi * 500 * t).repeat(32, 1)
    y = WaveAugment(AugmentConfig(speed=0.15, time_shift_ms=0, noise_prob=0), [])(x, torch.Generator().manual_seed(0))
    win = torch.hann_window(8000)
    peak = torch.fft.rfft(y[:, 4000:12000] * win).abs().argmax(1).float() * 2  # Hz (bin = 2 Hz)
    assert (peak >= 500 * 0.85 - 4).all() and (peak <= 500 * 1.15 + 4).all()
    assert peak.std() > 10, "rates differ between clips"


def _tone_batch(B=16, T=16000):
    """Clips with a 250 ms tone at a clip-dependent place and level (the 'speech'), zeros elsewhere."""
    x = torch.zeros(B, T)
    t = torch.arange(4000) / 16000
    for i in range(B):
        a = 2000 + 600 * i
        x[i, a:a + 4000] = (0.02 + 0.01 * i) * torch.sin(2 * torch.pi * (300 + 40 * i) * t)
    return x


def test_noise_at_requested_snr():
    from tinykws.data.augment import speech_level
    from tinykws.stream.synth_stream import speech_bounds

    x = _tone_batch()
    bg = [np.random.default_rng(i).standard_normal(40000 + 7000 * i).astype(np.float32) * 0.003 * (i + 1)
          for i in range(3)]
    for i in range(4):  # the batched level is the stream's level of the spoken part
        assert float(speech_level(x[i:i + 1])[0]) == pytest.approx(speech_bounds(x[i].numpy())[2], rel=1e-5)
    base = dict(noise_prob=1.0, time_shift_ms=0, speed=0)
    for snr in (10.0, 25.0, 40.0):
        y = WaveAugment(AugmentConfig(noise_snr_db=f"{snr},{snr}", **base), bg)(x, torch.Generator().manual_seed(1))
        noise = (y - x).double()
        measured = 20 * torch.log10(speech_level(x).double() / noise.square().mean(1).sqrt())
        assert (measured - snr).abs().max() < 0.1
    # a range: SNRs spread over it; clips without speech get the noise of the reference level minus the SNR
    cfg = AugmentConfig(noise_snr_db=(10, 40), **base)
    y = WaveAugment(cfg, bg)(x, torch.Generator().manual_seed(2))
    measured = 20 * torch.log10(speech_level(x).double() / (y - x).double().square().mean(1).sqrt())
    assert measured.min() >= 10 - 0.1 and measured.max() <= 40 + 0.1 and measured.std() > 3
    z = WaveAugment(AugmentConfig(noise_snr_db="20", **base), bg)(torch.zeros(4, 16000), torch.Generator().manual_seed(0),
                                                                  torch.ones(4, dtype=torch.bool))
    level_db = 20 * torch.log10(z.double().square().mean(1).sqrt())
    assert (level_db - (-24 - 20)).abs().max() < 0.1
    with pytest.raises(ValueError, match="--noise-snr-db must be LO,HI"):
        AugmentConfig(noise_snr_db="40,10")
    with pytest.raises(ValueError, match="--noise-snr-db must be LO,HI"):
        AugmentConfig(noise_snr_db="loud")


def test_large_time_shift_and_default_draws_unchanged():
    x = _tone_batch()
    g = lambda: torch.Generator().manual_seed(3)
    y = WaveAugment(AugmentConfig(time_shift_ms=400, noise_prob=0, speed=0), [])(x, g())
    moved = [(int(torch.nonzero(y[i]).min()) - int(torch.nonzero(x[i]).min())) for i in range(len(x))
             if y[i].abs().sum() > 0]
    assert max(abs(m) for m in moved) <= 6400 and max(abs(m) for m in moved) > 3200
    # the new options off: the same draws, so the same clips, as before they existed
    bg = [np.random.default_rng(0).standard_normal(40000).astype(np.float32) * 0.01]
    a = WaveAugment(AugmentConfig(), bg)(x, g())
    b, partial = WaveAugment(AugmentConfig(noise_snr_db=(), partial_prob=0.0), bg).partials(x, g())
    assert torch.equal(a, b) and not partial.any()


def test_partial_word_negatives_keep_part_of_the_word():
    from tinykws.data.augment import speech_bounds

    x = _tone_batch()
    may = torch.arange(len(x)) % 2 == 0  # only these clips (keywords) may become negatives
    y, partial = WaveAugment(AugmentConfig(partial_prob=1.0, partial_keep=0.4, noise_prob=0, speed=0), []).partials(
        x, torch.Generator().manual_seed(0), None, may)
    assert torch.equal(partial, may)
    for i in range(len(x)):
        kept = float((y[i] != 0).sum()) / float((x[i] != 0).sum())
        if partial[i]:
            assert 0.08 <= kept <= 0.42, kept  # 10%-40% of the spoken part, at one edge of the window
            a, b, _ = speech_bounds(y[i:i + 1])
            assert int(a) == 0 or int(b) == 16000
        else:
            assert kept > 0.9
