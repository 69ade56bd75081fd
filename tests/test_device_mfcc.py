"""The device front end: the fixed-point C MFCC (CMSIS-DSP q31) against the float training front end,
its incremental (ring buffer) path, the int8 model's top-1 on device features, the Cortex-M7 build."""
import numpy as np
import pytest
import torch

from tinykws.audio import build_frontend, get_preset
from tinykws.deploy import DeployError
from tinykws.deploy.frontend import DeviceMFCC, check_device_frontend, quant_multiplier, split_audio

LABELS = "yes,no,up,down,left,right,on,off,stop,go,_silence_,_unknown_".split(",")  # the shipped models


@pytest.fixture(scope="module")
def dev():
    return DeviceMFCC("device")


@pytest.fixture(scope="module")
def test_audio(mini_dir):
    return split_audio(mini_dir, "testing", LABELS)


def _float(audio_int16):
    with torch.no_grad():
        return build_frontend(get_preset("device"))(torch.from_numpy(audio_int16.astype(np.float32) / 32768.0)).numpy()


def test_device_features_match_float_frontend(dev, test_audio):
    a = test_audio[0][::7]  # 99 real clips of the testing list
    quiet = np.round(a[:8] / 300.0).astype(np.int16)  # -50 dB: a few LSBs of signal
    loud = np.clip(a[8:16].astype(np.int32) * 40, -32768, 32767).astype(np.int16)  # clipped
    x = np.concatenate([a, quiet, loud, np.zeros((1, 16000), np.int16)])
    got, want = dev.clip(x), _float(x)
    assert got.shape == want.shape == (len(x), 49, 10)
    err = np.abs(got - want)
    assert err.max() < 2e-3, err.max()  # the model's int8 input step is about 0.4
    assert err.mean() < 5e-5
    # level is kept (no normalization): a clip 20x quieter has a lower c0, the floor holds silence
    assert (dev.clip(a[:4] // 20)[..., 0].mean(1) < got[:4, :, 0].mean(1) - 5).all()
    assert np.allclose(got[-1, :, 0], want[-1, :, 0], atol=1e-3) and want[-1, 0, 0] < -80


def test_stream_ring_buffer_gives_the_clip_frames(dev, test_audio):
    a = test_audio[0][:3]
    cfg = get_preset("device")
    lead = (-cfg.win_length) % cfg.hop_length  # 128 zeros: frame ends fall on the clip's frame ends
    for clip in a:
        s = dev.stream_q16(np.concatenate([np.zeros(lead, np.int16), clip]))
        # the first push holds no full frame; later pushes give clip frames 0..48 exactly
        assert np.array_equal(s[-49:], dev.clip_q16(clip))
    long = np.concatenate(list(a))  # one stream: frame k = the 512 samples ending at hop k + 2
    s = dev.stream_q16(long)
    k = 30
    end = (k + 2) * cfg.hop_length
    assert np.array_equal(s[k], dev.clip_q16(long[end - cfg.win_length : end])[0])
    st = dev.stream()  # the same one hop at a time, with its own state
    got = [st.push(long[i : i + cfg.hop_length]) for i in range(0, 40 * cfg.hop_length, cfg.hop_length)]
    assert got[0] is None and np.array_equal(np.stack(got[1:]), s[:39])
    with pytest.raises(DeployError, match="exactly 320 samples"):
        st.push(long[:100])


def test_int8_conversion_matches_the_model_rounding(dev):
    rng = np.random.default_rng(0)
    v = rng.uniform(-90, 40, size=(4000,))
    q16 = np.round(v * 65536).astype(np.int32)
    scale, zp = 0.4162, 70
    got = dev.to_int8(q16, scale, zp).astype(np.int32)
    want = np.clip(np.floor(q16 / 65536 / scale + 0.5) + zp, -128, 127)
    assert np.abs(got - want).max() <= 1 and (got == want).mean() > 0.999
    mult, shift = quant_multiplier(scale)
    assert 2**30 <= mult < 2**31 and 0 <= shift <= 31


@pytest.mark.parametrize("preset,what", [("mlperf", "input_norm='peak'"), ("paper10", "n_fft=640"),
                                         ("raw", "kind='raw'")])
def test_frontends_the_device_cannot_compute(preset, what):
    with pytest.raises(DeployError, match=what.replace("(", r"\(")):
        check_device_frontend(get_preset(preset))


def test_missing_cmsis_dsp_is_one_clear_error(tmp_path):
    with pytest.raises(DeployError, match="not a CMSIS-DSP source folder"):
        DeviceMFCC("device", cmsis_dsp=tmp_path)


@pytest.mark.slow
def test_int8_model_top1_on_device_features(mini_dir, test_audio):
    """The shipped device model, int8: device features instead of the float ones change top-1 on
    under 1% of the mini testing list."""
    from tinykws.deploy.frontend import agreement
    from tinykws.recipes.quantize import load_int_model

    im = load_int_model("dscnn-kws-device", mini_dir, calib_clips=200)
    assert list(im.meta["labels"]) == LABELS
    a, y = test_audio
    r = agreement(im, a, y)
    assert r["n"] == len(a) > 600
    assert r["top1_changed_frac"] < 0.01, r
    assert r["int8_acc_device_features"] > 0.85, r


@pytest.mark.slow
def test_cortex_m7_build_is_bit_exact_with_the_host(test_audio, tmp_path):
    from tinykws.deploy.frontend import bench_m7

    r = bench_m7("device", audio=test_audio[0][0][:3200], work_dir=tmp_path / "m7")
    assert r["bit_exact"] and r["frames"] == 9
    assert 20_000 < r["instructions_per_hop"] < 400_000
