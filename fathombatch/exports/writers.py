"""Streaming, atomic writers for export tables: Parquet (with provenance metadata) or CSV (with a json sidecar)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from fathombatch.csvsafe import safe_frame
from fathombatch.errors import UsageError, param
from fathombatch.fsutil import atomic_path, write_json_atomic

METADATA_KEY = "fathombatch_export"


def table_format(dest: Path, allowed: tuple[str, ...] = (".parquet", ".csv")) -> str:
    """The output format of a path, from its extension."""
    suffix = dest.suffix.lower()
    if suffix not in allowed:
        raise UsageError(f"{param('out')} {dest}: the extension must be one of {', '.join(allowed)}")
    return suffix


def sidecar_path(dest: Path) -> Path:
    """``out.csv`` -> ``out.csv.meta.json``: where a CSV export records what produced it."""
    return dest.with_name(dest.name + ".meta.json")


@contextlib.contextmanager
def stream_table(dest: Path, provenance: dict[str, Any], empty: pl.DataFrame) -> Iterator[Any]:
    """Yield ``write(frame)``; on success the file (and, for CSV, its sidecar) is renamed into place.

    Args:
        dest: ``.parquet`` or ``.csv`` path.
        provenance: json-ready description of what produced the export.
        empty: a frame with the output schema, used when no rows are written at all.
    """
    fmt = table_format(dest)
    with atomic_path(dest) as tmp:
        if fmt == ".parquet":
            import pyarrow.parquet as pq

            writer: Any = None
            meta = {METADATA_KEY: json.dumps(provenance, sort_keys=True)}

            def write(frame: pl.DataFrame) -> None:
                nonlocal writer
                table = frame.to_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema.with_metadata(meta), compression="zstd")
                writer.write_table(table.replace_schema_metadata(meta))

            try:
                yield write
                if writer is None:
                    write(empty)
            finally:
                if writer is not None:
                    writer.close()
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                header = [True]

                def write(frame: pl.DataFrame) -> None:
                    safe_frame(frame).write_csv(fh, include_header=header[0])
                    header[0] = False

                yield write
                if header[0]:
                    empty.write_csv(fh, include_header=True)
    if fmt == ".csv":
        write_json_atomic(sidecar_path(dest), provenance)


def read_provenance(path: Path) -> dict[str, Any]:
    """The provenance of an export: Parquet metadata, or the CSV's sidecar."""
    if path.suffix.lower() == ".parquet":
        return json.loads(pl.read_parquet_metadata(path)[METADATA_KEY])
    return json.loads(sidecar_path(path).read_text(encoding="utf-8"))
