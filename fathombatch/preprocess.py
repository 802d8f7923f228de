"""How images are fed to a model: the input spec every engine manifest carries, and the normalisation kernel.

Training, export and every decoder read the same :class:`InputSpec`, so a model and its preprocessing cannot
drift apart (the role timm's ``PretrainedCfg`` plays there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fathombatch.errors import ManifestError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """Model input: RGB, resized to exactly ``height`` x ``width`` (aspect ratio not kept, like the seed study's
    ``Resize((224, 224))``) with bilinear, antialiased interpolation, then ``(x / 255 - mean) / std`` per channel,
    laid out as NCHW float32.

    Attributes:
        height, width: model input size in pixels.
        mean, std: per-channel normalisation in [0, 1] units (RGB order).
    """

    height: int = 224
    width: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not (8 <= self.height <= 8192 and 8 <= self.width <= 8192):
            raise ManifestError(f"input size {self.height}x{self.width} is outside 8..8192 pixels")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ManifestError(f"input mean/std must be three numbers each, std > 0: {self.mean}, {self.std}")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.height, self.width

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "width": self.width,
            "mean": list(self.mean),
            "std": list(self.std),
            "color": "RGB",
            "layout": "NCHW",
            "dtype": "float32",
            "resize": "stretch-bilinear-antialias",
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InputSpec:
        """Build from a manifest's ``input`` block; strict: sizes must be json integers and mean/std finite numbers
        (``32.9``, ``"32"``, ``true``, NaN or infinity would otherwise be coerced into a spec that silently decodes
        every image wrongly or turns every row into an error)."""
        missing = [k for k in ("height", "width", "mean", "std") if k not in data]
        if missing:
            raise ManifestError(f"manifest 'input' block is missing {', '.join(missing)}")
        for key in ("height", "width"):
            if not _is_int(data[key]):
                raise ManifestError(f"manifest 'input.{key}' must be a whole number of pixels, got {data[key]!r}")
        for key in ("mean", "std"):
            values = data[key]
            if not isinstance(values, (list, tuple)) or len(values) != 3 or not all(_is_finite(v) for v in values):
                raise ManifestError(f"manifest 'input.{key}' must be three finite numbers, got {values!r}")
        return cls(
            height=data["height"],
            width=data["width"],
            mean=_triple(data["mean"]),
            std=_triple(data["std"]),
        )


def _triple(values: Sequence[Any]) -> tuple[float, float, float]:
    """Three numbers (already checked) as floats."""
    a, b, c = (float(x) for x in values)
    return a, b, c


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def normalize(batch_hwc: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Normalise uint8 images for the model.

    Args:
        batch_hwc: (N, H, W, 3) uint8 RGB, already at the spec's size.

    Returns:
        (N, 3, H, W) float32, ``(x / 255 - mean) / std``.
    """
    scale = (1.0 / (255.0 * np.asarray(spec.std, dtype=np.float32))).astype(np.float32)
    shift = (np.asarray(spec.mean, dtype=np.float32) / np.asarray(spec.std, dtype=np.float32)).astype(np.float32)
    out = np.empty((batch_hwc.shape[0], 3, batch_hwc.shape[1], batch_hwc.shape[2]), dtype=np.float32)
    for c in range(3):
        np.multiply(batch_hwc[..., c], scale[c], out=out[:, c], casting="unsafe")
        out[:, c] -= shift[c]
    return out
