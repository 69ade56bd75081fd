"""A run folder (training, search): marker, config.json, metrics.jsonl, last.pt, best.pt, resume checks."""
from __future__ import annotations

import json
from pathlib import Path

from ..outputs import MARKER, atomic_write_text, check_output_dir, clear_dir, mark

class RunDir:
    """A run folder: marker, config.json, metrics.jsonl, last.pt (full state), best.pt (best model).

    `prepare` checks everything before anything is written; `start` then creates (or, with
    overwrite, empties) the folder; `config_changes` tells which given settings contradict a stored run."""

    def __init__(self, path: str | Path, inputs=()):
        self.path = Path(path)
        self.inputs = [str(i) for i in inputs if i not in (None, "")]
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.last = self.path / "last.pt"
        self.best = self.path / "best.pt"

    def prepare(self, resume: bool = False, overwrite: bool = False) -> None:
        if resume and overwrite:
            raise ValueError("--resume and --overwrite contradict each other: pass one")
        check_output_dir(self.path, overwrite, self.inputs, resume=resume,
                         busy="use --resume to continue the run in it, or --overwrite to replace it")
        if resume and not self.last.exists():
            raise FileNotFoundError(f"{self.last}: nothing to resume")

    def start(self, config: dict, resume: bool = False) -> None:
        """Create the folder (a fresh run empties an old tinykws one first) and write config.json."""
        if not resume and self.path.exists() and any(self.path.iterdir()):
            clear_dir(self.path)
        mark(self.path)
        atomic_write_text(self.config, json.dumps(config, indent=2))
        if not resume:
            self.metrics.write_text("")

    def abandon(self) -> None:
        """Remove a run that failed before its first checkpoint (nothing worth resuming)."""
        if self.path.exists() and not self.last.exists() and (self.path / MARKER).is_file():
            clear_dir(self.path)

    def write_history(self, history: list[dict]) -> None:
        """metrics.jsonl as the checkpoint knows it (drops lines of an epoch that was cut off)."""
        atomic_write_text(self.metrics, "".join(json.dumps(h) + "\n" for h in history))

    def append_metrics(self, rec: dict) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(rec) + "\n")


def config_changes(stored: dict, given: dict, allowed=("out", "threads", "epochs", "device")) -> list[str]:
    """Names of the settings in `given` whose values differ from the stored run's (paths compared resolved)."""
    changed = []
    for k, v in given.items():
        if k in allowed or k not in stored:
            continue
        s = stored[k]
        if k in ("data",) and v and s:
            if Path(v).resolve() != Path(s).resolve():
                changed.append(k)
        elif k == "extra_data":
            if [str(Path(x).resolve()) for x in v] != [str(Path(x).resolve()) for x in s]:
                changed.append(k)
        elif json.loads(json.dumps(v)) != s:
            changed.append(k)
    return changed
