"""The scores table's columns (their one definition) and how a batch of scored files becomes rows.

One row per discovered file (documented in docs/output.md)::

    image_id        str        file stem (the competition's image id)
    path            str        path relative to the scored folder, '/'-separated
    status          str        'ok' or 'error'
    error           str|null   why the file could not be scored
    width, height   i32|null   displayed size in pixels (after EXIF orientation)
    top_categories  list[i32]  category ids, best first, top-k (null for errors)
    osd             f32|null   out-of-sample score in [0, 1]
    <class name>    f32|null   one probability column per class, in taxonomy (id) order
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    # Only for annotations: fathombatch.taxonomy imports FIXED_COLUMN_NAMES from here at run time.
    from fathombatch.taxonomy import Taxonomy

FIXED_COLUMNS: dict[str, pl.DataType] = {
    "image_id": pl.String(),
    "path": pl.String(),
    "status": pl.String(),
    "error": pl.String(),
    "width": pl.Int32(),
    "height": pl.Int32(),
    "top_categories": pl.List(pl.Int32()),
    "osd": pl.Float32(),
}
#: The fixed column names in table order; class names may not reuse them (the taxonomy refuses such a class).
FIXED_COLUMN_NAMES: tuple[str, ...] = tuple(FIXED_COLUMNS)


def schema(taxonomy: Taxonomy) -> pl.Schema:
    """The full table schema for a taxonomy: the fixed columns, then one Float32 column per class in column order."""
    return pl.Schema({**FIXED_COLUMNS, **{name: pl.Float32() for name in taxonomy.names}})


def build_frame(
    taxonomy: Taxonomy,
    *,
    paths: Sequence[str],
    sizes: Sequence[tuple[int, int] | None],
    errors: Sequence[str | None],
    ok: Sequence[int],
    probs: np.ndarray,
    top_columns: np.ndarray,
    osd: np.ndarray,
) -> pl.DataFrame:
    """Rows for one batch of files.

    Args:
        paths: relative display paths of the batch, length n.
        sizes: per file (width, height) or None.
        errors: per file message or None.
        ok: positions of the files that were scored, in the row order of ``probs``.
        probs: (len(ok), C) float32 probabilities.
        top_columns: (len(ok), k) column indices, best first.
        osd: (len(ok),) out-of-sample scores.

    Returns:
        n rows with the columns of :func:`schema`.
    """
    n = len(paths)
    c = len(taxonomy)
    full = np.full((n, c), np.nan, dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    osd_full = np.full(n, np.nan, dtype=np.float32)
    top_lists: list[list[int] | None] = [None] * n
    ids = np.asarray(taxonomy.ids, dtype=np.int32)
    if len(ok):
        full[ok] = probs
        valid[ok] = True
        osd_full[ok] = osd
        top_ids = ids[top_columns]
        for row, pos in enumerate(ok):
            top_lists[pos] = top_ids[row].tolist()
    columns: dict[str, Any] = {
        "image_id": [Path(p).stem for p in paths],
        "path": list(paths),
        "status": ["ok" if v else "error" for v in valid],
        "error": [None if v else (e or "unknown error") for v, e in zip(valid, errors, strict=True)],
        "width": [s[0] if s else None for s in sizes],
        "height": [s[1] if s else None for s in sizes],
        "top_categories": top_lists,
        "osd": pl.Series(osd_full).fill_nan(None),
    }
    frame = pl.DataFrame(columns, schema=FIXED_COLUMNS)
    probs_frame = pl.DataFrame(full, schema=[(name, pl.Float32) for name in taxonomy.names], orient="row")
    # NaN marks "no probability" only for error rows; store it as null so Parquet readers see missing values.
    probs_frame = probs_frame.with_columns(pl.all().fill_nan(None))
    return pl.concat([frame, probs_frame], how="horizontal")
