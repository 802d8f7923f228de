"""Stable Darwin Core identifiers: derived only from what identifies an observation, never from where files lie.

An occurrence is "category C seen in image I of dataset D". Its ``occurrenceID`` is a UUID5 of

* the dataset: the dataset id the user gives (a DOI, a URL, any string unique to the cruise), or, without one, the
  SHA-256 of the image file's bytes (a content hash: the same image anywhere is the same image);
* the image id (the file stem, as in the scores table);
* the category id.

Nothing else enters: not the scored folder's location, not ``associatedMedia``'s URL prefix, not the engine, not the
scoring time. So moving the folder, rescoring it (with this engine or a better one) and publishing the images under
another URL all keep every ID, and a re-export updates the records OBIS already holds instead of duplicating them.
Each image is a sampling event (it has its own time and position), so ``eventID`` is a UUID5 of the dataset and the
image id; with a dataset id the dive becomes ``parentEventID`` (a UUID5 of the dataset id and the dive name); without
one a dive has nothing stable and global to be named by, so ``parentEventID`` stays empty.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import polars as pl

from fathombatch.errors import UsageError
from fathombatch.fsutil import fs_path

#: Namespace of every fathombatch Darwin Core UUID5 (fixed forever: changing it would change every published ID).
NAMESPACE = uuid.UUID("6f1b6a2e-3c39-4f7e-9d0b-6a1f0c5b7e21")


def content_hash(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks so a large image never sits whole in memory."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def check_dataset_id(dataset_id: str | None, scores: Path) -> None:
    """Refuse a dataset id that cannot identify images: empty, or shared by image ids repeated in the table.

    Image ids are file stems, so ``dive1/IMG_0001.jpg`` and ``dive2/IMG_0001.jpg`` share one; with a dataset id alone
    their occurrences would get the same IDs. Content hashes tell them apart, so those tables must go without one.
    """
    if dataset_id is None:
        return
    if not dataset_id.strip():
        raise UsageError("the dataset id must not be empty")
    repeated = (pl.scan_parquet(scores).filter(pl.col("status") == "ok").group_by("image_id").len()
                .filter(pl.col("len") > 1).collect())
    if repeated.height:
        raise UsageError(f"{repeated.height} image id(s) (e.g. {repeated['image_id'][0]!r}) belong to more than one "
                         "file, so the dataset id and image id cannot identify an image; leave the dataset id out to "
                         "identify images by their content hash, or give the files unique names")


def images_folder(root: Path | None) -> Path:
    """The folder whose images are hashed when there is no dataset id."""
    if root is None or not root.is_dir():
        raise UsageError(f"Darwin Core IDs need a dataset id, or the scored images to hash ({root or 'no folder'} "
                         "is not a folder; give the images' current location as the images root)")
    return root


class Identifier:
    """Computes the IDs of presence rows (see the module docstring)."""

    def __init__(self, dataset_id: str | None, root: Path | None) -> None:
        self.dataset_id = dataset_id
        self.root = None if dataset_id is not None else images_folder(root)

    def image_keys(self, paths: pl.Series) -> list[str]:
        """The dataset part of each row's IDs: the dataset id, or ``sha256:<hex>`` of the image (hashed once)."""
        if self.dataset_id is not None:
            return [self.dataset_id] * len(paths)
        hashes: dict[str, str] = {}
        for rel in paths.unique():
            image = self.root / fs_path(rel)  # type: ignore[operator]
            if not image.is_file():
                raise UsageError(f"image {rel} is not in {self.root}: the folder changed since it was scored, so its "
                                 "content cannot be hashed; give a dataset id, or the images' current location")
            hashes[rel] = "sha256:" + content_hash(image)
        return [hashes[p] for p in paths]

    def ids(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``occurrenceID``, ``eventID`` and ``parentEventID`` for rows with ``path``, ``image_id``, ``category_id``
        and ``dive``."""
        keys = self.image_keys(frame["path"])
        rows = zip(keys, frame["image_id"], frame["category_id"], frame["dive"], strict=True)
        occurrence, event, parent = [], [], []
        for key, image, category, dive in rows:
            occurrence.append(str(uuid.uuid5(NAMESPACE, f"occurrence|{key}|{image}|{category}")))
            event.append(str(uuid.uuid5(NAMESPACE, f"event|{key}|{image}")))
            parent.append(None if self.dataset_id is None else str(uuid.uuid5(NAMESPACE, f"dive|{key}|{dive}")))
        return pl.DataFrame({"occurrenceID": occurrence, "eventID": event, "parentEventID": parent},
                            schema={"occurrenceID": pl.String, "eventID": pl.String, "parentEventID": pl.String})
