"""The epoch loop of training and search: seeding, progress bar, metrics.jsonl, last.pt, best model, resume.

The caller gives the work of one epoch (`epoch_fn`), what its checkpoint holds besides the loop's
own counters (`state_fn`) and its log line (`describe`); the loop does the rest, the same way for
both, so that a resumed run ends exactly like an uninterrupted one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .checkpoint import atomic_save
from .progress import Progress
from .rundir import RunDir


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch `epoch` (from 0) of a run seeded `seed`: an epoch's draws do not depend on
    the epochs before it, so a resumed run draws what the uninterrupted one would have."""
    return seed * 100_003 + epoch


@dataclass
class Epoch:
    """What one epoch's work gets: its index (from 0), the run's length, seeded generators, the bar."""

    index: int
    epochs: int
    g: torch.Generator  # augmentation, path sampling
    rng: np.random.Generator  # the epoch's draw of clips
    bar: Progress

    @property
    def number(self) -> int:
        return self.index + 1


def run_epochs(run: RunDir, *, epochs: int, steps: int, seed: int, state: dict | None, epoch_fn, state_fn,
               describe, on_best=None, save=atomic_save, progress: bool = True, log=print) -> list[dict]:
    """Run epochs until `epochs`, from the start or from a checkpoint `state` (`run.last` as read);
    returns the metrics of every epoch.

    Each epoch: the global torch seed and the epoch's generators are set from `epoch_seed`;
    `epoch_fn(Epoch) -> (record, score)` does the work (advancing `Epoch.bar` once per step of the
    `steps` per epoch); the record is appended to the history; if `score` beats the best so far,
    `on_best(record, score)` runs (e.g. writes best.pt); `state_fn()` plus `epoch`, `best` and
    `history` is written atomically to last.pt by `save`; the record becomes a metrics.jsonl line;
    `log(describe(record, best))` reports it.

    With `state`, the caller has restored its own parts (weights, optimizer); the loop continues
    after the stored epoch with the stored history and best, and cuts metrics.jsonl back to that
    history (lines of an epoch cut off before its checkpoint go)."""
    start, history, best = 0, [], -1.0
    if state is not None:
        start, history, best = state["epoch"] + 1, list(state["history"]), state.get("best", -1.0)
        run.write_history(history)
    bar = Progress(progress, steps * epochs, start * steps)
    try:
        for epoch in range(start, epochs):
            s = epoch_seed(seed, epoch)
            torch.manual_seed(s)  # dropout and anything else drawing from torch's global generator
            rec, score = epoch_fn(Epoch(epoch, epochs, torch.Generator().manual_seed(s), np.random.default_rng(s), bar))
            history.append(rec)
            if score is not None and score > best:
                best = score
                if on_best is not None:
                    on_best(rec, score)
            save({**state_fn(), "epoch": epoch, "best": best, "history": history}, run.last)
            run.append_metrics(rec)
            log(describe(rec, best))
    finally:
        bar.close()
    return history
