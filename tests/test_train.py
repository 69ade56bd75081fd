import json

import pytest
import torch

from tinykws.data import AugmentConfig
from tinykws.train import TrainConfig, evaluate_dir, load_bundle, load_model, train
from tinykws.train.checkpoint import ModelFileError


def _cfg(data, out, epochs=2, **kw):
    return TrainConfig(data=str(data), out=str(out), epochs=epochs, batch_size=16, lr=3e-3, **kw)


def test_train_writes_run_and_learns(tiny_dataset, tmp_path):
    bundle = train(_cfg(tiny_dataset, tmp_path / "run", epochs=6), progress=False, log=lambda *_: None)
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == list(range(1, 7))
    assert lines[-1]["train_loss"] < lines[0]["train_loss"], "the loss goes down"
    assert bundle.metrics["val_acc"] == max(l["val_acc"] for l in lines)
    model, b = load_model(tmp_path / "run" / "best.pt")
    assert b.labels[-2:] == ["_silence_", "_unknown_"] and b.frontend.n_mfcc == 10
    res, _ = evaluate_dir(tmp_path / "run" / "best.pt", tiny_dataset, "validation")
    assert res.accuracy == pytest.approx(bundle.metrics["val_acc"])


def test_resume_reproduces_uninterrupted_run(tiny_dataset, tmp_path):
    quiet = dict(progress=False, log=lambda *_: None)
    full = train(_cfg(tiny_dataset, tmp_path / "full", epochs=3), **quiet)
    # the same run killed right after its second epoch's checkpoint, then resumed
    cfg = _cfg(tiny_dataset, tmp_path / "cut", epochs=3)
    from tinykws.train import trainer

    class Stop(Exception):
        pass

    calls = {"n": 0}
    real_save = trainer.atomic_save

    def save_then_die(obj, path):
        real_save(obj, path)
        if str(path).endswith("last.pt"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise Stop

    trainer.atomic_save = save_then_die
    try:
        with pytest.raises(Stop):
            train(cfg, **quiet)
    finally:
        trainer.atomic_save = real_save
    resumed = train(cfg, resume=True, **quiet)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]["state_dict"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics == full.metrics
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 3


def test_run_folder_not_overwritten(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="--resume"):
        train(_cfg(tiny_dataset, out), progress=False, log=lambda *_: None)
    assert (out / "mine.txt").read_text() == "precious"
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(_cfg(tiny_dataset, tmp_path / "fresh"), resume=True, progress=False)


def test_model_file_errors(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelFileError, match=r"junk.pt: not a tinykws model file \(unreadable or unsafe content\)"):
        load_bundle(tmp_path / "junk.pt")
    torch.save({"a": 1}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not a tinykws model file"):
        load_bundle(tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="did you mean 'dscnn-kws'"):
        load_bundle("dscnn-kw")


def test_training_settings_validated(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="--optimizer must be one of adam, sgd"):
        train(_cfg(tiny_dataset, tmp_path / "r", optimizer="lbfgs"), progress=False)
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainConfig.from_dict({"data": "x", "epochz": 3})


def test_specaugment_and_custom_keywords_train(tiny_dataset, tmp_path):
    aug = AugmentConfig(time_masks=2, time_mask_width=4, freq_masks=1, freq_mask_width=2)
    b = train(_cfg(tiny_dataset, tmp_path / "kw", epochs=1, task="yes,no", augment=aug),
              progress=False, log=lambda *_: None)
    assert b.labels == ["yes", "no", "_silence_", "_unknown_"]
    model = b.build()
    assert model(torch.zeros(2, 49, 10)).shape == (2, 4)


def test_without_wave_augmentation_training_features_come_from_cache(tiny_dataset, tmp_path):
    import os
    from pathlib import Path

    from tinykws.train import load_train_data

    aug = AugmentConfig(time_shift_ms=0, noise_prob=0, speed=0)
    cfg = _cfg(tiny_dataset, tmp_path / "cached", epochs=1, augment=aug)
    data = load_train_data(cfg, progress=False)
    train(cfg, progress=False, log=lambda *_: None, data=data)
    cached = {p.name.split("-")[0] for p in (Path(os.environ["TINYKWS_CACHE"]) / "features").iterdir()}
    assert data.train.key in cached and data.val.key in cached


def test_raw_waveform_model_trains_and_mismatch_is_named(tiny_dataset, tmp_path):
    b = train(_cfg(tiny_dataset, tmp_path / "raw", epochs=1, model="rawcnn", frontend="raw"),
              progress=False, log=lambda *_: None)
    assert b.frontend.kind == "raw" and b.build()(torch.zeros(2, 16000)).shape == (2, 12)
    with pytest.raises(ValueError, match="takes raw input but front end 'mlperf' gives mfcc"):
        train(_cfg(tiny_dataset, tmp_path / "bad", model="rawcnn"), progress=False)
    assert not (tmp_path / "bad").exists(), "a wrong setting leaves no half-made run folder"


@pytest.mark.slow
def test_stream_options_stored_and_init_fine_tunes(tiny_dataset, tmp_path):
    quiet = dict(progress=False, log=lambda *_: None)
    aug = AugmentConfig(noise_snr_db="10,40", time_shift_ms=300, partial_prob=0.3, speed=0)
    # --init starts from the shipped device model's weights: with a vanishing lr the model stays that one
    cfg = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "a"), epochs=1, batch_size=64, lr=1e-12,
                      frontend="device", init="dscnn-kws-device", augment=aug)
    b = train(cfg, **quiet)
    stored = TrainConfig.from_dict(load_bundle(tmp_path / "a" / "best.pt").train_config)
    assert stored.augment.noise_snr_db == (10.0, 40.0) and stored.augment.time_shift_ms == 300
    assert stored.augment.partial_prob == 0.3 and stored.init == "dscnn-kws-device"
    ref = load_bundle("dscnn-kws-device").state_dict
    for k, v in ref.items():
        if v.dtype.is_floating_point and "running" not in k:
            assert torch.allclose(b.state_dict[k], v, atol=1e-6), k
    with pytest.raises(ValueError, match="--init dscnn-kws-device: its front end differs from --frontend mlperf"):
        train(_cfg(tiny_dataset, tmp_path / "c", epochs=1, init="dscnn-kws-device"), **quiet)
    assert not (tmp_path / "c").exists()
