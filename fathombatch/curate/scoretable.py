"""Curation's helpers over a scores table: finding its images safely, and naming its classes.

The table itself is opened by :meth:`fathombatch.scores.table.ScoresTable.open` (shared with exports and evaluation).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from fathombatch.errors import LabelFileError, UsageError, param
from fathombatch.fsutil import fs_path
from fathombatch.labels import safe_relative_path
from fathombatch.scores.table import ScoresTable
from fathombatch.taxonomy import Taxonomy


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
