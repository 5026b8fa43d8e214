"""Progress bars for long work (rich), with elapsed time and ETA; silent when TADA_QUIET is set."""

from __future__ import annotations

import os
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class _Bar:
    def __init__(self, progress: Progress | None, task):
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)


@contextmanager
def progress_bar(desc: str, total: int, done: int = 0):
    """A bar for `total` units, `done` of them finished already (a resumed run)."""
    if os.environ.get("TADA_QUIET"):
        yield _Bar(None, None)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(desc, total=total, completed=done)
        yield _Bar(progress, task)
