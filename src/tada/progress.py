"""Progress bars for long work (rich), with elapsed time and ETA; silent when TADA_QUIET is set.

A caller that shows progress elsewhere (the studio's web page) can :func:`listen`: within the block, every bar
also reports ``(description, done, total)`` to its callback as it advances.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_listener: ContextVar[Callable[[str, int, int], None] | None] = ContextVar("tada_progress_listener", default=None)


class _Bar:
    def __init__(self, progress: Progress | None, task, desc: str, total: int, done: int):
        self._progress, self._task = progress, task
        self._desc, self._total, self._done, self._listener = desc, total, done, _listener.get()
        if self._listener is not None:
            self._listener(desc, done, total)

    def advance(self, n: int = 1) -> None:
        self._done += n
        if self._progress is not None:
            self._progress.advance(self._task, n)
        if self._listener is not None:
            self._listener(self._desc, self._done, self._total)


@contextmanager
def listen(callback: Callable[[str, int, int], None]):
    """Within the block (this thread or task), every progress bar also calls ``callback(desc, done, total)``."""
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)


@contextmanager
def progress_bar(desc: str, total: int, done: int = 0):
    """A bar for `total` units, `done` of them finished already (a resumed run)."""
    if os.environ.get("TADA_QUIET"):
        yield _Bar(None, None, desc, total, done)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(desc, total=total, completed=done)
        yield _Bar(progress, task, desc, total, done)
