"""Label sets of the files ``curate dedupe`` compares, so it never proposes dropping an image labelled otherwise.

A perceptual hash says two frames *look* alike, not that they show the same animal: an ROV holding station over
the same patch of sea floor films one species, then another, and on murky low-contrast frames the 64-bit pHash of
the two can differ by 0-4 bits (see docs/curation.md for the measurement). Labels are the ground truth a curator
already has, so with a label file dedupe keeps every image whose label set differs from the kept one's.

Bytes are stronger evidence than labels: a byte-identical copy is the same image, so a copy the label file does not
list takes the labels of its listed copies (when those agree) and can be dropped for them. Label files list one name
per image; a copy made under another name is exactly what dedupe exists to find.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from fathombatch.curate.hashing import FileHash
from fathombatch.labels import read_labels

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


def with_twin_labels(hashes: Sequence[FileHash], tags: Sequence[LabelSet]) -> tuple[list[LabelSet], list[bool]]:
    """Label sets in which a file not in the label file takes those of its byte-identical copies.

    Equal bytes are one image, so its labels are those of the copies the label file lists, when they agree. When
    they disagree (a labelling error), the unlisted copy keeps None: which labels apply is unknown.

    Returns:
        per file: its label set (its own, or taken from its copies), and whether it was taken.
    """
    by_bytes: dict[str, set[tuple[str, ...]]] = {}
    for h, tag in zip(hashes, tags, strict=True):
        if h.sha256 is not None and tag is not None:
            by_bytes.setdefault(h.sha256, set()).add(tag)
    taken = [tag is None and len(by_bytes.get(h.sha256 or "", ())) == 1 for h, tag in zip(hashes, tags, strict=True)]
    merged = [next(iter(by_bytes[h.sha256 or ""])) if t else tag for h, tag, t in zip(hashes, tags, taken, strict=True)]
    return merged, taken


def twin_note(keeper: int, copies: Sequence[int], paths: Sequence[str], tags: Sequence[LabelSet]) -> str:
    """What the kept image's reason says of byte-identical ``copies`` kept apart from it for their labels.

    After :func:`with_twin_labels` these exist only where labels disagree about one image: a copy labelled otherwise
    than the kept one, or (for a kept image not in the label file) listed copies that disagree among themselves.
    """
    listed = [i for i in copies if tags[i] is not None]
    if not listed:
        return ""
    if tags[keeper] is not None:
        return f"; byte-identical to {paths[listed[0]]}, labelled {describe(tags[listed[0]])}: the labels disagree"
    shown = ", ".join(f"{paths[i]} {describe(tags[i])}" for i in listed[:2])
    return f"; byte-identical to images labelled differently ({shown}), so which labels it has is unknown"
