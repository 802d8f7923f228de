"""Opening a scores table for curation, and finding its images safely.

Tables are scanned lazily (``pl.scan_parquet``): a command reads only the columns and rows it needs, so a
million-row, 290-column table never has to fit in memory at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl

from fathombatch.datasets import safe_relative_path
from fathombatch.errors import LabelFileError, UsageError, param
from fathombatch.fsutil import fs_path
from fathombatch.table import FIXED_COLUMNS, read_metadata, taxonomy_from_metadata
from fathombatch.taxonomy import Taxonomy, fathomnet2023


@dataclass(frozen=True)
class ScoresTable:
    """A scores table opened lazily.

    Attributes:
        path: the Parquet file.
        lazy: a lazy scan of it (nothing is read until collected).
        taxonomy: from the table's metadata, else FathomNet 2023.
        meta: the ``fathombatch`` metadata (empty when absent).
    """

    path: Path
    lazy: pl.LazyFrame
    taxonomy: Taxonomy
    meta: dict[str, Any]

    @property
    def metadata_root(self) -> Path | None:
        """The absolute folder the table was scored from (``run.root``), if recorded."""
        return _run_root(self.meta)


def _run_root(meta: dict[str, Any]) -> Path | None:
    root = (meta.get("run") or {}).get("root")
    return Path(root) if isinstance(root, str) and root else None


def recorded_root(path: Path) -> Path | None:
    """The folder the scores table ``path`` was scored from (its metadata's ``run.root``); None when ``path`` is not
    a readable Parquet file or records none. Reads the file footer only; never raises for a bad table (opening it
    reports that)."""
    if not Path(path).is_file():
        return None
    try:
        return _run_root(read_metadata(path))
    except UsageError:
        return None


def open_scores(path: Path) -> ScoresTable:
    """Open a scores table; checks it has the fixed columns and one column per class of its taxonomy.

    Raises:
        UsageError: the file is missing, is not Parquet, or is not a scores table.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"scores table {path} does not exist")
    meta = read_metadata(path)
    taxonomy = taxonomy_from_metadata(meta) or fathomnet2023()
    lazy = pl.scan_parquet(path)
    names = set(lazy.collect_schema().names())
    absent = [c for c in (*FIXED_COLUMNS, *taxonomy.names) if c not in names]
    if absent:
        raise UsageError(
            f"{path} is not a fathombatch scores table (missing columns {absent[:5]}); "
            "make one with `fathombatch score`"
        )
    return ScoresTable(path=path, lazy=lazy, taxonomy=taxonomy, meta=meta)


def images_root(table: ScoresTable, given: Path | None) -> Path:
    """The folder the table's ``path`` values are relative to: ``given``, else the metadata's ``run.root``.

    Raises:
        UsageError: neither is available, or the folder does not exist.
    """
    root = given or table.metadata_root
    if root is None:
        raise UsageError(f"{table.path} does not record the folder it was scored from; pass {param('images_root')} DIR")
    if not root.is_dir():
        hint = "" if given else (f" (read from the table's metadata); pass {param('images_root')} DIR if the images "
                                 "moved")
        raise UsageError(f"image folder {root} does not exist{hint}")
    return root


def resolve_image(root: Path, rel: str, where: str) -> Path:
    """``root / rel`` after refusing paths that leave ``root`` (absolute, drive letters, ``..``); ``rel`` is a table's
    ``path`` (its ``\\xNN`` escapes of names that are not UTF-8 are undone, see :func:`fathombatch.fsutil.fs_path`).

    Raises:
        LabelFileError: ``rel`` escapes the root; ``where`` names the record in the message.
    """
    name = fs_path(rel)
    safe_relative_path(name, where)  # refuses what a label file may not name either (absolute, drive, "..")
    # A table's paths come from discovery on this machine: POSIX, where a backslash is part of a file name.
    return root.joinpath(*PurePosixPath(name).parts)


def check_inside(root: Path, path: Path, where: str) -> Path:
    """Refuse ``path`` when, after resolving symlinks, it is not inside ``root`` (a symlinked folder can escape)."""
    resolved, base = path.resolve(), root.resolve()
    if resolved != base and base not in resolved.parents:
        raise LabelFileError(f"{where}: {path} resolves to {resolved}, outside {root}; refused")
    return path


def class_columns(taxonomy: Taxonomy, names: Iterable[str], *, what: str = "category") -> list[str]:
    """Validate category names against the taxonomy; a typo gets the closest names as a suggestion."""
    known = set(taxonomy.names)
    out = []
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, taxonomy.names, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UsageError(f"unknown {what} {name!r} in taxonomy {taxonomy.name!r}{hint}")
        out.append(name)
    return out


def supercategory_columns(taxonomy: Taxonomy, names: Sequence[str]) -> dict[str, list[str]]:
    """Map each supercategory name to its class columns; unknown names are a usage error with suggestions."""
    groups: dict[str, list[str]] = {}
    for cat, sup in zip(taxonomy.names, taxonomy.supercategories, strict=True):
        groups.setdefault(sup, []).append(cat)
    out = {}
    for name in names:
        if name not in groups:
            close = difflib.get_close_matches(name, list(groups), n=3)
            known = f"; known: {', '.join(sorted(groups))}"
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else known
            raise UsageError(f"unknown supercategory {name!r}{hint}")
        out[name] = groups[name]
    return out
