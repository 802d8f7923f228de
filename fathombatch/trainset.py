"""Which images an engine was trained on: recorded in its manifest at export, checked against the truth in evaluate.

A MAP@20 over images the engine was trained on is not a held-out figure, and evaluating against the training label
file is the easiest mistake to make. The training run knows its split (``split.json``: the held-out ids;
``config.json``: the label file and its SHA-256), but the run folder rarely travels with the engine, so export copies
what evaluate needs into the manifest's ``provenance.training_images``::

    {"labels_sha256": str | null, "train_image_ids": [str, ...] | null, "heldout_image_ids": [str, ...] | null}

``train_image_ids`` are the label file's ids outside the held-out split, recorded only when the label file is still
on the machine with the SHA-256 it had in training. Without them, truth whose SHA-256 is the training label file's
is still recognised (all its images outside the held-out split were trained on).

The run folder itself is recorded as an absolute path; a relative one (an older or hand-written manifest) is read
relative to the manifest's folder, never to the current directory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fathombatch.backends.manifest import file_sha256
from fathombatch.errors import FathombatchError
from fathombatch.labels import read_labels

log = logging.getLogger(__name__)


def training_images(run: Path) -> dict[str, Any] | None:
    """The ``training_images`` record of a training run (see the module docstring), or None without a split."""
    try:
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        heldout = sorted(json.loads((run / "split.json").read_text(encoding="utf-8"))["val_image_ids"])
    except (OSError, KeyError, TypeError, ValueError) as exc:
        log.warning("the split of run %s is not readable (%s): the engine will not record its training images",
                    run, exc)
        return None
    digest = config.get("labels_sha256")
    labels = Path(str(config.get("config", {}).get("labels", "")))
    train_ids = None
    try:
        if labels.is_file() and file_sha256(labels) == digest:
            held = set(heldout)
            train_ids = sorted(i for i in read_labels(labels).image_ids if i not in held)
    except (OSError, FathombatchError) as exc:
        log.warning("the training labels %s are not readable (%s)", labels, exc)
    if train_ids is None:
        log.warning("the training labels %s are not on this machine as they were in training: the engine records "
                    "only their SHA-256 and the held-out ids", labels)
    return {"labels_sha256": digest, "train_image_ids": train_ids, "heldout_image_ids": heldout}


def run_reference(run: Path) -> str:
    """How a manifest names its run folder: the absolute path, so that it does not depend on the current folder."""
    return str(run.resolve())


def resolve_run(recorded: str, manifest_dir: Path) -> Path:
    """The run folder a manifest names; a relative path is relative to the manifest's folder."""
    path = Path(recorded)
    return path if path.is_absolute() else manifest_dir / path


def _id_list(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def training_overlap(truth_ids: Sequence[str], truth_file: Path, provenance: Mapping[str, Any]) -> int | None:
    """How many of ``truth_ids`` the engine was trained on, or None when its manifest cannot tell.

    Args:
        truth_ids: the truth's ids as matched to the scored ids (image extensions dropped where they were).
        truth_file: the truth label file (its SHA-256 is compared with the training label file's).
        provenance: the engine manifest's ``provenance``.
    """
    record = provenance.get("training_images")
    if not isinstance(record, Mapping):
        return None
    train_ids = _id_list(record.get("train_image_ids"))
    if train_ids is not None:
        trained = set(train_ids)
        return sum(1 for i in truth_ids if i in trained)
    heldout = _id_list(record.get("heldout_image_ids"))
    if heldout is not None and record.get("labels_sha256") and file_sha256(truth_file) == record["labels_sha256"]:
        held = set(heldout)
        return sum(1 for i in truth_ids if i not in held)
    return None
