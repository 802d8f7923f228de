"""Label sets of the files ``curate dedupe`` compares, so it never proposes dropping an image labelled otherwise.

A perceptual hash says two frames *look* alike, not that they show the same animal: an ROV holding station over
the same patch of sea floor films one species, then another, and on murky low-contrast frames the 64-bit pHash of
the two can differ by 0-4 bits (see docs/curation.md for the measurement). Labels are the ground truth a curator
already has, so with a label file dedupe keeps every image whose label set differs from the kept one's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from fathombatch.datasets import read_labels

#: One image's labels: sorted category names, or None when the image is not in the label file.
LabelSet = tuple[str, ...] | None


def label_sets(labels: Path, paths: Sequence[str]) -> list[LabelSet]:
    """Per path, the sorted category names of its image in ``labels`` (Kaggle CSV or COCO json).

    Images are matched by image_id, the file stem (as ``train`` and ``curate subset`` match them), so
    ``dive/a.jpg`` and ``copies/a.png`` both take the labels of image ``a``. An empty label set (an image the file
    lists without categories) is a label set; an image the file does not list gets None.

    Raises:
        UsageError / LabelFileError: the label file is missing or malformed (from :func:`read_labels`).
    """
    read = read_labels(labels)
    name_of = dict(zip(read.taxonomy.ids, read.taxonomy.names, strict=True))
    by_id = {image_id: tuple(sorted(name_of[c] for c in cats))
             for image_id, cats in read.frame.select("image_id", "categories").iter_rows()}
    return [by_id.get(PurePosixPath(p).stem) for p in paths]


def describe(labels: LabelSet) -> str:
    """A label set as the reasons in ``clusters.csv`` spell it: ``[Sebastes, Asteroidea]``, ``[]`` or ``unlabelled``."""
    return "unlabelled" if labels is None else "[" + ", ".join(labels) + "]"
