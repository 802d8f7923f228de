"""Validate a label file and collect *every* problem, instead of stopping at the first as the readers do.

COCO json is checked record by record (a tolerant pass of its own), then indexed by pycocotools; a Kaggle CSV is
checked line by line by the readers' own parser in its collecting mode (:func:`fathombatch.labels.parse_kaggle_csv`),
so every message is the one a reader would raise. Problem kinds (the ``kind`` column of the report):

=====================  =================================================================================
``structure``          the file is not a COCO object with ``images``/``annotations`` lists, or a CSV header
                       without ``id`` and ``categories``
``bad-record``         a record that is not an object, lacks a required field, or a CSV line that does not parse
``duplicate-id``       an image id (or CSV id), annotation id or category id used twice
``duplicate-stem``     two COCO images whose file names share a stem (fathombatch's image_id)
``unsafe-path``        a ``file_name`` that is absolute or climbs out of the image folder with ``..``
``missing-file``       no file for the image under ``--images``
``size-mismatch``      the declared width/height differ from the file's header
``unknown-category``   a category id not in the file's ``categories`` or not in the taxonomy
``orphan-annotation``  an annotation whose ``image_id`` is not an image of the file
``bad-box``            a ``bbox`` that is not 4 finite numbers, has no area, or leaves the image
``no-annotations``     an image without any annotation (CSV: an empty category list)
``pycocotools``        pycocotools could not index the file
=====================  =================================================================================
"""

from __future__ import annotations

import contextlib
import io
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl

from fathombatch.csvsafe import safe_frame
from fathombatch.curate.labelfiles import label_format
from fathombatch.decode.base import header_size
from fathombatch.decode.discover import discover
from fathombatch.errors import LabelFileError, UsageError, param
from fathombatch.fsutil import atomic_path, write_json_atomic
from fathombatch.labels import load_coco_json, parse_kaggle_csv, safe_relative_path
from fathombatch.pathargs import PathFields
from fathombatch.taxonomy import Taxonomy, fathomnet2023

PROBLEM_SCHEMA = {"kind": pl.String, "where": pl.String, "message": pl.String}


@dataclass(frozen=True)
class ValidateConfig(PathFields):
    """Attributes: labels (COCO json or Kaggle CSV); images (folder to check files against, optional);
    out (``.csv`` or ``.json`` problem report, optional)."""

    labels: Path
    images: Path | None = None
    out: Path | None = None


@dataclass(frozen=True)
class ValidationReport:
    """Attributes:
    problems: one row per problem: ``kind, where, message``, in file order.
    images, annotations: records seen (annotations: label entries for a CSV).
    pycocotools_ok: whether pycocotools indexed the file (None for a CSV).
    """

    source: Path
    problems: pl.DataFrame
    images: int
    annotations: int
    pycocotools_ok: bool | None

    @property
    def ok(self) -> bool:
        return self.problems.height == 0

    def counts(self) -> dict[str, int]:
        """Problems per kind, most common first."""
        return dict(Counter(self.problems["kind"].to_list()).most_common())


def _number(value: Any) -> int | None:
    """An integral id from 3, 3.0 or "3.0"; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    return value if isinstance(value, int) else None


def _hashable(value: Any) -> bool:
    return value is not None and not isinstance(value, (dict, list))


def _files_by_stem(images: Path | None) -> tuple[set[str], dict[str, str]]:
    if images is None:
        return set(), {}
    rels = discover(images)
    return set(rels), {PurePosixPath(r).stem: r for r in rels}


def _check_images(data: dict, images: Path | None) -> Iterator[tuple[str, str, str]]:
    files, _ = _files_by_stem(images)
    seen_ids: dict[Any, int] = {}
    stems: dict[str, int] = {}
    for i, img in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(img, dict):
            yield "bad-record", where, f"expected an object, got {type(img).__name__}"
            continue
        missing = [k for k in ("id", "file_name") if k not in img]
        if missing:
            yield "bad-record", where, f"missing field(s) {', '.join(missing)}"
        if "id" in img:
            if not _hashable(img["id"]):
                yield "bad-record", where, f"id {img['id']!r} is not a number or string"
            elif img["id"] in seen_ids:
                yield "duplicate-id", where, f"image id {img['id']!r} already used by images[{seen_ids[img['id']]}]"
            else:
                seen_ids[img["id"]] = i
        if "file_name" not in img:
            continue
        try:
            rel = safe_relative_path(img["file_name"], where)
        except LabelFileError as exc:
            yield "unsafe-path", where, str(exc).split(": ", 1)[-1]
            continue
        if rel.stem in stems:
            yield "duplicate-stem", where, f"file name stem {rel.stem!r} is also used by images[{stems[rel.stem]}]"
        stems.setdefault(rel.stem, i)
        if images is not None:
            if str(rel) not in files:
                yield "missing-file", where, f"{rel} is not under {images}"
            elif isinstance(img.get("width"), int) and isinstance(img.get("height"), int):
                size = header_size(images / rel)
                if size is not None and size != (img["width"], img["height"]):
                    yield ("size-mismatch", where,
                           f"declared {img['width']}x{img['height']} but {rel} is {size[0]}x{size[1]}")


def _check_box(bbox: Any, image: dict | None) -> str | None:
    if not isinstance(bbox, list) or len(bbox) != 4:
        return f"bbox {bbox!r} is not a list of 4 numbers [x, y, width, height]"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
        return f"bbox {bbox!r} has a value that is not a finite number"
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return f"bbox {bbox!r} has no area (width and height must be positive)"
    if x < 0 or y < 0:
        return f"bbox {bbox!r} starts outside the image (negative x or y)"
    if image is not None:
        iw, ih = image.get("width"), image.get("height")
        if isinstance(iw, (int, float)) and isinstance(ih, (int, float)) and (x + w > iw + 1 or y + h > ih + 1):
            return f"bbox {bbox!r} extends past the {iw}x{ih} image"
    return None


def _check_categories(data: dict, tax: Taxonomy) -> tuple[list[tuple[str, str, str]], set[int]]:
    """Problems of the ``categories`` list, and the ids an annotation may use (declared and in the taxonomy)."""
    cats = data.get("categories")
    if cats is None:
        return [], set(tax.ids)
    if not isinstance(cats, list):
        return [("structure", "categories", f"expected a list, got {type(cats).__name__}")], set(tax.ids)
    problems = []
    declared: dict[int, int] = {}
    for i, cat in enumerate(cats):
        where = f"categories[{i}]"
        cid = _number(cat.get("id")) if isinstance(cat, dict) else None
        if cid is None:
            problems.append(("bad-record", where, f"category {cat!r} has no integral id"))
            continue
        if cid in declared:
            problems.append(("duplicate-id", where, f"category id {cid} already used by categories[{declared[cid]}]"))
        declared.setdefault(cid, i)
        if cid not in tax.column_of:
            problems.append(("unknown-category", where,
                             f"category id {cid} ({cat.get('name')!r}) is not in taxonomy {tax.name!r}"))
    return problems, set(declared) & set(tax.column_of)


def _check_coco(data: dict, tax: Taxonomy, images: Path | None) -> tuple[list[tuple[str, str, str]], bool]:
    problems = list(_check_images(data, images))
    cat_problems, known_cats = _check_categories(data, tax)
    problems += cat_problems
    by_id = {img["id"]: img for img in data["images"] if isinstance(img, dict) and _hashable(img.get("id"))}
    annotated: set[Any] = set()
    ann_ids: dict[Any, int] = {}
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            problems.append(("bad-record", where, f"expected an object, got {type(ann).__name__}"))
            continue
        missing = [k for k in ("id", "image_id", "category_id") if k not in ann]
        if missing:
            problems.append(("bad-record", where, f"missing field(s) {', '.join(missing)}"))
        if _hashable(ann.get("id")):
            if ann["id"] in ann_ids:
                first = ann_ids[ann["id"]]
                message = f"annotation id {ann['id']!r} already used by annotations[{first}]"
                problems.append(("duplicate-id", where, message))
            ann_ids.setdefault(ann["id"], i)
        image = None
        if "image_id" in ann:
            if _hashable(ann["image_id"]) and ann["image_id"] in by_id:
                image = by_id[ann["image_id"]]
                annotated.add(ann["image_id"])
            else:
                problems.append(("orphan-annotation", where, f"image_id {ann['image_id']!r} is not in 'images'"))
        if "category_id" in ann:
            cid = _number(ann["category_id"])
            if cid is None or cid not in known_cats:
                message = f"category_id {ann['category_id']!r} is not a category of the file and taxonomy {tax.name!r}"
                problems.append(("unknown-category", where, message))
        if "bbox" in ann:
            box_problem = _check_box(ann["bbox"], image)
            if box_problem:
                problems.append(("bad-box", where, box_problem))
    for i, img in enumerate(data["images"]):
        if isinstance(img, dict) and _hashable(img.get("id")) and img["id"] not in annotated:
            problems.append(("no-annotations", f"images[{i}]", f"image {img.get('file_name')!r} has no annotations"))
    return problems, _pycocotools_indexes(data, problems)


def _pycocotools_indexes(data: dict, problems: list[tuple[str, str, str]]) -> bool:
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress on stdout
            coco.createIndex()
    except Exception as exc:  # noqa: BLE001 - pycocotools fails with bare KeyError/TypeError on broken records
        problems.append(("pycocotools", "file", f"pycocotools could not index it: {type(exc).__name__}: {exc}"))
        return False
    return True


def _check_csv(path: Path, tax: Taxonomy, images: Path | None) -> tuple[list[tuple[str, str, str]], int, int]:
    """Every problem of a Kaggle CSV: those the reader would refuse (:func:`~fathombatch.labels.parse_kaggle_csv`
    in collecting mode, in the reader's words), plus lines without categories and ids without an image file."""
    _, by_stem = _files_by_stem(images)
    parsed = parse_kaggle_csv(path, tax, mode="collect")
    problems = [(p.kind, p.where, p.message) for p in parsed.problems]
    for row in parsed.rows:
        where = f"line {row.line}"
        if row.tokens == 0:
            problems.append(("no-annotations", where, f"image {row.image_id!r} has no categories"))
        if images is not None and row.image_id and row.image_id not in by_stem:
            problems.append(("missing-file", where, f"no image named {row.image_id}.* under {images}"))
    # File order: a line's problems together; problems of the whole file (it stopped being readable) last.
    problems.sort(key=lambda p: int(p[1].removeprefix("line ")) if p[1].startswith("line ") else math.inf)
    return problems, len(parsed.rows), sum(row.tokens or 0 for row in parsed.rows)


def validate(cfg: ValidateConfig, taxonomy: Taxonomy | None = None) -> ValidationReport:
    """Check the file and write the report (``cfg.out``) when asked; never raises for problems in the data.

    Raises:
        UsageError: the file or folder does not exist, or a name has the wrong extension.
        LabelFileError: the file is not json at all (nothing else can be checked).
    """
    tax = taxonomy or fathomnet2023()
    if not cfg.labels.is_file():
        raise UsageError(f"label file {cfg.labels} does not exist")
    if cfg.images is not None and not cfg.images.is_dir():
        raise UsageError(f"image folder {cfg.images} does not exist")
    if cfg.out is not None and cfg.out.suffix.lower() not in (".csv", ".json"):
        raise UsageError(f"{param('out')} {cfg.out}: expected a .csv or .json report name")
    if label_format(cfg.labels) == "kaggle":
        problems, n_images, n_ann = _check_csv(cfg.labels, tax, cfg.images)
        indexed = None
    else:
        try:
            data = load_coco_json(cfg.labels)
        except LabelFileError as exc:
            if "invalid json" in str(exc) or "not UTF-8" in str(exc):
                raise
            problems, n_images, n_ann, indexed = [("structure", "file", str(exc).split(": ", 1)[-1])], 0, 0, False
        else:
            problems, indexed = _check_coco(data, tax, cfg.images)
            n_images, n_ann = len(data["images"]), len(data["annotations"])
    frame = pl.DataFrame(problems, schema=PROBLEM_SCHEMA, orient="row")
    report = ValidationReport(source=cfg.labels, problems=frame, images=n_images, annotations=n_ann,
                              pycocotools_ok=indexed)
    if cfg.out is not None:
        if cfg.out.suffix.lower() == ".csv":
            with atomic_path(cfg.out) as tmp:
                safe_frame(frame).write_csv(tmp)
        else:
            write_json_atomic(cfg.out, {"file": str(cfg.labels), "images": n_images, "annotations": n_ann,
                                        "pycocotools_ok": indexed, "counts": report.counts(),
                                        "problems": frame.to_dicts()})
    return report
