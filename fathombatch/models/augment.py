"""Training-time augmentation on uint8 image batches, each image with its own random draw.

Suited to ROV imagery: horizontal flips (a camera pans both ways; the seafloor stays down, so no vertical flips),
brightness/contrast/saturation jitter (lights and depth), *turbidity* (blending towards a random blue-green water
colour, as suspended particles do), random resized crops (objects at other distances), and Cutout (DeVries & Taylor
2017: one or more squares set to the image mean, which the seed study used with one 16x16 square at 224 px).

Operates on (N, H, W, 3) uint8 arrays before normalisation, with torchvision's functional kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as F

from fathombatch.errors import UsageError


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to apply (all off by default).

    Attributes:
        hflip: flip left-right with probability 0.5.
        color: strength of brightness/contrast/saturation jitter (0 = off; 0.3 = +/-30 %).
        turbidity: largest blend fraction towards a random water colour (0 = off).
        crop_scale: smallest area fraction of a random resized crop (1 = off).
        cutout: side of each Cutout square in pixels (0 = off).
        cutout_holes: squares per image.
    """

    hflip: bool = False
    color: float = 0.0
    turbidity: float = 0.0
    crop_scale: float = 1.0
    cutout: int = 0
    cutout_holes: int = 1

    @property
    def enabled(self) -> bool:
        return self.hflip or self.color > 0 or self.turbidity > 0 or self.crop_scale < 1 or self.cutout > 0


#: Named augmentation recipes used by ``--augment`` and the presets.
RECIPES: dict[str, AugmentConfig] = {
    "none": AugmentConfig(),
    "flip": AugmentConfig(hflip=True),
    "cutout": AugmentConfig(cutout=16),
    "underwater": AugmentConfig(hflip=True, color=0.25, turbidity=0.3, crop_scale=0.6),
    "underwater-cutout": AugmentConfig(hflip=True, color=0.25, turbidity=0.3, crop_scale=0.6, cutout=16),
}


def recipe(name: str, cutout: int | None = None) -> AugmentConfig:
    """A named recipe, optionally with the Cutout size replaced (pixels; 0 turns it off)."""
    try:
        cfg = RECIPES[name]
    except KeyError:
        raise UsageError(f"unknown augmentation {name!r}; choose one of {', '.join(RECIPES)}") from None
    if cutout is not None:
        cfg = AugmentConfig(cfg.hflip, cfg.color, cfg.turbidity, cfg.crop_scale, cutout, cfg.cutout_holes)
    return cfg


def augment_batch(batch: np.ndarray, cfg: AugmentConfig, generator: torch.Generator) -> np.ndarray:
    """Augment a batch.

    Args:
        batch: (N, H, W, 3) uint8 RGB.
        cfg: what to apply.
        generator: source of randomness (seeded by the training loop, so runs are reproducible).

    Returns:
        (N, H, W, 3) uint8, a new array.
    """
    if not cfg.enabled:
        return batch
    n, h, w, _ = batch.shape
    images = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W) uint8
    out = torch.empty_like(images)

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=generator))

    for i in range(n):
        img = images[i]
        if cfg.crop_scale < 1:
            area = uniform(cfg.crop_scale, 1.0) * h * w
            ratio = float(np.exp(uniform(np.log(3 / 4), np.log(4 / 3))))
            ch = int(round(min(h, np.sqrt(area / ratio))))
            cw = int(round(min(w, np.sqrt(area * ratio))))
            top = int(torch.randint(0, h - ch + 1, (), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (), generator=generator))
            img = F.resized_crop(img, top, left, ch, cw, [h, w], antialias=True)
        if cfg.hflip and float(torch.rand((), generator=generator)) < 0.5:
            img = F.horizontal_flip(img)
        if cfg.color > 0:
            img = F.adjust_brightness(img, uniform(1 - cfg.color, 1 + cfg.color))
            img = F.adjust_contrast(img, uniform(1 - cfg.color, 1 + cfg.color))
            img = F.adjust_saturation(img, uniform(1 - cfg.color, 1 + cfg.color))
        if cfg.turbidity > 0:
            alpha = uniform(0.0, cfg.turbidity)
            water = torch.tensor([uniform(0, 40), uniform(60, 130), uniform(70, 140)]).view(3, 1, 1)
            img = (img.float() * (1 - alpha) + water * alpha).round().clamp(0, 255).to(torch.uint8)
        if cfg.cutout > 0:
            img = img.clone()
            fill = img.float().mean(dim=(1, 2)).round().to(torch.uint8).view(3, 1)
            for _ in range(cfg.cutout_holes):
                cy = int(torch.randint(0, h, (), generator=generator))
                cx = int(torch.randint(0, w, (), generator=generator))
                y0, y1 = max(0, cy - cfg.cutout // 2), min(h, cy + (cfg.cutout + 1) // 2)
                x0, x1 = max(0, cx - cfg.cutout // 2), min(w, cx + (cfg.cutout + 1) // 2)
                img[:, y0:y1, x0:x1] = fill.view(3, 1, 1)
        out[i] = img
    return out.permute(0, 2, 3, 1).contiguous().numpy()
