"""Presence rows: one row per (image, category) whose probability reaches the category's threshold."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl

from fathombatch.exports.source import Source

#: Columns of the long format, before any image-metadata columns.
LONG_COLUMNS = ["image_id", "path", "dive", "category_id", "name", "supercategory", "probability", "threshold"]


def presence_rows(source: Source) -> Iterator[pl.DataFrame]:
    """Batches of presence rows in table order: sorted by path, then probability (highest first), then category id.

    Each batch has :data:`LONG_COLUMNS` followed by the metadata columns (and ``exif_datetime`` with ``exif``).
    """
    classes = source.classes
    names = list(source.taxonomy.names)
    for batch in source.batches():
        extra = [c for c in batch.columns if c not in ("image_id", "path", "dive", *names)]
        long = (
            batch.unpivot(index=["image_id", "path", "dive", *extra], on=names, variable_name="name",
                          value_name="probability")
            .join(classes, on="name", how="left")
            .filter(pl.col("probability") >= pl.col("threshold"))
            .with_columns(pl.col("probability").cast(pl.Float64))
            .sort(["path", "probability", "category_id"], descending=[False, True, False])
        )
        yield long.select(LONG_COLUMNS + extra)
