"""Incremental scoring (``ScoreConfig.update``): bring a finished table up to date with a folder that has changed.

An update is a resume in disguise, so it is as crash-safe as one: before any scoring, the rows of the old table whose
file is still there, was scored ``ok`` and has the same size and modification time (the table's ``file_size`` and
``file_mtime_ns`` columns, the signature rule of a resume) are copied into the part store as one part, written
atomically (:func:`seed_store`). The ordinary resume then scores everything else (new files, changed files, error
rows) and the merge keeps only the files now in the folder, so rows of deleted files drop out. The old table is
replaced only by the merge's atomic rename. A ``kill -9`` at any point leaves either no parts folder (nothing
happened) or one the same command resumes; the seed is written again only while the parts folder holds no part.

Decisions where the issue is silent:

* A table written before tables carried file signatures cannot tell unchanged files from changed ones: every row is
  scored again (counted as ``rescored``), with a warning, rather than refused, so the same command keeps working and
  the result is still what a fresh run would give.
* Without a table yet, an update is a fresh run (every file ``added``, :attr:`UpdateCounts.fresh`), so a script can
  run the same command after every copy from the ROV, the first time included.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from fathombatch.errors import UsageError, param
from fathombatch.scores.metadata import read_metadata
from fathombatch.scores.schema import ADDED_COLUMNS, FIXED_COLUMNS, SIGNATURE_COLUMNS
from fathombatch.scoring.config import UpdateCounts
from fathombatch.scoring.parts import PUBLIC_NAMES, PartStore, changed_params

Signature = tuple[int | None, int | None]


@dataclass(frozen=True)
class PreviousTable:
    """The finished table an update starts from.

    Attributes:
        path: the table (``ScoreConfig.out``).
        index: one row per table row: ``path``, ``status``, ``file_size``, ``file_mtime_ns`` (both null for a
            table written before tables carried signatures).
        signed: the table has the signature columns.
    """

    path: Path
    index: pl.DataFrame
    signed: bool


def read_previous(out: Path, params: dict[str, Any]) -> PreviousTable | None:
    """The table at ``out``, checked against this run's parameters; None when there is no table yet.

    Raises:
        UsageError: ``out`` is not a fathombatch scores table, or was scored with other run parameters (engine
            fingerprint, decoder, top-k, osd method, folder, precision: the rule of a resume).
    """
    if not out.exists():
        return None
    meta = read_metadata(out)
    names = set(pl.read_parquet_schema(out))
    run = meta.get("run")
    if not isinstance(run, dict) or not set(FIXED_COLUMNS) - set(ADDED_COLUMNS) <= names:
        raise UsageError(f"{out} is not a fathombatch scores table, so it cannot be updated; choose another "
                         f"{param('out')}")
    if what := changed_params(run, params):
        raise UsageError(f"{out} was scored with a different {what}; update it with the settings it was scored "
                         f"with, or score every file again with {param('overwrite')}")
    signed = set(SIGNATURE_COLUMNS) <= names
    columns = ["path", "status", *(SIGNATURE_COLUMNS if signed else ())]
    index = pl.read_parquet(out, columns=columns)
    if not signed:
        index = index.with_columns(pl.lit(None, dtype).alias(name) for name, dtype in SIGNATURE_COLUMNS.items())
    return PreviousTable(path=out, index=index, signed=signed)


def plan_update(previous: PreviousTable | None, signatures: dict[str, Signature]) -> tuple[UpdateCounts, list[str]]:
    """What an update does, and the rows it keeps.

    Args:
        previous: the old table (None: there is none).
        signatures: (size in bytes, mtime in ns) of every file now in the folder, by display path.

    Returns:
        The counts, and the display paths of the rows kept from the old table.
    """
    if previous is None:
        return UpdateCounts(added=len(signatures), rescored=0, removed=0, kept=0, fresh=True), []
    # Per file, not per row: a video has a row per sampled frame, and is kept only if every row of it is ok.
    files = previous.index.group_by("path").agg(
        ok=(pl.col("status") == "ok").all(), size=pl.col("file_size").first(), mtime=pl.col("file_mtime_ns").first())
    kept: list[str] = []
    seen = 0
    for path, ok, size, mtime in files.iter_rows():
        if path not in signatures:
            continue
        seen += 1
        if ok and size is not None and signatures[path] == (size, mtime):
            kept.append(path)
    counts = UpdateCounts(added=len(signatures) - seen, rescored=seen - len(kept),
                          removed=files.height - seen, kept=len(kept))
    return counts, kept


def seed_store(store: PartStore, previous: PreviousTable, kept: list[str]) -> None:
    """Copy the ``kept`` rows of the old table into ``store`` as one part, unless the store already has parts (an
    interrupted update, already seeded, or an interrupted run whose rows are as good: same parameters)."""
    if store.parts or not kept:
        return
    private = {public: private for private, public in PUBLIC_NAMES.items()}
    rows = pl.scan_parquet(previous.path).filter(pl.col("path").is_in(kept)).rename(private)
    store.seed(rows)


def unsigned_warning(previous: PreviousTable | None) -> str | None:
    """The warning for a table that predates file signatures (see the module docstring), else None."""
    if previous is None or previous.signed or previous.index.height == 0:
        return None
    return (f"{previous.path} was written by a fathombatch that did not record file sizes and modification times, so "
            "unchanged files cannot be told apart: every file is scored again")
