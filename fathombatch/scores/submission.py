"""The competition's submission CSV, written from a finished scores table.

Kaggle rejects a submission that leaves out an id, so every row of the table gets a line — also the files that
could not be scored. Those have no prediction of their own; they get the *frequency prior*: the classes ranked by
how many training images contain them (the same ranking as the "prior floor" of :mod:`fathombatch.metrics`), and
``osd`` 1.0 (maximally out of sample: nothing about the image is known to be in sample).

Where the training frequencies come from, best first (:func:`error_prior`):

* ``engine``: the engine manifest's ``class_counts``, which ``export`` copies from the training run — the
  frequencies of the data this very model learned from;
* ``fathomnet2023``: the FathomNet 2023 ``train.csv`` shipped with fathombatch, when the engine has no counts but
  uses the FathomNet 2023 class list unchanged;
* ``taxonomy-order``: no frequencies are known (a custom class list without counts), so classes in category-id
  order. This ranking carries no information; the score summary names the source so it is not mistaken for one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from fathombatch.backends.manifest import Manifest
from fathombatch.errors import OutputError
from fathombatch.fsutil import atomic_path
from fathombatch.metrics import prior_ranking
from fathombatch.taxonomy import Taxonomy, fathomnet2023

PriorSource = Literal["engine", "fathomnet2023", "taxonomy-order"]

_DESCRIPTIONS: dict[PriorSource, str] = {
    "engine": "the engine's training class frequencies",
    "fathomnet2023": "FathomNet 2023 train.csv class frequencies",
    "taxonomy-order": "category-id order: no training frequencies are known for this class list",
}
#: osd given to files that could not be scored: nothing shows they are in sample.
ERROR_OSD = 1.0


@dataclass(frozen=True)
class ErrorPrior:
    """The prediction a submission gives a file that could not be scored.

    Attributes:
        categories: category ids, most frequent in training first, ``top_k`` long.
        source: where the frequencies came from (see the module docstring).
    """

    categories: tuple[int, ...]
    source: PriorSource

    @property
    def description(self) -> str:
        """Where the ranking came from, in words."""
        return _DESCRIPTIONS[self.source]

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "categories": list(self.categories), "osd": ERROR_OSD}


def error_prior(manifest: Manifest, top_k: int) -> ErrorPrior:
    """The frequency-prior ranking for error rows, from the best source available (module docstring).

    Args:
        manifest: the engine's manifest (its class list and, if recorded, its training class counts).
        top_k: ranking length, the table's ``top_categories`` length; 1..number of classes.
    """
    return prior_for(manifest.taxonomy, manifest.class_counts, top_k)


def prior_for(taxonomy: Taxonomy, class_counts: Sequence[int] | None, top_k: int) -> ErrorPrior:
    """The frequency-prior ranking of a class list, from ``class_counts`` (images per class, in taxonomy order) or,
    without them, the best other source (module docstring); also what ``evaluate`` compares a submission's rows to."""
    source: PriorSource
    if class_counts is not None:
        counts, source = np.asarray(class_counts, dtype=np.int64), "engine"
    elif taxonomy.ids == fathomnet2023().ids and taxonomy.names == fathomnet2023().names:
        counts, source = fathomnet2023_class_counts(), "fathomnet2023"
    else:
        counts, source = np.zeros(len(taxonomy), dtype=np.int64), "taxonomy-order"  # ties go to the lower column
    ids = np.asarray(taxonomy.ids, dtype=np.int64)[prior_ranking(counts, top_k)]
    return ErrorPrior(categories=tuple(int(i) for i in ids), source=source)


@functools.cache
def fathomnet2023_class_counts() -> np.ndarray:
    """(290,) int64: images per class in FathomNet 2023's ``train.csv`` (package data), in category-id order."""
    from fathombatch.labels import read_kaggle_csv

    with resources.as_file(resources.files("fathombatch") / "data" / "fathomnet2023" / "train.csv") as path:
        counts = read_kaggle_csv(path, fathomnet2023()).class_counts()
    counts.flags.writeable = False  # cached: shared by every caller
    return counts


def write_submission(table: pl.DataFrame, dest: Path, *, prior: ErrorPrior) -> int:
    """Write the competition CSV (``id,categories,osd``; categories space-separated, best first), one line per row.

    Args:
        table: the scores table, at least ``image_id``, ``status``, ``top_categories`` and ``osd``, in output order.
        dest: the CSV to write (atomically).
        prior: what rows with status ``error`` get instead of a prediction.

    Returns:
        the number of lines written that carry the prior (the error rows).
    """
    is_error = pl.col("status") == "error"
    prior_text = " ".join(str(c) for c in prior.categories)
    rows = table.select(
        pl.col("image_id").alias("id"),
        pl.when(is_error).then(pl.lit(prior_text))
        .otherwise(pl.col("top_categories").cast(pl.List(pl.String)).list.join(" ")).alias("categories"),
        pl.when(is_error).then(pl.lit(ERROR_OSD)).otherwise(pl.col("osd").cast(pl.Float64)).round(6).alias("osd"),
    )
    try:
        with atomic_path(dest) as tmp:
            rows.write_csv(tmp)
    except OSError as exc:
        raise OutputError(f"cannot write {dest}: {exc.strerror or exc}") from None
    return int(table.select(is_error.sum()).item())


def shared_id_warning(table: pl.DataFrame) -> str | None:
    """A warning when two or more scored files share an ``image_id`` (a file stem), with an example of the files.

    The table keeps them apart by ``path``, but a submission's ``id`` is the image id, and Kaggle rejects an id that
    appears twice (``a/y.jpg`` and ``b/y.jpg``, or ``y.jpg`` and ``y.png`` in one folder).
    """
    shared = table.filter(pl.len().over("image_id") > 1).sort("image_id", "path")
    if shared.height == 0:
        return None
    n_ids = shared["image_id"].n_unique()
    first = shared["image_id"][0]
    paths = ", ".join(shared.filter(pl.col("image_id") == first)["path"].head(3).to_list())
    return (f"{n_ids} image_id(s) are shared by two or more files (e.g. {first!r}: {paths}); the table keeps them "
            "apart by 'path', but the submission CSV repeats those ids, which Kaggle rejects: rename the files so "
            "that each name (without extension) is unique")
