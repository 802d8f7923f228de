"""CSV cells a spreadsheet would run as formulas, neutralised in every human-facing CSV fathombatch writes.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as a formula by Excel,
LibreOffice and Google Sheets (CSV injection), and file names and metadata cells come from outside. Such a cell gets
a leading apostrophe, which spreadsheets show as text and hide; a cell that is a plain number (``-12.5``) is left
alone, so coordinates and depths stay numbers. Machine formats keep their values verbatim: the competition's
submission CSV and Kaggle-format label files, whose ids must round-trip, and Parquet.
"""

from __future__ import annotations

import polars as pl

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    """``value``, or ``'`` + ``value`` when a spreadsheet would treat it as a formula."""
    if value.startswith(TRIGGERS):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def safe_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with :func:`safe_cell` applied to every string column (other columns are untouched)."""
    exprs = []
    for name, dtype in frame.schema.items():
        if dtype == pl.String:
            col = pl.col(name)
            risky = col.str.contains(r"^[=+\-@\t\r]") & col.cast(pl.Float64, strict=False).is_null()
            exprs.append(pl.when(risky).then(pl.lit("'") + col).otherwise(col).alias(name))
    return frame.with_columns(exprs) if exprs else frame
