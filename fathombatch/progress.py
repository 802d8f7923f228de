"""Progress bars through rich, silent when disabled (``--quiet``) or when stderr is not a terminal.

Library functions take an optional :class:`Progress`; ``None`` means silent. Bars go to stderr so that stdout
stays clean for results.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any


class Task:
    """Handle of one bar: ``advance(n)`` and ``update(**fields)`` (fields show in the bar, e.g. errors)."""

    def __init__(self, progress: Any = None, task_id: Any = None) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._id, n)

    def update(self, **fields: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._id, **fields)


class Progress:
    """A factory of progress bars.

    Args:
        enabled: False silences everything; None (default) enables bars only when stderr is a terminal.
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    @contextlib.contextmanager
    def task(self, description: str, total: int | None, *, unit: str = "img", show_errors: bool = False) -> Iterator[Task]:
        """Show one bar while the block runs.

        Args:
            description: text left of the bar.
            total: number of steps, or None when unknown.
            unit: what a step is, shown as ``<rate> <unit>/s``.
            show_errors: add an ``errors`` counter, set through ``task.update(errors=n)``.
        """
        if not self.enabled:
            yield Task()
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        columns: list[Any] = [
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("[cyan]{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        if show_errors:
            columns.append(TextColumn("[red]errors: {task.fields[errors]}"))
        with RichProgress(*columns, console=Console(stderr=True), transient=False) as bar:
            task_id = bar.add_task(description, total=total, errors=0, rate="")
            yield _RateTask(bar, task_id, unit)


class _RateTask(Task):
    """A Task that shows the speed as ``<rate> <unit>/s`` (rich's speed column has no unit)."""

    def __init__(self, progress: Any, task_id: Any, unit: str) -> None:
        super().__init__(progress, task_id)
        self._unit = unit

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._id, n)
        speed = self._progress.tasks[self._id].speed
        self._progress.update(self._id, rate=f"{speed:.1f} {self._unit}/s" if speed else "")
