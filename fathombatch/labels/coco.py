"""COCO detection json: image-level label sets are the categories of each image's annotations, read through
pycocotools; ``image_id`` is the image's file name without directory or extension.

Every problem raises :class:`~fathombatch.errors.LabelFileError` naming the file and the record (e.g.
``annotations[12]``), because json has no useful line numbers once parsed. ``curate validate`` has its own, collecting
pass over COCO files (:mod:`fathombatch.curate.validate`): it checks far more than reading needs (boxes, sizes, files
on disk), so it shares the pieces (:func:`load_coco_json`, :func:`~fathombatch.labels.base.safe_relative_path`)
rather than this reader.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from fathombatch.errors import LabelFileError, UsageError
from fathombatch.labels.base import Labels, category_id, labels_frame, safe_relative_path
from fathombatch.taxonomy import Taxonomy, fathomnet2023


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
    return labels_frame(ids, names, cats, taxonomy, path)
