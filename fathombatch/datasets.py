"""Read the two FathomNet 2023 label formats into one frame and a multi-hot matrix.

* Kaggle multi-label CSV: ``id,categories`` with values like ``"[1.0, 9.0, 11.0]"`` (ids may be floats).
* COCO detection json: image-level label sets are the categories of each image's annotations, read through
  pycocotools; ``image_id`` is the image's file name without directory or extension.

Both give a :class:`Labels`: a Polars frame with columns ``image_id`` (str), ``file_name`` (str or null; null for
the Kaggle CSV, which names no files) and ``categories`` (list[int], ascending, unique) plus the taxonomy.
Every problem raises :class:`~fathombatch.errors.LabelFileError` naming the file and the line (CSV) or the record
(json, e.g. ``annotations[12]``), because json has no useful line numbers once parsed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import polars as pl

from fathombatch.errors import LabelFileError, UsageError
from fathombatch.fsutil import write_text_atomic
from fathombatch.packaged import resolve_data_path
from fathombatch.taxonomy import Taxonomy, fathomnet2023

#: Label files larger than this are refused before parsing (a guard against accidental or hostile inputs).
MAX_LABEL_FILE_BYTES = 2 * 1024**3

_SPLIT_RE = re.compile(r"[,\s]+")


@dataclass(frozen=True)
class Labels:
    """Image-level labels.

    Attributes:
        frame: columns ``image_id`` (str, unique), ``file_name`` (str | null), ``categories`` (list[i64]).
        taxonomy: the class list the category ids belong to.
        source: the file the labels came from.
    """

    frame: pl.DataFrame
    taxonomy: Taxonomy
    source: Path

    def __len__(self) -> int:
        return self.frame.height

    @property
    def image_ids(self) -> list[str]:
        return self.frame["image_id"].to_list()

    def multi_hot(self) -> np.ndarray:
        """Return the (N, C) uint8 multi-hot matrix, rows in frame order, columns in taxonomy order."""
        return multi_hot(self.frame["categories"].to_list(), self.taxonomy)

    def class_counts(self) -> np.ndarray:
        """Return (C,) int64: number of images containing each class."""
        return self.multi_hot().sum(axis=0, dtype=np.int64)


def multi_hot(categories: Sequence[Sequence[int]], taxonomy: Taxonomy) -> np.ndarray:
    """Encode label lists as an (N, C) uint8 matrix; ids not in the taxonomy raise KeyError."""
    out = np.zeros((len(categories), len(taxonomy)), dtype=np.uint8)
    lookup = taxonomy.column_of
    for row, cats in enumerate(categories):
        for cid in cats:
            out[row, lookup[cid]] = 1
    return out


def read_labels(path: str | Path, taxonomy: Taxonomy | None = None) -> Labels:
    """Read a Kaggle CSV (``.csv``) or COCO json (``.json``) label file (or a shipped one: ``fathomnet2023:train.csv``).

    Raises:
        UsageError: the path does not exist or has another extension.
        LabelFileError: the file is malformed; the message names the file and line or record.
    """
    path = resolve_data_path(path)
    taxonomy = taxonomy or fathomnet2023()
    if not path.is_file():
        raise UsageError(f"label file {path} does not exist")
    size = path.stat().st_size
    if size > MAX_LABEL_FILE_BYTES:
        raise LabelFileError(
            f"{path}: {size} bytes is larger than the {MAX_LABEL_FILE_BYTES} byte limit for label files"
        )
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_kaggle_csv(path, taxonomy)
    if suffix == ".json":
        return read_coco(path, taxonomy)
    raise UsageError(f"label file {path}: expected a Kaggle .csv or a COCO .json, got {suffix or 'no extension'!r}")


def category_id(value: Any, taxonomy: Taxonomy, where: str) -> int:
    """Turn ``214``, ``214.0`` or ``"214.0"`` into 214 and check it is in the taxonomy."""
    if isinstance(value, bool):
        raise LabelFileError(f"{where}: category id {value!r} is not a number")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise LabelFileError(f"{where}: category id {value!r} is not a number") from None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise LabelFileError(f"{where}: category id {value!r} is not a whole number")
        value = int(value)
    if not isinstance(value, int):
        raise LabelFileError(f"{where}: category id {value!r} is not a number")
    if value not in taxonomy.column_of:
        raise LabelFileError(f"{where}: unknown category id {value} (not in taxonomy {taxonomy.name!r})")
    return value


def category_tokens(text: str, where: str) -> list[str]:
    """Split a category list, ``"[1.0, 9.0]"`` (Kaggle training file) or ``"1 9"`` (submission), into its tokens
    in file order: the one tokenizer of label files, the validator and submissions.

    Raises:
        LabelFileError: unbalanced brackets.
    """
    body = text.strip()
    if body.startswith("[") != body.endswith("]"):
        raise LabelFileError(f"{where}: unbalanced brackets in categories {body!r}")
    return [tok for tok in _SPLIT_RE.split(body.strip("[]").strip()) if tok]


def parse_category_list(text: str, taxonomy: Taxonomy, where: str) -> list[int]:
    """Parse ``"[1.0, 9.0]"`` (Kaggle training file) or ``"1 9"`` (submission style) into sorted unique ids."""
    return sorted({category_id(tok, taxonomy, where) for tok in category_tokens(text, where)})


def read_kaggle_csv(path: str | Path, taxonomy: Taxonomy | None = None) -> Labels:
    """Read the competition's multi-label CSV (``id,categories``); extra columns are ignored."""
    path = Path(path)
    taxonomy = taxonomy or fathomnet2023()
    ids: list[str] = []
    cats: list[list[int]] = []
    first_line: dict[str, int] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise LabelFileError(f"{path}: the file is empty; expected a header 'id,categories'")
            header = [h.strip() for h in header]
            if "id" not in header or "categories" not in header:
                raise LabelFileError(f"{path}, line 1: header {header} must contain 'id' and 'categories'")
            id_col, cat_col = header.index("id"), header.index("categories")
            for row in reader:
                where = f"{path}, line {reader.line_num}"
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise LabelFileError(f"{where}: expected {len(header)} fields, found {len(row)}")
                image_id = row[id_col].strip()
                if not image_id:
                    raise LabelFileError(f"{where}: missing id")
                if image_id in first_line:
                    raise LabelFileError(f"{where}: id {image_id!r} already appeared on line {first_line[image_id]}")
                first_line[image_id] = reader.line_num
                ids.append(image_id)
                cats.append(parse_category_list(row[cat_col], taxonomy, where))
    except UnicodeDecodeError as exc:
        raise LabelFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise LabelFileError(f"{path}: malformed CSV ({exc})") from None
    return _labels(ids, [None] * len(ids), cats, taxonomy, path)


def _labels(
    ids: list[str], file_names: Sequence[str | None], cats: list[list[int]], taxonomy: Taxonomy, path: Path
) -> Labels:
    frame = pl.DataFrame(
        {"image_id": ids, "file_name": file_names, "categories": cats},
        schema={"image_id": pl.String, "file_name": pl.String, "categories": pl.List(pl.Int64)},
    )
    return Labels(frame=frame, taxonomy=taxonomy, source=path)


def safe_relative_path(name: str, where: str) -> PurePosixPath:
    """Check that a file name from a label file stays inside the image root.

    Absolute paths, drive letters and ``..`` components are refused: a label file must never make
    fathombatch read or write outside the folder the user pointed it at.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise LabelFileError(f"{where}: file_name {name!r} is not a usable file name")
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(name).drive or ".." in posix.parts:
        raise LabelFileError(f"{where}: file_name {name!r} points outside the image folder; refused")
    return posix


def load_coco_json(path: Path, *, required: tuple[str, ...] = ("images", "annotations")) -> dict[str, Any]:
    """Parse a COCO json file into a dict with list-valued ``images`` and ``annotations`` (the ``required`` keys; a
    download needs only ``images``, as in an evaluation set without labels).

    Raises:
        UsageError: the file does not exist.
        LabelFileError: invalid json, or not an object with those lists; the message names the file.
    """
    try:
        with path.open("rb") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise UsageError(f"label file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise LabelFileError(f"{path}, line {exc.lineno}, column {exc.colno}: invalid json ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise LabelFileError(f"{path}: not UTF-8 json ({exc.reason})") from None
    except RecursionError:
        raise LabelFileError(f"{path}: json is nested too deeply to be a COCO file") from None
    if not isinstance(data, dict):
        raise LabelFileError(
            f"{path}: expected a COCO object with 'images' and 'annotations', got {type(data).__name__}"
        )
    for key in required:
        if not isinstance(data.get(key), list):
            raise LabelFileError(f"{path}: missing or non-list '{key}'")
    return data


def write_kaggle_csv(dest: Path, rows: Iterable[tuple[str, Sequence[int]]]) -> Path:
    """Write ``id,categories`` atomically with float ids in brackets, exactly like the competition's ``train.csv``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "categories"])
    for image_id, cats in rows:
        writer.writerow([image_id, "[" + ", ".join(f"{float(c)}" for c in cats) + "]"])
    write_text_atomic(dest, buf.getvalue())
    return dest


def _require(record: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(record, dict):
        raise LabelFileError(f"{where}: expected an object, got {type(record).__name__}")
    missing = [k for k in keys if k not in record]
    if missing:
        raise LabelFileError(f"{where}: missing field(s) {', '.join(missing)}")


def read_coco(path: str | Path, taxonomy: Taxonomy | None = None) -> Labels:
    """Read COCO detection json; each image's label set is the set of its annotations' categories.

    The structure is validated before pycocotools indexes it (pycocotools itself fails with bare KeyErrors).
    Images without annotations get an empty label set.
    """
    from pycocotools.coco import COCO

    path = Path(path)
    taxonomy = taxonomy or fathomnet2023()
    data = load_coco_json(path)

    image_ids: dict[Any, str] = {}
    stems: dict[str, int] = {}
    for i, img in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        _require(img, ("id", "file_name"), where)
        if isinstance(img["id"], (dict, list)) or img["id"] is None:
            raise LabelFileError(f"{where}: id {img['id']!r} is not a number or string")
        if img["id"] in image_ids:
            raise LabelFileError(f"{where}: image id {img['id']!r} appears twice")
        stem = safe_relative_path(img["file_name"], where).stem
        if stem in stems:
            raise LabelFileError(
                f"{where}: file name stem {stem!r} (the image_id) is also used by images[{stems[stem]}]"
            )
        stems[stem] = i
        image_ids[img["id"]] = stem

    for i, ann in enumerate(data["annotations"]):
        where = f"{path}: annotations[{i}]"
        _require(ann, ("image_id", "category_id"), where)
        if isinstance(ann["image_id"], (dict, list)) or ann["image_id"] not in image_ids:
            raise LabelFileError(f"{where}: image_id {ann['image_id']!r} is not in 'images'")
        ann["category_id"] = category_id(ann["category_id"], taxonomy, where)
        ann.setdefault("id", i + 1)

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress on stdout
        coco.createIndex()

    ids, names, cats = [], [], []
    for img in data["images"]:
        ids.append(image_ids[img["id"]])
        names.append(str(safe_relative_path(img["file_name"], str(path))))
        cats.append(sorted({ann["category_id"] for ann in coco.imgToAnns.get(img["id"], [])}))
    return _labels(ids, names, cats, taxonomy, path)
