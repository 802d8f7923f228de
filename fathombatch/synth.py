"""FathomNet-shaped synthetic dives, for tests, demos and benchmarks where no real images may be shipped.

What is real about them:

* label sets: each image copies the label set *and the boxes* of a randomly drawn image of FathomNet 2023's
  ``train.csv`` / ``train_boxes.csv`` (shipped unmodified as package data), so class imbalance, co-occurrence,
  cardinality, boxes per image and box sizes in pixels are the real ones;
* image sizes: the real mix (1920x1080 frames and about 714x486 / 720x368 stills) unless a size is forced;
* out-of-sample images ("deep", a ``--deep-fraction`` of the dive) swap categories for ones that never occur in
  ``train.csv`` (157 of the 290 occur only below 800 m in the real data), preferring the same supercategory.

What is made up: the pixels. Every category has a fixed appearance drawn from its id alone (a shape, a texture
and two colours), so the same category looks the same in every dive and a model trained on one dive scores
another. Objects sit on a murky blue-green background with a depth gradient, sensor noise and marine snow, and are
blended with it (turbidity). A CNN can learn the categories; a linear model on pixels mostly cannot.

Outputs of :func:`synthesize` (all deterministic for a seed): ``images/<uuid>.<ext>``, ``train.csv`` (Kaggle
multi-label format with float ids, like the real file), ``annotations.json`` (COCO with boxes and 290 categories)
and ``osd.csv`` (``id,osd``: 1 for out-of-sample images).
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from fathombatch.errors import UsageError, param
from fathombatch.fsutil import atomic_path, write_json_atomic, write_text_atomic
from fathombatch.labels import write_kaggle_csv
from fathombatch.pathargs import PathFields
from fathombatch.taxonomy import Taxonomy, fathomnet2023

#: The real size mix: (width, height, probability). 1920x1080 ROV frames and the smaller stills.
REAL_SIZES: tuple[tuple[int, int, float], ...] = ((1920, 1080, 0.5), (714, 486, 0.3), (720, 368, 0.2))

_SHAPES = ("ellipse", "rectangle", "triangle", "diamond", "star", "ring", "cross", "hexagon")
_TEXTURES = ("solid", "stripes", "cross-stripes", "dots", "checker", "rings")

ImageFormat = Literal["jpg", "png"]


@dataclass(frozen=True)
class SynthConfig(PathFields):
    """Parameters of one synthetic dive.

    Attributes:
        out: output folder (created; must be empty or absent).
        images: number of images.
        seed: everything is a deterministic function of the seed.
        format: ``"jpg"`` or ``"png"``.
        deep_fraction: fraction of out-of-sample images in [0, 1].
        size: force every image to (width, height) pixels; ``None`` draws from :data:`REAL_SIZES`.
        box_scale: multiply real box sizes by this (1.0 = the real pixel sizes).
        jpeg_quality: JPEG quality 1..95.
        workers: threads used to render and encode (default: all cores).
    """

    out: Path
    images: int
    seed: int = 0
    format: ImageFormat = "jpg"
    deep_fraction: float = 0.0
    size: tuple[int, int] | None = None
    box_scale: float = 1.0
    jpeg_quality: int = 90
    workers: int | None = None


@dataclass(frozen=True)
class SynthSummary:
    out: Path
    images: int
    deep: int
    annotations: int


@dataclass(frozen=True)
class _RealLabels:
    label_sets: tuple[tuple[int, ...], ...]  # per real image, sorted category ids
    boxes: tuple[tuple[tuple[int, float, float], ...], ...]  # per real image, (category, w, h)
    unseen: tuple[int, ...]  # categories never in train.csv


@lru_cache(maxsize=1)
def _real_labels() -> _RealLabels:
    import polars as pl

    from fathombatch.labels import read_kaggle_csv

    data = resources.files("fathombatch") / "data" / "fathomnet2023"
    with resources.as_file(data / "train.csv") as train_path:
        labels = read_kaggle_csv(train_path, fathomnet2023())
    sets = tuple(tuple(c) for c in labels.frame["categories"].to_list())
    with resources.as_file(data / "train_boxes.csv") as boxes_path:
        boxes = pl.read_csv(boxes_path, columns=["image_id", "category_id", "bbox"])
    wh = boxes["bbox"].str.strip_chars("[]").str.split(",").list.eval(pl.element().str.strip_chars().cast(pl.Float64))
    boxes = boxes.with_columns(w=wh.list.get(2), h=wh.list.get(3)).sort("image_id")
    per_image: list[list[tuple[int, float, float]]] = [[] for _ in sets]
    for image_id, cat, w, h in boxes.select("image_id", "category_id", "w", "h").iter_rows():
        per_image[int(image_id) - 1].append((int(cat), float(w), float(h)))
    seen = {c for s in sets for c in s}
    unseen = tuple(c for c in fathomnet2023().ids if c not in seen)
    return _RealLabels(label_sets=sets, boxes=tuple(tuple(b) for b in per_image), unseen=unseen)


@dataclass(frozen=True)
class Appearance:
    """How one category is drawn: a shape, a texture, two RGB colours and the texture period (fraction of size)."""

    shape: str
    texture: str
    color: tuple[int, int, int]
    color2: tuple[int, int, int]
    period: float


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


@cache
def appearance(category_id: int) -> Appearance:
    """The fixed appearance of a category; depends on the id only, never on a dive's seed."""
    rng = np.random.default_rng([0xFA7, category_id])
    hue = rng.random()
    return Appearance(
        shape=_SHAPES[category_id % len(_SHAPES)],
        texture=_TEXTURES[(category_id // len(_SHAPES)) % len(_TEXTURES)],
        color=_hsv(hue, 0.55 + 0.45 * rng.random(), 0.65 + 0.35 * rng.random()),
        color2=_hsv(hue + 0.3 + 0.4 * rng.random(), 0.3 + 0.7 * rng.random(), 0.3 + 0.7 * rng.random()),
        period=0.12 + 0.2 * rng.random(),
    )


def _shape_mask(shape: str, w: int, h: int) -> np.ndarray:
    """(h, w) float32 mask in [0, 1] of the category's silhouette."""
    img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(img)
    x1, y1 = w - 1, h - 1
    cx, cy = x1 / 2, y1 / 2
    if shape == "ellipse":
        d.ellipse((0, 0, x1, y1), fill=255)
    elif shape == "rectangle":
        d.rectangle((w * 0.1, h * 0.1, x1 - w * 0.1, y1 - h * 0.1), fill=255)
    elif shape == "triangle":
        d.polygon([(cx, 0), (x1, y1), (0, y1)], fill=255)
    elif shape == "diamond":
        d.polygon([(cx, 0), (x1, cy), (cx, y1), (0, cy)], fill=255)
    elif shape == "star":
        angles = np.linspace(-np.pi / 2, 1.5 * np.pi, 11)[:-1]
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        points = [(cx + cx * r * np.cos(a), cy + cy * r * np.sin(a)) for a, r in zip(angles, radii, strict=True)]
        d.polygon(points, fill=255)
    elif shape == "ring":
        d.ellipse((0, 0, x1, y1), fill=255)
        d.ellipse((w * 0.3, h * 0.3, x1 - w * 0.3, y1 - h * 0.3), fill=0)
    elif shape == "cross":
        d.rectangle((w * 0.35, 0, x1 - w * 0.35, y1), fill=255)
        d.rectangle((0, h * 0.35, x1, y1 - h * 0.35), fill=255)
    else:  # hexagon
        angles = np.linspace(0, 2 * np.pi, 7)[:-1]
        d.polygon([(cx + cx * np.cos(a), cy + cy * np.sin(a)) for a in angles], fill=255)
    return np.asarray(img, dtype=np.float32) / 255.0


def _texture(texture: str, w: int, h: int, period: float) -> np.ndarray:
    """(h, w) bool pattern: True where the second colour shows."""
    p = max(2.0, period * min(w, h))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if texture == "solid":
        return np.zeros((h, w), dtype=bool)
    if texture == "stripes":
        return ((xx + yy) / p) % 2 < 1
    if texture == "cross-stripes":
        return ((xx / p) % 2 < 0.6) | ((yy / p) % 2 < 0.6)
    if texture == "dots":
        return ((xx % p - p / 2) ** 2 + (yy % p - p / 2) ** 2) < (p / 3) ** 2
    if texture == "checker":
        return ((xx // p + yy // p) % 2) == 0
    return (np.hypot(xx - w / 2, yy - h / 2) / p) % 2 < 1  # rings


def render_object(category_id: int, w: int, h: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one object of a category.

    Returns:
        rgb: (h, w, 3) float32 in [0, 255]; alpha: (h, w) float32 in [0, 1].
    """
    app = appearance(category_id)
    mask = _shape_mask(app.shape, w, h)
    pattern = _texture(app.texture, w, h, app.period)
    colour2, colour = np.asarray(app.color2, dtype=np.float32), np.asarray(app.color, dtype=np.float32)
    rgb = np.where(pattern[..., None], colour2, colour).astype(np.float32)
    rgb *= np.float32(0.85 + 0.3 * rng.random())  # lighting varies between instances
    if rng.random() < 0.5:
        rgb, mask = rgb[:, ::-1], mask[:, ::-1]
    return rgb, mask * np.float32(0.75 + 0.2 * rng.random())


def render_background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Murky blue-green water with a depth gradient, sensor noise and marine snow.

    Returns:
        (height, width, 3) float32 in about [0, 255] (not yet clipped).
    """
    base = np.array([rng.uniform(5, 30), rng.uniform(50, 110), rng.uniform(60, 125)], dtype=np.float32)
    depth = np.linspace(1.3, 0.6, height, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(base * depth, (height, width, 3)).copy()
    img += rng.normal(0.0, 6.0, size=(height, width, 1)).astype(np.float32)
    n_snow = int(rng.integers(20, 200) * width * height / (1920 * 1080)) + 5
    ys, xs = rng.integers(0, height, n_snow), rng.integers(0, width, n_snow)
    img[ys, xs] += np.float32(rng.uniform(40, 90))
    return img


def render_scene(
    width: int, height: int, objects: list[tuple[int, int, int, int, int]], rng: np.random.Generator
) -> np.ndarray:
    """Render a murky underwater scene.

    Args:
        objects: (category_id, x, y, w, h) boxes in pixels, all inside the image.

    Returns:
        (height, width, 3) uint8 RGB.
    """
    img = render_background(width, height, rng)
    for cat, x, y, w, h in objects:
        rgb, alpha = render_object(cat, w, h, rng)
        region = img[y : y + h, x : x + w]
        region += alpha[..., None] * (rgb - region)
    return np.clip(img, 0, 255).astype(np.uint8)


def _deep_labels(
    label_set: tuple[int, ...], boxes: tuple[tuple[int, float, float], ...], rng: np.random.Generator
) -> tuple[list[int], list[tuple[int, float, float]]]:
    """Swap categories of a real label set for unseen ones (same supercategory where possible)."""
    real = _real_labels()
    tax = fathomnet2023()
    super_of = dict(zip(tax.ids, tax.supercategories, strict=True))
    unseen_by_super: dict[str, list[int]] = {}
    for c in real.unseen:
        unseen_by_super.setdefault(super_of[c], []).append(c)
    swap = rng.random(len(label_set)) < 0.6
    if not swap.any():
        swap[rng.integers(len(label_set))] = True
    mapping: dict[int, int] = {}
    for c, s in zip(label_set, swap, strict=True):
        if s:
            pool = unseen_by_super.get(super_of[c]) or list(real.unseen)
            mapping[c] = int(pool[rng.integers(len(pool))])
        else:
            mapping[c] = c
    return sorted(set(mapping.values())), [(mapping[c], w, h) for c, w, h in boxes]


@dataclass(frozen=True)
class ImagePlan:
    """What one image (or one synthetic video) shows: its label set and where each object sits."""

    image_id: str
    file_name: str
    width: int
    height: int
    deep: bool
    categories: list[int]
    boxes: list[tuple[int, int, int, int, int]]  # category, x, y, w, h


def plan_image(cfg: SynthConfig, index: int, image_id: str, deep: bool) -> ImagePlan:
    """Draw the plan of image ``index`` of the dive (deterministic for ``cfg.seed`` and ``index``)."""
    rng = np.random.default_rng([cfg.seed, index])
    real = _real_labels()
    r = int(rng.integers(len(real.label_sets)))
    cats, boxes = list(real.label_sets[r]), list(real.boxes[r])
    if deep:
        cats, boxes = _deep_labels(real.label_sets[r], real.boxes[r], rng)
    if cfg.size is not None:
        width, height = cfg.size
    else:
        probs = np.array([p for _, _, p in REAL_SIZES])
        width, height, _ = REAL_SIZES[int(rng.choice(len(REAL_SIZES), p=probs / probs.sum()))]
    placed = []
    for cat, bw, bh in boxes:
        bw, bh = bw * cfg.box_scale, bh * cfg.box_scale
        shrink = min(1.0, 0.6 * width / max(bw, 1.0), 0.6 * height / max(bh, 1.0))
        w, h = max(6, int(bw * shrink)), max(6, int(bh * shrink))
        w, h = min(w, width), min(h, height)
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        placed.append((cat, x, y, w, h))
    return ImagePlan(image_id, f"{image_id}.{cfg.format}", width, height, deep, cats, placed)


def _write_image(cfg: SynthConfig, index: int, plan: ImagePlan, images_dir: Path) -> None:
    rng = np.random.default_rng([cfg.seed, index, 1])
    pixels = render_scene(plan.width, plan.height, plan.boxes, rng)
    buf = io.BytesIO()
    if cfg.format == "jpg":
        Image.fromarray(pixels).save(buf, format="JPEG", quality=cfg.jpeg_quality)
    else:
        Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    with atomic_path(images_dir / plan.file_name) as tmp:
        tmp.write_bytes(buf.getvalue())


def _validate(cfg: SynthConfig) -> None:
    if cfg.images < 1:
        raise UsageError(f"{param('images')} must be at least 1, got {cfg.images}")
    if not 0.0 <= cfg.deep_fraction <= 1.0:
        raise UsageError(f"{param('deep_fraction')} must be between 0 and 1, got {cfg.deep_fraction}")
    if cfg.format not in ("jpg", "png"):
        raise UsageError(f"{param('format')} must be jpg or png, got {cfg.format!r}")
    if cfg.size is not None and (cfg.size[0] < 8 or cfg.size[1] < 8):
        raise UsageError(f"{param('size')} must be at least 8x8 pixels, got {cfg.size[0]}x{cfg.size[1]}")
    if not 0.05 <= cfg.box_scale <= 20:
        raise UsageError(f"{param('box_scale')} must be between 0.05 and 20, got {cfg.box_scale}")
    if cfg.out.exists() and (not cfg.out.is_dir() or any(cfg.out.iterdir())):
        raise UsageError(f"{cfg.out} already exists and is not an empty folder; choose a new output folder")


def synthesize(cfg: SynthConfig, progress: Callable[[int], None] | None = None) -> SynthSummary:
    """Write a synthetic dive to ``cfg.out``.

    Args:
        cfg: what to generate.
        progress: called with the number of images finished since the last call.
    """
    _validate(cfg)
    tax = fathomnet2023()
    rng = np.random.default_rng(cfg.seed)
    n_deep = int(round(cfg.images * cfg.deep_fraction))
    deep = np.zeros(cfg.images, dtype=bool)
    deep[rng.permutation(cfg.images)[:n_deep]] = True
    ids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(cfg.images)]
    plans = [plan_image(cfg, i, ids[i], bool(deep[i])) for i in range(cfg.images)]

    images_dir = cfg.out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    workers = cfg.workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_write_image, cfg, i, p, images_dir) for i, p in enumerate(plans)]
        for fut in futures:
            fut.result()
            if progress:
                progress(1)

    write_kaggle_csv(cfg.out / "train.csv", [(p.image_id, p.categories) for p in plans])
    write_text_atomic(cfg.out / "osd.csv", "id,osd\n" + "".join(f"{p.image_id},{int(p.deep)}\n" for p in plans))
    write_json_atomic(cfg.out / "annotations.json", _coco(plans, tax))
    return SynthSummary(out=cfg.out, images=cfg.images, deep=n_deep, annotations=sum(len(p.boxes) for p in plans))


def _coco(plans: list[ImagePlan], tax: Taxonomy) -> dict:
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i, p in enumerate(plans, start=1):
        images.append({"id": i, "file_name": p.file_name, "width": p.width, "height": p.height})
        for cat, x, y, w, h in p.boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": float(cat),  # floats, as in FathomNet's own files
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": 0,
                    "segmentation": [],
                }
            )
    return {
        "info": {
            "description": "fathombatch synthetic dive (label sets and boxes drawn from FathomNet 2023 train)",
            "contributor": "FathomNet / MBARI label statistics; synthetic pixels by fathombatch",
        },
        "licenses": [{"id": 1, "name": "CC BY-ND 4.0 (FathomNet 2023 annotations)"}],
        "images": images,
        "annotations": annotations,
        "categories": tax.to_records(),
    }
