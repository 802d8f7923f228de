"""Pillow decoder: the portable fallback, and the decoder training uses to build its tensors.

Orientation: EXIF orientation is applied (``ImageOps.exif_transpose``), as DALI does by default, so the model sees
the image the way a viewer shows it and ``width``/``height`` are the displayed size.
Colour: everything becomes 8-bit RGB; CMYK goes through Pillow's conversion, grayscale is replicated, palette
images are expanded, alpha is dropped (not composited), and 16-bit samples keep their 8 most significant bits
(``v >> 8``: the full 0..65535 range maps onto 0..255, never stretched per image, so a dark frame stays dark and
its scores do not depend on its own brightest pixel). Pillow's reader of 16-bit RGB TIFFs applies the same rule.
TIFF stills: 8-bit RGB, 16-bit greyscale (``I;16``) and 16-bit RGB; of a multi-page TIFF, the first page.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from fathombatch.decode.base import DecodedBatch, Decoder, ImageFile, read_image_file
from fathombatch.errors import DecodeError
from fathombatch.preprocess import InputSpec, normalize

#: Formats (Pillow's names) that every decoder hands to Pillow, so that their pixels do not depend on the decoder:
#: DALI 2.4's CPU backend rounds 16-bit TIFF samples to 8 bits otherwise (a sample of 255 became 1 there, 0 here),
#: and the 16-bit and multi-page rules above are then the only ones.
PILLOW_ONLY: frozenset[str] = frozenset({"TIFF"})


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (see the module docstring for the rules)."""
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        arr = np.asarray(im)
        if im.mode.startswith("I;16") or (arr.size and arr.max() > 255):
            arr = arr.astype(np.uint32) >> 8
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    return im.convert("RGB")


def decode_rgb(image: ImageFile, at_least: tuple[int, int] | None = None) -> Image.Image:
    """Decode to an oriented 8-bit RGB image.

    Args:
        image: the file, read and identified.
        at_least: (height, width) the caller will resize to. JPEGs are then decoded in the DCT domain at 1/2, 1/4 or
            1/8 scale when that still leaves at least this many pixels (Pillow's ``draft``): a 1920x1080 frame bound
            for a 224x224 model decodes at 480x270, several times faster, with the DCT's own averaging as the
            low-pass filter. Other formats always decode in full.

    Raises:
        DecodeError: the data are truncated or corrupt (message from Pillow).
    """
    try:
        with Image.open(io.BytesIO(image.data)) as im:
            if at_least is not None and im.format == "JPEG":
                height, width = at_least
                # draft() acts before orientation is applied: ask for the transposed size when EXIF rotates by 90.
                im.draft("RGB", (height, width) if image.orientation in (5, 6, 7, 8) else (width, height))
            im.load()
            return to_rgb(ImageOps.exif_transpose(im))
    except DecodeError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"corrupt or truncated {image.format} data: {exc}") from None


def decode_resized(image: ImageFile, size: tuple[int, int]) -> np.ndarray:
    """Decode and resize to (height, width) = ``size`` (bilinear, antialiased).

    Returns:
        (H, W, 3) uint8 RGB.
    """
    return resize_rgb(decode_rgb(image, at_least=size), size)


def resize_rgb(rgb: Image.Image | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB image to (height, width) = ``size`` the way every Pillow-decoded input is resized (bilinear,
    antialiased, aspect ratio not kept; :class:`~fathombatch.preprocess.InputSpec`).

    Args:
        rgb: a Pillow RGB image, or (H, W, 3) uint8 RGB pixels (e.g. a video frame).

    Returns:
        (height, width, 3) uint8 RGB.
    """
    height, width = size
    im = Image.fromarray(rgb) if isinstance(rgb, np.ndarray) else rgb
    return np.asarray(im.resize((width, height), Image.Resampling.BILINEAR))


def load_resized(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Read, decode and resize one file to (H, W, 3) uint8; raises DecodeError for a bad file."""
    return decode_resized(read_image_file(path), size)


class PilDecoder(Decoder):
    """Decode with Pillow on ``threads`` threads (Pillow releases the GIL while decoding and resizing)."""

    name = "pil"

    def __init__(self, spec: InputSpec, *, batch_size: int = 32, threads: int | None = None) -> None:
        super().__init__(spec, batch_size=batch_size, threads=threads)
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="fb-pil")

    def _one(self, path: str | Path) -> tuple[np.ndarray | None, tuple[int, int] | None, str | None]:
        try:
            image = read_image_file(path)
        except DecodeError as exc:
            return None, None, str(exc)
        try:
            return decode_resized(image, self.spec.size), (image.width, image.height), None
        except DecodeError as exc:
            return None, (image.width, image.height), str(exc)
        except MemoryError:
            return None, (image.width, image.height), "out of memory while decoding"

    def decode(self, paths: Sequence[str | Path]) -> DecodedBatch:
        results = list(self._pool.map(self._one, paths))
        ok = [i for i, (pix, _, _) in enumerate(results) if pix is not None]
        pixels = [pix for pix, _, _ in results if pix is not None]
        if pixels:
            images = normalize(np.stack(pixels), self.spec)
        else:
            images = np.empty((0, 3, *self.spec.size), dtype=np.float32)
        return DecodedBatch(
            images=images,
            ok=ok,
            sizes=[r[1] for r in results],
            errors=[r[2] for r in results],
            decoders=[self.name if r[0] is not None else None for r in results],
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)
