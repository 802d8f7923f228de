"""Exports for marine scientists and review tools: presence tables, per-dive summaries, Darwin Core occurrences,
FiftyOne datasets and COCO results.

``export_table(ExportTableConfig(...))`` turns a scores table into one of:

* ``long``: one row per (image, category) present — ``image_id, path, dive, category_id, name, supercategory,
  probability, threshold`` plus any image metadata — Parquet or CSV by extension;
* ``dives``: a folder with ``dives.<ext>`` (per dive and category), ``supercategories.<ext>`` and ``heatmap.png``;
* ``dwc``: Darwin Core occurrences (Parquet or CSV) and their Extended Measurement or Fact table (probability and
  threshold of every occurrence), for OBIS and GBIF;
* ``fiftyone``: a FiftyOne image classification dataset folder (:mod:`fathombatch.exports.fiftyone_dataset`);
* ``coco-results``: image-level predictions as a COCO results json (:mod:`fathombatch.exports.cocoresults`).

Presence means probability >= the class's threshold (see :mod:`fathombatch.exports.thresholds`). Every export records
what produced it (scores table, engine, thresholds) in its Parquet metadata or a ``.meta.json`` sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from fathombatch.errors import UsageError
from fathombatch.exports import darwincore
from fathombatch.exports.darwincore import DEFAULT_DATUM
from fathombatch.exports.presence import LONG_COLUMNS, presence_rows
from fathombatch.exports.source import Source, open_source
from fathombatch.exports.writers import sidecar_path, stream_table, table_format
from fathombatch.fsutil import write_json_atomic
from fathombatch.pathargs import PathFields

__all__ = ["ExportTableConfig", "ExportTableResult", "TableExt", "TableFormat", "export_table", "output_files"]

TableFormat = Literal["long", "dives", "dwc", "fiftyone", "coco-results"]
#: The file format of the ``dives`` tables, as their extension.
TableExt = Literal[".parquet", ".csv"]


@dataclass(frozen=True)
class ExportTableConfig(PathFields):
    """One export.

    Attributes:
        scores: the scores table.
        out: output file (``long``, ``dwc``: .parquet/.csv; ``coco-results``: .json) or folder (``dives``,
            ``fiftyone``).
        format: ``long``, ``dives``, ``dwc``, ``fiftyone`` or ``coco-results``.
        threshold: one threshold for every class (None: the engine manifest's per-class thresholds).
        metadata: per-image CSV joined on ``image_id`` (depth, lat/lon, time...).
        dive_regex / dive_column: where dives come from (default: the first folder of ``path``).
        images_root: the scored folder, for ``exif`` (default: the table's recorded root).
        exif: add EXIF timestamps (``exif_datetime``; Darwin Core ``eventDate`` when the metadata has none).
        media_prefix: URL prefix for Darwin Core ``associatedMedia``.
        table_ext: ``.parquet`` or ``.csv`` for the ``dives`` tables.
        dataset_id: Darwin Core ``datasetID``, and what identifies the images in occurrence and event IDs
            (None: the SHA-256 of each image file, which needs the scored images).
        aphia_ids: CSV of category -> WoRMS AphiaID, for ``scientificNameID``.
        geodetic_datum: Darwin Core ``geodeticDatum`` of positioned occurrences.
        coco: for ``coco-results``: the COCO json whose image ids the results use (None: the table's image ids).
    """

    scores: Path
    out: Path
    format: TableFormat = "long"
    threshold: float | None = None
    metadata: Path | None = None
    dive_regex: str | None = None
    dive_column: str | None = None
    images_root: Path | None = None
    exif: bool = False
    media_prefix: str | None = None
    table_ext: TableExt = ".parquet"
    dataset_id: str | None = None
    aphia_ids: Path | None = None
    geodetic_datum: str = DEFAULT_DATUM
    coco: Path | None = None


@dataclass(frozen=True)
class ExportTableResult:
    files: dict[str, Path]
    rows: int
    threshold_source: str
    warnings: list[str]


def output_files(out: Path, format: str) -> list[Path]:
    """Every file :func:`export_table` writes for ``out`` in ``format`` (for ``dives``: the folder it writes into),
    so that a caller can refuse to replace any of them before the export starts: the table, the Darwin Core eMoF
    table beside it, and the ``.meta.json`` sidecar of each CSV."""
    if format in ("dives", "fiftyone"):
        return [out]
    if format == "coco-results":
        return [out, sidecar_path(out)]
    tables = [out, darwincore.emof_path(out)] if format == "dwc" else [out]
    return tables + [sidecar_path(t) for t in tables if t.suffix.lower() == ".csv"]


def export_table(cfg: ExportTableConfig) -> ExportTableResult:
    """Write one export (see the module docstring)."""
    source: Source = open_source(cfg.scores, threshold=cfg.threshold, metadata=cfg.metadata,
                                 dive_regex=cfg.dive_regex, dive_column=cfg.dive_column,
                                 images_root=cfg.images_root, exif=cfg.exif)
    if cfg.format == "dives":
        from fathombatch.exports.dives import write_dives

        files = write_dives(source, cfg.out, cfg.table_ext)
        dives = files["dives"]
        # Count rows without inferring types: a dive named "0" above one named "a" would fail a typed CSV read.
        rows = (pl.scan_parquet(dives) if cfg.table_ext == ".parquet" else pl.scan_csv(dives, infer_schema=False)
                ).select(pl.len()).collect().item()
        return ExportTableResult(files=files, rows=rows, threshold_source=source.threshold_source,
                                 warnings=source.warnings)
    if cfg.format == "dwc":
        return _export_dwc(cfg, source)
    if cfg.format in ("fiftyone", "coco-results"):
        return _export_review(cfg, source)
    if cfg.format == "long":
        table_format(cfg.out)
        batches, kind = presence_rows(source), "long presence table"
        empty = _empty_long(source)
    else:
        raise UsageError(f"unknown export format {cfg.format!r}; choose long, dives, dwc, fiftyone or coco-results")
    rows = 0
    with stream_table(cfg.out, source.provenance(kind), empty) as write:
        for frame in batches:
            write(frame)
            rows += frame.height
    return ExportTableResult(files={cfg.format: cfg.out}, rows=rows, threshold_source=source.threshold_source,
                             warnings=source.warnings)


def _export_dwc(cfg: ExportTableConfig, source: Source) -> ExportTableResult:
    """Darwin Core occurrences at ``cfg.out`` and their eMoF table next to it, written together."""
    table_format(cfg.out)
    options = darwincore.DwcOptions(media_prefix=cfg.media_prefix, dataset_id=cfg.dataset_id,
                                    aphia_ids=cfg.aphia_ids, geodetic_datum=cfg.geodetic_datum)
    batches = darwincore.occurrences(source, options)
    settings = {"dataset_id": cfg.dataset_id, "aphia_ids": str(cfg.aphia_ids) if cfg.aphia_ids else None,
                "geodetic_datum": cfg.geodetic_datum, "media_prefix": cfg.media_prefix}
    emof = darwincore.emof_path(cfg.out)
    empty_occurrences, empty_emof = darwincore.empty()
    rows = 0
    with stream_table(cfg.out, {**source.provenance("darwin core"), "darwin_core": settings},
                      empty_occurrences) as write, \
            stream_table(emof, {**source.provenance("darwin core extended measurement or fact"),
                                "darwin_core": settings}, empty_emof) as write_emof:
        for occurrences, measurements in batches:
            write(occurrences)
            write_emof(measurements)
            rows += occurrences.height
    return ExportTableResult(files={"dwc": cfg.out, "emof": emof}, rows=rows,
                             threshold_source=source.threshold_source, warnings=source.warnings)


def _export_review(cfg: ExportTableConfig, source: Source) -> ExportTableResult:
    """The hand-offs to review tools: a FiftyOne dataset folder, or COCO results with a provenance sidecar."""
    if cfg.format == "fiftyone":
        from fathombatch.exports.fiftyone_dataset import LABELS, write_fiftyone

        rows, warnings = write_fiftyone(source, cfg.out)
        return ExportTableResult(files={"fiftyone": cfg.out / LABELS}, rows=rows,
                                 threshold_source=source.threshold_source, warnings=warnings)
    from fathombatch.exports.cocoresults import write_coco_results

    table_format(cfg.out, (".json",))
    rows, warnings = write_coco_results(source, cfg.out, cfg.coco, cfg.threshold)
    write_json_atomic(sidecar_path(cfg.out), {**source.provenance("coco results"),
                                              "coco": str(cfg.coco.resolve()) if cfg.coco else None})
    # The results are the ranked top categories: only a global --threshold cuts them (see cocoresults).
    return ExportTableResult(files={"coco-results": cfg.out}, rows=rows,
                             threshold_source="global" if cfg.threshold is not None else "no",
                             warnings=warnings)


def _empty_long(source: Source) -> pl.DataFrame:
    schema = {"image_id": pl.String, "path": pl.String, "dive": pl.String, "category_id": pl.Int64, "name": pl.String,
              "supercategory": pl.String, "probability": pl.Float64, "threshold": pl.Float64}
    extra = {c: t for c, t in (source.metadata.schema.items() if source.metadata is not None else []) if c != "path"}
    if source.exif:
        extra["exif_datetime"] = pl.String()
    return pl.DataFrame(schema={**{c: schema[c] for c in LONG_COLUMNS}, **extra})
