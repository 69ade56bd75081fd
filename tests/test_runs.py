"""Run folders and output files: --overwrite never deletes what tinykws did not write, --overwrite
starts a clean run, --resume refuses contradicting options, a failed start leaves nothing behind."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run
from tinykws.outputs import MARKER, OutputError, check_output_dir, check_output_file
from tinykws.train import TrainConfig, train

QUIET = dict(progress=False, log=lambda *_: None)


def _cfg(data, out, epochs=2, **kw):
    return TrainConfig(data=str(data), out=str(out), epochs=epochs, batch_size=16, threads=1, **kw)


def _user_project(tmp_path) -> Path:
    p = tmp_path / "p"
    (p / "src").mkdir(parents=True)
    (p / "src" / "main.c").write_text("code")
    return p


def _run_in(cwd, *args):
    """The CLI run from another folder (this checkout's code on the path)."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "tinykws", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def _one_error_line(r, *words):
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_demo_overwrite_current_folder_keeps_user_files(tmp_path):
    p = _user_project(tmp_path)
    r = _run_in(p, "demo", "--out", ".", "--overwrite", "--data", "/nonexistent", "--epochs", "1",
                "--search-epochs", "0")
    _one_error_line(r, "current folder")
    assert (p / "src" / "main.c").read_text() == "code"


def test_synth_overwrite_current_folder_keeps_user_files(tmp_path):
    p = _user_project(tmp_path)
    r = _run_in(p, "data", "synth", ".", "--overwrite", "--clips-per-word", "3")
    _one_error_line(r, "current folder")
    assert (p / "src" / "main.c").read_text() == "code"


def test_demo_out_is_data_keeps_data(tmp_path):
    x = tmp_path / "X"
    (x / "yes").mkdir(parents=True)
    (x / "yes" / "a.wav").write_bytes(b"RIFF")
    r = run("demo", "--data", x, "--out", x, "--overwrite", ok=False)
    _one_error_line(r, "input")
    assert (x / "yes" / "a.wav").read_bytes() == b"RIFF"
    r = run("demo", "--data", x, "--out", x / "report", "--overwrite", ok=False)
    _one_error_line(r, "inside the input")


def test_demo_bad_input_leaves_old_report(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / MARKER).write_text("")
    (out / "report.md").write_text("old report")
    r = run("demo", "--data", tmp_path / "missing", "--out", out, "--overwrite", ok=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert (out / "report.md").read_text() == "old report"


def test_overwrite_refuses_folders_tinykws_did_not_write(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    with pytest.raises(OutputError, match="no .tinykws marker"):
        check_output_dir(mine, overwrite=True)
    monkeypatch.chdir(mine)
    with pytest.raises(OutputError, match="contains the current folder"):
        check_output_dir(tmp_path, overwrite=True)
    with pytest.raises(OutputError, match="home or root"):
        check_output_dir(Path.home(), overwrite=True)
    (mine / MARKER).write_text("")
    check_output_dir(tmp_path / "mine2", overwrite=True)  # a new folder is fine
    assert (mine / "notes.txt").read_text() == "precious"


def test_overwrite_single_files_only_of_own_kind(tmp_path):
    user = tmp_path / "README.md"
    user.write_text("mine")
    r = run("export", "--out", user, "--overwrite", ok=False)
    _one_error_line(r, "not a kind of file tinykws writes")
    fake = tmp_path / "model.tflite"
    fake.write_text("my notes, not a model")
    r = run("export", "--out", fake, "--overwrite", ok=False)
    _one_error_line(r, "content")
    assert user.read_text() == "mine" and fake.read_text() == "my notes, not a model"
    with pytest.raises(OutputError, match="is a folder"):
        check_output_file(tmp_path, overwrite=True)


def test_train_refuses_data_inside_out(tiny_dataset, tmp_path):
    with pytest.raises(OutputError, match="input"):
        train(_cfg(tiny_dataset, tiny_dataset / "run"), **QUIET)
    assert not (tiny_dataset / "run").exists()


def test_failed_start_leaves_nothing(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Exception):
        train(_cfg(tiny_dataset, out, batch_size=0), **QUIET)
    assert not out.exists()
    # the same command with a good value then runs, and is not refused
    train(_cfg(tiny_dataset, out, epochs=1), **QUIET)
    assert (out / "best.pt").exists() and (out / MARKER).exists()


@pytest.mark.slow
def test_overwrite_starts_clean_run(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny_dataset, out, epochs=2), **QUIET)
    (out / "stale.txt").write_text("left from the old run")

    class Killed(Exception):
        pass

    def killer(model):
        raise Killed  # the new run dies in its first training step, before its first checkpoint

    with pytest.raises(Killed):
        train(_cfg(tiny_dataset, out, epochs=3, seed=1), overwrite=True, extra_loss=killer, **QUIET)
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists()
    with pytest.raises(FileNotFoundError, match="nothing to resume"):  # not the old run
        train(_cfg(tiny_dataset, out, epochs=3, seed=1), resume=True, **QUIET)
    train(_cfg(tiny_dataset, out, epochs=3, seed=1), overwrite=True, **QUIET)
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2, 3]
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "config.json").read_text())["seed"] == 1


@pytest.mark.slow
def test_resume_refuses_contradicting_options(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    base = ["train", "--data", tiny_dataset, "--out", out, "--batch-size", "16", "--threads", "1"]
    run(*base, "--epochs", "1")
    r = run(*base, "--epochs", "1", "--resume", "--model", "dscnn_s", "--lr", "0.1", ok=False)
    _one_error_line(r, "--model", "--lr")
    r = run("train", "--data", tmp_path / "nonexistent", "--out", out, "--resume", ok=False)
    _one_error_line(r, "--data")
    # a larger --epochs extends the finished run
    run(*base, "--epochs", "2", "--resume")
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2]
    assert json.loads((out / "config.json").read_text())["epochs"] == 2
    r = run(*base, "--epochs", "1", "--resume", ok=False)
    _one_error_line(r, "fewer than")


def test_search_failed_start_and_marker(tiny_dataset, tmp_path):
    from tinykws.nas.search import SearchConfig, search

    out = tmp_path / "s"
    with pytest.raises(ValueError):
        search(SearchConfig(data=str(tiny_dataset), out=str(out), width=0.25, layers=2, epochs=1,
                            warmup_epochs=0, target=-1.0), **QUIET)
    assert not out.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.txt").write_text("x")
    with pytest.raises(OutputError, match="marker"):
        search(SearchConfig(data=str(tiny_dataset), out=str(mine)), overwrite=True, **QUIET)
    assert (mine / "a.txt").exists()
