"""Per-dive summaries: which animals, in how many images of each dive; a supercategory roll-up; a heat map.

Dives are the first-level sub-folders of the scored folder by default (a file directly in it belongs to the dive named
after the scored folder), or come from ``--dive-regex`` (its first group, or the whole match) or a ``--dive-column``
of the metadata CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fathombatch.exports.source import Source
from fathombatch.exports.writers import stream_table, table_format
from fathombatch.fsutil import atomic_path

SUMMARY_SCHEMA = {"dive": pl.String, "category_id": pl.Int64, "name": pl.String, "supercategory": pl.String,
                  "threshold": pl.Float64, "images_present": pl.Int64, "images_in_dive": pl.Int64,
                  "images_unreadable": pl.Int64, "fraction": pl.Float64, "mean_probability": pl.Float64}
SUPER_SCHEMA = {"dive": pl.String, "supercategory": pl.String, "min_threshold": pl.Float64,
                "max_threshold": pl.Float64, "images_present": pl.Int64, "images_in_dive": pl.Int64,
                "images_unreadable": pl.Int64, "fraction": pl.Float64}


class _Counts:
    """Per dive: readable and unreadable images, and per category / supercategory the images where it is present."""

    def __init__(self, n_classes: int, n_supers: int) -> None:
        self.shape = (n_classes, n_supers)
        self.images: dict[str, int] = {}
        self.unreadable: dict[str, int] = {}
        self.present: dict[str, np.ndarray] = {}
        self.prob_sum: dict[str, np.ndarray] = {}
        self.super_present: dict[str, np.ndarray] = {}

    def _ensure(self, dive: str) -> None:
        if dive not in self.images:
            self.images[dive] = self.unreadable[dive] = 0
            self.present[dive] = np.zeros(self.shape[0], dtype=np.int64)
            self.prob_sum[dive] = np.zeros(self.shape[0])
            self.super_present[dive] = np.zeros(self.shape[1], dtype=np.int64)

    def add_unreadable(self, dive: str, n: int) -> None:
        self._ensure(dive)
        self.unreadable[dive] += n

    def add(self, dive: str, probs: np.ndarray, hit: np.ndarray, super_hit: np.ndarray) -> None:
        self._ensure(dive)
        self.images[dive] += hit.shape[0]
        self.present[dive] += hit.sum(axis=0)
        self.prob_sum[dive] += np.where(hit, probs, 0.0).sum(axis=0)
        self.super_present[dive] += super_hit.sum(axis=0)


def summarise(source: Source) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Stream the table once; return (per dive and category, per dive and supercategory) frames.

    Per dive and category: the category's threshold, images where it is present, readable images in the dive,
    unreadable files (error rows) of the dive, the fraction of readable images where it is present, and the mean
    probability over the images where it is present (null when none). Per supercategory: images where any of its
    categories is present, and the lowest and highest threshold among those categories.
    Every dive gets a row for every category and every supercategory, zeros included: a dive where nothing reached
    its threshold is survey effort with true zeros, not a dive that never happened. A dive whose files all failed to
    read stays too (``images_in_dive`` 0, ``images_unreadable`` its files), with a null ``fraction``: nothing was
    seen there, which is not the same as a zero.
    """
    tax = source.taxonomy
    names = list(tax.names)
    supers = sorted(set(tax.supercategories))
    members = np.array([[s == t for s in tax.supercategories] for t in supers])  # (S, C)
    counts = _Counts(len(names), len(supers))
    for batch in source.batches():
        probs = batch.select(names).to_numpy().astype(np.float64)
        hit = probs >= source.thresholds
        super_hit = (hit.astype(np.int64) @ members.T.astype(np.int64)) > 0
        dives = batch["dive"].to_numpy()
        for dive in np.unique(dives):
            rows = dives == dive
            counts.add(str(dive), probs[rows], hit[rows], super_hit[rows])
    for dive, n in source.unreadable().items():
        counts.add_unreadable(dive, n)
    return _category_frame(source, counts), _super_frame(source, supers, members, counts)


def _category_frame(source: Source, counts: _Counts) -> pl.DataFrame:
    tax, dives = source.taxonomy, sorted(counts.images)
    n = len(tax)
    present = np.concatenate([counts.present[d] for d in dives]) if dives else np.zeros(0, dtype=np.int64)
    prob_sum = np.concatenate([counts.prob_sum[d] for d in dives]) if dives else np.zeros(0)
    images = np.repeat([counts.images[d] for d in dives], n).astype(np.int64)
    unreadable = np.repeat([counts.unreadable[d] for d in dives], n).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(present > 0, prob_sum / np.maximum(present, 1), np.nan)
    frame = pl.DataFrame({
        "dive": np.repeat(dives, n).astype(str) if dives else [], "category_id": list(tax.ids) * len(dives),
        "name": list(tax.names) * len(dives), "supercategory": list(tax.supercategories) * len(dives),
        "threshold": np.tile(source.thresholds, len(dives)), "images_present": present,
        "images_in_dive": images, "images_unreadable": unreadable, "fraction": _fraction(present, images),
        "mean_probability": mean,
    }, schema=SUMMARY_SCHEMA).with_columns(pl.col("mean_probability", "fraction").fill_nan(None))
    return frame.sort(["dive", "images_present", "category_id"], descending=[False, True, False])


def _fraction(present: np.ndarray, images: np.ndarray) -> np.ndarray:
    """present / images, NaN where a dive has no readable image (nothing seen is not a zero)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(images > 0, present / np.maximum(images, 1), np.nan)


def _super_frame(source: Source, supers: list[str], members: np.ndarray, counts: _Counts) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    thresholds = [source.thresholds[m] for m in members]
    for dive in sorted(counts.images):
        for k, name in enumerate(supers):
            n = int(counts.super_present[dive][k])
            images = counts.images[dive]
            rows.append({"dive": dive, "supercategory": name, "min_threshold": float(thresholds[k].min()),
                         "max_threshold": float(thresholds[k].max()), "images_present": n, "images_in_dive": images,
                         "images_unreadable": counts.unreadable[dive], "fraction": n / images if images else None})
    return pl.DataFrame(rows, schema=SUPER_SCHEMA).sort(["dive", "images_present", "supercategory"],
                                                        descending=[False, True, False])


def heat_map(path: Path, by_category: pl.DataFrame, top: int = 25) -> Path:
    """Dives x the most common categories (by images present over all dives), coloured by fraction of images."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    common = (
        by_category.filter(pl.col("images_present") > 0).group_by("name").agg(pl.col("images_present").sum())
        .sort("images_present", descending=True).head(top)["name"].to_list()
    )
    dives = sorted(by_category["dive"].unique().to_list())
    grid = np.zeros((len(dives), len(common)))
    for dive, name, fraction in by_category.filter(pl.col("name").is_in(common)).select(
        "dive", "name", "fraction"
    ).iter_rows():
        grid[dives.index(dive), common.index(name)] = np.nan if fraction is None else fraction  # NaN: drawn blank
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(common) + 2), max(3.0, 0.35 * len(dives) + 1.5)))
    if grid.size == 0:  # nothing present anywhere (a high threshold, or only error rows): say so in the picture
        ax.text(0.5, 0.5, "no category reaches its threshold in any image", ha="center", va="center")
        ax.set_axis_off()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        return path
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=max(float(np.nanmax(grid, initial=0.0)), 1e-9))
    ax.set_xticks(range(len(common)), common, rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(len(dives)), dives, fontsize=7)
    ax.set_title("Fraction of each dive's images where the category is present")
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def write_dives(source: Source, out: Path, fmt: str = ".parquet") -> dict[str, Path]:
    """Write ``dives.<fmt>``, ``supercategories.<fmt>`` and ``heatmap.png`` into the folder ``out``."""
    table_format(Path("x" + fmt))
    out.mkdir(parents=True, exist_ok=True)
    by_category, by_super = summarise(source)
    written = {}
    for name, frame in (("dives", by_category), ("supercategories", by_super)):
        dest = out / f"{name}{fmt}"
        with stream_table(dest, source.provenance(f"dive summary ({name})"), frame.clear()) as write:
            write(frame)
        written[name] = dest
    written["heatmap"] = heat_map(out / "heatmap.png", by_category)
    return written
