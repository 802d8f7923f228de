"""An engine opened from Python: :func:`open_engine` and :meth:`LoadedEngine.predict` on images held in memory.

``predict`` feeds the engine exactly what scoring the same picture from a file feeds it: the Pillow decoder's
colour rules (:func:`fathombatch.decode.pil.to_rgb`, EXIF orientation applied), a bilinear antialiased resize to the
manifest's input size, and :func:`fathombatch.preprocess.normalize`. What it accepts, decided here:

* PIL images, any mode (converted as a decoded file would be: greyscale replicated, alpha dropped, 16-bit ``v >> 8``);
* numpy arrays of dtype uint8, shaped (H, W, 3) RGB or (H, W) greyscale (replicated to RGB, as a greyscale file is);
* ``str`` / ``Path``: a file, decoded by the Pillow decoder itself (for a JPEG that includes its reduced-size DCT
  decode, so the probabilities equal the file's row of ``score`` exactly, which a fully decoded PIL image of a JPEG
  need not: it is resized from more pixels).

Refused with a :class:`~fathombatch.errors.UsageError` naming the position: float arrays (0..1 or 0..255 is a guess
this does not make), other integer types, (H, W, 4) arrays (RGBA or BGRA is another guess), any other shape, and
other types. Channel order is RGB: an OpenCV (BGR) frame needs ``frame[..., ::-1]`` first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from fathombatch.backends import Engine, Manifest, engine_device
from fathombatch.backends import open_engine as open_backend
from fathombatch.decode.pil import load_resized, to_rgb
from fathombatch.errors import DecodeError, UsageError
from fathombatch.preprocess import normalize
from fathombatch.probability import sigmoid

__all__ = ["LoadedEngine", "open_engine"]

#: What :meth:`LoadedEngine.predict` takes, for its error messages.
ACCEPTED = "PIL images, uint8 numpy arrays (H, W, 3) RGB or (H, W) greyscale, or image file paths"


class LoadedEngine:
    """An engine opened for use from Python; pass it to :func:`fathombatch.score` to score with it again without
    reopening it.

    Attributes:
        engine: the runtime's :class:`~fathombatch.backends.Engine`.
        device: the GPU it runs on, None for the CPU.
    """

    def __init__(self, engine: Engine, device: int | None = None) -> None:
        self.engine = engine
        self.device = device

    @property
    def path(self) -> Path:
        """The engine file."""
        return self.engine.path

    @property
    def manifest(self) -> Manifest:
        return self.engine.manifest

    @property
    def classes(self) -> list[str]:
        """Class names in column order of :meth:`predict` (and of the scores table's probability columns)."""
        return list(self.engine.manifest.taxonomy.names)

    def predict(self, images: Sequence[Any], *, batch_size: int = 32) -> np.ndarray:
        """Class probabilities for images held in memory (see the module docstring for what is accepted).

        Args:
            images: a sequence of images; one image alone must be wrapped in a list.
            batch_size: images per engine call (memory grows with it).

        Returns:
            (N, C) float32 probabilities in [0, 1] (sigmoid of the logits), one row per image in the order given,
            columns in the order of :attr:`classes`. A row whose logits are not finite is NaN.

        Raises:
            UsageError: an image of a type or shape not accepted, naming its position; a bad ``batch_size``.
            DecodeError: a path whose file cannot be read or decoded.
        """
        if isinstance(images, (str, os.PathLike, np.ndarray, Image.Image)):
            raise UsageError(f"images must be a sequence of images (a list); for one image pass [image]. Accepted: "
                             f"{ACCEPTED}")
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {batch_size}")
        size = self.engine.manifest.input.size
        out = np.empty((len(images), len(self.classes)), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            chunk = [model_pixels(image, size, start + i) for i, image in enumerate(images[start:start + batch_size])]
            out[start:start + len(chunk)] = sigmoid(self.engine.infer(normalize(np.stack(chunk),
                                                                                self.engine.manifest.input)))
        return out

    def close(self) -> None:
        """Release the runtime's resources."""
        self.engine.close()

    def __enter__(self) -> LoadedEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "cpu" if self.device is None else f"cuda:{self.device}"
        return (f"LoadedEngine({str(self.path)!r}, {self.engine.runtime}, {len(self.classes)} classes, "
                f"input {self.engine.manifest.input.height}x{self.engine.manifest.input.width}, {where})")


def open_engine(engine: str | Path, *, device: str = "auto", threads: int | None = None,
                precision: str = "fp32") -> LoadedEngine:
    """Open an engine file (or a name in the engine store) and check it against its manifest.

    Args:
        engine: ``.onnx``, ``.xml`` (OpenVINO), ``.pt`` or ``.plan`` file, or a file name in the engine store.
        device: ``auto`` (TensorRT plans and ``.pt`` engines on GPU 0 when there is one), ``cpu`` or ``cuda``.
        threads: CPU threads for the runtime (None: its default, one per physical core).
        precision: ``.pt`` engines on a GPU: ``fp32``, or autocast to ``fp16``/``bf16``.

    Raises:
        UsageError: the engine is not found, or cannot run on ``device``.
        EngineError / ManifestError: it cannot be loaded or does not match its manifest.
    """
    gpu = engine_device(engine, device)
    return LoadedEngine(open_backend(engine, threads=threads, device=gpu, precision=precision), gpu)


def model_pixels(image: Any, size: tuple[int, int], position: int) -> np.ndarray:
    """One image as the Pillow decoder leaves a file: (H, W, 3) uint8 RGB at ``size`` = (height, width).

    Raises:
        UsageError: a type, dtype or shape that is not accepted (the message names ``position``).
        DecodeError: a file that cannot be read or decoded.
    """
    where = f"images[{position}]"
    if isinstance(image, (str, os.PathLike)):
        try:
            return load_resized(os.fspath(image), size)
        except DecodeError as exc:
            raise DecodeError(f"{where} ({os.fspath(image)}): {exc}") from None
    if isinstance(image, np.ndarray):
        image = array_image(image, where)
    elif isinstance(image, Image.Image):
        image = to_rgb(ImageOps.exif_transpose(image))
    else:
        raise UsageError(f"{where} is a {type(image).__name__}; predict takes {ACCEPTED}")
    height, width = size
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))


def array_image(array: np.ndarray, where: str) -> Image.Image:
    """A uint8 (H, W, 3) or (H, W) array as an RGB PIL image; anything else refused with what to do instead."""
    if array.dtype != np.uint8:
        hint = " (scale floats in 0..1 with (x * 255).round().astype('uint8'))" if array.dtype.kind == "f" else ""
        raise UsageError(f"{where} is a {array.dtype} array; predict takes uint8 pixels 0..255{hint}")
    if array.ndim == 2:
        return Image.fromarray(array).convert("RGB")
    if array.ndim == 3 and array.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(array))
    raise UsageError(f"{where} has shape {array.shape}; predict takes (H, W, 3) RGB or (H, W) greyscale arrays "
                     "(drop an alpha channel first: array[..., :3])")
