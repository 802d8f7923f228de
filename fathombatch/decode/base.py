"""The decoder interface, and the file checks every decoder shares.

A decoder turns a list of image paths into one batch of model-ready tensors plus, per file, its original size or
an error message. A bad file never raises: it gets a message and the other files of the batch are unaffected.

Before any pixel is decoded, :func:`read_image_file` reads the bytes and the header, so every decoder reports the
same specific message for files that are not images at all (empty, text, unknown format, a broken symlink, no
permission) and refuses decompression bombs by their declared size.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fathombatch.errors import DecodeError, check_threads
from fathombatch.preprocess import InputSpec

#: Images whose header declares more pixels than this are refused before decoding (decompression-bomb guard):
#: 178,956,970 px is Pillow's own hard limit (twice ``Image.MAX_IMAGE_PIXELS``), about 16,000 x 11,000.
MAX_IMAGE_PIXELS = 178_956_970

#: Files larger than this are refused without reading them: no JPEG or PNG frame of a dive comes close.
MAX_FILE_BYTES = 1024**3

_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageFile:
    """An image file read into memory and identified by its header.

    Attributes:
        data: the encoded bytes.
        format: Pillow's format name, e.g. ``"JPEG"`` or ``"PNG"`` (detected from content, never the extension).
        width, height: size in pixels as displayed, i.e. after EXIF orientation.
        orientation: EXIF orientation tag (1 = none).
    """

    data: bytes
    format: str
    width: int
    height: int
    orientation: int = 1


def _describe_unidentified(data: bytes) -> str:
    if data.startswith(b"\xff\xd8"):
        return f"a JPEG file whose header is corrupt or cut off ({len(data)} bytes)"
    if data.startswith(b"\x89PNG"):
        return f"a PNG file whose header is corrupt or cut off ({len(data)} bytes)"
    head = data[:256].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "an HTML file, not an image"
    try:
        data[:4096].decode("utf-8")
        return "a text file, not an image"
    except UnicodeDecodeError:
        pass
    return f"not a recognised image format (first bytes {data[:8].hex(' ')})"


def read_image_file(path: str | Path) -> ImageFile:
    """Read a file and identify it as an image from its header.

    Raises:
        DecodeError: with a specific message (broken symlink, symlink loop, permission denied, empty file, text or
            HTML file, unknown format, declared size over :data:`MAX_IMAGE_PIXELS`).
    """
    path = Path(path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "device"
            raise DecodeError(f"not a regular file (a {kind}); not read")
        size = st.st_size
        if size > MAX_FILE_BYTES:
            raise DecodeError(f"file is {size} bytes, over the {MAX_FILE_BYTES} byte limit")
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        gone = "file not found (removed after the folder was listed?)"
        raise DecodeError("broken symbolic link" if os.path.islink(path) else gone) from None
    except PermissionError:
        raise DecodeError("permission denied") from None
    except IsADirectoryError:
        raise DecodeError("is a folder, not a file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DecodeError("symbolic link loop") from None
        raise DecodeError(f"cannot read file: {exc.strerror or exc}") from None
    if not data:
        raise DecodeError("empty file (0 bytes)")
    return identify(data)


def read_batch(
    paths: Sequence[str | Path],
) -> tuple[list[tuple[int, ImageFile]], list[tuple[int, int] | None], list[str | None]]:
    """Read every file of a batch with :func:`read_image_file`, keeping going past unreadable ones.

    Returns:
        ``(read, sizes, errors)``: ``(position, file)`` for each file read; per position its (width, height) in
        pixels or None, and its error message or None.
    """
    n = len(paths)
    sizes: list[tuple[int, int] | None] = [None] * n
    errors: list[str | None] = [None] * n
    read: list[tuple[int, ImageFile]] = []
    for i, path in enumerate(paths):
        try:
            image = read_image_file(path)
        except DecodeError as exc:
            errors[i] = str(exc)
            continue
        sizes[i] = (image.width, image.height)
        read.append((i, image))
    return read, sizes, errors


def header_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) in pixels from the file header only, or None when it is not a readable image."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, SyntaxError, ValueError):
        return None


def identify(data: bytes) -> ImageFile:
    """Identify encoded bytes from the header alone (no pixel decoding)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                fmt = im.format or "unknown"
                try:  # every format that can carry EXIF (JPEG, MPO, PNG, TIFF, WebP...)
                    orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
                except Exception:  # noqa: BLE001 - a corrupt EXIF block must not cost the image its score
                    orientation = 1
    except Image.DecompressionBombError as exc:
        # Pillow refuses sizes over twice its own limit inside Image.open, before we see the size.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f" ({found.group(1)} pixels)" if found else ""
        raise DecodeError(
            f"declared image size{pixels} is over the {MAX_IMAGE_PIXELS} pixel limit (decompression-bomb guard)"
        ) from None
    except UnidentifiedImageError:
        raise DecodeError(_describe_unidentified(data)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeError(f"corrupt or truncated image header: {exc}") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise DecodeError(
            f"declared image size {width}x{height} ({width * height} pixels) is over the {MAX_IMAGE_PIXELS} "
            "pixel limit (decompression-bomb guard)"
        )
    if width < 1 or height < 1:
        raise DecodeError(f"declared image size {width}x{height} is empty")
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return ImageFile(data=data, format=fmt, width=width, height=height, orientation=orientation)


@dataclass
class DecodedBatch:
    """The result of decoding a list of files.

    Attributes:
        images: (n_ok, 3, H, W) float32, normalised per the input spec, rows in the order of ``ok``.
        ok: positions (into the requested list) of the files that decoded.
        sizes: per requested file, (width, height) as displayed, or None when unknown.
        errors: per requested file, None or a one-line message.
        decoders: per requested file, the decoder that produced its pixels (e.g. ``"dali"``, ``"pil"``) or None.
    """

    images: np.ndarray
    ok: list[int]
    sizes: list[tuple[int, int] | None]
    errors: list[str | None]
    decoders: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.errors)


class Decoder(ABC):
    """Decodes and resizes files into model input; subclasses register in :mod:`fathombatch.decode`."""

    name: str = "base"

    def __init__(self, spec: InputSpec, *, batch_size: int = 32, threads: int | None = None) -> None:
        self.spec = spec
        self.batch_size = batch_size
        check_threads(threads, "decoder threads")
        self.threads = max(1, threads or os.cpu_count() or 1)

    @abstractmethod
    def decode(self, paths: Sequence[str | Path]) -> DecodedBatch:
        """Decode up to ``batch_size`` files. Never raises for a bad file; see :class:`DecodedBatch`."""

    def close(self) -> None:  # noqa: B027 - a no-op by default; only decoders holding threads override it
        """Release threads and buffers."""

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
