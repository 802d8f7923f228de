"""Convert between COCO detection json and the Kaggle multi-label CSV; the output format follows ``--out``.

* COCO -> CSV: each image's label set is the set of its annotations' categories (boxes are dropped); images without
  annotations get ``[]``.
* CSV -> COCO: one annotation per (image, category), without boxes (the CSV has none). ``file_name`` is the file
  found under ``--images`` with the id as its stem (its width and height are read from the header), else
  ``<id>.<ext>``. The categories are the whole taxonomy, so ids keep their meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from fathombatch.curate.labelfiles import coco_from_labels, label_format, write_coco
from fathombatch.decode.base import header_size
from fathombatch.decode.discover import discover
from fathombatch.errors import UsageError, param
from fathombatch.labels import Labels, read_labels, write_kaggle_csv
from fathombatch.pathargs import PathFields


@dataclass(frozen=True)
class ConvertConfig(PathFields):
    """Attributes:
    labels: the input (``.json`` COCO or ``.csv`` Kaggle).
    out: the output; its extension picks the format and must differ from the input's.
    images: for CSV -> COCO, the image folder to take file names and sizes from.
    ext: for CSV -> COCO without ``images`` (or ids not found there), the file extension to assume.
    """

    labels: Path
    out: Path
    images: Path | None = None
    ext: str = "png"


@dataclass(frozen=True)
class ConvertResult:
    images: int
    annotations: int
    out: Path
    warnings: tuple[str, ...] = field(default_factory=tuple)


def file_names_for(
    ids: Sequence[str], images: Path | None, ext: str
) -> tuple[list[str], list[tuple[int, int] | None] | None, list[str]]:
    """Per id a relative file name (found under ``images``, else ``<id>.<ext>``), sizes when found, warnings."""
    ext = ext.lstrip(".")
    if images is None:
        return [f"{i}.{ext}" for i in ids], None, []
    found: dict[str, str] = {}
    for rel in discover(images):
        found.setdefault(PurePosixPath(rel).stem, rel)
    names = [found.get(i, f"{i}.{ext}") for i in ids]
    sizes = [header_size(images / found[i]) if i in found else None for i in ids]
    missing = [i for i in ids if i not in found]
    warnings = []
    if missing:
        warnings.append(f"{len(missing)} of {len(ids)} ids have no image under {images} (e.g. {missing[0]!r}); "
                        f"named <id>.{ext}")
    return names, sizes, warnings


def labels_to_coco(labels: Labels, images: Path | None, ext: str, description: str) -> tuple[dict, list[str]]:
    """COCO json (as a dict) for a label set, plus warnings about ids without an image file."""
    ids = labels.image_ids
    cats = labels.frame["categories"].to_list()
    given = labels.frame["file_name"].to_list()
    if all(name is not None for name in given) and images is None:
        names, sizes, warnings = list(given), None, list[str]()
    else:
        names, sizes, warnings = file_names_for(ids, images, ext)
    data = coco_from_labels(ids, cats, labels.taxonomy, file_names=names, sizes=sizes, description=description)
    return data, warnings


def convert(cfg: ConvertConfig) -> ConvertResult:
    """Convert ``cfg.labels`` to the format of ``cfg.out`` and write it atomically."""
    src, dst = label_format(cfg.labels), label_format(cfg.out, role=param("out"))
    if src == dst:
        raise UsageError(f"{cfg.labels} and {cfg.out} are both {'COCO json' if src == 'coco' else 'Kaggle CSV'}; "
                         "convert writes the other format (.json <-> .csv)")
    labels = read_labels(cfg.labels)
    if dst == "kaggle":
        write_kaggle_csv(cfg.out, zip(labels.image_ids, labels.frame["categories"].to_list(), strict=True))
        n_ann = int(labels.frame["categories"].list.len().sum())
        return ConvertResult(images=len(labels), annotations=n_ann, out=cfg.out)
    data, warnings = labels_to_coco(labels, cfg.images, cfg.ext,
                                    f"image-level labels converted from {cfg.labels.name} by fathombatch (no boxes)")
    write_coco(cfg.out, data)
    return ConvertResult(images=len(data["images"]), annotations=len(data["annotations"]), out=cfg.out,
                         warnings=tuple(warnings))
