"""Streaming detection: RecognizeCommands semantics, chunked sources, synthetic streams, metrics, listen, CLI."""
import json
import tracemalloc
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from cli_helpers import last_json, run
from tinykws.audio import AudioError, AudioWarning, build_frontend
from tinykws.checks import ConfigError
from tinykws.stream import (AudioSource, DetectorConfig, ListenConfig, StreamConfig, StreamError, WindowFeatures,
                            build_stream, detect, listen, make_scorer, match)
from tinykws.stream.detector import Detector, Event
from tinykws.stream.tune import TuneConfig, choose, sweep
from tinykws.train import load_model

LABELS = ["yes", "no", "_silence_", "_unknown_"]


def posteriors(n, k, value, period=20):
    """n results `period` ms apart (the first at 1000 ms); class k scores `value`, the others 0."""
    s = np.zeros((n, len(LABELS)))
    s[:, k] = value
    return 1000 + period * np.arange(n), s


# ---------------------------------------------------------------------------- detector semantics

def test_detector_threshold_and_first_decision():
    t, s = posteriors(60, 0, 201.0)
    ev = detect(t, s, LABELS)
    # the first decision needs 3 results spanning >= window / 4 = 250 ms: the 14th result (260 ms after the first)
    assert [(e.keyword, e.time) for e in ev] == [("yes", 1.26)]
    assert detect(t, np.where(s > 0, 200.0, 0.0), LABELS) == []  # the average must EXCEED the threshold
    assert detect(t, s, LABELS, DetectorConfig(threshold=201)) == []


def test_detector_suppression_and_label_change():
    t, s = posteriors(300, 0, 250.0)  # "yes" for 6 s, results every 20 ms
    ev = detect(t, s, LABELS)
    times = [e.time for e in ev]
    assert times[0] == 1.26 and all(np.isclose(np.diff(times), 1.52))  # suppression 1500 ms: next at > 1500
    assert len(detect(t, s, LABELS, DetectorConfig(suppression_ms=3000))) == 2
    # a different label fires at once, suppression or not
    s2 = s.copy()
    s2[150:, 0], s2[150:, 1] = 0, 250
    ev2 = detect(t, s2, LABELS, DetectorConfig(window_ms=100, suppression_ms=10_000))
    assert [e.keyword for e in ev2] == ["yes", "no"] and ev2[1].time - t[150] / 1000 < 0.1


def test_detector_min_count_and_silence_ends_suppression():
    # one result every 400 ms: at most 3 in a 1000 ms window
    t, s = posteriors(20, 0, 250.0, period=400)
    assert detect(t, s, LABELS, DetectorConfig(min_count=4)) == []
    assert len(detect(t, s, LABELS, DetectorConfig(min_count=3, suppression_ms=100_000))) == 1
    # yes, then silence fires, then yes again: silence as the last label means no suppression
    s = np.zeros((150, 4))
    s[:50, 0], s[50:100, 2], s[100:, 0] = 250, 250, 250
    t = 1000 + 20 * np.arange(150)
    ev = detect(t, s, LABELS, DetectorConfig(window_ms=100, suppression_ms=100_000))
    assert [e.keyword for e in ev] == ["yes", "yes"]  # _silence_ fired between them but is no event
    s[50:100, 2], s[50:100, 3] = 0, 250  # unknown in between: a label change, so "yes" fires again too
    assert len(detect(t, s, LABELS, DetectorConfig(window_ms=100, suppression_ms=100_000))) == 2


def test_detector_integer_average_truncates_and_feeding_in_pieces_is_the_same():
    t = np.array([1000, 1100, 1200, 1300])
    s = np.array([[200, 0, 0, 0], [201, 0, 0, 0], [201, 0, 0, 0], [201, 0, 0, 0]])
    assert detect(t, s.astype(np.int64), LABELS) == []  # decided at 1300 ms only: 803 // 4 = 200, not > 200
    assert len(detect(t, s.astype(np.float64), LABELS)) == 1  # 200.67 > 200
    rng = np.random.default_rng(0)
    t = 1000 + 20 * np.arange(2000)
    s = rng.integers(0, 256, (2000, 4))
    s[rng.random(2000) < 0.5, 0] = 255
    cfg = DetectorConfig(threshold=150, window_ms=300)
    whole = detect(t, s, LABELS, cfg)
    d = Detector(LABELS, cfg, integer=True)
    parts = [e for a, b in ((0, 7), (7, 500), (500, 1333), (1333, 2000)) for e in d.feed(t[a:b], s[a:b])]
    assert parts == whole and len(whole) > 10
    with pytest.raises(ValueError, match="time order"):
        d.feed(t[:3], s[:3])


# ---------------------------------------------------------------------------- features of windows

@pytest.mark.parametrize("name", ["dscnn-kws", "nas-kws"])
def test_window_features_equal_clip_features(name, mini_dir):
    """Frame slicing (with per-window peak normalization for dscnn-kws) gives the clip front end's features."""
    _, bundle = load_model(name)
    x = sf.read(str(mini_dir / "yes" / sorted(p.name for p in (mini_dir / "yes").iterdir())[0]), dtype="float32")[0]
    rng = np.random.default_rng(1)
    stream = np.concatenate([rng.normal(0, 0.01, 7000), np.pad(x, (0, 16000 - len(x))), rng.normal(0, 0.02, 9000)]).astype(np.float32)
    wf = WindowFeatures(bundle.frontend, 20)
    times, feats = [], []
    for i in range(0, len(stream), 3333):  # odd chunk sizes
        t, f = wf.push(stream[i : i + 3333])
        times.append(t)
        feats.append(f)
    times, feats = np.concatenate(times), torch.cat(feats)
    assert len(times) == 1 + (len(stream) - 16000) // 320 and times[0] == 1000 and times[1] == 1020
    fe = build_frontend(bundle.frontend)
    for k in (0, 1, 21, 22, len(times) - 1):
        ref = fe(torch.from_numpy(stream[k * 320 : k * 320 + 16000]))
        assert torch.allclose(feats[k], ref, atol=1e-4), (k, float((feats[k] - ref).abs().max()))
    # without per-window normalization a peak-normalizing model sees different features
    if bundle.frontend.input_norm == "peak":
        raw = WindowFeatures(bundle.frontend, 20, peak_norm="none").push(stream)[1]
        assert not torch.allclose(raw[22], feats[22], atol=1e-2)


def test_bad_streaming_settings():
    _, bundle = load_model("dscnn-kws")
    with pytest.raises(ConfigError, match="--hop-ms 30: must be a multiple"):
        WindowFeatures(bundle.frontend, 30)
    with pytest.raises(ConfigError, match="--hop-ms"):
        ListenConfig(hop_ms=120)
    from tinykws.audio import get_preset

    with pytest.raises(StreamError, match="MFCC front end"):
        WindowFeatures(get_preset("raw"), 20)


# ---------------------------------------------------------------------------- sources

def test_short_stream_and_silence_and_clipping():
    scorer = make_scorer("dscnn-kws")
    short = listen(np.full(4000, 0.3, np.float32), scorer, keep_scores=True)  # 0.25 s, clipped-flat
    assert short.windows == 1 and short.scores.shape == (1, 12) and short.audio_seconds == 0.25
    silent = listen(np.zeros(48000, np.float32), scorer, keep_scores=True)
    assert silent.windows == 1 + (48000 - 16000) // 640 and np.all(np.isfinite(silent.scores))
    assert silent.events == []
    loud = listen(np.clip(np.random.default_rng(0).normal(0, 3, 32000), -1, 1).astype(np.float32), scorer)
    assert loud.windows > 0
    assert listen(np.zeros(0, np.float32), scorer).windows == 0


def test_stereo_and_other_rates_are_resampled_with_a_warning(tmp_path, mini_dir):
    x = sf.read(str(next((mini_dir / "yes").iterdir())), dtype="float32")[0]
    x = np.concatenate([np.zeros(8000, np.float32), x, np.zeros(16000, np.float32)])
    import soxr

    for rate in (8000, 44100):
        y = soxr.resample(x, 16000, rate)
        p = tmp_path / f"s{rate}.wav"
        sf.write(p, np.stack([y, 0.5 * y], axis=1), rate, subtype="PCM_16")
        with pytest.warns(AudioWarning) as caught:
            src = AudioSource(p, chunk_seconds=0.37)
            chunks = list(src)
        msgs = " ".join(str(w.message) for w in caught)
        assert "2 channels, downmixed" in msgs and f"sample rate {rate} Hz, resampled to 16000" in msgs
        n = sum(len(c) for c in chunks)
        assert abs(n - len(x)) <= 2, (rate, n, len(x))
        assert np.corrcoef(np.concatenate(chunks)[: len(x)], 0.75 * x[:n])[0, 1] > 0.95


def test_long_file_is_read_in_chunks_with_bounded_memory(tmp_path):
    p = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(p, "w", 16000, 1, subtype="PCM_16") as f:
        for _ in range(180):  # 3 minutes, 5.8 MB of samples, written second by second
            f.write(rng.normal(0, 0.05, 16000).astype(np.float32))
    src = AudioSource(p, chunk_seconds=1.0)
    tracemalloc.start()
    n = 0
    for chunk in src:
        assert len(chunk) <= 16000
        n += len(chunk)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 180 * 16000 and peak < 1_000_000, peak  # 3 min of float32 would be 11.5 MB


def test_bad_audio_files(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        AudioSource(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioError, match="cannot be read as audio"):
        AudioSource(tmp_path / "junk.wav")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="no samples"):
        AudioSource(tmp_path / "empty.wav")
    sf.write(tmp_path / "nan.wav", np.array([0.1, np.nan, 0.2], np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        list(AudioSource(tmp_path / "nan.wav"))


# ---------------------------------------------------------------------------- synthetic streams and metrics

def test_stream_is_reproducible_with_words_at_known_times(mini_dir):
    cfg = StreamConfig(minutes=1.0, seed=5, silence_frac=1.0)  # no noise: the words alone
    a, b = build_stream(mini_dir, cfg), build_stream(mini_dir, cfg)
    assert a.truth == b.truth and len(a.keywords()) >= 6 and any(t["kind"] == "unknown" for t in a.truth)
    xa = a.audio()
    assert np.array_equal(xa, b.audio()) and len(xa) == 60 * 16000
    assert all(len(c) <= 16000 for c in a.chunks(1.0))
    c = build_stream(mini_dir, StreamConfig(minutes=1.0, seed=6, silence_frac=1.0))
    assert c.truth != a.truth
    from tinykws.data.clips import read_clip

    for t, (start, path, gain) in zip(a.truth, a.words):
        clip = read_clip(mini_dir / path)[0] * gain
        s = int(round(t["start"] * 16000))
        assert s == start and np.allclose(xa[s : s + 16000], np.clip(clip, -1, 1), atol=1e-6)
        assert t["start"] <= t["speech_start"] < t["speech_end"] <= t["end"]
        assert (t["word"] == t["said"]) == (t["kind"] == "keyword")
    assert len({t["clip"] for t in a.truth}) == len(a.truth)  # clips are not repeated before all were used
    names = set(p.strip() for p in (mini_dir / "testing_list.txt").read_text().split())
    assert {t["clip"] for t in a.truth} <= names  # testing speakers only
    with pytest.raises(ConfigError, match="words per minute"):
        StreamConfig(keywords_per_minute=40, unknown_per_minute=10)


def test_metrics_on_hand_made_cases():
    truth = [{"word": "yes", "kind": "keyword", "speech_start": 1.0, "speech_end": 1.5},
             {"word": "no", "kind": "keyword", "speech_start": 5.0, "speech_end": 5.4},
             {"word": "_unknown_", "kind": "unknown", "speech_start": 9.0, "speech_end": 9.5},
             {"word": "yes", "kind": "keyword", "speech_start": 13.0, "speech_end": 13.5}]
    ev = [Event("yes", 1.8, 230), Event("yes", 2.2, 220),  # hit, then a repeat
          Event("yes", 5.6, 210),  # wrong keyword while "no" is said ("no" missed)
          Event("go", 9.9, 240),  # on an unknown word
          Event("stop", 20.0, 240),  # in the background
          Event("yes", 14.6, 230)]  # 1.1 s after the word: too late, a miss and a false alarm
    m = match(ev, truth, hours=0.5, tolerance_ms=1000)
    assert (m["keywords"], m["hits"], m["misses"], m["false_alarms"]) == (3, 1, 2, 5)
    assert m["false_alarm_kinds"] == {"repeat": 1, "wrong_keyword": 1, "unknown_word": 1, "background": 2}
    assert m["false_alarms_per_hour"] == 10.0 and np.isclose(m["false_reject_rate"], 2 / 3)
    assert np.isclose(m["mean_latency_ms"], 300.0)
    m = match(ev, truth, hours=0.5, tolerance_ms=1200)
    assert m["hits"] == 2 and np.isclose(m["mean_latency_ms"], 700.0)  # (300 + 1100) / 2
    assert m["per_keyword"] == {"no": {"keywords": 1, "hits": 0}, "yes": {"keywords": 2, "hits": 2}}


def test_choose_operating_point():
    rows = [{"threshold": t, "false_alarms_per_hour": fa, "false_reject_rate": fr}
            for t, fa, fr in ((100, 3.0, 0.02), (150, 0.5, 0.08), (200, 0.0, 0.08), (250, 0.0, 0.3))]
    assert choose(rows, 0.5)["threshold"] == 200  # same false rejects, fewer false alarms
    assert choose(rows, 5.0)["threshold"] == 100
    assert choose(rows[:1], 0.5)["threshold"] == 100  # nothing qualifies: the fewest false alarms


@pytest.mark.slow
def test_listen_finds_keywords_in_a_stream_of_testing_clips(mini_dir):
    """The shipped model on 2 minutes of mini testing clips over noise (SNR 30 dB) and silence."""
    s = build_stream(mini_dir, StreamConfig(minutes=2.0, seed=0, snr_db=(30.0,)))
    det = DetectorConfig(window_ms=600, threshold=150)
    res = listen(s.chunks(), "dscnn-kws", ListenConfig(hop_ms=40), det, keep_scores=True)
    m = match(res.events, s.truth, s.hours)
    assert m["keywords"] >= 15 and m["hit_rate"] >= 0.6 and m["false_alarms"] <= 3, m
    assert 0 < m["mean_latency_ms"] < 1000 and 0 < res.real_time_factor < 1
    # the sweep re-runs the detector on the kept scores: the same setting gives the same result
    rows = sweep(res.times_ms, res.scores, res_labels("dscnn-kws"), s.truth, s.hours, False,
                 TuneConfig(thresholds=(150,), windows_ms=(600,), suppressions_ms=(1500,)))
    assert (rows[0]["hits"], rows[0]["false_alarms"]) == (m["hits"], m["false_alarms"])


def res_labels(name):
    return load_model(name)[1].labels


@pytest.mark.slow
def test_integer_model_streams_with_integer_scores(mini_dir):
    from tinykws.recipes.quantize import load_int_model

    im = load_int_model("dscnn-kws", mini_dir, calib_clips=50)
    s = build_stream(mini_dir, StreamConfig(minutes=0.5, seed=1, snr_db=(40.0,), unknown_per_minute=0))
    cfg, det = ListenConfig(hop_ms=100), DetectorConfig(window_ms=600, threshold=150)
    res = listen(s.chunks(), im, cfg, det, keep_scores=True)
    assert res.scores.dtype == np.int64 and res.scores.min() >= 0 and res.scores.max() <= 255
    assert np.all(np.abs(res.scores.sum(1) - 256) <= 12)  # int8 softmax outputs: probabilities x 256
    m = match(res.events, s.truth, s.hours)
    assert m["keywords"] >= 4 and m["hits"] >= 0.6 * m["keywords"], m
    ref = listen(s.chunks(), "dscnn-kws", cfg, det, keep_scores=True)  # the float model it came from
    assert (ref.scores.argmax(1) == res.scores.argmax(1)).mean() > 0.9


@pytest.mark.slow
def test_tflite_engine_gives_the_reference_scores(mini_dir):
    from tinykws.recipes.quantize import load_int_model
    from tinykws.stream.listen import IntScorer

    im = load_int_model("dscnn-kws-device", mini_dir, calib_clips=20)
    s = build_stream(mini_dir, StreamConfig(minutes=0.1, seed=2, snr_db=(20.0,)))
    cfg, det = ListenConfig(hop_ms=100, batch=16), DetectorConfig(window_ms=600, threshold=150)
    ref = listen(s.chunks(), IntScorer(im), cfg, det, keep_scores=True)
    tfl = listen(s.chunks(), IntScorer(im, engine="tflite"), cfg, det, keep_scores=True)
    assert ref.windows == tfl.windows >= 50 and np.array_equal(ref.scores, tfl.scores)
    assert [(e.keyword, e.time, e.score) for e in ref.events] == [(e.keyword, e.time, e.score) for e in tfl.events]
    fast = listen(s.chunks(), IntScorer(im, engine="tflite-fast"), cfg, det, keep_scores=True)
    assert np.abs(fast.scores - ref.scores).max() <= 16 and (fast.scores.argmax(1) == ref.scores.argmax(1)).mean() > 0.95
    with pytest.raises(ConfigError, match="--engine must be one of ref, tflite, tflite-fast"):
        IntScorer(im, engine="gpu")


# ---------------------------------------------------------------------------- the commands

@pytest.mark.slow
def test_cli_listen_and_stream_eval_json(tmp_path, mini_dir, tiny_dataset):
    s = build_stream(mini_dir, StreamConfig(minutes=0.5, seed=3, snr_db=(40.0,)))
    wav = tmp_path / "stream.wav"
    sf.write(wav, s.audio(), 16000, subtype="PCM_16")
    r = run("listen", wav, "--json", "--window-ms", "600", "--threshold", "150")
    lines = [json.loads(l) for l in r.stdout.strip().splitlines()]
    assert all(set(l) == {"keyword", "time", "score"} for l in lines[:-1]) and len(lines) >= 3
    assert lines[-1]["audio_seconds"] == 30.0 and 0 < lines[-1]["real_time_factor"] < 1
    assert match([Event(**l) for l in lines[:-1]], s.truth, s.hours)["hits"] >= 3
    d = last_json(run("stream-eval", "--data", tiny_dataset, "--minutes", "0.5", "--snr-db", "30", "--json"))
    assert {"hits", "misses", "false_alarms", "hours", "false_alarms_per_hour", "false_reject_rate",
            "mean_latency_ms"} <= set(d)
    assert d["hits"] + d["misses"] == d["keywords"] > 0 and d["hours"] == pytest.approx(0.5 / 60)


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path, tiny_dataset):
    r = run("listen", tmp_path / "missing.wav", ok=False)
    assert r.returncode == 2 and "missing.wav: no such file" in r.stderr and "Traceback" not in r.stderr
    r = run("stream-eval", "--data", tiny_dataset, "--minutes", "0", "--hop-ms", "30", ok=False)
    assert r.returncode == 2 and "--minutes must be > 0" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_cli_stream_tune_writes_det_png(tmp_path, tiny_dataset):
    out = tmp_path / "tune"
    d = last_json(run("stream-tune", "--data", tiny_dataset, "--out", out, "--val-minutes", "0.5",
                      "--test-minutes", "0.5", "--threshold", "120", "--threshold", "180", "--window-ms", "500",
                      "--json"))
    assert (out / "det.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "tune.json").read_text())
    assert len(saved["sweep"]) == 2 * 3 and d["chosen"]["window_ms"] == 500
    assert d["chosen"]["threshold"] in (120, 180) and "false_alarms_per_hour" in d["testing"]
    r = run("stream-tune", "--data", tiny_dataset, "--out", out, ok=False)  # an existing folder needs --overwrite
    assert r.returncode == 2 and "--overwrite" in r.stderr


def test_mic_without_sounddevice_is_a_clear_error(monkeypatch):
    import sys

    from tinykws.stream import mic_chunks

    monkeypatch.setitem(sys.modules, "sounddevice", None)  # as if not installed
    with pytest.raises(AudioError, match="--mic needs the sounddevice package"):
        next(mic_chunks())


def test_stream_from_an_official_test_set_folder(tmp_path, mini_dir):
    """The test-set layout: class folders incl. _unknown_ (unknown words) and _silence_ (the noise)."""
    root = tmp_path / "test_set"
    for word in ("yes", "no", "_unknown_", "_silence_"):
        (root / word).mkdir(parents=True)
    for word in ("yes", "no"):
        for c in sorted((mini_dir / word).iterdir())[:3]:
            (root / word / c.name).symlink_to(c)
    for c in sorted((mini_dir / "bed").iterdir())[:3]:
        (root / "_unknown_" / c.name).symlink_to(c)
    noise = sf.read(str(next((mini_dir / "_background_noise_").glob("white*"))), dtype="float32")[0]
    for i in range(2):
        sf.write(root / "_silence_" / f"s{i}.wav", noise[i * 16000 : (i + 1) * 16000], 16000)
    s = build_stream(root, StreamConfig(minutes=1.0, silence_frac=0.0), keywords=("yes", "no"))
    kinds = {t["kind"] for t in s.truth}
    assert kinds == {"keyword", "unknown"} and {t["word"] for t in s.keywords()} == {"yes", "no"}
    assert np.std(s.audio()[:8000]) > 0  # noise from the _silence_ clips


def test_shipped_stream_model_runs_on_the_device_front_end():
    from tinykws.audio import get_preset
    from tinykws.deploy.frontend import check_device_frontend
    from tinykws.train import TrainConfig, load_bundle

    b = load_bundle("dscnn-kws-stream")
    assert b.frontend.key() == get_preset("device").key() and b.labels == load_bundle("dscnn-kws-device").labels
    check_device_frontend(b.frontend)  # the C stream loop can compute its features
    cfg = TrainConfig.from_dict(b.train_config)  # trained with the stream options, stored in the file
    assert cfg.init == "dscnn-kws-device" and cfg.augment.noise_snr_db == (10.0, 40.0)
    assert cfg.augment.partial_prob > 0 and cfg.augment.time_shift_ms == 300
