"""Reading a scores table for export: streamed in row batches, with thresholds and image metadata attached.

Everything an export needs comes from here: the taxonomy and the engine manifest stored in the table's metadata, the
presence thresholds (the manifest's per-class ones, or one global value), an optional per-image metadata CSV (ROV
logs: depth, position, time) joined on ``image_id``, EXIF timestamps, and the dive of every image.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import polars as pl

from fathombatch.errors import LabelFileError, UsageError, param
from fathombatch.exports.imagemeta import match_metadata, read_metadata_csv
from fathombatch.exports.thresholds import presence_thresholds
from fathombatch.fsutil import fs_path
from fathombatch.scores.metadata import ScoresMetadata
from fathombatch.scores.table import ScoresTable
from fathombatch.taxonomy import Taxonomy

#: Rows of the scores table read per batch: 2.4 MB of probabilities at 290 classes, and at most 600,000 unpivoted
#: (image, class) pairs before the threshold filter.
BATCH_ROWS = 2048
_UNSAFE_PATH = r"(^/|^[A-Za-z]:|(^|/)\.\.(/|$))"


@dataclass(frozen=True)
class Source:
    """A scores table opened for export.

    Attributes:
        path: the scores table.
        taxonomy: its classes.
        table_meta: its typed ``fathombatch`` metadata (engine, run parameters).
        thresholds: (C,) presence threshold per class.
        threshold_source: ``manifest`` (per-class, chosen on held-out data), ``global`` (``--threshold``) or
            ``default`` (0.5: the engine records none).
        metadata: optional per-image metadata frame, matched to the scored files: ``path`` + the CSV's columns
            other than ``image_id`` (see :mod:`fathombatch.exports.imagemeta`).
        dive_regex: where the dive comes from (None: the first folder of ``path``).
        dive_column: a metadata column naming the dive instead.
        images_root: the scored folder (for EXIF and content hashes): the one given, else the one recorded at
            scoring time (which may no longer exist).
        exif: read EXIF timestamps from the images.
        top_dive: the dive of files directly in the scored folder (see :func:`top_level_dive`).
    """

    path: Path
    taxonomy: Taxonomy
    table_meta: ScoresMetadata
    thresholds: np.ndarray
    threshold_source: str
    metadata: pl.DataFrame | None = None
    dive_regex: str | None = None
    dive_column: str | None = None
    images_root: Path | None = None
    exif: bool = False
    warnings: list[str] = field(default_factory=list)
    top_dive: str = "."

    @property
    def classes(self) -> pl.DataFrame:
        """category_id, name, supercategory, threshold per class."""
        return pl.DataFrame(
            {
                "category_id": list(self.taxonomy.ids),
                "name": list(self.taxonomy.names),
                "supercategory": list(self.taxonomy.supercategories),
                "threshold": self.thresholds.astype(np.float64),
            },
            schema={"category_id": pl.Int64, "name": pl.String, "supercategory": pl.String, "threshold": pl.Float64},
        )

    def provenance(self, kind: str) -> dict[str, Any]:
        """What produced an export: recorded in its Parquet metadata or its sidecar json."""
        engine = self.table_meta.engine
        from fathombatch import __version__

        return {
            "export": kind,
            "fathombatch": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "scores_table": str(self.path.resolve()),
            "scores_created": self.table_meta.created,
            "engine": {"name": engine.name, "arch": engine.arch, "sha256": engine.sha256,
                       "precision": engine.precision},
            "thresholds": {"source": self.threshold_source,
                           "values": {n: float(t) for n, t in zip(self.taxonomy.names, self.thresholds, strict=True)}},
        }

    def batches(self, extra: tuple[str, ...] = ()) -> Iterator[pl.DataFrame]:
        """ok rows in table order (sorted by path), BATCH_ROWS at a time, with ``dive`` and metadata columns.

        Args:
            extra: more columns of the scores table to read (``width``, ``height``, ``top_categories``, ``osd``).
        """
        import pyarrow.parquet as pq

        columns = ["image_id", "path", "status", *extra, *self.taxonomy.names]
        reader = pq.ParquetFile(self.path)
        for record_batch in reader.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            frame = pl.from_arrow(record_batch)
            assert isinstance(frame, pl.DataFrame)  # noqa: S101 - from_arrow of a RecordBatch is a frame
            frame = frame.filter(pl.col("status") == "ok").drop("status")
            if frame.height == 0:
                continue
            frame = self._joined(frame)
            if self.exif:
                frame = frame.with_columns(pl.Series("exif_datetime", [self._exif_time(p) for p in frame["path"]],
                                                     dtype=pl.String))
            yield frame.with_columns(dive=self._dive(frame))

    def images_named_by_folder(self) -> int:
        """Readable images whose dive is the scored folder's own name (files directly in it, default dives)."""
        if self.dive_column is not None or self.dive_regex is not None:
            return 0
        return (pl.scan_parquet(self.path).filter((pl.col("status") == "ok") & ~pl.col("path").str.contains("/"))
                .select(pl.len()).collect().item())

    def unreadable(self) -> dict[str, int]:
        """Error rows (files that could not be read when scored) per dive, for dives to count them too."""
        errors = pl.scan_parquet(self.path).filter(pl.col("status") != "ok").select("image_id", "path").collect()
        if errors.height == 0:
            return {}
        errors = self._joined(errors)
        return dict(errors.select(self._dive(errors)).group_by("dive").len().iter_rows())

    def _joined(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Rows with safe paths, joined to the image metadata."""
        unsafe = frame.filter(pl.col("path").str.contains(_UNSAFE_PATH))
        if unsafe.height:
            raise LabelFileError(f"{self.path}: path {unsafe['path'][0]!r} points outside the scored folder; "
                                 "this is not a table fathombatch wrote")
        if self.metadata is not None:
            frame = frame.join(self.metadata, on="path", how="left", maintain_order="left")
        return frame

    def _dive(self, frame: pl.DataFrame) -> pl.Series:
        if self.dive_column is not None:
            return frame[self.dive_column].cast(pl.String).fill_null("(unknown)").alias("dive")
        if self.dive_regex is not None:
            pattern = re.compile(self.dive_regex)

            def match(path: str) -> str:
                m = pattern.search(path)
                if m is None:
                    return "(unmatched)"
                found = m.group(1) if m.groups() else m.group(0)
                return found if found else "(unmatched)"  # an optional group that matched nothing

            return pl.Series("dive", [match(p) for p in frame["path"]], dtype=pl.String)
        paths = frame["path"]
        first = paths.str.split("/").list.first()
        nested = paths.str.contains("/", literal=True)
        return pl.select(pl.when(nested).then(first).otherwise(pl.lit(self.top_dive))).to_series().alias("dive")

    def _exif_time(self, rel: str) -> str | None:
        """EXIF DateTimeOriginal (or DateTime) of an image as ISO 8601, or None."""
        from PIL import Image

        if self.images_root is None:
            return None
        try:
            with Image.open(self.images_root / fs_path(rel)) as im:
                exif = im.getexif()
                value = exif.get_ifd(0x8769).get(36867) or exif.get(306)
        except Exception:  # noqa: BLE001 - any unreadable image simply has no timestamp
            return None
        if not value:
            return None
        try:
            return datetime.strptime(str(value).strip("\x00 "), "%Y:%m:%d %H:%M:%S").isoformat()
        except ValueError:
            return None


def open_source(
    scores: Path,
    *,
    threshold: float | None = None,
    metadata: Path | None = None,
    dive_regex: str | None = None,
    dive_column: str | None = None,
    images_root: Path | None = None,
    exif: bool = False,
) -> Source:
    """Open a scores table for export (see :class:`Source`).

    Raises:
        UsageError: the file is missing or is not a scores table (checked by
            :meth:`~fathombatch.scores.table.ScoresTable.open`, the one place that says what a scores table is).
    """
    table = ScoresTable.open(scores)
    taxonomy = table.taxonomy
    chosen = presence_thresholds(table.metadata.engine.thresholds, len(taxonomy), threshold)
    values, source = chosen.values, chosen.source
    warnings: list[str] = [chosen.warning] if chosen.warning else []
    if dive_regex is not None:
        try:
            re.compile(dive_regex)
        except re.error as exc:
            raise UsageError(f"{param('dive_regex')} {dive_regex!r} is not a valid regular expression "
                             f"({exc})") from None
    meta_frame = None
    if metadata is not None:
        scored = table.lazy.select("image_id", "path", "status").collect()
        matched = match_metadata(read_metadata_csv(metadata), scored, metadata.name)
        meta_frame = matched.frame
        warnings.extend(matched.warnings)
    if dive_column is not None and (meta_frame is None or dive_column not in meta_frame.columns):
        raise UsageError(f"{param('dive_column')} {dive_column!r} must be a column of the {param('metadata')} CSV")
    root = images_root if images_root is not None else table.metadata_root
    if exif and (root is None or not root.is_dir()):
        raise UsageError(f"{param('exif')} needs the scored images: pass {param('images_root')} DIR")
    return Source(path=scores, taxonomy=taxonomy, table_meta=table.metadata, thresholds=values,
                  threshold_source=source,
                  metadata=meta_frame, dive_regex=dive_regex, dive_column=dive_column, images_root=root, exif=exif,
                  warnings=warnings, top_dive=top_level_dive(table.metadata_root))


def top_level_dive(run_root: str | Path | None) -> str:
    """The dive of files directly in the scored folder: the folder's name when scored (``.`` when unknown).

    A flat folder of one dive (``/data/D1234/*.jpg``) is that dive; calling it "." would lose the only name it
    has. The name recorded at scoring time is used, not where the folder lies now, so moving it keeps the dive.
    """
    name = PurePath(run_root).name if run_root else ""
    return name or "."
