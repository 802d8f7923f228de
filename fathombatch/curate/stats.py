"""Label statistics: images per category and supercategory, label cardinality, co-occurring pairs, charts.

The co-occurrence counts come from a sparse (N, C) indicator matrix ``Y`` as ``Yᵀ Y``, so memory grows with the
number of labels, not with N x C.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from fathombatch.errors import UsageError, param
from fathombatch.fsutil import atomic_path, write_text_atomic
from fathombatch.labels import Labels, read_labels
from fathombatch.pathargs import PathFields


@dataclass(frozen=True)
class StatsConfig(PathFields):
    """Attributes:
    labels: Kaggle CSV or COCO json.
    out: folder for the tables, Markdown summary and charts.
    top_pairs: how many of the most common category pairs to list.
    top_categories: how many categories the bar chart shows.
    """

    labels: Path
    out: Path
    top_pairs: int = 25
    top_categories: int = 25


@dataclass(frozen=True)
class LabelStats:
    """Attributes:
    images: number of images; labelled: images with at least one category.
    categories: per category ``category_id, name, supercategory, images, share`` (share of all images),
        sorted by images descending.
    supercategories: per supercategory ``supercategory, images, categories_present, categories_total``.
    cardinality: ``labels`` (categories per image) and ``images`` with that many.
    pairs: the most common pairs ``a, b, name_a, name_b, images, jaccard``.
    """

    images: int
    labelled: int
    categories: pl.DataFrame
    supercategories: pl.DataFrame
    cardinality: pl.DataFrame
    pairs: pl.DataFrame


@dataclass(frozen=True)
class StatsResult:
    stats: LabelStats
    files: tuple[Path, ...]


def compute_stats(labels: Labels, *, top_pairs: int = 25) -> LabelStats:
    """Statistics of a label set (see :class:`LabelStats` for the columns)."""
    from scipy import sparse

    tax = labels.taxonomy
    frame = labels.frame.with_row_index("row")
    n = frame.height
    exploded = frame.select("row", "categories").explode("categories").drop_nulls("categories")
    rows = exploded["row"].to_numpy().astype(np.int64)
    cols = np.array(tax.columns(exploded["categories"].to_list()), dtype=np.int64)
    y = sparse.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, cols)), shape=(n, len(tax)))
    counts = np.asarray(y.sum(axis=0)).ravel()

    categories = pl.DataFrame(
        {
            "category_id": list(tax.ids),
            "name": list(tax.names),
            "supercategory": list(tax.supercategories),
            "images": counts,
        }
    ).with_columns(share=pl.col("images") / max(n, 1)).sort(["images", "category_id"], descending=[True, False])

    sup_of = np.array(tax.supercategories, dtype=object)
    sup_names = sorted(set(tax.supercategories))
    sup_index = {s: i for i, s in enumerate(sup_names)}
    sup_cols = np.array([sup_index[s] for s in sup_of[cols]], dtype=np.int64) if len(cols) else cols
    ys = sparse.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, sup_cols)), shape=(n, len(sup_names)))
    sup_images = np.asarray((ys > 0).sum(axis=0)).ravel()
    supercategories = (
        categories.group_by("supercategory")
        .agg(categories_present=(pl.col("images") > 0).sum(), categories_total=pl.len())
        .join(pl.DataFrame({"supercategory": sup_names, "images": sup_images}), on="supercategory")
        .select("supercategory", "images", "categories_present", "categories_total")
        .sort(["images", "supercategory"], descending=[True, False])
    )

    per_image = np.diff(y.indptr)
    card_values, card_counts = np.unique(per_image, return_counts=True)
    cardinality = pl.DataFrame({"labels": card_values.astype(np.int64), "images": card_counts.astype(np.int64)})

    co = sparse.triu(y.T @ y, k=1).tocoo()
    order = np.lexsort((co.col, co.row, -co.data))[:top_pairs]
    a, b, both = co.row[order], co.col[order], co.data[order]
    pairs = pl.DataFrame(
        {
            "a": [tax.ids[i] for i in a],
            "b": [tax.ids[i] for i in b],
            "name_a": [tax.names[i] for i in a],
            "name_b": [tax.names[i] for i in b],
            "images": both.astype(np.int64),
            "jaccard": both / np.maximum(counts[a] + counts[b] - both, 1),
        },
        schema={"a": pl.Int64, "b": pl.Int64, "name_a": pl.String, "name_b": pl.String, "images": pl.Int64,
                "jaccard": pl.Float64},
    )
    return LabelStats(images=n, labelled=int((per_image > 0).sum()), categories=categories,
                      supercategories=supercategories, cardinality=cardinality, pairs=pairs)


def _markdown_table(frame: pl.DataFrame, floats: str = "{:.3f}") -> str:
    head = "| " + " | ".join(frame.columns) + " |\n| " + " | ".join("---" for _ in frame.columns) + " |\n"
    body = "".join(
        "| " + " | ".join(floats.format(v) if isinstance(v, float) else str(v) for v in row) + " |\n"
        for row in frame.iter_rows()
    )
    return head + body


def markdown(stats: LabelStats, source: Path, top_categories: int) -> str:
    """A readable summary: counts, supercategories, top categories, cardinality, top pairs."""
    present = stats.categories.filter(pl.col("images") > 0).height
    mean_card = (stats.cardinality["labels"] * stats.cardinality["images"]).sum() / max(stats.images, 1)
    return (
        f"# Label statistics of {source.name}\n\n"
        f"{stats.images} images, {stats.labelled} with at least one category; {present} of "
        f"{stats.categories.height} categories present; {mean_card:.2f} categories per image on average.\n\n"
        "## Supercategories\n\n" + _markdown_table(stats.supercategories) + "\n"
        f"## Top {top_categories} categories\n\n" + _markdown_table(stats.categories.head(top_categories)) + "\n"
        "## Categories per image\n\n" + _markdown_table(stats.cardinality) + "\n"
        "## Most common pairs\n\n" + _markdown_table(stats.pairs) + "\n"
    )


def _charts(stats: LabelStats, out: Path, top: int) -> list[Path]:
    from fathombatch.plots import new_figure, save_figure

    plt, (fig, ax) = new_figure(7.0, 5.0)
    sup = stats.supercategories.sort("images")
    ax.barh(sup["supercategory"].to_list(), sup["images"].to_list(), color="#1f77b4")
    ax.set_xlabel("images with at least one category of the supercategory")
    ax.set_title("Images per supercategory")
    ax.tick_params(axis="y", labelsize=8)
    files = [save_figure(fig, out / "supercategories.png")]

    plt, (fig, ax) = new_figure(7.0, 6.0)
    cats = stats.categories.filter(pl.col("images") > 0).head(top).reverse()
    supers = sorted(set(stats.supercategories["supercategory"].to_list()))
    cmap = plt.get_cmap("tab20")
    colours = [cmap(supers.index(s) % 20) for s in cats["supercategory"].to_list()]
    ax.barh([f"{n} ({s})" for n, s in cats.select("name", "supercategory").iter_rows()], cats["images"].to_list(),
            color=colours)
    ax.set_xlabel("images")
    ax.set_title(f"Top {cats.height} categories")
    ax.tick_params(axis="y", labelsize=7)
    files.append(save_figure(fig, out / "top_categories.png"))

    _, (fig, ax) = new_figure(6.0, 3.6)
    ax.bar(stats.cardinality["labels"].to_list(), stats.cardinality["images"].to_list(), color="#2ca02c")
    ax.set_xlabel("categories per image")
    ax.set_ylabel("images")
    ax.set_title("Label cardinality")
    files.append(save_figure(fig, out / "cardinality.png"))
    return files


def run_stats(cfg: StatsConfig) -> StatsResult:
    """Compute the statistics and write them to ``cfg.out``.

    Writes ``categories.parquet``, ``supercategories.parquet``, ``cardinality.parquet``, ``pairs.parquet``,
    ``stats.md`` and the charts ``supercategories.png``, ``top_categories.png``, ``cardinality.png``.
    """
    if cfg.top_pairs < 1 or cfg.top_categories < 1:
        raise UsageError(f"{param('top_pairs')} and {param('top_categories')} must be at least 1")
    labels = read_labels(cfg.labels)
    if len(labels) == 0:
        raise UsageError(f"{cfg.labels} contains no images")
    stats = compute_stats(labels, top_pairs=cfg.top_pairs)
    files = []
    for name, frame in (("categories", stats.categories), ("supercategories", stats.supercategories),
                        ("cardinality", stats.cardinality), ("pairs", stats.pairs)):
        dest = cfg.out / f"{name}.parquet"
        with atomic_path(dest) as tmp:
            frame.write_parquet(tmp)
        files.append(dest)
    write_text_atomic(cfg.out / "stats.md", markdown(stats, cfg.labels, cfg.top_categories))
    files.append(cfg.out / "stats.md")
    files += _charts(stats, cfg.out, cfg.top_categories)
    return StatsResult(stats=stats, files=tuple(files))
