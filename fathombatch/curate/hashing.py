"""Content and perceptual hashes of image files, computed on a thread pool.

* ``sha256``: of the file's bytes; equal means byte-identical copies.
* ``phash``: ``imagehash.phash`` (DCT of a 32x32 grey thumbnail, 64 bits) of the image as displayed (EXIF
  orientation applied). Re-encoded, resized or lightly recompressed copies land within a few bits of each other.
  JPEGs are decoded at reduced scale (Pillow's ``draft``), which gives the same 32x32 thumbnail far faster.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from fathombatch.decode.base import read_image_file
from fathombatch.errors import DecodeError
from fathombatch.progress import Progress

_WINDOW = 4096


@dataclass(frozen=True)
class FileHash:
    """Hashes of one file; ``error`` set (and the image fields None) when it is not a readable image.

    Attributes:
        bytes: file size; width, height: displayed size in pixels; sha256: hex; phash: 64-bit unsigned int.
    """

    bytes: int | None
    width: int | None
    height: int | None
    sha256: str | None
    phash: int | None
    error: str | None = None


def hash_file(path: Path) -> FileHash:
    """Hash one file; never raises for a bad file (the reason goes to ``error``)."""
    import imagehash

    try:
        image = read_image_file(path)
    except DecodeError as exc:
        return FileHash(None, None, None, None, None, str(exc))
    digest = hashlib.sha256(image.data).hexdigest()
    try:
        with Image.open(io.BytesIO(image.data)) as im:
            im.draft("RGB", (128, 128))  # JPEG only: decode at 1/2..1/8 scale; phash needs 32x32
            oriented = ImageOps.exif_transpose(im).convert("RGB")
            value = int(str(imagehash.phash(oriented)), 16)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        return FileHash(len(image.data), image.width, image.height, digest, None, f"corrupt or truncated image: {exc}")
    return FileHash(len(image.data), image.width, image.height, digest, value)


def hash_files(
    paths: Sequence[Path], *, threads: int | None = None, progress: Progress | None = None
) -> list[FileHash]:
    """Hash files in order, on ``threads`` threads (Pillow and hashlib release the GIL).

    Work is submitted in windows of :data:`_WINDOW` files so a million-file dump never queues a million futures.
    """
    progress = progress or Progress(enabled=False)
    out: list[FileHash] = []
    workers = threads or os.cpu_count() or 1
    with progress.task("Hashing", len(paths)) as task, ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), _WINDOW):
            for result in pool.map(hash_file, paths[start : start + _WINDOW]):
                out.append(result)
                task.advance()
    return out
