"""One decoded batch -> its rows of the scores table: the step every runner (local, GPU workers, Ray actors) shares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from fathombatch.backends import Engine
from fathombatch.decode.base import DecodedBatch
from fathombatch.fsutil import display_path
from fathombatch.metrics import ranking_from_scores
from fathombatch.osd import OsdScorer
from fathombatch.probability import sigmoid
from fathombatch.scoring.parts import file_signature
from fathombatch.table import build_frame

NOT_FINITE = "the engine returned NaN or infinite logits for this image"


def batches(items: list[str], size: int) -> Iterator[list[str]]:
    """Consecutive slices of ``items`` of ``size`` (the last one shorter)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def score_batch(engine: Engine, root: Path, paths: list[str], decoded: DecodedBatch, top_k: int,
                osd: OsdScorer) -> pl.DataFrame:
    """Rows for one decoded batch; rows whose logits are not finite become errors.

    Args:
        engine: the opened engine; its manifest's taxonomy names the probability columns.
        root: the dump folder ``paths`` are relative to (for each file's size and mtime, the resume signature).
        paths: the batch's files, in the order ``decoded`` holds them.
        decoded: the decoder's output for ``paths``.
        top_k: length of ``top_categories``.
        osd: the out-of-sample scorer.

    Returns:
        One row per path: the table's columns (:func:`fathombatch.table.build_frame`) plus the private ``_size`` and
        ``_mtime_ns`` columns of the part files.
    """
    taxonomy = engine.manifest.taxonomy
    ok, errors = list(decoded.ok), list(decoded.errors)
    if ok:
        outputs = engine.run(decoded.images)
        logits = outputs["logits"]
        finite = np.isfinite(logits).all(axis=1)
        if not finite.all():
            for pos in np.asarray(ok)[~finite]:
                errors[pos] = NOT_FINITE
            ok = [pos for pos, f in zip(ok, finite, strict=True) if f]
            logits = logits[finite]
            outputs = {k: v[finite] for k, v in outputs.items()}
        probs = sigmoid(logits)
        # Rank by logits: float32 probabilities saturate at 1.0 for logits above ~17, which would make ties.
        top = ranking_from_scores(logits, top_k)
        osd_values = osd(probs, outputs.get("features"))
    else:
        probs = np.empty((0, len(taxonomy)), dtype=np.float32)
        top = np.empty((0, top_k), dtype=np.int64)
        osd_values = np.empty(0, dtype=np.float32)
    frame = build_frame(
        taxonomy,
        paths=[display_path(p) for p in paths],
        sizes=decoded.sizes,
        errors=errors,
        ok=ok,
        probs=probs,
        top_columns=top,
        osd=osd_values,
    )
    sizes, mtimes = zip(*(file_signature(root / p) for p in paths), strict=True)
    return frame.with_columns(
        pl.Series("_size", sizes, dtype=pl.Int64), pl.Series("_mtime_ns", mtimes, dtype=pl.Int64)
    )
