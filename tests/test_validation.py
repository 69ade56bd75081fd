"""Bad option values: one line naming the option, exit 2, nothing written (issue: foundation, item 5)."""
import pytest

from cli_helpers import run

from tinykws.checks import ConfigError
from tinykws.data.augment import AugmentConfig
from tinykws.nas.search import SearchConfig
from tinykws.train import TrainConfig

TRAIN_CASES = [
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-5"], "--batch-size"),
    (["--label-smoothing", "5"], "--label-smoothing"),
    (["--threads", "-3"], "--threads"),
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "-1"], "--epochs"),
    (["--unknown-frac", "-1"], "--unknown-frac"),
    (["--speed", "2"], "--speed"),
    (["--task", "13"], "--task"),
    (["--optimizer", "lbfgs"], "--optimizer"),
    (["--lr", "0"], "--lr"),
]


def _one_clear_line(r, option):
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    assert lines[0].startswith("error:") and option in lines[0], lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("args, option", TRAIN_CASES)
def test_train_rejects_bad_values_before_writing(tiny_dataset, tmp_path, args, option):
    out = tmp_path / "run"
    r = run("train", "--data", tiny_dataset, "--out", out, *args, ok=False)
    _one_clear_line(r, option)
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("args, option", [(["--calib-clips", "-5"], "--calib-clips"),
                                          (["--method", "qat4", "--epochs", "-2"], "--epochs")])
def test_quantize_rejects_bad_values(tiny_dataset, tmp_path, args, option):
    out = tmp_path / "q.pt"
    r = run("quantize", "--data", tiny_dataset, "--out", out, *args, ok=False)
    _one_clear_line(r, option)
    assert not out.exists() and "tmp" not in r.stderr


@pytest.mark.parametrize("args, option", [(["--weight-bits", "0"], "--weight-bits"),
                                          (["--act-bits", "-8"], "--act-bits")])
def test_info_rejects_bad_bit_widths(args, option):
    _one_clear_line(run("info", "dscnn_s", *args, ok=False), option)


def test_configs_check_their_ranges_from_python_too():
    """The CLI and the Python API share one declaration of each range."""
    with pytest.raises(ConfigError, match=r"--batch-size must be >= 1 \(got 0\)"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match=r"--speed must be in \[0, 1\)"):
        AugmentConfig(speed=1.0)
    with pytest.raises(ConfigError, match="--beta must be >= 0"):
        SearchConfig(beta=-1)
    with pytest.raises(ConfigError, match="--warmup-epochs must be below --epochs"):
        from tinykws.nas.search import check_search_config

        check_search_config(SearchConfig(epochs=3, warmup_epochs=3))
    assert TrainConfig().epochs == 80 and AugmentConfig(speed=0).speed == 0  # defaults and edges are accepted


def test_help_shows_the_config_defaults_and_ranges():
    r = run("train", "--help")
    assert ">= 1" in r.stdout and "[default: 80]" in r.stdout.replace("  ", " ")
