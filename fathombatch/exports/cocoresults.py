"""The ``coco-results`` export: image-level predictions in the COCO results format, for pycocotools-based tools.

A json list with one record per (image, category) of each readable image's ranked categories — the table's
``top_categories``, ``top_k`` long (20 unless ``score --top-k`` said otherwise), each with its probability::

    [{"image_id": 17, "category_id": 160, "score": 0.912345, "bbox": [0, 0, 1920, 1080]}, ...]

* ``category_id``: the taxonomy's ids, which are the ids of the competition's COCO files (FathomNet 2023: 1..290).
* ``score``: the class probability, rounded to 6 decimals (a float32 probability carries about 7 significant digits).
* No threshold by default: COCO's evaluation ranks the predictions itself, and a cut would only lower its recall.
  A global ``threshold`` keeps the records whose score reaches it.
* ``bbox``: the whole image, ``[0, 0, width, height]`` in displayed pixels. pycocotools' ``COCO.loadRes`` gives a
  result record an ``id`` only in its ``bbox``, ``segmentation``, ``keypoints`` or ``caption`` branch, and its index
  then fails on a record without one; a whole-image box is how an image-level prediction reads as a detection, so
  ``loadRes`` and ``COCOeval(..., "bbox")`` accept the file as it is.
* ``image_id``: with a COCO file, its image ``id``, found by the image's path (``file_name`` equal to the table's
  ``path``), else by file stem with ``evaluate``'s extension rules (:func:`~fathombatch.evalchecks.match_ids`).
  Scored images the COCO file lacks are left out with a warning: ``loadRes`` refuses results for images its ground
  truth does not have. Without a COCO file, the table's ``image_id`` (the file stem, as in the submission CSV).

Files that could not be read when scored (error rows) never become predictions.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from fathombatch.errors import LabelFileError
from fathombatch.evalchecks import match_ids
from fathombatch.exports.source import Source
from fathombatch.fsutil import atomic_path
from fathombatch.labels import load_coco_json, safe_relative_path

#: Decimals kept of each score.
SCORE_DECIMALS = 6


def coco_image_ids(coco: Path, scores: Source) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """How the scored images map to a COCO file's image ids.

    Returns:
        (by path, by table image_id, warnings): a table row takes ``by_path[path]``, else ``by_id[image_id]``.
        ``by_id`` holds only ids that name one scored row (a stem shared by two folders is matched by path only).

    Raises:
        UsageError: the file is missing, or none of its images is in the scores table.
        LabelFileError: not COCO json, or two of its images share a file stem.
    """
    data = load_coco_json(coco, required=("images",))
    by_path: dict[str, Any] = {}
    stems: list[str] = []
    ids: list[Any] = []
    for i, img in enumerate(data["images"]):
        where = f"{coco}: images[{i}]"
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise LabelFileError(f"{where}: an image needs 'id' and 'file_name'")
        name = safe_relative_path(str(img["file_name"]), where)
        by_path[str(name)] = img["id"]
        stems.append(name.stem)
        ids.append(img["id"])
    shared = [s for s, n in Counter(stems).items() if n > 1]
    if shared:
        raise LabelFileError(f"{coco}: {len(shared)} file stem(s) name two images (e.g. {shared[0]!r}); "
                             "the image ids would be ambiguous")
    table = pl.scan_parquet(scores.path).filter(pl.col("status") == "ok").select("image_id").collect()["image_id"]
    counts = Counter(table.to_list())
    match = match_ids(stems, counts.keys(), coco, scores.path)
    by_id = {key: image for key, image in zip(match.keys, ids, strict=True) if counts.get(key) == 1}
    return by_path, by_id, match.warnings


def records(source: Source, by_path: dict[str, Any] | None, by_id: dict[str, Any] | None,
            threshold: float | None) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """Per batch of readable images: its result records and how many of its images have no COCO id."""
    column = {cid: name for cid, name in zip(source.taxonomy.ids, source.taxonomy.names, strict=True)}
    for batch in source.batches(extra=("width", "height", "top_categories")):
        out: list[dict[str, Any]] = []
        unmatched = 0
        for row in batch.iter_rows(named=True):
            image_id: Any = row["image_id"]
            if by_path is not None and by_id is not None:
                image_id = by_path.get(row["path"], by_id.get(row["image_id"]))
                if image_id is None:
                    unmatched += 1
                    continue
            box = [0, 0, row["width"] or 0, row["height"] or 0]
            for cid in row["top_categories"] or []:
                score = round(float(row[column[cid]]), SCORE_DECIMALS)
                if threshold is None or score >= threshold:
                    out.append({"image_id": image_id, "category_id": int(cid), "score": score, "bbox": box})
        yield out, unmatched


def write_coco_results(source: Source, out: Path, coco: Path | None, threshold: float | None
                       ) -> tuple[int, list[str]]:
    """Write the results list to ``out`` atomically (see the module docstring).

    Returns:
        (records written, warnings).
    """
    # Not the source's warnings: they are about presence thresholds and metadata, which these results do not use.
    warnings: list[str] = []
    by_path = by_id = None
    if coco is not None:
        by_path, by_id, matched = coco_image_ids(coco, source)
        warnings.extend(matched)
    written = unmatched = 0
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write("[")
        for batch, missing in records(source, by_path, by_id, threshold):
            unmatched += missing
            for record in batch:
                fh.write(("" if written == 0 else ",\n") + json.dumps(record))
                written += 1
        fh.write("]\n")
    if unmatched:
        warnings.append(f"{unmatched} scored image(s) are not in {coco} (by path or file stem); they are left out "
                        "of the results, since pycocotools refuses results for images its ground truth lacks")
    return written, warnings
