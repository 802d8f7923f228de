"""The scores table's columns (their one definition) and how a batch of scored files becomes rows.

One row per discovered file (documented in docs/output.md)::

    image_id        str        file stem (the competition's image id)
    path            str        path relative to the scored folder, '/'-separated
    frame_index     i64|null   a video frame's 0-based position in the decoded stream (null for stills, video errors)
    timestamp_s     f64|null   a video frame's presentation time in seconds (null for stills)
    status          str        'ok' or 'error'
    error           str|null   why the file could not be scored
    width, height   i32|null   displayed size in pixels (after EXIF orientation)
    top_categories  list[i32]  category ids, best first, top-k (null for errors)
    osd             f32|null   out-of-sample score in [0, 1]
    <class name>    f32|null   one probability column per class, in taxonomy (id) order
    file_size       i64|null   the file's size in bytes when it was scored
    file_mtime_ns   i64|null   its modification time then, in ns since the epoch

The last two (:data:`SIGNATURE_COLUMNS`) are what an update (``ScoreConfig.update``) compares to tell unchanged files;
they come after the class columns because the scoring core appends them to the rows it builds.

The file's key-value metadata holds, under the key ``fathombatch``, a json object with the taxonomy, the engine
manifest, the run parameters and the fathombatch version.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl


class ClassList(Protocol):
    """What the schema needs of a taxonomy (:class:`fathombatch.taxonomy.Taxonomy`): its class names and ids in
    column order. A protocol, because the taxonomy imports the fixed column names from here."""

    @property
    def names(self) -> Sequence[str]: ...

    @property
    def ids(self) -> Sequence[int]: ...


FIXED_COLUMNS: dict[str, pl.DataType] = {
    "image_id": pl.String(),
    "path": pl.String(),
    # Video frames (fathombatch.decode.video): null on the rows of stills, so one schema holds both.
    "frame_index": pl.Int64(),
    "timestamp_s": pl.Float64(),
    "status": pl.String(),
    "error": pl.String(),
    "width": pl.Int32(),
    "height": pl.Int32(),
    "top_categories": pl.List(pl.Int32()),
    "osd": pl.Float32(),
}
#: The fixed column names in table order; class names may not reuse them (the taxonomy refuses such a class).
FIXED_COLUMN_NAMES: tuple[str, ...] = tuple(FIXED_COLUMNS)
#: Fixed columns added after the first tables were written (video frames, 2026-11-30): a table without them is still
#: a scores table, read as if they were null (every row a still), so no user's earlier table stops opening.
ADDED_COLUMNS: tuple[str, ...] = ("frame_index", "timestamp_s")

#: The file signature of each row, appended after the class columns (see the module docstring).
SIGNATURE_COLUMNS: dict[str, pl.DataType] = {"file_size": pl.Int64(), "file_mtime_ns": pl.Int64()}


def schema(taxonomy: ClassList) -> pl.Schema:
    """The full table schema for a taxonomy: the fixed columns, then one Float32 column per class in column order."""
    return pl.Schema({**FIXED_COLUMNS, **{name: pl.Float32() for name in taxonomy.names}})


def build_frame(
    taxonomy: ClassList,
    *,
    paths: Sequence[str],
    sizes: Sequence[tuple[int, int] | None],
    errors: Sequence[str | None],
    ok: Sequence[int],
    probs: np.ndarray,
    top_columns: np.ndarray,
    osd: np.ndarray,
    image_ids: Sequence[str] | None = None,
    frame_indices: Sequence[int | None] | None = None,
    timestamps: Sequence[float | None] | None = None,
) -> pl.DataFrame:
    """Rows for one batch of files (or of video frames: then several rows may share a path).

    Args:
        paths: relative display paths of the batch, length n.
        sizes: per file (width, height) or None.
        errors: per file message or None.
        ok: positions of the files that were scored, in the row order of ``probs``.
        probs: (len(ok), C) float32 probabilities.
        top_columns: (len(ok), k) column indices, best first.
        osd: (len(ok),) out-of-sample scores.
        image_ids: per row its id (None: each path's file stem, as for stills).
        frame_indices: per row a video frame's index or None (None: all null, as for stills).
        timestamps: per row a video frame's time in seconds or None (None: all null).

    Returns:
        n rows with the columns of :func:`schema`.
    """
    n = len(paths)
    full = np.full((n, len(taxonomy.names)), np.nan, dtype=np.float32)
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
        "image_id": list(image_ids) if image_ids is not None else [Path(p).stem for p in paths],
        "path": list(paths),
        "frame_index": list(frame_indices) if frame_indices is not None else [None] * n,
        "timestamp_s": list(timestamps) if timestamps is not None else [None] * n,
        "status": ["ok" if v else "error" for v in valid],
        "error": [None if v else (e or "unknown error") for v, e in zip(valid, errors, strict=True)],
        "width": [s[0] if s else None for s in sizes],
        "height": [s[1] if s else None for s in sizes],
        "top_categories": top_lists,
        "osd": pl.Series(osd_full).fill_nan(None),
    }
    # NaN marks "no probability" only for error rows; store it as null so Parquet readers see missing values.
    probs_frame = pl.DataFrame(full, schema=[(name, pl.Float32) for name in taxonomy.names], orient="row")
    return pl.concat([pl.DataFrame(columns, schema=FIXED_COLUMNS), probs_frame.with_columns(pl.all().fill_nan(None))],
                     how="horizontal")
