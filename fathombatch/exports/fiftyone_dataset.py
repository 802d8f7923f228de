"""The ``fiftyone`` export: a FiftyOne image classification dataset folder, for review in the FiftyOne app.

FiftyOne's ``FiftyOneImageClassificationDataset`` format (``fo.types.FiftyOneImageClassificationDataset``), read by
``fo.Dataset.from_dir(dataset_dir=DIR, dataset_type=fo.types.FiftyOneImageClassificationDataset)``::

    DIR/
      data/<path>        one symbolic link per readable scored image, to the image itself (absolute)
      labels.json        {"classes": [...], "labels": {<path without extension>: [classification, ...]}, ...}

Each image is one sample whose label is a multi-label ``Classifications``: one ``{"label", "confidence",
"attributes"}`` per class whose probability reaches its presence threshold (the thresholds every export uses,
:func:`~fathombatch.exports.thresholds.presence_thresholds`), most probable first; ``confidence`` is the probability
and ``attributes`` carry ``category_id``, ``supercategory`` and ``threshold``. An image where nothing is present
gets an empty ``Classifications``, so every readable image is reviewable. Files that could not be read when scored
(error rows) are left out, with a warning.

Why links: FiftyOne's importer (checked in fiftyone 1.22.1, ``FiftyOneImageClassificationDatasetImporter``) looks
for the media in ``DIR/data/`` by default; its ``data.json`` manifest of absolute paths is only read when the caller
passes ``data_path="data.json"``. Links keep the documented one-line import, cost no disk space (copies of a
million-image dump would double it), and leave the originals where they are. Moving the images breaks the links:
export again with the new folder.

The osd score and the full probability vector are per image, and this format has no per-image field besides the
label: they stay in the scores table, whose ``path`` is each sample's ``data/<path>`` (see docs/exports.md).
Keys are the table's ``path`` without its extension, as FiftyOne derives them from ``data/``; two files that differ
only by extension (``a.jpg``, ``a.png``) would share a key, so the later one's link and key keep its extension twice
(``data/a.png.png``, key ``a.png``).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

import numpy as np
import polars as pl

from fathombatch.errors import OutputError, UsageError
from fathombatch.exports.source import Source
from fathombatch.fsutil import atomic_path, fs_path
from fathombatch.pathguard import inside

DATA = "data"
LABELS = "labels.json"


def dataset_key(path: str, taken: set[str]) -> tuple[str, str]:
    """(key, link name) of a scored ``path`` inside ``data/``; ``taken`` holds the keys given so far (updated)."""
    posix = PurePosixPath(path)
    key = str(posix.with_suffix("")) if posix.suffix else path
    link = path
    if key in taken:
        key, link = path, path + posix.suffix
    taken.add(key)
    return key, link


def classifications(source: Source, batch: pl.DataFrame) -> Iterator[list[dict[str, Any]]]:
    """Per row of ``batch``: its present classes as FiftyOne classification dicts, most probable first."""
    names = list(source.taxonomy.names)
    probs = batch.select(names).to_numpy().astype(np.float64)
    thresholds = source.thresholds
    ids, supers = source.taxonomy.ids, source.taxonomy.supercategories
    for row in probs:
        present = np.flatnonzero(row >= thresholds)
        order = present[np.lexsort((present, -row[present]))]  # probability descending, then category id
        yield [{"label": names[j], "confidence": float(row[j]),
                "attributes": {"category_id": int(ids[j]), "supercategory": supers[j],
                               "threshold": float(thresholds[j])}} for j in order]


def write_fiftyone(source: Source, out: Path) -> tuple[int, list[str]]:
    """Write the dataset folder ``out`` (see the module docstring).

    Returns:
        (samples written, warnings).

    Raises:
        UsageError: the scored images are not where the table (or ``images_root``) says, or ``out`` lies inside
            the scored folder (the next ``score`` of that folder would take the links for images of its own).
        OutputError: ``out/data`` holds files that are not links (not a folder this export wrote).
    """
    root = source.images_root
    if root is None or not Path(root).is_dir():
        raise UsageError(f"the fiftyone export links the scored images, and their folder {root} is not there; "
                         "give the folder where the images are now as the images root")
    root = Path(root).resolve()
    if inside(out, root):
        raise UsageError(f"{out} is inside the scored folder {root}; write the dataset elsewhere")
    out.mkdir(parents=True, exist_ok=True)
    _check_replaceable(out / DATA)
    staging = _fresh_folder(out, f".{DATA}-new-")
    try:
        with atomic_path(out / LABELS) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            samples = _write_labels(source, root, staging, fh)
        _swap_in(staging, out / DATA)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    warnings = list(source.warnings)
    table = pl.scan_parquet(source.path)
    errors = table.filter(pl.col("status") != "ok").select(pl.len()).collect().item()
    if "frame_index" in table.collect_schema().names():
        frames = table.filter(pl.col("frame_index").is_not_null()).select(pl.len()).collect().item()
        if frames:
            warnings.append(f"{frames} video frame row(s) are not in the dataset: FiftyOne's image classification "
                            "format links image files, and a sampled frame has none of its own")
    if errors:
        warnings.append(f"{errors} file(s) could not be read when scored (error rows); they are not in the dataset")
    return samples, warnings


def _write_labels(source: Source, root: Path, data: Path, fh: TextIO) -> int:
    """Stream ``labels.json`` into ``fh`` while linking every sample's image under ``data``; returns the samples."""
    head = {"classes": list(source.taxonomy.names), "fathombatch": source.provenance("fiftyone dataset")}
    fh.write(json.dumps(head)[:-1] + ', "labels": {')
    taken: set[str] = set()
    samples = 0
    # Video frames share their video's path and have no image file to link (left out; write_fiftyone warns).
    video = "frame_index" in pl.read_parquet_schema(source.path)
    for batch in source.batches(("frame_index",) if video else ()):
        if video:
            batch = batch.filter(pl.col("frame_index").is_null()).drop("frame_index")
            if batch.height == 0:
                continue
        for path, labels in zip(batch["path"], classifications(source, batch), strict=True):
            key, link = dataset_key(path, taken)
            target = data / link
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(root / fs_path(path), target)
            fh.write(("" if samples == 0 else ", ") + json.dumps(key) + ": " + json.dumps(labels))
            samples += 1
    fh.write("}}\n")
    return samples


def _check_replaceable(data: Path) -> None:
    """Refuse to replace a ``data`` folder holding anything but folders and links (not this export's own)."""
    if not data.exists() and not data.is_symlink():
        return
    if data.is_symlink() or not data.is_dir():
        raise OutputError(f"{data} exists and is not a folder of links this export wrote; move it away first")
    for folder, _, files in os.walk(data):
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                raise OutputError(f"{data} holds a file that is not a link ({os.path.join(folder, name)}); "
                                  "it is not a folder this export wrote, so it is not replaced")


def _fresh_folder(parent: Path, prefix: str) -> Path:
    """A new, uniquely named folder in ``parent``, with the permissions the umask gives (mkdtemp's are 0700)."""
    folder = parent / f"{prefix}{uuid.uuid4().hex}"
    folder.mkdir()
    return folder


def _swap_in(staging: Path, data: Path) -> None:
    """Put the new links in place of the old ``data`` folder (links only; see :func:`_check_replaceable`)."""
    old = None
    if data.exists():
        old = _fresh_folder(data.parent, f".{DATA}-old-")
        os.replace(data, old / DATA)
    os.replace(staging, data)
    if old is not None:
        shutil.rmtree(old)  # removes links, never what they point to
