"""Darwin Core occurrences: one machine observation per image and category above threshold.

Columns are Darwin Core terms (https://dwc.tdwg.org/terms/), so the CSV can go to OBIS/GBIF tooling for review:
``occurrenceID`` (stable: a UUID5 of the engine hash, the dataset — the media prefix, or the scored folder — the
path and the category), ``eventID`` (the dive), ``basisOfRecord`` =
``MachineObservation``, ``occurrenceStatus`` = ``present``, ``scientificName`` (the FathomNet category name),
``identificationRemarks`` (engine, fathombatch version, probability, threshold), ``identifiedBy``,
``dateIdentified``, ``associatedMedia`` (the image path, after a URL prefix when given),
``identificationVerificationStatus`` = ``unverified``, ``taxonRemarks`` (FathomNet id and supercategory), and,
when the image metadata has them, ``eventDate``, ``decimalLatitude``, ``decimalLongitude``,
``minimumDepthInMeters`` and ``maximumDepthInMeters``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import polars as pl

from fathombatch.exports.presence import presence_rows
from fathombatch.exports.source import Source

#: metadata column (lower case) -> Darwin Core term
METADATA_TERMS = {
    "lat": "decimalLatitude", "latitude": "decimalLatitude", "decimallatitude": "decimalLatitude",
    "lon": "decimalLongitude", "long": "decimalLongitude", "longitude": "decimalLongitude",
    "decimallongitude": "decimalLongitude",
    "depth": "minimumDepthInMeters", "depth_m": "minimumDepthInMeters",
    "time": "eventDate", "timestamp": "eventDate", "datetime": "eventDate", "eventdate": "eventDate",
}
DWC_COLUMNS = ["occurrenceID", "eventID", "basisOfRecord", "occurrenceStatus", "scientificName", "taxonRemarks",
               "identificationRemarks", "identifiedBy", "dateIdentified", "identificationVerificationStatus",
               "associatedMedia", "eventDate", "decimalLatitude", "decimalLongitude", "minimumDepthInMeters",
               "maximumDepthInMeters"]
_NAMESPACE = uuid.UUID("6f1b6a2e-3c39-4f7e-9d0b-6a1f0c5b7e21")
#: Valid values of the numeric terms; anything else (latitude 999, longitude inf, depth NaN or negative, as some ROV
#: logs store it) is left empty with a warning rather than published. 11,100 m is just below the Challenger Deep.
RANGES = {"decimalLatitude": (-90.0, 90.0), "decimalLongitude": (-180.0, 180.0),
          "minimumDepthInMeters": (0.0, 11_100.0)}


def occurrences(source: Source, media_prefix: str | None = None) -> Iterator[pl.DataFrame]:
    """Batches of Darwin Core rows with :data:`DWC_COLUMNS`."""
    prov = source.provenance("darwin core")
    engine = prov["engine"]
    engine_desc = f"{engine['name']} ({engine['arch']}, sha256 {str(engine['sha256'])[:12]})"
    identified = f"fathombatch {prov['fathombatch']}"
    date = (source.meta.get("created") or prov["created"])[:10]
    renames = {}
    if source.metadata is not None:
        for column in source.metadata.columns:
            term = METADATA_TERMS.get(column.lower())
            if term and term not in renames.values():
                renames[column] = term
    def column(name: str, dtype: type[pl.DataType]) -> pl.Expr:
        return pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype)

    # Two cruises both have dive01/IMG_0001.jpg: the dataset (its public URL prefix, or where it was scored) keeps
    # their occurrence IDs apart.
    dataset = media_prefix or str((source.meta.get("run") or {}).get("root") or source.path.resolve())
    invalid = dict.fromkeys(RANGES, 0)
    for rows in presence_rows(source):
        frame = rows.rename(renames)
        ids = [str(uuid.uuid5(_NAMESPACE, f"{engine['sha256']}|{dataset}|{p}|{c}"))
               for p, c in zip(frame["path"], frame["category_id"], strict=True)]
        media = (pl.lit(media_prefix.rstrip("/") + "/") + pl.col("path")) if media_prefix else pl.col("path")
        checked = {}
        for term, (low, high) in RANGES.items():
            if term not in frame.columns:
                checked[term] = pl.lit(None, pl.Float64)
                continue
            value = pl.col(term).cast(pl.Float64, strict=False)  # "n/a" in a log is a missing value, not a crash
            ok = (value.is_finite() & value.is_between(low, high)).fill_null(False)
            invalid[term] += frame.select((pl.col(term).is_not_null() & ~ok).sum()).item()
            checked[term] = pl.when(ok).then(value).otherwise(None)
        depth = checked["minimumDepthInMeters"]
        exif_date = column("exif_datetime", pl.String)
        out = frame.with_columns(
            occurrenceID=pl.Series(ids, dtype=pl.String),
            eventID=pl.col("dive"),
            basisOfRecord=pl.lit("MachineObservation"),
            occurrenceStatus=pl.lit("present"),
            scientificName=pl.col("name"),
            taxonRemarks=pl.format("FathomNet 2023 category {}; supercategory {}", pl.col("category_id"),
                                   pl.col("supercategory")),
            identificationRemarks=pl.format(
                f"machine identification by engine {engine_desc}, {identified}; probability {{}}; threshold {{}}",
                pl.col("probability").round(4), pl.col("threshold").round(4)),
            identifiedBy=pl.lit(identified),
            dateIdentified=pl.lit(date),
            identificationVerificationStatus=pl.lit("unverified"),
            associatedMedia=media,
            eventDate=pl.coalesce(column("eventDate", pl.String), exif_date),
            decimalLatitude=checked["decimalLatitude"],
            decimalLongitude=checked["decimalLongitude"],
            minimumDepthInMeters=depth,
            maximumDepthInMeters=depth,
        )
        yield out.select(DWC_COLUMNS)
    bad = {term: n for term, n in invalid.items() if n}
    if bad:
        source.warnings.append(
            "left empty, because out of range or not a number: " + ", ".join(
                f"{n} {term} value(s) (valid {RANGES[term][0]:g} to {RANGES[term][1]:g})" for term, n in bad.items()))


def empty() -> pl.DataFrame:
    schema = {c: pl.String for c in DWC_COLUMNS}
    schema.update(decimalLatitude=pl.Float64, decimalLongitude=pl.Float64, minimumDepthInMeters=pl.Float64,
                  maximumDepthInMeters=pl.Float64)
    return pl.DataFrame(schema=schema)
