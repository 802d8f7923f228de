"""A label file restricted to a chosen set of images.

The set comes from an id list (``--ids``: one image_id, file name or relative path per line; ``#`` comments and
blank lines ignored) or from the output of ``curate select`` (``--from-select``: ``.parquet`` or ``.csv`` with an
``image_id`` or ``path`` column, or a ``.txt`` of paths). Entries are matched to images by image_id (the file
stem); a label id that carries an image extension (``abc.jpg``, as some tools write Kaggle CSVs) is matched by the
id without it too, when no label id is that already, so the listing ``train`` suggests (``find DIR -type f``) selects
those rows as it selects ``abc``. The output format follows ``--out``: ``.json`` gives COCO (images, their
annotations with boxes when the input is COCO, all categories), ``.csv`` the Kaggle CSV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from fathombatch.curate.convert import labels_to_coco
from fathombatch.curate.labelfiles import (
    coco_subset,
    label_format,
    stem_of_entry,
    write_coco,
)
from fathombatch.decode.discover import suffix_stems
from fathombatch.errors import LabelFileError, UsageError, param
from fathombatch.labels import Labels, load_coco_json, read_labels, write_kaggle_csv
from fathombatch.pathargs import PathFields


@dataclass(frozen=True)
class SubsetConfig(PathFields):
    """Attributes:
    labels: the full label file (COCO json or Kaggle CSV).
    out: ``.json`` or ``.csv``.
    ids: a text file of ids (see the module docstring).
    from_select: a ``curate select`` output instead.
    images: for a Kaggle CSV written as COCO: the image folder, where each id's real file name is looked up.
    ext: for a Kaggle CSV written as COCO: the extension of ids not found under ``images``.
    """

    labels: Path
    out: Path
    ids: Path | None = None
    from_select: Path | None = None
    images: Path | None = None
    ext: str = "png"


@dataclass(frozen=True)
class SubsetResult:
    requested: int
    images: int
    annotations: int
    out: Path
    not_found: tuple[str, ...] = field(default_factory=tuple)


def read_id_list(path: Path) -> list[str]:
    """Image ids named by a file: text lines, or the ``image_id``/``path`` column of a CSV or Parquet file."""
    if not path.is_file():
        raise UsageError(f"id list {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".csv"):
        lazy = pl.scan_parquet(path) if suffix == ".parquet" else pl.scan_csv(path, infer_schema=False)
        try:
            names = lazy.collect_schema().names()
        except Exception as exc:  # noqa: BLE001 - polars raises several types for unreadable files
            raise UsageError(f"{path} is not a readable {suffix[1:]} file ({str(exc).splitlines()[0]})") from None
        column = "image_id" if "image_id" in names else "path" if "path" in names else None
        if column is None:
            raise LabelFileError(f"{path}: needs an 'image_id' or 'path' column (as `curate select` writes)")
        values = lazy.select(pl.col(column).cast(pl.String)).drop_nulls().collect().to_series().to_list()
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise LabelFileError(f"{path}: not UTF-8 text; expected one id or path per line") from None
        values = [line.strip() for line in text.splitlines()]
        values = [v for v in values if v and not v.startswith("#")]
    return list(dict.fromkeys(stem_of_entry(v) for v in values))


def make_subset(cfg: SubsetConfig) -> SubsetResult:
    """Write the labels of the chosen images to ``cfg.out``; ids not in the labels are reported, not fatal."""
    id_file = cfg.ids or cfg.from_select
    if id_file is None or (cfg.ids is not None and cfg.from_select is not None):
        raise UsageError(f"give exactly one of {param('ids')} FILE or {param('from_select')} FILE")
    src, dst = label_format(cfg.labels), label_format(cfg.out, role=param("out"))
    wanted = read_id_list(id_file)
    if not wanted:
        raise UsageError(f"{cfg.ids or cfg.from_select} names no images")
    labels = read_labels(cfg.labels)
    known = {i: i for i in labels.image_ids} | {s: i for i, s in suffix_stems(labels.image_ids).items()}
    keep = [known[i] for i in wanted if i in known]
    not_found = tuple(i for i in wanted if i not in known)
    if not keep:
        raise UsageError(f"none of the {len(wanted)} ids is in {cfg.labels} (e.g. {wanted[0]!r}); "
                         "ids are matched by file stem")
    chosen = labels.frame.filter(pl.col("image_id").is_in(keep))
    if dst == "kaggle":
        write_kaggle_csv(cfg.out, zip(chosen["image_id"].to_list(), chosen["categories"].to_list(), strict=True))
        return SubsetResult(len(wanted), chosen.height, int(chosen["categories"].list.len().sum()), cfg.out, not_found)
    if src == "coco":
        data = coco_subset(load_coco_json(cfg.labels), set(keep), cfg.labels)
    else:
        sub = Labels(frame=chosen, taxonomy=labels.taxonomy, source=labels.source)
        data, _ = labels_to_coco(sub, cfg.images, cfg.ext, f"subset of {cfg.labels.name} by fathombatch (no boxes)")
    write_coco(cfg.out, data)
    return SubsetResult(len(wanted), len(data["images"]), len(data["annotations"]), cfg.out, not_found)
