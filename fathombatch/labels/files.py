"""Reading a label file of either format by its extension (or a shipped one: ``fathomnet2023:train.csv``)."""

from __future__ import annotations

from pathlib import Path

from fathombatch.errors import LabelFileError, UsageError
from fathombatch.labels.base import Labels
from fathombatch.labels.coco import read_coco
from fathombatch.labels.kaggle import read_kaggle_csv
from fathombatch.packaged import resolve_data_path
from fathombatch.taxonomy import Taxonomy, fathomnet2023

#: Label files larger than this are refused before parsing (a guard against accidental or hostile inputs).
MAX_LABEL_FILE_BYTES = 2 * 1024**3


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
