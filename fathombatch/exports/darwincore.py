"""Darwin Core occurrences for OBIS and GBIF: one machine observation per image and category above threshold.

The occurrence table holds Darwin Core terms only (https://dwc.tdwg.org/terms/, :data:`DWC_COLUMNS`), so it maps onto
an occurrence core without renaming. Its IDs are stable (:mod:`fathombatch.exports.identity`); ``scientificNameID``
comes from a user's AphiaID table (:mod:`fathombatch.exports.aphia`). The model's probability and the threshold it
passed go, as OBIS asks of machine observations, into an Extended Measurement or Fact (eMoF) table next to it
(:data:`EMOF_COLUMNS`, two rows per occurrence), linked by ``occurrenceID``; they also stay readable in
``identificationRemarks``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import polars as pl

from fathombatch.errors import UsageError
from fathombatch.exports.aphia import LSID_PREFIX, read_aphia_table
from fathombatch.exports.eventdate import EXAMPLE, event_dates
from fathombatch.exports.identity import Identifier, check_dataset_id
from fathombatch.exports.presence import presence_rows
from fathombatch.exports.source import Source
from fathombatch.pathargs import PathFields

#: metadata column (lower case) -> Darwin Core term
METADATA_TERMS = {
    "lat": "decimalLatitude", "latitude": "decimalLatitude", "decimallatitude": "decimalLatitude",
    "lon": "decimalLongitude", "long": "decimalLongitude", "longitude": "decimalLongitude",
    "decimallongitude": "decimalLongitude",
    "depth": "minimumDepthInMeters", "depth_m": "minimumDepthInMeters",
    "time": "eventDate", "timestamp": "eventDate", "datetime": "eventDate", "eventdate": "eventDate",
    "geodeticdatum": "geodeticDatum",
}
DWC_COLUMNS = ["occurrenceID", "datasetID", "eventID", "parentEventID", "fieldNumber", "basisOfRecord",
               "occurrenceStatus", "scientificName", "scientificNameID", "taxonRemarks", "identificationRemarks",
               "identifiedBy", "dateIdentified", "identificationVerificationStatus", "associatedMedia", "eventDate",
               "decimalLatitude", "decimalLongitude", "geodeticDatum", "minimumDepthInMeters", "maximumDepthInMeters"]
EMOF_COLUMNS = ["occurrenceID", "measurementID", "measurementType", "measurementValue", "measurementUnit",
                "measurementMethod"]
_FLOAT_TERMS = ("decimalLatitude", "decimalLongitude", "minimumDepthInMeters", "maximumDepthInMeters")
#: Valid values of the numeric terms; anything else (latitude 999, longitude inf, depth NaN or negative, as some ROV
#: logs store it) is left empty with a warning rather than published. 11,100 m is just below the Challenger Deep.
RANGES = {"decimalLatitude": (-90.0, 90.0), "decimalLongitude": (-180.0, 180.0),
          "minimumDepthInMeters": (0.0, 11_100.0)}
#: ROV navigation (GPS, USBL) reports WGS84 unless told otherwise; OBIS recommends the EPSG code.
DEFAULT_DATUM = "EPSG:4326"
_THRESHOLD_METHODS = {
    "manifest": "per-class threshold maximising F1 on the engine's held-out images",
    "global": "one threshold for every class, chosen by the user",
    "default": "the default threshold 0.5 (the engine records no per-class thresholds)",
}


@dataclass(frozen=True)
class DwcOptions(PathFields):
    """How occurrences are identified and described.

    Attributes:
        media_prefix: URL prefix for ``associatedMedia`` (never part of an ID).
        dataset_id: a string unique to the data set (``datasetID``); None: images are identified by content hash.
        aphia_ids: CSV of category -> WoRMS AphiaID, for ``scientificNameID``.
        geodetic_datum: ``geodeticDatum`` of rows with coordinates (a metadata ``geodeticDatum`` column wins).
    """

    media_prefix: str | None = None
    dataset_id: str | None = None
    aphia_ids: Path | None = None
    geodetic_datum: str = DEFAULT_DATUM


class _Tally:
    """What the warnings report: counts over every occurrence written."""

    def __init__(self) -> None:
        self.rows = 0
        self.invalid = dict.fromkeys(RANGES, 0)
        self.no_date = 0
        self.bad_dates = 0
        self.bad_date_example: str | None = None
        self.no_position = 0
        self.categories: set[int] = set()

    def add(self, out: pl.DataFrame) -> None:
        self.rows += out.height
        self.no_date += out["eventDate"].null_count()
        self.no_position += out.select((pl.col("decimalLatitude").is_null()
                                        | pl.col("decimalLongitude").is_null()).sum()).item()
        self.categories.update(out["category_id"].unique().to_list())

    def warnings(self, aphia: dict[int, int] | None, given: set[str] | None) -> list[str]:
        """One line per problem; ``given``: the Darwin Core terms the image metadata has columns for (None: none
        was given), so the advice on missing dates and positions names what is really missing."""
        found: list[str] = []
        bad = {term: n for term, n in self.invalid.items() if n}
        if bad:
            found.append("left empty, because out of range or not a number: " + ", ".join(
                f"{n} {term} value(s) (valid {RANGES[term][0]:g} to {RANGES[term][1]:g})" for term, n in bad.items()))
        if self.bad_dates:
            found.append(f"{self.bad_dates} eventDate value(s) are not ISO 8601 (e.g. {self.bad_date_example!r}) and "
                         f"were left empty: write them as {EXAMPLE}")
        if self.no_date or self.no_position:
            found.append(f"OBIS needs when and where: {self.no_date} of {self.rows} occurrence(s) have no eventDate, "
                         f"{self.no_position} no decimalLatitude/decimalLongitude ({_where_hint(given)})")
        missing = len(self.categories) if aphia is None else len(self.categories - set(aphia))
        if missing:
            why = "no AphiaID table was given" if aphia is None else "the AphiaID table does not list them"
            found.append(f"scientificNameID is empty for {missing} of {len(self.categories)} categories present "
                         f"({why}); OBIS then matches the names to WoRMS on its own")
        return found


def _where_hint(given: set[str] | None) -> str:
    if given is None:
        return "give them in the image metadata: time, lat, lon"
    lacking = [c for c, t in (("time", "eventDate"), ("lat", "decimalLatitude"), ("lon", "decimalLongitude"))
               if t not in given]
    if lacking:
        return f"the image metadata has no {', '.join(lacking)} column"
    return "their images have no row in the image metadata, or an empty or invalid value there"


def occurrences(source: Source, options: DwcOptions) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """Batches of (occurrence rows with :data:`DWC_COLUMNS`, eMoF rows with :data:`EMOF_COLUMNS`).

    The options are checked before anything is returned, so a bad one fails before any file is opened. Warnings
    (invalid values left empty, occurrences without date or position, categories without AphiaID) are appended to
    ``source.warnings`` once every batch has been yielded.

    Raises:
        UsageError: an empty dataset id or datum, a dataset id with repeated image ids, or no dataset id and no
            images to hash, or byte-identical copies sharing a file name.
        LabelFileError: a bad AphiaID table.
    """
    if not options.geodetic_datum.strip():
        raise UsageError("the geodetic datum must not be empty (EPSG:4326 is WGS84)")
    check_dataset_id(options.dataset_id, source.path)
    identifier = Identifier(options.dataset_id, source.images_root)
    identifier.check_distinct(source.path)
    aphia = read_aphia_table(options.aphia_ids, source.taxonomy) if options.aphia_ids is not None else None
    flat = source.images_named_by_folder() if options.dataset_id is not None else 0
    if flat:
        # Without a dataset id parentEventID is empty and nothing published depends on the folder's name; with one,
        # a name the user may not know they chose becomes part of an ID, so say how to pin it (docs/exports.md).
        source.warnings.append(
            f"{flat} image(s) lie directly in the scored folder, so their dive (parentEventID, fieldNumber) is the "
            f"folder's name when it was scored, {source.top_dive!r}: renaming the folder and scoring it again changes "
            "them; name dives with a column of the image metadata or a dive regex to keep them stable")
    return _batches(source, options, identifier, aphia)


def _batches(source: Source, options: DwcOptions, identifier: Identifier,
             aphia: dict[int, int] | None) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    constants = _constants(source, options, aphia)
    renames = _renames(source)
    tally = _Tally()
    for rows in presence_rows(source):
        frame = _dated(_checked(rows.rename(renames), tally), tally)
        frame = pl.concat([frame, identifier.ids(frame)], how="horizontal")
        out = frame.with_columns(**constants, **_row_terms(frame, options))
        tally.add(out)
        yield out.select(DWC_COLUMNS), _emof(out)
    source.warnings.extend(tally.warnings(aphia, set(renames.values()) if source.metadata is not None else None))


def emof_path(dest: Path) -> Path:
    """``occurrences.csv`` -> ``occurrences.emof.csv``: the eMoF table written next to the occurrences."""
    return dest.with_name(f"{dest.stem}.emof{dest.suffix}")


def _renames(source: Source) -> dict[str, str]:
    renames: dict[str, str] = {}
    for column in source.metadata.columns if source.metadata is not None else []:
        term = METADATA_TERMS.get(column.lower())
        if term and term not in renames.values():
            renames[column] = term
    return renames


def _constants(source: Source, options: DwcOptions, aphia: dict[int, int] | None) -> dict[str, pl.Expr]:
    """Terms that do not depend on the row's metadata."""
    prov = source.provenance("darwin core")
    engine = prov["engine"]
    engine_desc = f"{engine['name']} ({engine['arch']}, sha256 {str(engine['sha256'])[:12]})"
    identified = f"fathombatch {prov['fathombatch']}"
    lsids = pl.col("category_id").replace_strict(
        {c: f"{LSID_PREFIX}{a}" for c, a in (aphia or {}).items()}, default=None, return_dtype=pl.String)
    return {
        "datasetID": pl.lit(options.dataset_id, pl.String),
        "fieldNumber": pl.col("dive"),
        "basisOfRecord": pl.lit("MachineObservation"),
        "occurrenceStatus": pl.lit("present"),
        "scientificName": pl.col("name"),
        "scientificNameID": lsids,
        "taxonRemarks": pl.format("FathomNet 2023 category {}; supercategory {}", pl.col("category_id"),
                                  pl.col("supercategory")),
        "identificationRemarks": pl.format(
            f"machine identification by engine {engine_desc}, {identified}; probability {{}}; threshold {{}}",
            pl.col("probability").round(4), pl.col("threshold").round(4)),
        "identifiedBy": pl.lit(identified),
        "dateIdentified": pl.lit((source.table_meta.created or prov["created"])[:10]),
        "identificationVerificationStatus": pl.lit("unverified"),
        "_method": pl.lit(f"sigmoid output of engine {engine_desc}, {identified}"),
        "_threshold_method": pl.lit(_THRESHOLD_METHODS.get(source.threshold_source, source.threshold_source)),
    }


def _checked(frame: pl.DataFrame, tally: _Tally) -> pl.DataFrame:
    """Numeric terms as Float64, values outside :data:`RANGES` (or not numbers) nulled and counted."""
    exprs = []
    for term, (low, high) in RANGES.items():
        if term not in frame.columns:
            exprs.append(pl.lit(None, pl.Float64).alias(term))
            continue
        value = pl.col(term).cast(pl.Float64, strict=False)  # "n/a" in a log is a missing value, not a crash
        ok = (value.is_finite() & value.is_between(low, high)).fill_null(False)
        tally.invalid[term] += frame.select((pl.col(term).is_not_null() & ~ok).sum()).item()
        exprs.append(pl.when(ok).then(value).otherwise(None).alias(term))
    return frame.with_columns(exprs)


def _dated(frame: pl.DataFrame, tally: _Tally) -> pl.DataFrame:
    """``eventDate`` as ISO 8601: the metadata's value normalised, else the EXIF time; a non-ISO value counted.

    A metadata value that is not ISO 8601 leaves eventDate empty even where the image has an EXIF time: the camera's
    clock is not the log's, and filling some rows from one and some from the other would mix them silently.
    """
    exif = pl.col("exif_datetime") if "exif_datetime" in frame.columns else pl.lit(None, pl.String)
    if "eventDate" not in frame.columns:
        return frame.with_columns(eventDate=exif)
    iso, bad = event_dates(frame["eventDate"])
    if tally.bad_date_example is None and bad.any():
        tally.bad_date_example = frame["eventDate"].cast(pl.String).filter(bad)[0]
    tally.bad_dates += int(bad.sum())
    given = (frame["eventDate"].cast(pl.String).str.strip_chars().str.len_chars() > 0).fill_null(False)
    return (frame.with_columns(_iso=iso, _given=given)
            .with_columns(eventDate=pl.when("_given").then("_iso").otherwise(exif)).drop("_iso", "_given"))


def _row_terms(frame: pl.DataFrame, options: DwcOptions) -> dict[str, pl.Expr]:
    """Terms from the row's path and metadata: media, date, datum, depth."""
    def column(name: str) -> pl.Expr:
        return pl.col(name).cast(pl.String) if name in frame.columns else pl.lit(None, pl.String)

    media = pl.col("path")
    if options.media_prefix:
        # The prefix is the user's URL and is kept as given; the path after it is percent-encoded segment by segment,
        # so a '#', '?', '%' or space in a folder or file name stays part of the path instead of ending it.
        media = pl.lit(options.media_prefix.rstrip("/") + "/") + media.map_elements(url_path, return_dtype=pl.String)
    positioned = pl.col("decimalLatitude").is_not_null() & pl.col("decimalLongitude").is_not_null()
    datum = pl.coalesce(column("geodeticDatum"), pl.lit(options.geodetic_datum))
    return {
        "associatedMedia": media,
        "eventDate": pl.col("eventDate"),
        "geodeticDatum": pl.when(positioned).then(datum).otherwise(None),
        "maximumDepthInMeters": pl.col("minimumDepthInMeters"),
    }


def url_path(path: str) -> str:
    """``dive #3 ü/a b.jpg`` -> ``dive%20%233%20%C3%BC/a%20b.jpg``: each segment percent-encoded (UTF-8), ``/`` kept."""
    return "/".join(quote(segment, safe="") for segment in path.split("/"))


def _emof(out: pl.DataFrame) -> pl.DataFrame:
    """Two measurement rows per occurrence: the probability and the threshold it passed (both unitless, 0 to 1)."""
    def rows(kind: str, value: str, method: str) -> pl.DataFrame:
        return out.select(
            "occurrenceID",
            measurementID=pl.col("occurrenceID") + f":{kind.replace(' ', '-')}",
            measurementType=pl.lit(kind),
            measurementValue=pl.col(value).cast(pl.Float64),
            measurementUnit=pl.lit(None, pl.String),
            measurementMethod=pl.col(method),
        )

    both = pl.concat([rows("classification probability", "probability", "_method"),
                      rows("presence threshold", "threshold", "_threshold_method")])
    # Keep each occurrence's two rows together, in occurrence order.
    order = pl.concat([pl.int_range(out.height, eager=True)] * 2)
    return both.with_columns(_o=order).sort("_o", maintain_order=True).drop("_o")


def empty() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Empty (occurrence, eMoF) frames with the output schemas."""
    schema: dict[str, Any] = dict.fromkeys(DWC_COLUMNS, pl.String)
    schema.update(dict.fromkeys(_FLOAT_TERMS, pl.Float64))
    emof: dict[str, Any] = dict.fromkeys(EMOF_COLUMNS, pl.String)
    emof["measurementValue"] = pl.Float64
    return pl.DataFrame(schema=schema), pl.DataFrame(schema=emof)
