"""Bad files give one line naming the file and the problem: .tflite and .pt models, audio clips,
data set folders, archives. Every bad file is made here, in tmp_path."""
import io
import os
import pickle
import tarfile
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from tinykws.audio import AudioError
from tinykws.audio.io import AudioWarning, load_audio
from tinykws.data.clips import load_background, load_clips
from tinykws.data.download import UnsafeArchiveError, _extract
from tinykws.data.speech_commands import DatasetError, DatasetWarning, SpeechCommands
from tinykws.quant.tflite import TFLiteError, UnsupportedOpError, read_tflite
from tinykws.train import ModelFileError, TrainConfig, load_bundle, predict_files, train
from tinykws.train.checkpoint import read_checkpoint

from cli_helpers import last_json, run


# ---------------------------------------------------------------------------- .tflite files

@pytest.fixture(scope="module")
def ref_bytes(shared_dir) -> bytes:
    return (shared_dir / "peers" / "mlperf_tiny_kws" / "kws_ref_model.tflite").read_bytes()


def _edited(ref: bytes, edit) -> bytes:
    """The reference model, changed through the flatbuffer object API, written again."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(ref, 0))
    edit(m, fb)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _bad_opcode(m, fb):
    m.subgraphs[0].operators[3].opcodeIndex = 77


def _bad_tensor(m, fb):
    op = m.subgraphs[0].operators[2]
    op.inputs = np.array([9999, *op.inputs[1:]], np.int32)


def _lstm(m, fb):
    m.operatorCodes[0].builtinCode = m.operatorCodes[0].deprecatedBuiltinCode = fb.BuiltinOperator.LSTM


@pytest.mark.parametrize("make, why", [
    (lambda r: r[: len(r) // 2], "truncated or damaged"),
    (lambda r: r[:8] + np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes(), "truncated or damaged"),
    (lambda r: b"", "empty file"),
    (lambda r: b"PK\x03\x04 this is a zip, not a flatbuffer", "no TFL3 file identifier"),
    (lambda r: _edited(r, _bad_opcode), "opcode index 77 is out of range"),
    (lambda r: _edited(r, _bad_tensor), "tensor index 9999 is out of range"),
], ids=["truncated", "garbage-after-TFL3", "empty", "not-a-flatbuffer", "opcode-index", "tensor-index"])
def test_malformed_tflite_one_line(ref_bytes, tmp_path, make, why):
    path = tmp_path / "bad.tflite"
    path.write_bytes(make(ref_bytes))
    with pytest.raises(TFLiteError) as info:
        read_tflite(path)
    msg = str(info.value)
    assert isinstance(info.value, ValueError) and msg.startswith(str(path)) and why in msg and "\n" not in msg


def test_tflite_micro_run_of_a_damaged_file(ref_bytes):
    from tinykws.quant.tflite import tflm_run

    x = np.zeros((1, 49, 10, 1), np.int8)
    for bad in (ref_bytes[:5000], ref_bytes[:8] + bytes(4000)):
        with pytest.raises(TFLiteError, match="truncated or damaged .tflite file; TFLite Micro cannot load it"):
            tflm_run(bad, x)


def test_unsupported_op_is_named(ref_bytes, tmp_path):
    path = tmp_path / "lstm.tflite"
    path.write_bytes(_edited(ref_bytes, _lstm))
    with pytest.raises(UnsupportedOpError) as info:
        read_tflite(path)
    assert info.value.ops == ["LSTM"] and "unsupported TFLite ops LSTM" in str(info.value)
    assert read_tflite(ref_bytes).ops  # the untouched model still reads


@pytest.mark.slow  # runs the command several times
def test_cli_malformed_tflite(ref_bytes, tmp_path, mini_dir):
    path = tmp_path / "cut.tflite"
    path.write_bytes(ref_bytes[:5000])
    r = run("eval", "--data", mini_dir, "--model", path, "--frontend", "mlperf", "--labels", "a,b", ok=False)
    assert r.returncode == 2 and f"{path}: truncated or damaged" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run("info", path, ok=False)
    assert r.returncode == 2 and f"{path}: truncated or damaged" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow  # runs the command several times
def test_info_and_predict_of_a_tflite(shared_dir, tmp_path):
    ref = shared_dir / "peers" / "mlperf_tiny_kws" / "kws_ref_model.tflite"
    d = last_json(run("info", ref, "--json"))
    assert d["ops"] == 13 and d["input_shape"] == [1, 49, 10, 1] and d["output_shape"] == [1, 12]
    clip = tmp_path / "a.wav"
    sf.write(clip, np.zeros(16000, np.float32), 16000)
    r = run("predict", clip, "--model", ref, ok=False)
    assert r.returncode == 2 and "a .tflite model; this command takes a tinykws model file (.pt)" in r.stderr


# ---------------------------------------------------------------------------- .pt model files

class _Hostile:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_hostile_pt_never_advises_disabling_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "tinykws-model", "x": _Hostile()}, path)
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"x": _Hostile()}))
    for p in (path, legacy):
        with pytest.raises(ModelFileError) as info:
            load_bundle(p)
        msg = str(info.value)
        assert msg == f"{p}: not a tinykws model file (unreadable or unsafe content)"
    r = run("info", path, ok=False)
    assert r.returncode == 2 and "weights_only" not in r.stderr and "unreadable or unsafe content" in r.stderr


def test_truncated_pt_says_truncated(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"format": "tinykws-model", "w": torch.zeros(20000)}, good)
    raw = good.read_bytes()
    for n in (len(raw) // 2, len(raw) - 100, 200):
        cut = tmp_path / f"cut{n}.pt"
        cut.write_bytes(raw[:n])
        with pytest.raises(ModelFileError, match="truncated or damaged"):
            load_bundle(cut)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty file"):
        load_bundle(empty)


def test_corrupt_last_pt_on_resume(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"\x80\x02 not a checkpoint at all")
    cfg = TrainConfig(data=str(tiny_dataset), out=str(out), model="dscnn_s", epochs=1)
    with pytest.raises(ModelFileError, match="last.pt: not a tinykws model file"):
        train(cfg, resume=True, progress=False, log=lambda *_: None)
    torch.save({"config": {}, "epoch": 1}, out / "last.pt")  # readable, but not a training checkpoint
    with pytest.raises(ModelFileError, match="not a tinykws training checkpoint"):
        read_checkpoint(out / "last.pt")
    r = run("train", "--data", tiny_dataset, "--out", out, "--resume", ok=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "last.pt" in r.stderr


# ---------------------------------------------------------------------------- audio and data sets

def _wav(path, n=16000):
    sf.write(path, np.full(n, 0.1, np.float32), 16000, subtype="PCM_16")
    return path


def test_wav_shorter_than_its_header_is_skipped(tmp_path):
    raw = _wav(tmp_path / "full.wav").read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(raw[: len(raw) - 10000])  # the header still promises 16000 samples
    with pytest.raises(AudioError, match="truncated .*promises 16000 samples, the file holds 11000"):
        load_audio(cut)
    assert len(load_audio(tmp_path / "full.wav")) == 16000
    ds = tmp_path / "ds"
    (ds / "yes").mkdir(parents=True)
    _wav(ds / "yes" / "a_nohash_0.wav")
    (ds / "yes" / "b_nohash_0.wav").write_bytes(cut.read_bytes())
    sc = SpeechCommands.open(ds)
    from tinykws.data.speech_commands import Entry

    clips = load_clips(sc, [Entry(f, 0, "yes") for f in sc.words["yes"]], ["yes"], cache=False)
    assert len(clips) == 1 and [s[0] for s in clips.skipped] == ["yes/b_nohash_0.wav"]


def _dataset(root, words=("yes", "no"), n=3):
    for w in words:
        (root / w).mkdir(parents=True)
        for i in range(n):
            _wav(root / w / f"s{i}_nohash_0.wav")
    (root / "_background_noise_").mkdir()
    _wav(root / "_background_noise_" / "noise.wav", 32000)
    return root


def test_list_entries_naming_missing_files_are_counted(tmp_path):
    root = _dataset(tmp_path / "ds")
    (root / "validation_list.txt").write_text("yes/s0_nohash_0.wav\nyes/gone_nohash_0.wav\nno/gone2_nohash_1.wav\n")
    (root / "testing_list.txt").write_text("no/s1_nohash_0.wav\n")
    with pytest.warns(DatasetWarning, match=r"validation_list.txt: 2 listed file\(s\) not found"):
        ds = SpeechCommands.open(root)
    assert ds.missing_listed == {"validation": ["yes/gone_nohash_0.wav", "no/gone2_nohash_1.wav"]}


def test_empty_class_folder_is_reported_as_empty(tmp_path):
    root = _dataset(tmp_path / "ds")
    (root / "up").mkdir()
    ds = SpeechCommands.open(root)
    with pytest.raises(DatasetError, match=r"keyword\(s\) \['up'\] are empty"):
        ds.entries("training", "yes,up")
    with pytest.raises(DatasetError, match=r"no folder for keyword\(s\) \['down'\]"):
        ds.entries("training", "yes,down")


def test_one_unreadable_background_file_is_skipped(tmp_path):
    root = _dataset(tmp_path / "ds")
    (root / "_background_noise_" / "broken.wav").write_bytes(b"RIFF nothing here")
    ds = SpeechCommands.open(root)
    with pytest.warns(AudioWarning, match="background noise skipped: .*broken.wav"):
        bg = load_background(ds)
    assert len(bg) == 1 and len(bg[0]) == 32000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AudioWarning)
        clips = load_clips(ds, ds.entries("training", "yes,no", 0.5, 0.0), ["yes", "no", "_silence_", "_unknown_"],
                           cache=False)
    assert (clips.labels == 2).sum() >= 1  # silence was cut from the readable recording
    (root / "_background_noise_" / "noise.wav").write_bytes(b"also broken")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AudioWarning)
        with pytest.raises(DatasetError, match="no readable _background_noise_/ clip"):
            load_clips(SpeechCommands.open(root), ds.entries("training", "yes,no", 0.5, 0.0),
                       ["yes", "no", "_silence_", "_unknown_"], cache=False)


@pytest.mark.slow  # runs the command several times
def test_predict_reports_good_files_then_bad_ones(mini_dir, tmp_path):
    good = sorted((mini_dir / "yes").iterdir())[:2]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"no audio here")
    res = predict_files([good[0], bad, good[1]], errors="collect")
    assert [("error" in r) for r in res] == [False, True, False] and "bad.wav: cannot be read" in res[1]["error"]
    with pytest.raises(AudioError):
        predict_files([good[0], bad])
    r = run("predict", good[0], bad, good[1], ok=False)
    assert r.returncode == 2
    lines = r.stdout.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines] == [str(good[0]), str(good[1])]
    assert "bad.wav: cannot be read as audio" in r.stderr and "1 of 3 files" in r.stderr
    d = last_json(run("predict", good[0], bad, "--json", ok=False))
    assert len(d["predictions"]) == 1 and d["errors"][0]["file"] == str(bad)


# ---------------------------------------------------------------------------- archives

def _tar_with(tmp_path, member: tarfile.TarInfo):
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        data = b"yes"
        info = tarfile.TarInfo("yes/a.wav")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        tar.addfile(member)
    return path


@pytest.mark.parametrize("kind, target", [(tarfile.SYMTYPE, "a.wav"), (tarfile.LNKTYPE, "yes/a.wav")],
                         ids=["symlink-inside", "hardlink-inside"])
def test_every_link_member_is_rejected(tmp_path, kind, target):
    """Even a link that stays inside the folder is refused: the data sets hold none."""
    link = tarfile.TarInfo("yes/b.wav")
    link.type, link.linkname = kind, target
    archive = _tar_with(tmp_path, link)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError) as info:
        _extract(archive, dest)
    msg = str(info.value)
    assert msg.startswith(f"{archive}: refusing to extract archive member 'yes/b.wav'") and "link" in msg
    assert not dest.exists() and [p.name for p in tmp_path.iterdir()] == ["a.tar.gz"]


def test_search_checkpoint_is_checked_like_a_training_one(tmp_path):
    import torch

    from tinykws.train.checkpoint import SEARCH_KEYS, ModelFileError, read_checkpoint

    bad = tmp_path / "last.pt"
    bad.write_bytes(b"PK\x03\x04 cut off")
    with pytest.raises(ModelFileError, match="last.pt"):
        read_checkpoint(bad, SEARCH_KEYS)
    torch.save({"config": {}, "epoch": 0, "history": []}, bad)  # a search checkpoint without its states
    with pytest.raises(ModelFileError, match="not a tinykws training checkpoint"):
        read_checkpoint(bad, SEARCH_KEYS)
    torch.save({k: {} for k in SEARCH_KEYS}, bad)
    assert set(read_checkpoint(bad, SEARCH_KEYS)) == set(SEARCH_KEYS)
