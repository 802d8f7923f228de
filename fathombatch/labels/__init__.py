"""Label files: the two FathomNet 2023 formats read into one frame and a multi-hot matrix, and held-out splits.

* Kaggle multi-label CSV (:mod:`~fathombatch.labels.kaggle`): one parser, strict (the readers) or collecting
  (``curate validate``).
* COCO detection json (:mod:`~fathombatch.labels.coco`), read through pycocotools.
* :func:`read_labels` picks the reader by extension (:mod:`~fathombatch.labels.files`).
* :mod:`~fathombatch.labels.splits`: iterative multi-label stratification, shared by training and ``curate split``.

Both readers give a :class:`Labels`: a Polars frame with columns ``image_id`` (str), ``file_name`` (str or null; null
for the Kaggle CSV, which names no files) and ``categories`` (list[int], ascending, unique) plus the taxonomy. Every
problem raises :class:`~fathombatch.errors.LabelFileError` naming the file and the line (CSV) or the record (json).

``curate split`` itself stays in :mod:`fathombatch.curate.split`: it is a curation command (it writes label files and
coverage reports), built on :mod:`~fathombatch.labels.splits` like training is.
"""

from fathombatch.labels.base import (
    Labels,
    Problem,
    category_id,
    category_tokens,
    labels_frame,
    multi_hot,
    parse_category_list,
    safe_relative_path,
)
from fathombatch.labels.coco import load_coco_json, read_coco
from fathombatch.labels.files import MAX_LABEL_FILE_BYTES, read_labels
from fathombatch.labels.kaggle import parse_kaggle_csv, read_kaggle_csv, write_kaggle_csv

__all__ = [
    "MAX_LABEL_FILE_BYTES",
    "Labels",
    "Problem",
    "category_id",
    "category_tokens",
    "labels_frame",
    "load_coco_json",
    "multi_hot",
    "parse_category_list",
    "parse_kaggle_csv",
    "read_coco",
    "read_kaggle_csv",
    "read_labels",
    "safe_relative_path",
    "write_kaggle_csv",
]
