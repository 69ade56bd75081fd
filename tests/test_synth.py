import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tinykws.data.synth import SynthConfig, generate_synthetic


WORDS = ["yes", "no", "cat"]


def small(seed=0, **kw):
    return SynthConfig(words=WORDS, clips_per_word=12, speakers=10, seed=seed,
                       val_fraction=0.2, test_fraction=0.2, background_seconds=2, **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("synth") / "sc", small(), progress=False)


def clips(root):
    return sorted(p.relative_to(root).as_posix() for p in root.glob("[!_]*/*.wav"))


def read_list(root, name):
    return (root / name).read_text().split()


def speaker(name):
    return name.split("/")[1].split("_nohash_")[0]


def test_layout(data):
    assert sorted(p.name for p in data.iterdir() if p.is_dir()) == ["_background_noise_", *sorted(WORDS)]
    names = clips(data)
    assert len(names) == len(WORDS) * 12
    for name in names:
        word, file = name.split("/")
        sid, k = file[:-4].split("_nohash_")
        assert len(sid) == 8 and int(sid, 16) >= 0 and k.isdigit()
    noise = sorted(data.glob("_background_noise_/*.wav"))
    assert len(noise) >= 4
    for path in noise:
        x, sr = sf.read(path)
        assert sr == 16000 and x.ndim == 1 and len(x) == 2 * 16000 and np.sqrt(np.mean(x**2)) > 0.01
    assert "SYNTHETIC" in (data / "README.md").read_text()
    assert not list(data.parent.glob(".*tmp"))  # the temporary folder was renamed into place


def test_lists_are_speaker_disjoint(data):
    val, test = read_list(data, "validation_list.txt"), read_list(data, "testing_list.txt")
    assert val and test
    assert not set(val) & set(test)
    assert all((data / name).is_file() for name in val + test)
    assert not {speaker(n) for n in val} & {speaker(n) for n in test}
    train = set(clips(data)) - set(val) - set(test)
    assert train and not {speaker(n) for n in train} & {speaker(n) for n in val + test}


def test_clips_are_usable(data):
    for name in clips(data):
        x, sr = sf.read(data / name, always_2d=True)
        assert sr == 16000 and x.shape == (16000, 1), name
        x = x[:, 0]
        assert np.sqrt(np.mean(x**2)) > 0.005, f"{name} is silent"
        assert np.abs(x).max() < 0.999, f"{name} is clipped"
        energy = x**2
        centre = (energy * np.arange(len(x))).sum() / energy.sum() / len(x)
        assert 0.1 < centre < 0.9, f"{name}: speech energy centred at {centre:.2f} s"
        edges = max(np.abs(x[:160]).max(), np.abs(x[-160:]).max())
        assert edges < 0.3 * np.abs(x).max(), f"{name}: speech runs into the clip's edge"


def test_deterministic(data, tmp_path):
    again = generate_synthetic(tmp_path / "again", small(), progress=False)
    other = generate_synthetic(tmp_path / "other", small(seed=1), progress=False)
    assert clips(again) == clips(data)
    for name in [*clips(data), "validation_list.txt", "testing_list.txt",
                 "_background_noise_/pink_noise.wav"]:
        assert (again / name).read_bytes() == (data / name).read_bytes(), name
    assert clips(other) != clips(data)
    a, _ = sf.read(sorted(again.glob("_background_noise_/*.wav"))[0])
    b, _ = sf.read(sorted(other.glob("_background_noise_/*.wav"))[0])
    assert not np.array_equal(a, b)


def test_refuses_non_empty_folder(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    cfg = SynthConfig(words=["go"], clips_per_word=2, speakers=4, background_seconds=1)
    with pytest.raises(FileExistsError, match="busy"):
        generate_synthetic(out, cfg, progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(FileExistsError, match="marker"):  # not a folder tinykws wrote
        generate_synthetic(out, cfg, progress=False, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"
    ours = generate_synthetic(tmp_path / "ours", cfg, progress=False)
    (ours / "extra.txt").write_text("x")
    generate_synthetic(ours, cfg, progress=False, overwrite=True)
    assert not (ours / "extra.txt").exists() and (ours / "go").is_dir()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert generate_synthetic(empty, cfg, progress=False) == empty


def test_missing_espeak_and_bad_voice(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no-such-voice"):
        generate_synthetic(tmp_path / "a", SynthConfig(words=["go"], voices=["no-such-voice"]),
                           progress=False)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        generate_synthetic(tmp_path / "b", SynthConfig(words=["go"]), progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_missing_espeak_is_one_clear_line(tmp_path):
    env = {**os.environ, "PATH": ""}
    r = subprocess.run([sys.executable, "-m", "tinykws", "demo", "--out", str(tmp_path / "demo")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "espeak-ng is not installed" in r.stderr and "Traceback" not in r.stderr


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    import tinykws.data.synth as synth

    def broken(*args, **kwargs):
        raise RuntimeError("synthesis failed")

    monkeypatch.setattr(synth, "synthesize_word", broken)
    with pytest.raises(RuntimeError, match="synthesis failed"):
        generate_synthetic(tmp_path / "out", small(), progress=False)
    assert list(tmp_path.iterdir()) == []
