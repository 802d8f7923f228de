"""What every label reader shares: the :class:`Labels` frame, category ids and lists, safe file names, and
:class:`Problem`, the one shape of a problem in a label file, whether a reader raises it or a validator collects it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import polars as pl

from fathombatch.errors import LabelFileError
from fathombatch.taxonomy import Taxonomy

_SPLIT_RE = re.compile(r"[,\s]+")


@dataclass(frozen=True)
class Labels:
    """Image-level labels.

    Attributes:
        frame: columns ``image_id`` (str, unique), ``file_name`` (str | null), ``categories`` (list[i64]).
        taxonomy: the class list the category ids belong to.
        source: the file the labels came from.
    """

    frame: pl.DataFrame
    taxonomy: Taxonomy
    source: Path

    def __len__(self) -> int:
        return self.frame.height

    @property
    def image_ids(self) -> list[str]:
        return self.frame["image_id"].to_list()

    def multi_hot(self) -> np.ndarray:
        """Return the (N, C) uint8 multi-hot matrix, rows in frame order, columns in taxonomy order."""
        return multi_hot(self.frame["categories"].to_list(), self.taxonomy)

    def class_counts(self) -> np.ndarray:
        """Return (C,) int64: number of images containing each class."""
        return self.multi_hot().sum(axis=0, dtype=np.int64)


def multi_hot(categories: Sequence[Sequence[int]], taxonomy: Taxonomy) -> np.ndarray:
    """Encode label lists as an (N, C) uint8 matrix; ids not in the taxonomy raise KeyError."""
    out = np.zeros((len(categories), len(taxonomy)), dtype=np.uint8)
    lookup = taxonomy.column_of
    for row, cats in enumerate(categories):
        for cid in cats:
            out[row, lookup[cid]] = 1
    return out


def labels_frame(
    ids: list[str], file_names: Sequence[str | None], cats: list[list[int]], taxonomy: Taxonomy, path: Path
) -> Labels:
    """:class:`Labels` from parallel lists (one entry per image; ``cats`` ascending and unique)."""
    frame = pl.DataFrame(
        {"image_id": ids, "file_name": file_names, "categories": cats},
        schema={"image_id": pl.String, "file_name": pl.String, "categories": pl.List(pl.Int64)},
    )
    return Labels(frame=frame, taxonomy=taxonomy, source=path)


@dataclass(frozen=True)
class Problem:
    """One problem in a label file.

    Attributes:
        kind: its class, one of those ``curate validate`` documents (``structure``, ``bad-record``, ``duplicate-id``,
            ``unknown-category``, ...).
        where: ``file`` or ``line N`` (CSV), or the record (``annotations[12]``).
        message: what is wrong, without the file and place.
    """

    kind: str
    where: str
    message: str

    def error(self, source: str | Path) -> LabelFileError:
        """The error a strict reader raises: ``"{source}, line 3: {message}"`` (``"{source}: {message}"`` for the
        whole file)."""
        place = "" if self.where == "file" else f", {self.where}"
        return LabelFileError(f"{source}{place}: {self.message}")


def parse_category(value: Any, taxonomy: Taxonomy, where: str) -> int | Problem:
    """``214``, ``214.0`` or ``"214.0"`` -> 214 when it is an id of the taxonomy, else the :class:`Problem`."""
    if isinstance(value, bool):
        return Problem("bad-record", where, f"category id {value!r} is not a number")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return Problem("bad-record", where, f"category id {value!r} is not a number")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return Problem("bad-record", where, f"category id {value!r} is not a whole number")
        value = int(value)
    if not isinstance(value, int):
        return Problem("bad-record", where, f"category id {value!r} is not a number")
    if value not in taxonomy.column_of:
        return Problem("unknown-category", where,
                       f"unknown category id {value} (not in taxonomy {taxonomy.name!r})")
    return value


def category_id(value: Any, taxonomy: Taxonomy, where: str) -> int:
    """Turn ``214``, ``214.0`` or ``"214.0"`` into 214 and check it is in the taxonomy.

    Raises:
        LabelFileError: ``"{where}: {problem}"``.
    """
    got = parse_category(value, taxonomy, where)
    if isinstance(got, Problem):
        raise LabelFileError(f"{where}: {got.message}")
    return got


def parse_tokens(text: str, where: str) -> list[str] | Problem:
    """The tokens of a category list, ``"[1.0, 9.0]"`` (Kaggle training file) or ``"1 9"`` (submission), in file
    order; a :class:`Problem` for unbalanced brackets."""
    body = text.strip()
    if body.startswith("[") != body.endswith("]"):
        return Problem("bad-record", where, f"unbalanced brackets in categories {body!r}")
    return [tok for tok in _SPLIT_RE.split(body.strip("[]").strip()) if tok]


def category_tokens(text: str, where: str) -> list[str]:
    """Split a category list into its tokens in file order: the one tokenizer of label files and submissions.

    Raises:
        LabelFileError: unbalanced brackets.
    """
    got = parse_tokens(text, where)
    if isinstance(got, Problem):
        raise LabelFileError(f"{where}: {got.message}")
    return got


def parse_category_list(text: str, taxonomy: Taxonomy, where: str) -> list[int]:
    """Parse ``"[1.0, 9.0]"`` (Kaggle training file) or ``"1 9"`` (submission style) into sorted unique ids."""
    return sorted({category_id(tok, taxonomy, where) for tok in category_tokens(text, where)})


def safe_relative_path(name: str, where: str) -> PurePosixPath:
    """Check that a file name from a label file stays inside the image root.

    Absolute paths, drive letters and ``..`` components are refused: a label file must never make
    fathombatch read or write outside the folder the user pointed it at.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise LabelFileError(f"{where}: file_name {name!r} is not a usable file name")
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(name).drive or ".." in posix.parts:
        raise LabelFileError(f"{where}: file_name {name!r} points outside the image folder; refused")
    return posix
