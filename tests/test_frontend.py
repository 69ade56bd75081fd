import dataclasses
import json
import time

import librosa
import numpy as np
import pytest
import torch

from tinykws.audio import (DEFAULT_PRESET, MFCC, PRESETS, FrontendConfig, RawFrontend, build_frontend, fix_length,
                           get_preset, load_audio)

KEYWORDS = "down go left no off on right stop up yes".split()
MLPERF_LABELS = KEYWORDS + ["_silence_", "_unknown_"]
SR = 16000


@pytest.fixture(scope="module")
def data_dir(shared_dir):
    root = shared_dir / "data" / "speech_commands_mini"
    assert (root / "testing_list.txt").is_file(), f"no Speech Commands clips in {root}"
    return root


@pytest.fixture(scope="module")
def clips(data_dir):
    """A dozen real test clips of mixed words and lengths, zero-padded to 1 s, as (N, 16000) float32."""
    files = (data_dir / "testing_list.txt").read_text().split()[::70]
    return np.stack([fix_length(load_audio(data_dir / f)) for f in files])


def tf_style_htk_mel(sr, n_fft, n_mels, fmin, fmax):
    """Reference of tf.signal.linear_to_mel_weight_matrix from librosa's HTK mel helpers: (n_mels, n_bins)."""
    bin_mel = librosa.hz_to_mel(librosa.fft_frequencies(sr=sr, n_fft=n_fft), htk=True)
    edges = librosa.hz_to_mel(librosa.mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=True), htk=True)
    w = np.zeros((n_mels, len(bin_mel)))
    for m in range(n_mels):
        lo, c, hi = edges[m:m + 3]
        w[m] = np.clip(np.minimum((bin_mel - lo) / (c - lo), (hi - bin_mel) / (hi - c)), 0, None)
    w[:, 0] = 0.0  # TF zeroes the DC bin
    return w


def test_htk_ortho_power_matches_librosa(clips):
    cfg = FrontendConfig(win_length=640, hop_length=320, n_fft=640, spectrum="power", mel_scale="htk",
                         dct="ortho", n_mfcc=20, input_norm="none")
    ours = MFCC(cfg)(torch.from_numpy(clips)).numpy()
    mel = tf_style_htk_mel(SR, 640, 40, 20.0, 4000.0)
    for x, got in zip(clips, ours):
        power = np.abs(librosa.stft(x.astype(np.float64), n_fft=640, hop_length=320, window="hann", center=False)) ** 2
        ref = librosa.feature.mfcc(S=np.log(mel @ power + 1e-6), n_mfcc=20, dct_type=2, norm="ortho").T
        assert got.shape == ref.shape == (49, 20)
        np.testing.assert_allclose(got, ref, atol=5e-4, rtol=1e-5)


def test_slaney_matches_librosa_melspectrogram(clips):
    cfg = FrontendConfig(win_length=400, hop_length=160, n_fft=512, window="hamming", spectrum="power",
                         mel_scale="slaney", dct="ortho", n_mels=64, fmin=0.0, fmax=8000.0, n_mfcc=13,
                         input_norm="none")
    ours = MFCC(cfg)(torch.from_numpy(clips)).numpy()
    for x, got in zip(clips, ours):
        # librosa centres a short window inside n_fft; hand it the window zero-padded at the end as TF does,
        # and pad the clip so the last 400-sample frame still has n_fft samples
        win = np.pad(librosa.filters.get_window("hamming", 400, fftbins=True), (0, 112))
        m = librosa.feature.melspectrogram(y=np.pad(x.astype(np.float64), (0, 112)), sr=SR, n_fft=512, hop_length=160,
                                           window=win, center=False, power=2.0, n_mels=64, fmin=0.0, fmax=8000.0,
                                           htk=False, norm="slaney")
        ref = librosa.feature.mfcc(S=np.log(m + 1e-6), n_mfcc=13, norm="ortho").T
        assert got.shape == ref.shape == (cfg.n_frames, 13)
        np.testing.assert_allclose(got, ref, atol=5e-4, rtol=1e-5)


def test_mlperf_preset_matches_tf_recipe(clips):
    """49x10 = TF stft(480, 320, fft 512, frame padded at its end) -> |.| -> HTK mel -> log -> TF DCT."""
    cfg = get_preset("mlperf")
    ours = MFCC(cfg)(torch.from_numpy(clips)).numpy()
    mel = tf_style_htk_mel(SR, 512, 40, 20.0, 4000.0)
    win = np.pad(librosa.filters.get_window("hann", 480, fftbins=True), (0, 32))
    for x, got in zip(clips, ours):
        x = x.astype(np.float64) / x.max()  # MLPerf: divide by the clip's signed maximum
        mag = np.abs(librosa.stft(x, n_fft=512, hop_length=320, window=win, center=False))
        ref = librosa.feature.mfcc(S=np.log(mel @ mag + 1e-6), n_mfcc=10, norm="ortho").T
        ref[:, 0] *= np.sqrt(2.0)  # TF scales every coefficient by sqrt(2 / n_mels); ortho gives c0 sqrt(1 / n_mels)
        assert got.shape == ref.shape == (49, 10)
        np.testing.assert_allclose(got, ref, atol=5e-4, rtol=1e-5)


def test_batched_equals_per_clip(clips):
    for name in ("mlperf", "paper40", "raw"):
        fe = build_frontend(name)
        batch = fe(torch.from_numpy(clips))
        for x, b in zip(clips, batch):
            torch.testing.assert_close(fe(torch.from_numpy(x)), b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_shapes(name):
    cfg = get_preset(name)
    fe = build_frontend(cfg)
    assert isinstance(fe, MFCC if cfg.kind == "mfcc" else RawFrontend)
    out = fe(0.1 * torch.randn(3, cfg.clip_samples))
    assert out.dtype == torch.float32 and out.shape == (3, *cfg.feature_shape)
    assert fe(torch.zeros(cfg.clip_samples)).shape == cfg.feature_shape
    assert torch.isfinite(fe(torch.zeros(2, cfg.clip_samples))).all()  # silent clips: no divide by zero


def test_preset_values():
    assert DEFAULT_PRESET == "mlperf" and get_preset("mlperf").feature_shape == (49, 10)
    assert [get_preset(f"paper{n}").feature_shape for n in (10, 20, 30, 40)] == [(49, n) for n in (10, 20, 30, 40)]
    assert get_preset("raw").feature_shape == (16000,)
    with pytest.raises(ValueError, match="mlperf"):
        get_preset("nope")


def test_center_and_wrong_length():
    cfg = dataclasses.replace(get_preset("mlperf"), center=True)
    assert MFCC(cfg)(torch.randn(2, 16000)).shape == (2, cfg.n_frames, 10) == (2, 51, 10)
    with pytest.raises(ValueError, match="16000"):
        build_frontend("mlperf")(torch.randn(2, 15999))


def test_peak_norm_is_mlperf_signed_max():
    x = torch.randn(2, 16000) * 0.05
    fe = build_frontend("mlperf")
    torch.testing.assert_close(fe(x), fe(7.0 * x), atol=1e-4, rtol=1e-4)
    raw = RawFrontend(dataclasses.replace(get_preset("raw"), input_norm="peak"))
    y = torch.tensor([[0.5, -0.8, 0.25] + [0.0] * 15997])
    torch.testing.assert_close(raw(y)[0, :3], torch.tensor([1.0, -1.6, 0.5]))  # divided by max, not max |x|
    assert torch.equal(build_frontend("raw")(y), y)


def test_config_round_trip_and_validation():
    for cfg in PRESETS.values():
        d = json.loads(json.dumps(cfg.to_dict()))
        assert FrontendConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="bogus"):
        FrontendConfig.from_dict({**get_preset("mlperf").to_dict(), "bogus": 1})
    for bad in (dict(window="blackman"), dict(n_mfcc=41), dict(win_length=1024), dict(fmax=9000.0), dict(dct="x")):
        with pytest.raises(ValueError):
            FrontendConfig(**bad)


def test_key_tracks_every_setting():
    base = get_preset("mlperf")
    assert base.key() == FrontendConfig.from_dict(base.to_dict()).key()
    assert len(base.key()) == 12
    assert dataclasses.replace(base, fmin=20, fmax=4000).key() == base.key()  # ints are stored as floats
    changes = dict(kind="raw", sample_rate=8000, clip_samples=8000, win_length=400, hop_length=160, n_fft=1024,
                   window="hamming", n_mels=32, fmin=0.0, fmax=3999.0, n_mfcc=13, log_offset=1e-5,
                   spectrum="power", mel_scale="slaney", dct="ortho", input_norm="none", center=True)
    assert set(changes) == set(base.to_dict())
    keys = {base.key()} | {dataclasses.replace(base, **{k: v}).key() for k, v in changes.items()}
    assert len(keys) == len(changes) + 1
    assert len({c.key() for c in PRESETS.values()}) == len(PRESETS)


def test_mlperf_reference_model_accuracy(data_dir, shared_dir):
    """tinykws "mlperf" features fed to the int8 MLPerf Tiny reference model reach its published accuracy."""
    from ai_edge_litert.interpreter import Interpreter

    model = shared_dir / "peers" / "mlperf_tiny_kws" / "kws_ref_model.tflite"
    assert model.is_file(), f"no reference model at {model}"
    t0 = time.time()
    files = (data_dir / "testing_list.txt").read_text().split()
    words = [f.split("/")[0] for f in files]
    labels = np.array([MLPERF_LABELS.index(w if w in KEYWORDS else "_unknown_") for w in words])
    waves = torch.from_numpy(np.stack([fix_length(load_audio(data_dir / f)) for f in files]))
    feats = build_frontend("mlperf")(waves).numpy()

    it = Interpreter(model_path=str(model))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zero = inp["quantization"]
    assert inp["dtype"] == np.int8 and tuple(inp["shape"][1:3]) == feats.shape[1:] and scale > 0
    info = np.iinfo(np.int8)
    pred = []
    for f in feats:
        q = np.clip(np.round(f / scale + zero), info.min, info.max).astype(np.int8)
        it.set_tensor(inp["index"], q.reshape(inp["shape"]))
        it.invoke()
        pred.append(int(it.get_tensor(out["index"]).argmax()))
    acc = float((np.array(pred) == labels).mean())
    print(f"MLPerf Tiny KWS int8 reference model on tinykws features: top-1 {acc:.4f} "
          f"over {len(files)} test clips ({time.time() - t0:.1f} s)")
    assert acc >= 0.90
