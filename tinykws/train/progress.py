"""A rich progress bar over steps, silent when disabled (training, search)."""
from __future__ import annotations


class Progress:
    """A rich progress bar over training steps (silent when disabled)."""

    def __init__(self, enabled: bool, total: int, done: int = 0, description: str = "training"):
        self.p = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.p = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeRemainingColumn())
            self.p.start()
            self.t = self.p.add_task(description, total=total, completed=done)

    def step(self, description: str | None = None) -> None:
        """One step done; a new description when given (else the last one stays)."""
        if self.p:
            if description is None:
                self.p.update(self.t, advance=1)
            else:
                self.p.update(self.t, advance=1, description=description)

    def close(self) -> None:
        if self.p:
            self.p.stop()
