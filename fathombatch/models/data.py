"""Training data: match label rows to image files, and decode them once into an in-memory uint8 cache.

Images are decoded with the same Pillow path the scorer's PIL decoder uses (EXIF orientation, RGB conversion,
bilinear antialiased resize to the input size), so a model trains on exactly what it will be scored on. The cache
holds N x S x S x 3 bytes (5,950 FathomNet training images at 224 px: 0.9 GB), which spares decoding 1920x1080
JPEGs again every epoch.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fathombatch.decode.discover import discover, suffix_stems
from fathombatch.decode.pil import load_resized
from fathombatch.errors import DecodeError, TrainingError
from fathombatch.labels import Labels
from fathombatch.progress import Progress


def _listing(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


@dataclass(frozen=True)
class ImageMatch:
    """How the rows of a label file met the image files under a folder.

    Attributes:
        paths: the file of every label row that has exactly one, in label order.
        missing: ids of label rows with no file.
        clashes: ids whose stem names more than one file.
        unlabelled: how many image files under the folder no label row uses.
        n_files: how many image files are under the folder.
        by_extension: ids matched to a file stem once their image extension was dropped (``abc.jpg`` -> ``abc``).
    """

    paths: list[Path]
    missing: list[str]
    clashes: list[str]
    unlabelled: int
    n_files: int
    by_extension: list[str]

    def require_all(self, labels: Labels, images_dir: Path, *, fix: str = "") -> list[Path]:
        """``paths``, one per label row, or a TrainingError listing the rows without exactly one file.

        Args:
            fix: a sentence appended to the missing-files error, telling how to mend it.
        """
        if self.missing:
            raise TrainingError(
                f"{len(self.missing)} of {len(labels)} labelled images in {labels.source} have no file under "
                f"{images_dir}: {_listing(self.missing)}" + (f"; {fix}" if fix else "")
            )
        if self.clashes:
            raise TrainingError(
                f"{len(self.clashes)} image ids match more than one file under {images_dir} (same stem in two "
                f"folders): {_listing(self.clashes)}; use COCO labels with file names to disambiguate"
            )
        return self.paths


def find_images(labels: Labels, images_dir: Path) -> ImageMatch:
    """Look up the image file of every label row (see :func:`match_images`), and count the files left over."""
    by_stem: dict[str, str] = {}
    ambiguous: set[str] = set()
    found = discover(images_dir)
    for rel in found:
        stem = Path(rel).stem
        if stem in by_stem:
            ambiguous.add(stem)
        by_stem[stem] = rel
    stems = suffix_stems(labels.image_ids)
    paths: list[Path] = []
    missing: list[str] = []
    clashes: list[str] = []
    by_extension: list[str] = []
    for image_id, file_name in labels.frame.select("image_id", "file_name").iter_rows():
        key = image_id if image_id in by_stem or image_id not in stems else stems[image_id]
        if file_name is not None and (images_dir / file_name).is_file():
            paths.append(images_dir / file_name)
        elif key in ambiguous:
            clashes.append(image_id)
        elif key in by_stem:
            paths.append(images_dir / by_stem[key])
            if key != image_id:
                by_extension.append(image_id)
        else:
            missing.append(image_id)
    used = {os.path.normpath(p) for p in paths}
    unlabelled = sum(os.path.normpath(images_dir / rel) not in used for rel in found)
    return ImageMatch(paths=paths, missing=missing, clashes=clashes, unlabelled=unlabelled, n_files=len(found),
                      by_extension=by_extension)


def match_images(labels: Labels, images_dir: Path) -> list[Path]:
    """Find the image file of every label row.

    A COCO row is looked up by its ``file_name`` under ``images_dir``; a Kaggle row (no file name), or a COCO file
    name that is not there, by its ``image_id`` as a file stem anywhere under ``images_dir``; an id that carries an
    image extension (``abc.jpg``) and matches no stem as it is, by the id without it, unless that would give two
    rows one file (:func:`~fathombatch.decode.discover.suffix_stems`).

    Raises:
        TrainingError: listing the ids without an image (and stems that match two files).
    """
    return find_images(labels, images_dir).require_all(labels, images_dir)


def preload(
    paths: list[Path], size: tuple[int, int], *, threads: int | None = None, progress: Progress | None = None,
    description: str = "Decoding training images",
) -> np.ndarray:
    """Decode and resize every image once (``description`` names the step in the progress report).

    Returns:
        (N, H, W, 3) uint8 RGB.

    Raises:
        TrainingError: listing files that could not be decoded (training never skips labelled data silently).
    """
    height, width = size
    cache = np.empty((len(paths), height, width, 3), dtype=np.uint8)
    bad: list[str] = []

    def load(i: int) -> None:
        try:
            cache[i] = load_resized(paths[i], size)
        except DecodeError as exc:
            bad.append(f"{paths[i]} ({exc})")

    progress = progress or Progress(enabled=False)
    with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool, progress.task(
        description, len(paths)
    ) as task:
        for _ in pool.map(load, range(len(paths))):
            task.advance()
    if bad:
        raise TrainingError(f"{len(bad)} training images cannot be decoded: {_listing(sorted(bad), 5)}")
    return cache
