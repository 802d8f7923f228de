"""Review queues: the n images an expert should look at first, by one of four rules.

Only ``ok`` rows take part. Each strategy gives every row a *priority* and the queue is the n rows of highest
priority (ties: path ascending):

* ``uncertain``: ``1 - 2 * min_c |p_c - t_c|``; 1 when some class sits exactly on its presence threshold ``t_c``.
  The thresholds are the ones the exports decide presence with (:func:`fathombatch.exports.thresholds.
  presence_thresholds`: the engine manifest's per-class thresholds, one global ``threshold``, or 0.5 when the engine
  records none), so the queue holds the images whose exported presence/absence is closest to flipping. With 0.5
  everywhere the priority lies in [0, 1]; with other thresholds it can go below 0 (a class far from a low threshold);
  only the order matters;
* ``out-of-sample``: the ``osd`` score (higher = more likely a category the model never saw);
* ``rare``: ``1 / n_top1``, where ``n_top1`` is how many ok rows of the table share the row's top-1 category, so
  images of rarely predicted categories come first; ties go to the higher top-1 probability;
* ``disagree``: ``max_c |p_c - q_c|`` between this table and ``--other`` (a second engine's table of the same
  files, matched by ``path``).

The queue is written as ``queue.csv`` and ``index.html`` (a contact sheet with thumbnails in ``thumbs/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from fathombatch.csvsafe import safe_frame
from fathombatch.curate.contact_sheet import Card, render_html, write_thumbnails
from fathombatch.curate.scoretable import images_root, resolve_image
from fathombatch.errors import UsageError, param
from fathombatch.exports.thresholds import PresenceThresholds, presence_thresholds
from fathombatch.fsutil import atomic_path, write_text_atomic
from fathombatch.pathargs import PathFields
from fathombatch.progress import Progress
from fathombatch.scores.table import ScoresTable
from fathombatch.taxonomy import Taxonomy

Strategy = Literal["uncertain", "out-of-sample", "rare", "disagree"]
STRATEGIES: tuple[str, ...] = ("uncertain", "out-of-sample", "rare", "disagree")


@dataclass(frozen=True)
class ReviewConfig(PathFields):
    """Attributes:
    scores: the scores table.
    out: folder for ``queue.csv``, ``index.html`` and ``thumbs/``.
    n: queue length (fewer when the table has fewer ok rows).
    strategy: one of :data:`STRATEGIES`.
    other: the second table, for ``disagree``.
    images_root: folder the paths are relative to (default: the table's ``run.root``).
    top: predictions shown per image.
    thumb_size: longest thumbnail side in pixels.
    threshold: for ``uncertain``, one presence threshold for every class, as an export given one (None: the
        engine manifest's per-class thresholds, as the exports use).
    """

    scores: Path
    out: Path
    n: int = 200
    strategy: Strategy = "uncertain"
    other: Path | None = None
    images_root: Path | None = None
    top: int = 5
    thumb_size: int = 256
    threshold: float | None = None


@dataclass(frozen=True)
class ReviewResult:
    """Attributes: queue (the CSV's rows), csv, html, thumbnails written, per path why a thumbnail is missing,
    threshold_source (``manifest``, ``global`` or ``default`` for ``uncertain``; None for the other strategies) and
    warnings (one line each, for the summary)."""

    queue: pl.DataFrame
    csv: Path
    html: Path
    thumbnails: int
    missing: dict[str, str]
    threshold_source: str | None = None
    warnings: tuple[str, ...] = ()


def _priority(table: ScoresTable, strategy: str, other: ScoresTable | None, thresholds: np.ndarray) -> pl.LazyFrame:
    """A lazy ``path, priority, tiebreak`` frame over the ok rows (higher priority first, then higher tiebreak).

    ``thresholds``: (C,) presence threshold per class, used by ``uncertain``.
    """
    names = list(table.taxonomy.names)
    ok = table.lazy.filter(pl.col("status") == "ok")
    if strategy == "uncertain":
        margin = pl.min_horizontal([(pl.col(c) - float(t)).abs() for c, t in zip(names, thresholds, strict=True)])
        return ok.select("path", priority=(1.0 - 2.0 * margin).cast(pl.Float64), tiebreak=pl.lit(0.0))
    if strategy == "out-of-sample":
        return ok.select("path", priority=pl.col("osd").cast(pl.Float64), tiebreak=pl.lit(0.0))
    if strategy == "rare":
        top1 = ok.select("path", top1=pl.col("top_categories").list.first(), p1=pl.max_horizontal(names))
        counts = top1.group_by("top1").agg(n_top1=pl.len())
        return top1.join(counts, on="top1").select(
            "path", priority=1.0 / pl.col("n_top1").cast(pl.Float64), tiebreak=pl.col("p1").cast(pl.Float64)
        )
    if other is None:
        raise UsageError(f"{param('strategy')} disagree compares two tables; pass {param('other')} SCORES2.parquet")
    if other.taxonomy.names != table.taxonomy.names:
        raise UsageError(f"{table.path} and {other.path} use different class lists; they cannot be compared")
    renamed = [pl.col(c).alias(f"other::{c}") for c in names]
    theirs = other.lazy.filter(pl.col("status") == "ok").select("path", *renamed)
    joined = ok.select("path", *names).join(theirs, on="path", how="inner")
    diff = pl.max_horizontal([(pl.col(c) - pl.col(f"other::{c}")).abs() for c in names])
    return joined.select("path", priority=diff.cast(pl.Float64), tiebreak=pl.lit(0.0))


def choose(table: ScoresTable, strategy: str, n: int, other: ScoresTable | None = None,
           thresholds: PresenceThresholds | None = None) -> pl.DataFrame:
    """The queue: ``rank`` (1 = first), ``path`` and ``priority`` of the n highest-priority ok rows.

    ``thresholds``: what ``uncertain`` measures distances from (None: :func:`presence_thresholds` of the table).
    """
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if n < 1:
        raise UsageError(f"{param('n')} must be at least 1, got {n}")
    if strategy != "disagree" and other is not None:
        raise UsageError(f"{param('other')} is only used by {param('strategy')} disagree")
    if thresholds is None:
        thresholds = presence_thresholds(table.metadata.engine.thresholds, len(table.taxonomy))
    lazy = _priority(table, strategy, other, thresholds.values)
    chosen = (
        lazy.sort(["priority", "tiebreak", "path"], descending=[True, True, False], nulls_last=True)
        .head(n)
        .select("path", "priority")
        .collect()
    )
    return chosen.with_row_index("rank", offset=1)


def _top_predictions(rows: pl.DataFrame, taxonomy: Taxonomy, k: int) -> dict[str, list[tuple[str, float]]]:
    """Per path, the k best (class name, probability) pairs from ``top_categories``."""
    name_of = dict(zip(taxonomy.ids, taxonomy.names, strict=True))
    out = {}
    for row in rows.iter_rows(named=True):
        tops = [name_of[c] for c in (row["top_categories"] or [])[:k] if c in name_of]
        out[row["path"]] = [(name, float(row[name])) for name in tops]
    return out


def _format_top(preds: list[tuple[str, float]]) -> str:
    return "; ".join(f"{name}: {p:.3f}" for name, p in preds)


def _closest_to_threshold(rows: pl.DataFrame, paths: list[str], taxonomy: Taxonomy,
                          thresholds: np.ndarray) -> tuple[list[str], list[float]]:
    """Per path (in ``paths`` order), the class whose probability is closest to its threshold, and that threshold."""
    by_path = rows.select("path", *taxonomy.names).sort("path")
    order = by_path["path"].to_list()
    probs = by_path.select(taxonomy.names).to_numpy().astype(np.float64)
    closest = np.abs(probs - thresholds[None, :]).argmin(axis=1) if len(order) else np.empty(0, dtype=np.int64)
    at = dict(zip(order, closest.tolist(), strict=True))
    return [taxonomy.names[at[p]] for p in paths], [float(thresholds[at[p]]) for p in paths]


def _queue_frame(chosen: pl.DataFrame, rows: pl.DataFrame, table: ScoresTable, cfg: ReviewConfig,
                 thresholds: PresenceThresholds, preds: dict[str, list[tuple[str, float]]],
                 other_preds: dict[str, list[tuple[str, float]]] | None) -> pl.DataFrame:
    """The queue.csv rows: rank, path, priority, image_id, osd, top_predictions (+ the strategy's own columns)."""
    paths = chosen["path"].to_list()
    info = {r["path"]: r for r in rows.select("path", "image_id", "osd").iter_rows(named=True)}
    queue = chosen.with_columns(
        image_id=pl.Series([info[p]["image_id"] for p in paths], dtype=pl.String),
        osd=pl.Series([info[p]["osd"] for p in paths], dtype=pl.Float32),
        top_predictions=pl.Series([_format_top(preds.get(p, [])) for p in paths], dtype=pl.String),
    )
    if other_preds is not None:
        queue = queue.with_columns(
            other_top_predictions=pl.Series([_format_top(other_preds.get(p, [])) for p in paths], dtype=pl.String)
        )
    if cfg.strategy == "uncertain":
        names, values = _closest_to_threshold(rows, paths, table.taxonomy, thresholds.values)
        queue = queue.with_columns(closest_class=pl.Series(names, dtype=pl.String),
                                   threshold=pl.Series(values, dtype=pl.Float64),
                                   threshold_source=pl.lit(thresholds.source, dtype=pl.String))
    return queue


def build_review(cfg: ReviewConfig, progress: Progress | None = None) -> ReviewResult:
    """Choose the queue and write ``queue.csv``, ``index.html`` and ``thumbs/NNNNN.jpg`` into ``cfg.out``."""
    if not 1 <= cfg.top <= 20:
        raise UsageError(f"{param('top')} must be between 1 and 20, got {cfg.top}")
    if cfg.threshold is not None and cfg.strategy != "uncertain":
        raise UsageError(f"threshold applies only to the 'uncertain' strategy, not to {cfg.strategy!r}")
    table = ScoresTable.open(cfg.scores)
    other = ScoresTable.open(cfg.other) if cfg.other is not None else None
    root = images_root(table, cfg.images_root)
    thresholds = presence_thresholds(table.metadata.engine.thresholds, len(table.taxonomy), cfg.threshold)
    chosen = choose(table, cfg.strategy, cfg.n, other, thresholds)
    paths = chosen["path"].to_list()
    wanted = ["path", "image_id", "osd", "top_categories", *table.taxonomy.names]
    rows = table.lazy.filter(pl.col("path").is_in(paths)).select(wanted).collect()
    preds = _top_predictions(rows, table.taxonomy, cfg.top)
    other_preds: dict[str, list[tuple[str, float]]] | None = None
    if other is not None:
        other_rows = other.lazy.filter(pl.col("path").is_in(paths)).select(wanted).collect()
        other_preds = _top_predictions(other_rows, other.taxonomy, cfg.top)

    # The root resolved as `score` records run.root and as render_html resolves the review folder, so a symlinked
    # folder above both cancels out of the links; the table's path below the root is kept as written.
    sources = [resolve_image(root.resolve(), p, f"{cfg.scores}: path {p!r}") for p in paths]
    thumbs, missing = write_thumbnails(sources, cfg.out / "thumbs", cfg.thumb_size, progress)
    queue = _queue_frame(chosen, rows, table, cfg, thresholds, preds, other_preds)
    queue = queue.with_columns(thumbnail=pl.Series([t and f"thumbs/{t.name}" for t in thumbs], dtype=pl.String))
    csv_path = cfg.out / "queue.csv"
    with atomic_path(csv_path) as tmp:
        safe_frame(queue).write_csv(tmp)
    cards = [
        Card(rank=r, path=p, source=src, priority=prio, thumbnail=None if t is None else f"thumbs/{t.name}",
             predictions=preds.get(p, []),
             other_predictions=other_preds.get(p, []) if other_preds is not None else None,
             problem=missing.get(i))
        for i, (r, p, prio, src, t) in enumerate(
            zip(chosen["rank"], paths, chosen["priority"], sources, thumbs, strict=True)
        )
    ]
    uncertain = cfg.strategy == "uncertain"
    how = f" (distance from the {_SOURCE_WORDS[thresholds.source]})" if uncertain else ""
    title = f"Review queue: {len(cards)} images, strategy {cfg.strategy}{how}, from {cfg.scores.name}"
    html_path = cfg.out / "index.html"
    page, absolute = render_html(title, cfg.strategy, cards, cfg.out)
    write_text_atomic(html_path, page)
    warnings = [thresholds.warning] if uncertain and thresholds.warning else []
    if absolute:
        warnings.append(f"{absolute} original(s) are on another drive than {cfg.out}: the contact sheet links them "
                        "by absolute file:// URL, which breaks if the folder is moved")
    return ReviewResult(queue=queue, csv=csv_path, html=html_path, thumbnails=sum(t is not None for t in thumbs),
                        missing={paths[i]: msg for i, msg in missing.items()},
                        threshold_source=thresholds.source if uncertain else None, warnings=tuple(warnings))


#: How the title of the contact sheet names each threshold source.
_SOURCE_WORDS = {"manifest": "per-class presence thresholds of the engine manifest",
                 "global": "one presence threshold for every class",
                 "default": "default 0.5 threshold, as the engine records no per-class ones"}
