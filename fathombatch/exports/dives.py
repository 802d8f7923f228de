"""Per-dive summaries: which animals, in how many images of each dive; a supercategory roll-up; a heat map.

Dives are the first-level sub-folders of the scored folder by default (a file directly in it belongs to dive "."),
or come from ``--dive-regex`` (its first group, or the whole match) or a ``--dive-column`` of the metadata CSV.
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
                  "images_present": pl.Int64, "images_in_dive": pl.Int64, "fraction": pl.Float64,
                  "mean_probability": pl.Float64}
SUPER_SCHEMA = {"dive": pl.String, "supercategory": pl.String, "images_present": pl.Int64, "images_in_dive": pl.Int64,
                "fraction": pl.Float64}


def summarise(source: Source) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Stream the table once; return (per dive and category, per dive and supercategory) frames.

    Per dive and category: images where the category is present, images in the dive, their fraction, and the mean
    probability over the images where it is present. Per supercategory: images where any of its categories is present.
    Only rows with at least one present image are listed.
    """
    names = list(source.taxonomy.names)
    supers = sorted(set(source.taxonomy.supercategories))
    super_index = np.array([supers.index(s) for s in source.taxonomy.supercategories])
    thresholds = source.thresholds
    present: dict[str, np.ndarray] = {}
    prob_sum: dict[str, np.ndarray] = {}
    super_present: dict[str, np.ndarray] = {}
    images: dict[str, int] = {}
    for batch in source.batches():
        probs = batch.select(names).to_numpy().astype(np.float64)
        hit = probs >= thresholds
        super_hit = np.zeros((hit.shape[0], len(supers)), dtype=bool)
        for j in range(len(names)):
            super_hit[:, super_index[j]] |= hit[:, j]
        dives = batch["dive"].to_numpy()
        for dive in np.unique(dives):
            rows = dives == dive
            key = str(dive)
            if key not in images:
                present[key] = np.zeros(len(names), dtype=np.int64)
                prob_sum[key] = np.zeros(len(names))
                super_present[key] = np.zeros(len(supers), dtype=np.int64)
                images[key] = 0
            images[key] += int(rows.sum())
            present[key] += hit[rows].sum(axis=0)
            prob_sum[key] += np.where(hit[rows], probs[rows], 0.0).sum(axis=0)
            super_present[key] += super_hit[rows].sum(axis=0)
    rows_c: list[dict[str, Any]] = []
    rows_s: list[dict[str, Any]] = []
    for dive in sorted(images):
        for j in np.flatnonzero(present[dive]):
            rows_c.append({"dive": dive, "category_id": source.taxonomy.ids[j], "name": names[j],
                           "supercategory": source.taxonomy.supercategories[j],
                           "images_present": int(present[dive][j]), "images_in_dive": images[dive],
                           "fraction": present[dive][j] / images[dive],
                           "mean_probability": prob_sum[dive][j] / present[dive][j]})
        for k in np.flatnonzero(super_present[dive]):
            rows_s.append({"dive": dive, "supercategory": supers[k], "images_present": int(super_present[dive][k]),
                           "images_in_dive": images[dive], "fraction": super_present[dive][k] / images[dive]})
    by_category = pl.DataFrame(rows_c, schema=SUMMARY_SCHEMA).sort(["dive", "images_present", "category_id"],
                                                                   descending=[False, True, False])
    by_super = pl.DataFrame(rows_s, schema=SUPER_SCHEMA).sort(["dive", "images_present"], descending=[False, True])
    return by_category, by_super


def heat_map(path: Path, by_category: pl.DataFrame, top: int = 25) -> Path:
    """Dives x the most common categories (by images present over all dives), coloured by fraction of images."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    common = (
        by_category.group_by("name").agg(pl.col("images_present").sum()).sort("images_present", descending=True)
        .head(top)["name"].to_list()
    )
    dives = sorted(by_category["dive"].unique().to_list())
    grid = np.zeros((len(dives), len(common)))
    for dive, name, fraction in by_category.filter(pl.col("name").is_in(common)).select(
        "dive", "name", "fraction"
    ).iter_rows():
        grid[dives.index(dive), common.index(name)] = fraction
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(common) + 2), max(3.0, 0.35 * len(dives) + 1.5)))
    if grid.size == 0:  # nothing present anywhere (a high threshold, or only error rows): say so in the picture
        ax.text(0.5, 0.5, "no category reaches its threshold in any image", ha="center", va="center")
        ax.set_axis_off()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        return path
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=max(float(grid.max()), 1e-9))
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
