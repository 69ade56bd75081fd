import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one torch thread per test process: `pytest -n 2` on 2 cores must not oversubscribe them
    import torch

    torch.set_num_threads(1)

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests never touch the user's cache."""
    os.environ["TINYKWS_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared folder beside the checkout (data, peer models); $TINYKWS_SHARED overrides it."""
    path = Path(os.environ.get("TINYKWS_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
    if not path.is_dir():
        raise RuntimeError(f"shared folder not found: {path} (set TINYKWS_SHARED)")
    return path


@pytest.fixture(scope="session")
def mini_dir(shared_dir) -> Path:
    return shared_dir / "data" / "speech_commands_mini"


@pytest.fixture(scope="session")
def tiny_dataset(mini_dir, tmp_path_factory) -> Path:
    """A small real data set: a few clips per word from the mini set (symlinked), its own lists."""
    root = tmp_path_factory.mktemp("tiny")
    val, test = [], []
    for word, n_train in [(w, 8) for w in KEYWORDS] + [("bed", 6), ("cat", 6), ("happy", 6)]:
        (root / word).mkdir()
        clips = sorted((mini_dir / word).iterdir())[: n_train + 4]
        for i, c in enumerate(clips):
            (root / word / c.name).symlink_to(c)
            if i >= n_train:
                (val if i % 2 else test).append(f"{word}/{c.name}")
    (root / "_background_noise_").mkdir()
    for c in sorted((mini_dir / "_background_noise_").glob("*.flac"))[:2]:
        (root / "_background_noise_" / c.name).symlink_to(c)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    return root
