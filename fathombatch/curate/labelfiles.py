"""Reading and writing the two label formats for curation commands.

:func:`fathombatch.labels.read_labels` gives the image-level view (a :class:`~fathombatch.labels.Labels`
frame); commands that must write COCO back out (split, subset) also need the raw records, which
:func:`fathombatch.labels.load_coco_json` returns. Every writer is atomic.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from fathombatch.decode.discover import IMAGE_SUFFIXES
from fathombatch.errors import UsageError
from fathombatch.fsutil import atomic_path
from fathombatch.labels import safe_relative_path
from fathombatch.taxonomy import Taxonomy

LabelFormat = Literal["coco", "kaggle"]

_FORMATS: dict[str, LabelFormat] = {".json": "coco", ".csv": "kaggle"}


def label_format(path: Path, *, role: str = "label file") -> LabelFormat:
    """``"coco"`` for ``.json``, ``"kaggle"`` for ``.csv``; anything else is a usage error."""
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"{role} {path}: expected a .json (COCO) or .csv (Kaggle) name, got {path.suffix or 'none'!r}")
    return fmt


def suffix_of(fmt: LabelFormat) -> str:
    return ".json" if fmt == "coco" else ".csv"


def image_stem(file_name: Any, where: str) -> str:
    """The image_id fathombatch uses for a COCO image: the file name's stem (unsafe names are refused)."""
    return safe_relative_path(file_name, where).stem


def coco_subset(data: dict[str, Any], keep: Collection[str], source: Path) -> dict[str, Any]:
    """The COCO records of the images whose stem is in ``keep``, their annotations, and all categories.

    ``info`` and ``licenses`` are carried over; category ids keep their meaning because the list is unchanged.
    """
    images = [
        img
        for i, img in enumerate(data["images"])
        if isinstance(img, dict) and image_stem(img.get("file_name"), f"{source}: images[{i}]") in keep
    ]
    ids = {img["id"] for img in images}
    annotations = [ann for ann in data["annotations"] if isinstance(ann, dict) and ann.get("image_id") in ids]
    out = {key: data[key] for key in ("info", "licenses") if key in data}
    out.update(images=images, annotations=annotations, categories=data.get("categories", []))
    return out


def coco_from_labels(
    ids: Sequence[str],
    categories: Sequence[Sequence[int]],
    taxonomy: Taxonomy,
    *,
    file_names: Sequence[str],
    sizes: Sequence[tuple[int, int] | None] | None = None,
    description: str,
) -> dict[str, Any]:
    """Image-level labels as COCO json: one annotation per (image, category), without boxes.

    Args:
        ids: image ids (file stems), length N.
        categories: per image, category ids.
        file_names: per image, the file name relative to the image root (must be safe).
        sizes: per image, (width, height) in pixels, or None where unknown (then the fields are left out).
        description: goes into ``info.description``.
    """
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i, (image_id, name, cats) in enumerate(zip(ids, file_names, categories, strict=True), start=1):
        safe_relative_path(name, f"image {image_id!r}")
        record: dict[str, Any] = {"id": i, "file_name": name}
        size = sizes[i - 1] if sizes is not None else None
        if size is not None:
            record["width"], record["height"] = size
        images.append(record)
        for cid in cats:
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(cid), "iscrowd": 0})
    return {
        "info": {"description": description},
        "images": images,
        "annotations": annotations,
        "categories": taxonomy.to_records(),
    }


def write_coco(dest: Path, data: dict[str, Any]) -> Path:
    """Write COCO json atomically (compact: a million-image file stays as small as json allows)."""
    with atomic_path(dest) as tmp, tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, separators=(",", ":"))
    return dest


def stem_of_entry(entry: str) -> str:
    """An id-list entry (``image_id``, a file name or a relative path) reduced to the image_id it names.

    Only entries with a folder or an image extension (:data:`~fathombatch.decode.discover.IMAGE_SUFFIXES`, the one
    list ``score`` discovers) are shortened, so ids that contain dots stay whole.
    """
    posix = PurePosixPath(entry.replace("\\", "/"))
    return posix.stem if "/" in entry.replace("\\", "/") or posix.suffix.lower() in IMAGE_SUFFIXES else entry
