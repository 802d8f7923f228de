"""The scores table: its schema, how rows are built from a batch, and its Parquet metadata.

One row per discovered file (documented in docs/output.md)::

    image_id        str        file stem (the competition's image id)
    path            str        path relative to the scored folder, '/'-separated
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

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fathombatch.errors import UsageError
from fathombatch.taxonomy import Taxonomy

METADATA_KEY = "fathombatch"
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

#: The file signature of each row, appended after the class columns (see the module docstring).
SIGNATURE_COLUMNS: dict[str, pl.DataType] = {"file_size": pl.Int64(), "file_mtime_ns": pl.Int64()}


def schema(taxonomy: Taxonomy) -> pl.Schema:
    """The full table schema for a taxonomy."""
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


def encode_metadata(meta: dict[str, Any]) -> dict[str, str]:
    return {METADATA_KEY: json.dumps(meta, sort_keys=True)}


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``fathombatch`` metadata of a scores table (empty dict when absent).

    It is Parquet file-level key-value metadata (``pyarrow.parquet.read_metadata(path).metadata`` shows it too).
    """
    try:
        raw = pl.read_parquet_metadata(path)
    except Exception as exc:  # noqa: BLE001 - polars raises ComputeError/OSError for non-Parquet files
        raise UsageError(f"{path} is not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    value = raw.get(METADATA_KEY)
    if not value:
        return {}
    try:
        meta = json.loads(value)
    except json.JSONDecodeError:
        raise UsageError(f"{path}: its '{METADATA_KEY}' metadata is not valid json") from None
    return meta if isinstance(meta, dict) else {}


def taxonomy_from_metadata(meta: dict[str, Any]) -> Taxonomy | None:
    """The taxonomy stored in a table's metadata, if any."""
    if "taxonomy" not in meta:
        return None
    return Taxonomy.from_records(meta["taxonomy"]["classes"], name=meta["taxonomy"].get("name", "custom"))
