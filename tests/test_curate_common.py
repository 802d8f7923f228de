"""Shared helpers for the curation tests: fake scores tables over a synthetic dive, and a CLI runner.

Scores tables are built directly with :func:`fathombatch.scores.schema.build_frame` (random but seeded
probabilities), so the curation tests do not need to train an engine; the schema and metadata are those
`fathombatch score` writes.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pyarrow.parquet as pq
from click.testing import CliRunner

from fathombatch.decode.discover import discover
from fathombatch.scores.metadata import encode_metadata
from fathombatch.scores.schema import build_frame
from fathombatch.taxonomy import fathomnet2023


def make_scores(root: Path, out: Path, *, seed: int = 0, error_paths: tuple[str, ...] = (),
                extra_root_meta: bool = True, thresholds: list[float] | None = None) -> Path:
    """Write a scores table for every image under ``root`` (plus error rows for ``error_paths``).

    Probabilities are Beta(0.3, 3) draws (mostly small, a few large, some near 0.5), seeded, float32.
    ``thresholds``: per-class presence thresholds recorded in the table's engine manifest (None: no manifest).
    """
    tax = fathomnet2023()
    paths = discover(root)
    rng = np.random.default_rng(seed)
    probs = rng.beta(0.3, 3.0, size=(len(paths), len(tax))).astype(np.float32)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :20]
    all_paths = [*paths, *error_paths]
    frame = build_frame(
        tax,
        paths=all_paths,
        sizes=[(160, 120)] * len(paths) + [None] * len(error_paths),
        errors=[None] * len(paths) + ["empty file (0 bytes)"] * len(error_paths),
        ok=list(range(len(paths))),
        probs=probs,
        top_columns=top,
        osd=(1.0 - probs.max(axis=1)).astype(np.float32),
    ).sort("path")
    meta = {"version": "test", "taxonomy": {"name": tax.name, "classes": tax.to_records()}}
    if thresholds is not None:
        meta["engine_manifest"] = {"name": "fake", "thresholds": thresholds}
    if extra_root_meta:
        meta["run"] = {"root": str(root.resolve())}
    table = frame.to_arrow().replace_schema_metadata(encode_metadata(meta))
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return out


def invoke(command: click.Command, *args: object) -> tuple[int, str, str]:
    """Run a click command; returns (exit code, stdout, stderr)."""
    result = CliRunner().invoke(command, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr
