"""``fathombatch.evaluate(...)``: MAP@20 and the rest of ``evaluate``'s figures for a frame or a file.

The figures and every guard are :func:`fathombatch.report.evaluate`'s (truth that is the predictions themselves is
refused, ids matched without an image extension, the prior floor, truth the engine was trained on): only the way the
predictions arrive differs. A frame from :func:`fathombatch.score` brings its metadata along (see
:mod:`fathombatch.api.frames`); for any other frame, ``engine=`` supplies it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import polars as pl

from fathombatch.api.engine import LoadedEngine
from fathombatch.api.frames import engine_metadata, remembered
from fathombatch.api.names import python_names
from fathombatch.backends import checked_manifest
from fathombatch.errors import UsageError
from fathombatch.evalinput import frame_predictions
from fathombatch.metrics import K
from fathombatch.packaged import resolve_data_path
from fathombatch.report import EvalConfig, EvalResult
from fathombatch.report import evaluate as evaluate_config

__all__ = ["FRAME", "evaluate"]

log = logging.getLogger(__name__)

#: How messages and the result name predictions held in memory.
FRAME = "the scores DataFrame"


def evaluate(scores: pl.DataFrame | str | Path | EvalConfig, *, truth: str | Path | None = None,
             osd_truth: str | Path | None = None, run: str | Path | None = None, k: int = K,
             engine: str | Path | LoadedEngine | None = None) -> EvalResult:
    """Evaluate predictions against truth labels, as ``fathombatch evaluate`` does (without writing a report).

    Args:
        scores: a frame returned by :func:`fathombatch.score`, a scores table or submission CSV file, or an
            :class:`~fathombatch.report.EvalConfig` (then no other argument).
        truth: Kaggle CSV or COCO json with the true labels, or a shipped one (``"fathomnet2023:train.csv"``).
        osd_truth: ``id,osd`` CSV (1 = out of sample) for sAUC and the competition score.
        run: training run folder for the training curves (default: the one the engine manifest names).
        k: the MAP cut-off (the competition's is 20).
        engine: the engine that scored a frame not returned by ``score`` as it is (filtered, or read from a file):
            its taxonomy, class frequencies (for the prior floor) and training images (for the held-out check).

    Returns:
        :class:`~fathombatch.report.EvalResult`: ``map_at_k``, ``prior_floor``, ``sauc``, ``competition_score``,
        ``per_class`` (a frame), ``missing``, ``warnings``...; ``to_json()`` gives them as a dict.

    Raises:
        UsageError: missing files, no truth id among the scored ids, truth that is the predictions themselves.
        LabelFileError: a malformed label file (the message names the line).
    """
    with python_names():
        if isinstance(scores, EvalConfig):
            if truth is not None or osd_truth is not None or run is not None or engine is not None:
                raise UsageError("an EvalConfig carries every setting: pass it alone")
            return evaluate_config(scores)
        if truth is None:
            raise UsageError("truth is required: a Kaggle CSV or COCO json with the true labels")
        truth_path = resolve_data_path(truth) if isinstance(truth, str) else Path(truth)
        if isinstance(scores, pl.DataFrame):
            cfg = EvalConfig(scores=Path(FRAME), truth=truth_path, osd_truth=maybe_path(osd_truth), run=maybe_path(run),
                             k=k)
            return evaluate_config(cfg, predictions=frame_predictions(scores, frame_metadata(scores, engine), FRAME))
        if isinstance(scores, (str, os.PathLike)):
            if engine is not None:
                raise UsageError("engine= is for a frame; a scores table records its engine itself")
            return evaluate_config(EvalConfig(scores=Path(scores), truth=truth_path, osd_truth=maybe_path(osd_truth),
                                              run=maybe_path(run), k=k))
        raise UsageError(f"scores must be a polars DataFrame, a file path or an EvalConfig, "
                         f"got {type(scores).__name__}")


def maybe_path(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)


def frame_metadata(frame: pl.DataFrame, engine: str | Path | LoadedEngine | None) -> dict[str, Any]:
    """The metadata to evaluate ``frame`` with: ``engine``'s when given, else what ``score`` remembered, else none
    (with a warning saying what is then assumed and left unchecked)."""
    if isinstance(engine, LoadedEngine):
        return engine_metadata(engine.path, engine.manifest)
    if engine is not None:
        return engine_metadata(*checked_manifest(engine))
    meta = remembered(frame)
    if meta is None:
        log.warning("%s was not returned by score() as it is (or was changed since), so it carries no engine "
                    "manifest: the classes are taken to be FathomNet 2023's, the prior floor uses the truth's own "
                    "frequencies, and overlap with the engine's training images is not checked; pass engine= to "
                    "evaluate it with them", FRAME)
        return {}
    return meta
