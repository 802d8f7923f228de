"""Contact sheets: small JPEG thumbnails and one self-contained HTML page to look at them.

Thumbnails are decoded with the scorer's own Pillow path (EXIF orientation applied, any mode to RGB), shrunk to
``size`` pixels on the longest side, and written atomically as ``NNNNN.jpg`` (the queue rank). A file that
cannot be read gets no thumbnail and its card says why; one bad file never stops the sheet.

Each card links to its original by a URL *relative to the HTML file's folder* (:func:`relative_href`), so the
review folder and the images can be moved or handed on together. The review folder is resolved (symlinks followed)
as ``score`` resolves the scored folder it records (``run.root``), and the caller passes originals under that
resolved root, so a symlinked folder above both (``/work/proj -> /data/proj``) cancels out of the links; below the
root, paths stay as the table spells them (a symlinked sub-folder is linked through). An original on another drive
(Windows), where no relative path exists, is linked by its absolute ``file://`` URL and counted in
:func:`render_html`'s result, so the caller can say that those links will break once the folder is moved.
"""

from __future__ import annotations

import html
import io
import ntpath
import os
import posixpath
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePath, PureWindowsPath
from urllib.parse import quote

from PIL import Image

from fathombatch.decode.base import read_image_file
from fathombatch.decode.pil import decode_rgb
from fathombatch.errors import DecodeError, UsageError, param
from fathombatch.fsutil import atomic_path
from fathombatch.progress import Progress


@dataclass(frozen=True)
class Card:
    """One image of the sheet.

    Attributes:
        rank: 1-based position in the queue.
        path: the table's relative path.
        source: the image file (linked from the card, relative to the HTML file's resolved folder): its images
            root resolved (``Path.resolve``), the part below it as the table spells it.
        priority: the strategy's value for this image.
        thumbnail: path of the thumbnail relative to the HTML file, or None.
        predictions: (class name, probability) best first.
        other_predictions: the second table's, for ``disagree``; None otherwise.
        problem: why there is no thumbnail, or None.
    """

    rank: int
    path: str
    source: Path
    priority: float | None
    thumbnail: str | None
    predictions: Sequence[tuple[str, float]]
    other_predictions: Sequence[tuple[str, float]] | None = None
    problem: str | None = None


def make_thumbnail(src: Path, dest: Path, size: int) -> None:
    """Write a JPEG of ``src`` at most ``size`` pixels on its longest side. Raises DecodeError for a bad file."""
    image = decode_rgb(read_image_file(src))
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(buf.getvalue())


def write_thumbnails(
    sources: Sequence[Path], folder: Path, size: int, progress: Progress | None = None
) -> tuple[list[Path | None], dict[int, str]]:
    """Thumbnails ``folder/00001.jpg`` ... in the order of ``sources``.

    Returns:
        per source the thumbnail path or None, and {position: reason} for the files without one.
    """
    if size < 16:
        raise UsageError(f"{param('thumb_size')} must be at least 16 pixels, got {size}")
    progress = progress or Progress(enabled=False)

    def one(i: int) -> str | None:
        try:
            make_thumbnail(sources[i], folder / f"{i + 1:05d}.jpg", size)
        except DecodeError as exc:
            return str(exc)
        return None

    results: list[str | None] = []
    with progress.task("Thumbnails", len(sources)) as task, ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for result in pool.map(one, range(len(sources))):
            results.append(result)
            task.advance()
    thumbs = [None if r else folder / f"{i + 1:05d}.jpg" for i, r in enumerate(results)]
    return thumbs, {i: r for i, r in enumerate(results) if r}


_CSS = """
body{font-family:system-ui,sans-serif;margin:1em;background:#f4f6f8;color:#222}
h1{font-size:1.2em} .grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:12px}
.card{background:#fff;border-radius:6px;padding:8px;box-shadow:0 1px 3px #0002}
.card img{width:100%;height:auto;display:block;border-radius:4px;background:#123}
.missing{height:150px;display:flex;align-items:center;justify-content:center;background:#fee;color:#a00;
font-size:.85em;padding:4px;text-align:center}
.meta{font-size:.75em;color:#555;word-break:break-all;margin:4px 0}
table{font-size:.8em;width:100%;border-collapse:collapse} td{padding:1px 3px} td.p{text-align:right}
.bar{background:#1f77b4;height:6px;border-radius:3px} h4{margin:6px 0 2px;font-size:.8em}
"""


def _predictions(title: str | None, preds: Sequence[tuple[str, float]]) -> str:
    head = f"<h4>{html.escape(title)}</h4>" if title else ""
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td class=p>{p:.3f}</td>"
        f"<td style='width:30%'><div class=bar style='width:{max(0.0, min(1.0, p)) * 100:.0f}%'></div></td></tr>"
        for name, p in preds
    )
    return f"{head}<table>{rows}</table>"


def relative_href(target: PurePath, base: PurePath) -> str | None:
    """The URL of the file ``target`` relative to the folder ``base`` (both absolute), or None where none exists.

    Every path component is percent-encoded from its file-system bytes (a space, ``#``, ``%`` or ``?`` in a name
    would otherwise cut or change the URL); Windows paths (``PureWindowsPath``) are compared as Windows does, and a
    file on another drive than ``base`` has no relative path.
    """
    mod = ntpath if isinstance(target, PureWindowsPath) else posixpath
    try:
        rel = mod.relpath(str(target), str(base))
    except ValueError:  # ntpath: "path is on mount 'D:', start on mount 'C:'"
        return None
    if mod is ntpath and ntpath.splitdrive(rel)[0]:  # a UNC share of another server: no relative path either
        return None
    return "/".join(quote(os.fsencode(part), safe="") for part in rel.split(mod.sep))


def render_html(title: str, strategy: str, cards: Sequence[Card], folder: Path) -> tuple[str, int]:
    """One HTML page: a grid of cards with thumbnail, rank, priority, path and the top predictions.

    Args:
        folder: where the page will be written; links to the originals are relative to it, resolved.

    Returns:
        the page, and how many originals had no relative path (linked by absolute ``file://`` URL instead).
    """
    parts = []
    absolute = 0
    base = Path(folder).resolve()  # as the images root of Card.source is: a common symlinked ancestor cancels out
    for c in cards:
        if c.thumbnail:
            picture = f"<img src='{html.escape(c.thumbnail)}' alt='{html.escape(c.path)}' loading=lazy>"
        else:
            picture = f"<div class=missing>no thumbnail: {html.escape(c.problem or 'unknown error')}</div>"
        source = Path(os.path.abspath(c.source))
        href = relative_href(source, base)
        if href is None:
            absolute += 1
            href = source.as_uri()
        link = html.escape(href)
        priority = "n/a" if c.priority is None else f"{c.priority:.3f}"
        preds = _predictions("this table" if c.other_predictions is not None else None, c.predictions)
        if c.other_predictions is not None:
            preds += _predictions("other table", c.other_predictions)
        parts.append(
            f"<div class=card id='r{c.rank}'><a href='{link}'>{picture}</a>"
            f"<div class=meta>#{c.rank} &middot; {html.escape(strategy)} {priority}<br>{html.escape(c.path)}</div>"
            f"{preds}</div>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><div class=grid>{''.join(parts)}</div></body></html>\n"
    )
    return page, absolute
