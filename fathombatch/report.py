"""Evaluate a scores table (or a submission CSV) against truth labels and write a report.

MAP@20 is computed the competition's way (see :mod:`fathombatch.metrics`) over *every image in the truth*: an
image the table lacks, or has only as an error row, scores 0 and is listed, never silently dropped. The
frequency-prior floor is printed beside it: ranking categories by the engine's training-set frequency (from its
manifest), or by the truth's own frequency when the engine records none; a model that does not clear it is flagged.
What makes a figure wrong without looking wrong (ids that do not match, predictions passed as truth, truth the
engine was trained on) is checked by :mod:`fathombatch.evalchecks` and :mod:`fathombatch.trainset`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fathombatch import __version__
from fathombatch.errors import LabelFileError, UsageError
from fathombatch.evalchecks import match_ids, refuse_predictions_as_truth, refuse_same_file, unlabelled_truth_warning
from fathombatch.evalinput import Aligned, Predictions, align, categories_in_file_order, open_predictions
from fathombatch.evalresult import EvalConfig, EvalResult
from fathombatch.fsutil import atomic_path, write_json_atomic, write_text_atomic
from fathombatch.labels import Labels, read_labels
from fathombatch.metrics import (
    average_precision_at_k,
    competition_score,
    floor_warning,
    per_class_ap,
    prior_floor,
    ranking_from_scores,
    sauc,
)
from fathombatch.reportpages import render_html, render_markdown
from fathombatch.scores.metadata import EngineSummary, ScoresMetadata
from fathombatch.taxonomy import Taxonomy
from fathombatch.trainset import resolve_run, training_overlap


def _read_osd_truth(path: Path) -> dict[str, int]:
    if not path.is_file():
        raise UsageError(f"osd truth file {path} does not exist")
    try:
        frame = pl.read_csv(path, schema_overrides={"id": pl.String})
    except Exception as exc:  # noqa: BLE001 - polars raises several types for malformed CSV
        raise LabelFileError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    if "id" not in frame.columns or "osd" not in frame.columns:
        raise LabelFileError(f"{path}, line 1: header must contain 'id' and 'osd'")
    values: dict[str, int] = {}
    for line, (image_id, osd) in enumerate(frame.select("id", "osd").iter_rows(), start=2):
        if image_id is None or osd is None or str(osd).strip() not in ("0", "1", "0.0", "1.0"):
            raise LabelFileError(f"{path}, line {line}: expected an id and osd 0 or 1, got {image_id!r}, {osd!r}")
        values[str(image_id)] = int(float(osd))
    return values


def evaluate(cfg: EvalConfig, *, predictions: Predictions | None = None) -> EvalResult:
    """Compute MAP@k, the prior floor, per-class AP and (with osd truth) sAUC and the competition score.

    Args:
        predictions: already opened (a frame held in memory, :func:`~fathombatch.evalinput.frame_predictions`);
            ``cfg.scores`` then only names them. None: open ``cfg.scores``.

    Raises:
        UsageError: a missing file, no truth id among the evaluated ids, or truth that is a ranking (a submission).
    """
    if predictions is None:
        refuse_same_file(cfg.scores, cfg.truth)
        predictions = open_predictions(cfg.scores)
    preds = predictions
    taxonomy = preds.taxonomy
    truth: Labels = read_labels(cfg.truth, taxonomy)
    if len(truth) == 0:
        raise UsageError(f"{cfg.truth} contains no images")
    evaluated_ids = preds.rows.select("image_id").collect()["image_id"]
    match = match_ids(truth.image_ids, evaluated_ids.to_list(), cfg.truth, cfg.scores)
    got = align(preds, match.keys, cfg.k, cfg.scores)
    in_file_order = categories_in_file_order(truth).filter(pl.Series(got.present))
    copied = refuse_predictions_as_truth(truth.frame["categories"], in_file_order.to_list(), got.predicted.to_list(),
                                         cfg.k, cfg.truth)
    unlabelled = unlabelled_truth_warning(truth.frame["categories"], cfg.truth)
    warnings = [*match.warnings, *got.warnings, *(w for w in (copied, unlabelled) if w)]
    y = truth.multi_hot()
    ranked = got.ranked if got.ranked is not None else ranking_from_scores(got.probs, cfg.k)
    ranked[~got.present] = -1  # no prediction at all: AP 0
    map_k = float(average_precision_at_k(y, ranked, cfg.k).mean())
    engine = preds.metadata.engine
    counts = engine.class_counts
    if counts is not None and len(counts) == len(taxonomy):
        train_counts, floor_source = np.asarray(counts), "engine training-set frequencies"
    else:
        train_counts, floor_source = y.sum(axis=0), "frequencies of the truth labels themselves"
    floor = prior_floor(y, train_counts, cfg.k)
    below = floor_warning(map_k, floor, cfg.k)
    warnings += [below] if below else []
    scored_keys = [key for key, present in zip(match.keys, got.present, strict=True) if present]
    overlap = _training_overlap(scored_keys, cfg, engine, warnings)
    ids = truth.image_ids
    sauc_value, comp, n_osd = _osd_metrics(cfg, ids, match.keys, got, map_k, warnings)
    result = EvalResult(
        map_at_k=map_k, prior_floor=floor, floor_source=floor_source, k=cfg.k, n_truth=len(ids),
        n_scored=int(got.present.sum()), missing=[ids[i] for i in np.flatnonzero(~got.present)], n_extra=got.n_extra,
        sauc=sauc_value, competition_score=comp, n_osd=n_osd, per_class=_per_class(taxonomy, y, got.probs),
        report=cfg.report, warnings=warnings, run=_training_run(cfg, preds.metadata, warnings),
        n_truth_in_training=overlap, evaluated=preds.kind, provenance=_provenance(preds),
    )
    if cfg.report is not None:
        write_report(result, cfg, cfg.report)
    return result


def _training_overlap(keys: list[str], cfg: EvalConfig, engine: EngineSummary, warnings: list[str]) -> int | None:
    """Scored truth images (``keys``) the engine was trained on (None: unknown), with a warning either way but zero;
    a truth image without a prediction is in no figure, so it is not counted."""
    if not engine.recorded:
        return None  # a submission, or a table without an engine manifest: nothing to check against
    overlap = training_overlap(keys, cfg.truth, engine.provenance)
    if overlap is None:
        warnings.append("cannot tell whether the truth holds images the engine was trained on: its manifest does not "
                        "record its training images (export the run again to record them)")
    elif overlap:
        warnings.append(f"{overlap} of the {len(keys)} scored truth images were used to train the engine "
                        f"{engine.name or ''!r}: MAP@{cfg.k} over them is not a held-out figure")
    return overlap


def _osd_metrics(
    cfg: EvalConfig, ids: list[str], keys: list[str], got: Aligned, map_k: float, warnings: list[str]
) -> tuple[float | None, float | None, int | None]:
    """(sAUC, competition score, images used) with osd truth; Nones without. An osd id is the truth's id or the
    id it was matched to (without its image extension)."""
    if cfg.osd_truth is None:
        return None, None, None
    osd_truth = _read_osd_truth(cfg.osd_truth)
    labels = {i: osd_truth.get(ids[i], osd_truth.get(keys[i])) for i in range(len(ids))}
    have = [i for i in range(len(ids)) if got.present[i] and labels[i] is not None and not np.isnan(got.osd[i])]
    if len(have) < len(ids):
        warnings.append(f"sAUC uses {len(have)} of {len(ids)} truth images (the others lack a score or an osd label)")
    try:
        value = sauc(np.array([labels[i] for i in have]), got.osd[have])
    except ValueError as exc:
        warnings.append(f"sAUC not computed: {exc}")
        return None, None, len(have)
    return value, competition_score(value, map_k), len(have)


def _per_class(taxonomy: Taxonomy, y: np.ndarray, probs: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "category_id": list(taxonomy.ids),
            "name": list(taxonomy.names),
            "supercategory": list(taxonomy.supercategories),
            "support": y.sum(axis=0).astype(np.int64),
            "ap": pl.Series(per_class_ap(y, probs), dtype=pl.Float64).fill_nan(None),
        }
    )


def _training_run(cfg: EvalConfig, meta: ScoresMetadata, warnings: list[str]) -> Path | None:
    """The run folder for the training curves: ``cfg.run``, else the one the engine manifest names."""
    run = cfg.run
    recorded = meta.engine.training_run
    note = ""
    if run is None and recorded is not None:
        # A relative run path is relative to the manifest's folder (the engine's, as the table recorded it), never
        # to wherever evaluate happens to run.
        engine = meta.run.engine
        run = resolve_run(recorded, Path(engine).parent if engine is not None else Path())
        if not Path(recorded).is_absolute():
            note = f" (the engine manifest names the run folder {recorded!r}, relative to the manifest's folder)"
    if run is not None and not (run / "metrics.parquet").is_file():
        warnings.append(f"no training curves: {run / 'metrics.parquet'} not found{note}")
        return None
    return run


def _provenance(preds: Predictions) -> dict[str, Any]:
    """What was evaluated, by what and when: engine name and fingerprint, fathombatch versions, dates (UTC)."""
    meta = preds.metadata
    return {
        "evaluated": preds.kind,
        "engine": meta.engine.name,
        "engine_arch": meta.engine.arch,
        "engine_runtime": meta.engine.runtime,
        "engine_precision": meta.engine.precision,
        "engine_file": meta.run.engine,
        "engine_fingerprint": meta.run.engine_fingerprint,
        "scored_with": meta.version,
        "scored_at": meta.created,
        "evaluated_with": __version__,
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_report(result: EvalResult, cfg: EvalConfig, out: Path) -> None:
    """Write metrics.json, per_class.parquet, report.md, plots, report.html and (if any) missing.csv into ``out``."""
    from fathombatch import plots

    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "headline.png": plots.headline(out / "headline.png", result.map_at_k, result.prior_floor, result.k,
                                       result.sauc, result.competition_score),
        "per_class_ap.png": plots.per_class(out / "per_class_ap.png", result.per_class),
        "supercategories.png": plots.supercategories(out / "supercategories.png", result.per_class),
    }
    if result.run is not None:
        history = pl.read_parquet(result.run / "metrics.parquet")
        figures["training_curves.png"] = plots.training_curves(out / "training_curves.png", history)
    write_text_atomic(out / "report.html", render_html(result, cfg, list(figures)))
    write_json_atomic(out / "metrics.json", {**result.to_json(), "scores": str(cfg.scores), "truth": str(cfg.truth)})
    with atomic_path(out / "per_class.parquet") as tmp:
        result.per_class.write_parquet(tmp)
    if result.missing:
        write_text_atomic(out / "missing.csv", "image_id\n" + "".join(f"{m}\n" for m in result.missing))
    write_text_atomic(out / "report.md", render_markdown(result, cfg))


