"""Progress on stderr: a rich bar on a terminal, a plain status line every few seconds elsewhere, or nothing.

Library functions take an optional :class:`Progress`; ``None`` means silent. Progress goes to stderr so that stdout
stays clean for results. When stderr is not a terminal (a notebook cell, a log file, a pipe) a bar would be
invisible until the end or fill the log with control characters, so each step instead prints one plain line, at
most every :data:`STATUS_INTERVAL` seconds, and a closing line if it printed any (a step shorter than the interval
stays quiet). ``--quiet`` (``enabled=False``) silences both.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

#: Seconds between two status lines when stderr is not a terminal (5 s: a notebook cell is never silent for long,
#: and an hour-long job writes about 720 lines, not one per batch).
STATUS_INTERVAL = 5.0


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
    """A factory of progress reports: rich bars when stderr is a terminal, plain status lines when it is not.

    Args:
        enabled: False silences everything; None (default) or True report progress.
        interval: seconds between two status lines when stderr is not a terminal (default :data:`STATUS_INTERVAL`).
        clock: seconds from a monotonic clock (tests pass a fake one).
    """

    def __init__(
        self, enabled: bool | None = None, *, interval: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.enabled = True if enabled is None else enabled
        self.interval = STATUS_INTERVAL if interval is None else interval
        self.clock = clock

    @contextlib.contextmanager
    def task(
        self, description: str, total: int | None, *, unit: str = "img", show_errors: bool = False
    ) -> Iterator[Task]:
        """Report one step while the block runs (a bar, status lines, or nothing; see the class).

        Args:
            description: text left of the bar.
            total: number of steps, or None when unknown.
            unit: what a step is, shown as ``<rate> <unit>/s``.
            show_errors: add an ``errors`` counter, set through ``task.update(errors=n)``.
        """
        if not self.enabled:
            yield Task()
            return
        if not sys.stderr.isatty():
            status = _StatusTask(description, total, unit, show_errors, self.interval, self.clock)
            yield status
            status.finish()
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


class _StatusTask(Task):
    """A Task that prints ``description: done/total unit (pct), rate, elapsed[, errors]`` lines, no control codes.

    A line is printed when an ``advance`` finds ``interval`` seconds gone since the last one (or since the start).
    Advances may come from worker threads. ``finish`` runs only when the step succeeded: after an error the error
    message, not a closing count, is the last word.
    """

    def __init__(
        self, description: str, total: int | None, unit: str, show_errors: bool, interval: float,
        clock: Callable[[], float],
    ) -> None:
        super().__init__()
        self._description, self._total, self._unit = description, total, unit
        self._fields: dict[str, Any] = {"errors": 0} if show_errors else {}
        self._interval, self._clock = interval, clock
        self._start = self._last = clock()
        self._done = 0
        self._printed: int | None = None  # the count the last line showed
        self._lock = threading.Lock()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self._done += n
            now = self._clock()
            if now - self._last >= self._interval:
                self._print(now)

    def update(self, **fields: Any) -> None:
        with self._lock:
            self._fields.update(fields)

    def finish(self) -> None:
        """Print a closing line if the step printed any and the last one is stale (so a reader sees it end)."""
        with self._lock:
            if self._printed is not None and self._printed != self._done:
                self._print(self._clock())

    def line(self, now: float) -> str:
        """The status at time ``now`` (seconds on the task's clock) as one line."""
        done, total, unit = self._done, self._total, self._unit
        parts = [f"{self._description}: {done}/{total} {unit} ({100 * done / total:.0f}%)" if total
                 else f"{self._description}: {done} {unit}"]
        elapsed = now - self._start
        if elapsed > 0:
            parts.append(f"{done / elapsed:.1f} {unit}/s")
        parts.append(f"{elapsed:.0f} s")
        if total and 0 < done < total and elapsed > 0:
            parts.append(f"about {(total - done) * elapsed / done:.0f} s left")
        parts += [f"{name}: {value}" for name, value in self._fields.items()]
        return ", ".join(parts)

    def _print(self, now: float) -> None:
        print(self.line(now), file=sys.stderr, flush=True)
        self._last, self._printed = now, self._done
