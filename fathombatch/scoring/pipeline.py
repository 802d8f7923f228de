"""The writing end of a run: rows from a runner -> part files, with progress (:func:`write_pending`)."""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import polars as pl

from fathombatch.progress import Progress
from fathombatch.scoring.parts import PartStore


def write_pending(frames: Generator[tuple[int, pl.DataFrame], None, None], store: PartStore, progress: Progress, *,
                  part_rows: int, resumed: int, total: int) -> None:
    """Write the rows of the files not yet scored to part files of about ``part_rows`` rows, with progress.

    Args:
        frames: (files done, rows) pairs from a runner; closed on the way out, whatever happens.
        resumed: files an interrupted run already scored (the progress bar starts there).
        total: files of the whole run.
    """
    writer = store.writer()
    buffer: list[pl.DataFrame] = []
    buffered = 0
    errors = 0
    try:
        with contextlib.closing(frames), progress.task("Scoring", total, show_errors=True) as task:
            task.advance(resumed)
            for n_files, frame in frames:
                errors += int((frame["status"] == "error").sum())
                buffer.append(frame)
                buffered += frame.height
                if buffered >= part_rows:
                    writer.put(pl.concat(buffer))
                    buffer, buffered = [], 0
                task.advance(n_files)
                task.update(errors=errors)
    finally:
        # Whatever happened (Ctrl-C, an engine error), rows already computed are written, not lost.
        try:
            if buffer:
                writer.put(pl.concat(buffer))
        finally:
            writer.close()
