"""Review queues: the n images an expert should look at first, by one of four rules.

Only ``ok`` rows take part. Each strategy gives every row a *priority* and the queue is the n rows of highest
priority (ties: path ascending):

* ``uncertain``: ``1 - 2 * min_c |p_c - 0.5|`` in [0, 1]; 1 when some class sits exactly on the 0.5 threshold;
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

import polars as pl

from fathombatch.csvsafe import safe_frame
from fathombatch.curate.contact_sheet import Card, render_html, write_thumbnails
from fathombatch.curate.scoretable import ScoresTable, images_root, open_scores, resolve_image
from fathombatch.errors import UsageError
from fathombatch.fsutil import atomic_path, write_text_atomic
from fathombatch.progress import Progress
from fathombatch.taxonomy import Taxonomy

Strategy = Literal["uncertain", "out-of-sample", "rare", "disagree"]
STRATEGIES: tuple[str, ...] = ("uncertain", "out-of-sample", "rare", "disagree")


@dataclass(frozen=True)
class ReviewConfig:
    """Attributes:
    scores: the scores table.
    out: folder for ``queue.csv``, ``index.html`` and ``thumbs/``.
    n: queue length (fewer when the table has fewer ok rows).
    strategy: one of :data:`STRATEGIES`.
    other: the second table, for ``disagree``.
    images_root: folder the paths are relative to (default: the table's ``run.root``).
    top: predictions shown per image.
    thumb_size: longest thumbnail side in pixels.
    """

    scores: Path
    out: Path
    n: int = 200
    strategy: Strategy = "uncertain"
    other: Path | None = None
    images_root: Path | None = None
    top: int = 5
    thumb_size: int = 256


@dataclass(frozen=True)
class ReviewResult:
    """Attributes: queue (the CSV's rows), csv, html, thumbnails written, and per path why a thumbnail is missing."""

    queue: pl.DataFrame
    csv: Path
    html: Path
    thumbnails: int
    missing: dict[str, str]


def _priority(table: ScoresTable, strategy: str, other: ScoresTable | None) -> pl.LazyFrame:
    """A lazy ``path, priority, tiebreak`` frame over the ok rows (higher priority first, then higher tiebreak)."""
    names = list(table.taxonomy.names)
    ok = table.lazy.filter(pl.col("status") == "ok")
    if strategy == "uncertain":
        margin = pl.min_horizontal([(pl.col(c) - 0.5).abs() for c in names])
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
        raise UsageError("--strategy disagree compares two tables; pass --other SCORES2.parquet")
    if other.taxonomy.names != table.taxonomy.names:
        raise UsageError(f"{table.path} and {other.path} use different class lists; they cannot be compared")
    renamed = [pl.col(c).alias(f"other::{c}") for c in names]
    theirs = other.lazy.filter(pl.col("status") == "ok").select("path", *renamed)
    joined = ok.select("path", *names).join(theirs, on="path", how="inner")
    diff = pl.max_horizontal([(pl.col(c) - pl.col(f"other::{c}")).abs() for c in names])
    return joined.select("path", priority=diff.cast(pl.Float64), tiebreak=pl.lit(0.0))


def choose(table: ScoresTable, strategy: str, n: int, other: ScoresTable | None = None) -> pl.DataFrame:
    """The queue: ``rank`` (1 = first), ``path`` and ``priority`` of the n highest-priority ok rows."""
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if n < 1:
        raise UsageError(f"--n must be at least 1, got {n}")
    if strategy != "disagree" and other is not None:
        raise UsageError("--other is only used by --strategy disagree")
    lazy = _priority(table, strategy, other)
    chosen = (
        lazy.sort(["priority", "tiebreak", "path"], descending=[True, True, False], nulls_last=True)
        .head(n)
        .select("path", "priority")
        .collect()
    )
    return chosen.with_row_index("rank", offset=1)


def _top_predictions(rows: pl.DataFrame, taxonomy: Taxonomy, k: int) -> dict[str, list[tuple[str, float]]]:
    """Per path, the k best (class name, probability) pairs from ``top_categories``."""
    name_of = dict(zip(taxonomy.ids, taxonomy.names))
    out = {}
    for row in rows.iter_rows(named=True):
        tops = [name_of[c] for c in (row["top_categories"] or [])[:k] if c in name_of]
        out[row["path"]] = [(name, float(row[name])) for name in tops]
    return out


def _format_top(preds: list[tuple[str, float]]) -> str:
    return "; ".join(f"{name}: {p:.3f}" for name, p in preds)


def build_review(cfg: ReviewConfig, progress: Progress | None = None) -> ReviewResult:
    """Choose the queue and write ``queue.csv``, ``index.html`` and ``thumbs/NNNNN.jpg`` into ``cfg.out``."""
    if not 1 <= cfg.top <= 20:
        raise UsageError(f"--top must be between 1 and 20, got {cfg.top}")
    table = open_scores(cfg.scores)
    other = open_scores(cfg.other) if cfg.other is not None else None
    root = images_root(table, cfg.images_root)
    chosen = choose(table, cfg.strategy, cfg.n, other)
    paths = chosen["path"].to_list()
    wanted = ["path", "image_id", "osd", "top_categories", *table.taxonomy.names]
    rows = table.lazy.filter(pl.col("path").is_in(paths)).select(wanted).collect()
    preds = _top_predictions(rows, table.taxonomy, cfg.top)
    other_preds: dict[str, list[tuple[str, float]]] = {}
    if other is not None:
        other_rows = other.lazy.filter(pl.col("path").is_in(paths)).select(wanted).collect()
        other_preds = _top_predictions(other_rows, other.taxonomy, cfg.top)
    info = {r["path"]: r for r in rows.select("path", "image_id", "osd").iter_rows(named=True)}

    sources = [resolve_image(root, p, f"{cfg.scores}: path {p!r}") for p in paths]
    thumbs, missing = write_thumbnails(sources, cfg.out / "thumbs", cfg.thumb_size, progress)
    queue = chosen.with_columns(
        image_id=pl.Series([info[p]["image_id"] for p in paths], dtype=pl.String),
        osd=pl.Series([info[p]["osd"] for p in paths], dtype=pl.Float32),
        top_predictions=pl.Series([_format_top(preds.get(p, [])) for p in paths], dtype=pl.String),
    )
    if other is not None:
        queue = queue.with_columns(
            other_top_predictions=pl.Series([_format_top(other_preds.get(p, [])) for p in paths], dtype=pl.String)
        )
    queue = queue.with_columns(thumbnail=pl.Series([t and f"thumbs/{t.name}" for t in thumbs], dtype=pl.String))
    csv_path = cfg.out / "queue.csv"
    with atomic_path(csv_path) as tmp:
        safe_frame(queue).write_csv(tmp)
    cards = [
        Card(rank=r, path=p, source=src, priority=prio, thumbnail=t and f"thumbs/{t.name}",
             predictions=preds.get(p, []), other_predictions=other_preds.get(p) if other is not None else None,
             problem=missing.get(i))
        for i, (r, p, prio, src, t) in enumerate(zip(chosen["rank"], paths, chosen["priority"], sources, thumbs))
    ]
    title = f"Review queue: {len(cards)} images, strategy {cfg.strategy}, from {cfg.scores.name}"
    html_path = cfg.out / "index.html"
    write_text_atomic(html_path, render_html(title, cfg.strategy, cards))
    return ReviewResult(queue=queue, csv=csv_path, html=html_path, thumbnails=sum(t is not None for t in thumbs),
                        missing={paths[i]: msg for i, msg in missing.items()})
