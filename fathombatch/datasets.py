"""Moved to :mod:`fathombatch.labels`: re-exported here only until ``backends/export.py``, which is being moved into
``fathombatch/export/`` on another branch, imports from there."""

from fathombatch.labels import (
    MAX_LABEL_FILE_BYTES,
    Labels,
    category_id,
    category_tokens,
    load_coco_json,
    multi_hot,
    parse_category_list,
    read_coco,
    read_kaggle_csv,
    read_labels,
    safe_relative_path,
    write_kaggle_csv,
)

__all__ = [
    "MAX_LABEL_FILE_BYTES",
    "Labels",
    "category_id",
    "category_tokens",
    "load_coco_json",
    "multi_hot",
    "parse_category_list",
    "read_coco",
    "read_kaggle_csv",
    "read_labels",
    "safe_relative_path",
    "write_kaggle_csv",
]
