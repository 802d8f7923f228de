"""Per-image metadata (ROV logs: depth, position, time) read from a CSV and matched to the scored files.

A scores table names images by ``image_id``, the file name without its extension (``abc``), and ``path``, the file's
path inside the scored folder (``dive1/abc.jpg``). ROV logs name them in any of these ways, so a metadata id is matched:

* exactly, to an ``image_id`` (``abc``);
* failing that, once an image extension is dropped (``abc.JPG`` -> ``abc``, case-insensitive, the extensions in
  :data:`~fathombatch.decode.discover.IMAGE_SUFFIXES`, TIFF included: logs often name TIFF originals);
* when it holds a ``/`` (or ``\\``), as a path inside the scored folder (``dive1/abc.jpg`` matches that file only,
  so two dives' ``abc.jpg`` stay apart). Paths are matched exactly, never by their last part: an absolute path or one
  from another root matches nothing, and the warning shows both sides, because guessing which folder level the
  log's root is could attach one dive's depth to another's image.

An id that is not a path but names several scored files (``IMG_0001`` in two dives, as ROV cameras that restart
their numbering every dive write) is refused, not applied to all of them: the row describes one moment and one
position, and the export feeds them to Darwin Core as published records, so guessing would be worse than stopping.
The error names the id and its files and asks for rows keyed by path.

Matching never fails silently: how many rows were matched by file name or path, and how many scored images got no
row at all, come back as warnings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from fathombatch.decode.discover import IMAGE_SUFFIXES
from fathombatch.errors import LabelFileError, UsageError

#: Metadata columns that become Darwin Core numbers.
NUMERIC_METADATA = ("lat", "latitude", "decimallatitude", "lon", "long", "longitude", "decimallongitude", "depth",
                    "depth_m")
_SUFFIX = re.compile("(?i)(" + "|".join(re.escape(s) for s in sorted(IMAGE_SUFFIXES)) + ")$")
_EXPORT_COLUMNS = {"path", "dive", "probability", "name", "category_id", "supercategory", "threshold", "exif_datetime"}


@dataclass(frozen=True)
class MatchedMetadata:
    """Metadata matched to scored files.

    Attributes:
        frame: ``path`` (the scored file's path) + the CSV's columns other than ``image_id``; one row per matched file.
        warnings: one line each: rows matched by file name or path, scored images with no row.
    """

    frame: pl.DataFrame
    warnings: list[str]


def read_metadata_csv(path: Path) -> pl.DataFrame:
    """The metadata CSV as read: ``image_id`` (String) + user columns, numeric position/depth columns as Float64.

    Raises:
        UsageError: the file does not exist.
        LabelFileError: unreadable, no ``image_id`` column, repeated ids, clashing columns, non-numeric positions.
    """
    if not path.is_file():
        raise UsageError(f"metadata file {path} does not exist")
    try:
        frame = pl.read_csv(path, infer_schema_length=10000, schema_overrides={"image_id": pl.String})
    except Exception as exc:  # noqa: BLE001 - polars raises several types for malformed CSV
        raise LabelFileError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    if "image_id" not in frame.columns:
        raise LabelFileError(f"{path}, line 1: the metadata CSV needs an 'image_id' column to join on")
    dupes = frame.height - frame["image_id"].n_unique()
    if dupes:
        raise LabelFileError(f"{path}: {dupes} image_id(s) appear more than once; one row per image is expected")
    clash = _EXPORT_COLUMNS & set(frame.columns)
    if clash:
        raise LabelFileError(f"{path}: column(s) {sorted(clash)} clash with export columns; rename them")
    for column in frame.columns:
        if column.lower() in NUMERIC_METADATA and not frame[column].dtype.is_numeric():
            as_number = frame[column].cast(pl.Float64, strict=False)
            bad = frame.filter(as_number.is_null() & frame[column].is_not_null())
            if bad.height:
                raise LabelFileError(f"{path}: column {column!r} must hold numbers (decimal degrees or metres); "
                                     f"image {bad['image_id'][0]!r} has {bad[column][0]!r}")
            frame = frame.with_columns(as_number.alias(column))
    return frame


def match_metadata(meta: pl.DataFrame, scored: pl.DataFrame, name: str) -> MatchedMetadata:
    """Match metadata rows to scored files (see the module docstring).

    Args:
        meta: from :func:`read_metadata_csv`.
        scored: ``image_id``, ``path``, ``status`` of every row of the scores table.
        name: the metadata file's name, for messages.

    Raises:
        LabelFileError: two metadata rows match one scored file (``abc`` and ``abc.jpg``), or an id that is not a
            path matches several scored files (the same file name in two folders).
    """
    rows = meta.with_row_index("_row").with_columns(
        _norm=pl.col("image_id").str.replace_all("\\", "/", literal=True).str.strip_prefix("./"))
    is_path = pl.col("_norm").str.contains("/", literal=True)
    exact = pl.col("image_id").is_in(scored["image_id"].unique().implode())
    rows = rows.with_columns(
        _how=pl.when(is_path).then(pl.lit("path")).when(exact).then(pl.lit("exact"))
        .when(pl.col("image_id").str.contains(_SUFFIX.pattern)).then(pl.lit("extension")).otherwise(pl.lit("none")),
        _id=pl.when(exact).then(pl.col("image_id")).otherwise(pl.col("image_id").str.replace(_SUFFIX.pattern, "")))
    files = scored.select("image_id", "path")
    by_id = rows.filter(pl.col("_how").is_in(["exact", "extension"])).join(
        files, left_on="_id", right_on="image_id", how="inner")
    _refuse_shared_names(by_id, name)
    by_path = rows.filter(pl.col("_how") == "path").join(files.select("path"), left_on="_norm", right_on="path",
                                                         how="inner", coalesce=False)
    keep = ["path", "_row", "_how", *[c for c in meta.columns if c != "image_id"]]
    matched = pl.concat([by_id.select(keep), by_path.select(keep)])
    twice = matched.filter(pl.col("path").is_duplicated()).sort("path", "_row")
    if twice.height:
        ids = meta["image_id"].gather(twice["_row"].head(2)).to_list()
        raise LabelFileError(f"{name}: rows {ids[0]!r} and {ids[1]!r} both name the scored file "
                             f"{twice['path'][0]!r}; one row per image is expected")
    warnings = [w for w in (_how_note(matched, name), _unmatched_note(rows, matched, scored, name)) if w]
    return MatchedMetadata(frame=matched.sort("_row").drop("_row", "_how"), warnings=warnings)


def _refuse_shared_names(by_id: pl.DataFrame, name: str) -> None:
    """Refuse a non-path id that matched several scored files: which of them the row describes is unknown."""
    shared = by_id.filter(pl.col("_row").is_duplicated()).sort("_row", "path")
    if shared.height == 0:
        return
    first = shared.filter(pl.col("_row") == shared["_row"][0])
    ids = shared["_row"].n_unique()
    more = f" (and {ids - 1} more such id(s))" if ids > 1 else ""
    files = ", ".join(repr(p) for p in first["path"].head(3)) + (" …" if first.height > 3 else "")
    raise LabelFileError(f"{name}: image id {first['image_id'][0]!r} names {first.height} scored files ({files}), "
                         f"the same file name in several folders{more}; the row cannot say which one it describes, "
                         f"so key such rows by their path inside the scored folder (e.g. {first['path'][0]!r})")


def _how_note(matched: pl.DataFrame, name: str) -> str | None:
    """Say how many rows matched only by file name or by path: a log and a table that name images differently."""
    counts = dict(matched.unique("_row").group_by("_how").len().iter_rows())
    parts = []
    if counts.get("extension"):
        parts.append(f"{counts['extension']} by file name without its extension")
    if counts.get("path"):
        parts.append(f"{counts['path']} by path inside the scored folder")
    if not parts:
        return None
    return f"{name}: {' and '.join(parts)} matched to scored images, whose image ids are file names without extension"


def _unmatched_note(rows: pl.DataFrame, matched: pl.DataFrame, scored: pl.DataFrame, name: str) -> str | None:
    """N of M readable scored images have no metadata row, with examples of both sides' ids."""
    readable = scored.filter(pl.col("status") == "ok")
    missing = readable.filter(~pl.col("path").is_in(matched["path"].implode()))
    if missing.height == 0:
        return None
    stray = rows.filter(~pl.col("_row").is_in(matched["_row"].implode()))
    theirs = ", ".join(repr(i) for i in (stray if stray.height else rows)["image_id"].head(2))
    ours = ", ".join(f"{i!r} ({p!r})" for i, p in missing.select("image_id", "path").head(2).iter_rows())
    looks = f"its ids look like {theirs}" if theirs else "it has no rows"
    return (f"{missing.height} of {readable.height} scored image(s) have no row in {name}; {looks}, the table's "
            f"like {ours} (image id (path)); ids match an image id, a file name, or a path inside the scored folder")
