"""Whether one path could land on another: the path arithmetic behind "outputs never replace inputs".

Used by the command line's output guard (:func:`fathombatch.cli.kit.check_outputs`) and by library checks that
must hold without it (``export`` into its run folder, ``curate select`` placing an image onto itself, ``download``'s
failures file). Paths need not exist: an output is usually not written yet.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["entry_names", "inside", "same_entry", "spellings"]


def _entry(path: Path) -> Path:
    """The directory entry ``path`` names: its folders' symlinks resolved, the last component kept (a symlink
    there is itself what a write replaces)."""
    written = Path(os.path.abspath(path))
    return written.parent.resolve() / written.name


def entry_names(path: Path) -> set[Path]:
    """The absolute names of the directory entry ``path``: as written (symlinks kept, which is how discovery names
    files) and with its folders' symlinks resolved; the last component is never resolved, so a symlink is itself
    the entry, not its target."""
    written = Path(os.path.abspath(path))
    return {written, _entry(written)}


def spellings(path: Path) -> set[Path]:
    """The absolute forms of ``path`` that name the same place: as written, as its directory entry, and fully
    resolved."""
    written = Path(os.path.abspath(path))
    return {written, _entry(written), written.resolve()}


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it, through any spelling or symlinked folder."""
    folders = {Path(os.path.abspath(folder)), Path(folder).resolve()}
    return any(s.is_relative_to(f) for s in spellings(path) for f in folders)


def same_entry(a: Path, b: Path) -> bool:
    """Whether writing ``a`` replaces the file ``b`` (the same directory entry, or, when ``a`` is not a symlink, the
    same file through a hard link or through ``b`` being a symlink to it). A symlink ``a`` pointing at ``b`` is
    not ``b``: replacing the link leaves ``b`` as it was."""
    if _entry(a) == _entry(b):
        return True
    if not os.path.lexists(a) or os.path.islink(a) or not os.path.exists(b):
        return False
    return os.path.samefile(a, b)
