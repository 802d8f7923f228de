"""What a scores table carries besides its rows, for tables held in memory.

A Parquet scores table keeps its metadata (taxonomy, engine manifest, run parameters) in the file; a
``polars.DataFrame`` has no place for it. :func:`fathombatch.score` therefore remembers the metadata of each frame it
returns, for as long as that frame lives, and :func:`fathombatch.evaluate` looks it up, so a frame straight from
``score`` is evaluated with the same checks as its Parquet file (the engine's training images, its class frequencies
for the prior floor). A frame derived from it (filtered, joined, read back from a file without its metadata) is a
new object and is not remembered.
"""

from __future__ import annotations

import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from fathombatch import __version__
from fathombatch.backends import Engine, Manifest

__all__ = ["engine_metadata", "remember", "remembered", "table_metadata"]

_TABLES: dict[int, tuple[weakref.ref[pl.DataFrame], dict[str, Any]]] = {}


def remember(table: pl.DataFrame, meta: dict[str, Any]) -> None:
    """Keep ``meta`` for ``table`` until the frame is garbage-collected."""
    key = id(table)

    def forget(ref: weakref.ref[pl.DataFrame]) -> None:
        if key in _TABLES and _TABLES[key][0] is ref:
            del _TABLES[key]

    _TABLES[key] = (weakref.ref(table, forget), meta)


def remembered(table: pl.DataFrame) -> dict[str, Any] | None:
    """The metadata :func:`remember` kept for this very frame, or None."""
    entry = _TABLES.get(id(table))
    return entry[1] if entry is not None and entry[0]() is table else None


def engine_metadata(path: Path, manifest: Manifest) -> dict[str, Any]:
    """The part of a table's metadata an engine alone determines: taxonomy, manifest, engine file and fingerprint."""
    return {
        "taxonomy": {"name": manifest.taxonomy.name, "classes": manifest.taxonomy.to_records()},
        "engine_manifest": manifest.summary_json(),
        "run": {"engine": str(path), "engine_fingerprint": manifest.fingerprint()},
    }


def table_metadata(engine: Engine, root: Path, files: int, **run: Any) -> dict[str, Any]:
    """Metadata as ``score`` writes it into a table (:mod:`fathombatch.scores`), for rows scored in memory.

    Args:
        root: the folder the rows' paths are relative to.
        files: number of files scored.
        run: the run's parameters (decoder, top_k, osd, batch_size).
    """
    meta = engine_metadata(engine.path, engine.manifest)
    meta["run"].update(run, root=str(root.resolve()), files=files, inference_precision=engine.inference_precision)
    return {"version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **meta}
