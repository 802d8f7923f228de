"""Find the images of a dump: recursive, deterministic, safe against symlink loops."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from fathombatch.errors import UsageError

#: Image file extensions, compared case-insensitively: what ``score`` discovers, and what is dropped from an id
#: written with its extension (``evaluate``, ``train``, ``curate subset``, export metadata). The one list: every other
#: module imports it. TIFF stills are decoded by Pillow in every decoder (:data:`~fathombatch.decode.pil.PILLOW_ONLY`).
_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
IMAGE_SUFFIXES: frozenset[str] = frozenset(_SUFFIXES)
#: Video file extensions, compared case-insensitively: ``score`` samples them into frames
#: (:mod:`fathombatch.decode.video`). Kept beside the image list so one module owns every suffix ``score`` finds.
_VIDEO = (".mp4", ".mov", ".mkv", ".avi")
VIDEO_SUFFIXES: frozenset[str] = frozenset(_VIDEO)
#: What ``score`` discovers: stills and videos.
SCORED_SUFFIXES: frozenset[str] = IMAGE_SUFFIXES | VIDEO_SUFFIXES


def describe_suffixes() -> str:
    """``.jpg, .jpeg, .png, .tif or .tiff``: the image extensions, for messages."""
    return f"{', '.join(_SUFFIXES[:-1])} or {_SUFFIXES[-1]}"


def describe_video_suffixes() -> str:
    """``.mp4, .mov, .mkv or .avi``: the video extensions, for messages."""
    return f"{', '.join(_VIDEO[:-1])} or {_VIDEO[-1]}"


def strip_image_suffix(name: str) -> str | None:
    """``abc.PNG`` -> ``abc``: the name without an image extension of :data:`IMAGE_SUFFIXES` (any case).

    None when the name does not end in one (``abc``, ``abc.bmp``, ``.jpg``), so ids holding other dots stay whole.
    """
    stem, dot, ext = name.rpartition(".")
    return stem if dot and stem and f".{ext.lower()}" in IMAGE_SUFFIXES else None


def suffix_stems(ids: Iterable[str]) -> dict[str, str]:
    """Id -> the id without its image extension, for the ids that may be matched that way (``evaluate``'s rule).

    Label files written by other tools name images ``abc.jpg`` where a file stem is ``abc``. An id is shortened
    only when the shortened id is not an id of its own and no other id shortens to it (``abc.jpg`` and ``abc.png``
    would otherwise give two label rows one image); the others are left out.
    """
    known = set(ids)
    stems = {i: s for i in known if (s := strip_image_suffix(i)) is not None and s not in known}
    shared = {s for s, n in Counter(stems.values()).items() if n > 1}
    return {i: s for i, s in stems.items() if s not in shared}


def discover(
    root: str | Path,
    suffixes: frozenset[str] = IMAGE_SUFFIXES,
    *,
    on_error: Callable[[str], None] | None = None,
) -> list[str]:
    """List image files under ``root``, as POSIX-style paths relative to it, sorted.

    Directory symlinks are followed, but every directory is entered once (by device and inode), so a symlink loop
    is walked once, not forever, and no file is listed twice through two routes. File symlinks are listed as they
    are, broken ones included: they get an error row when decoded, rather than vanishing silently.
    A folder that cannot be listed is reported through ``on_error`` (a one-line message) instead of being skipped
    silently.

    Raises:
        UsageError: ``root`` does not exist or is not a directory.
    """
    root = Path(root)
    if not root.exists():
        raise UsageError(f"{root} does not exist")
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder")
    found: list[str] = []
    seen_dirs: set[tuple[int, int]] = set()

    def walk_error(exc: OSError) -> None:
        if on_error is not None:
            on_error(f"cannot list folder {exc.filename}: {exc.strerror}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=walk_error, followlinks=True):
        st = os.stat(dirpath)
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add(key)
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames:
            if os.path.splitext(name)[1].lower() in suffixes:
                rel = name if rel_dir == "." else os.path.join(rel_dir, name)
                found.append(rel.replace(os.sep, "/"))
    found.sort()
    return found


def discover_scored(root: str | Path, *, on_error: Callable[[str], None] | None = None) -> list[str]:
    """Every file ``score`` scores under ``root`` (stills and videos, :data:`SCORED_SUFFIXES`), as :func:`discover`
    lists them.

    Raises:
        UsageError: ``root`` is missing, not a folder, or holds no image or video.
    """
    files = discover(root, SCORED_SUFFIXES, on_error=on_error)
    if not files:
        raise UsageError(f"no {describe_suffixes()} images, nor {describe_video_suffixes()} videos, under {root}")
    return files

