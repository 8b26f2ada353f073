"""The progress bar every long step shows."""

from __future__ import annotations


class progress_bar:  # noqa: N801 - used like a function: ``with progress_bar(...) as advance``
    """A rich progress bar when asked for, a no-op otherwise.

    Entering returns ``advance(done=None, total=None)``: with no arguments it
    adds one step; with both it sets the position (totals known only later).
    """

    def __init__(self, enabled: bool, label: str, total: int | None):
        self.enabled, self.label, self.total = enabled, label, total
        self._progress = None

    def __enter__(self):
        if not self.enabled:
            return lambda done=None, total=None: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), transient=False,
        )
        self._progress.start()
        task = self._progress.add_task(self.label, total=self.total)

        def advance(done: int | None = None, total: int | None = None) -> None:
            if done is None:
                self._progress.advance(task)
            else:
                self._progress.update(task, completed=done, total=total)

        return advance

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.stop()
