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
one a dive has nothing stable and global to be named by, so ``parentEventID`` stays empty. A dive's name comes from
:class:`~fathombatch.exports.source.Source` (a folder, a regex, or a metadata column); a flat folder's dive is the
folder's name when scored, so ``parentEventID`` follows it (docs/exports.md, "What a dive's name depends on").
"""

from __future__ import annotations

import uuid
from pathlib import Path

import polars as pl

from fathombatch.backends.manifest import file_sha256
from fathombatch.errors import UsageError
from fathombatch.fsutil import fs_path

#: Namespace of every fathombatch Darwin Core UUID5 (fixed forever: changing it would change every published ID).
NAMESPACE = uuid.UUID("6f1b6a2e-3c39-4f7e-9d0b-6a1f0c5b7e21")


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
        self._hashed: dict[str, str] = {}  # rel -> key: each image is read once per export, whatever the batches

    def image_key(self, rel: str) -> str:
        """The dataset part of the IDs of the image at ``rel`` (relative to the images root)."""
        if self.dataset_id is not None:
            return self.dataset_id
        if rel in self._hashed:
            return self._hashed[rel]
        assert self.root is not None  # __init__ sets it whenever there is no dataset id
        image = self.root / fs_path(rel)
        if not image.is_file():
            raise UsageError(f"image {rel} is not in {self.root}: the folder changed since it was scored, so its "
                             "content cannot be hashed; give a dataset id, or the images' current location")
        self._hashed[rel] = key = "sha256:" + file_sha256(image)
        return key

    def image_keys(self, paths: pl.Series) -> list[str]:
        """The dataset part of each row's IDs: the dataset id, or ``sha256:<hex>`` of the image (hashed once)."""
        keys = {rel: self.image_key(rel) for rel in paths.unique()}
        return [keys[p] for p in paths]

    def check_distinct(self, scores: Path) -> None:
        """Refuse a table in which two files would get the same IDs: byte-identical copies with one file name.

        Without a dataset id an image is (content hash, file stem), so ``a/IMG_1.jpg`` and its copy ``b/IMG_1.jpg``
        are one image and every occurrence of theirs would appear twice under one ``occurrenceID``. They are one
        observation recorded twice, so no ID can honestly tell them apart (adding the path would make IDs depend on
        where files lie): the copies must go. Only files whose stem repeats are hashed here, usually none.
        (With a dataset id, :func:`check_dataset_id` has already refused any repeated stem.)
        """
        if self.dataset_id is not None:
            return
        ok = pl.scan_parquet(scores).filter(pl.col("status") == "ok").select("image_id", "path")
        shared = ok.filter(pl.len().over("image_id") > 1).sort("path").collect()
        if shared.height == 0:
            return
        keyed = shared.with_columns(key=pl.Series([self.image_key(p) for p in shared["path"]], dtype=pl.String))
        copies = (keyed.group_by("key", "image_id").agg(pl.col("path").sort()).filter(pl.col("path").list.len() > 1)
                  .sort(pl.col("path").list.first()))
        if copies.height:
            n = int(copies["path"].list.len().sum() - copies.height)
            examples = "; ".join(" = ".join(paths) for paths in copies["path"].head(3).to_list())
            raise UsageError(f"{n} scored file(s) are byte-identical copies of another file with the same name "
                             f"({examples}{'; ...' if copies.height > 3 else ''}), so their occurrences would share "
                             "occurrenceID and eventID, which OBIS and GBIF reject or merge; remove the copies "
                             "(fathombatch curate dedupe finds them) and score the folder again")

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
