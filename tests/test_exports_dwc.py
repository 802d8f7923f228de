"""Darwin Core / OBIS exports (issues 9 and 16): occurrence terms, stable IDs, eMoF, AphiaIDs, warnings.

The scored cruise (``dump_scores``) is a conftest fixture; the other export tests are in test_exports.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from fathombatch.cli import cli
from fathombatch.errors import UsageError
from fathombatch.exports import ExportTableConfig, export_table
from fathombatch.exports.writers import read_provenance
from fathombatch.scoring import ScoreConfig, score_folder
from fathombatch.table import read_metadata
from tests.test_exports import TAX, direct_presence

# Darwin Core terms (https://dwc.tdwg.org/terms/, the Occurrence, Event, Location, Identification and Taxon classes
# and record-level terms) that an occurrence CSV may use.
DWC_TERMS = {
    "type", "modified", "language", "license", "rightsHolder", "accessRights", "bibliographicCitation", "references",
    "institutionID", "collectionID", "datasetID", "institutionCode", "collectionCode", "datasetName",
    "ownerInstitutionCode",
    "basisOfRecord", "informationWithheld", "dataGeneralizations", "dynamicProperties", "occurrenceID", "catalogNumber",
    "recordNumber", "recordedBy", "recordedByID", "individualCount", "organismQuantity", "organismQuantityType", "sex",
    "lifeStage", "reproductiveCondition", "behavior", "establishmentMeans", "degreeOfEstablishment", "pathway",
    "georeferenceVerificationStatus", "occurrenceStatus", "preparations", "disposition", "associatedMedia",
    "associatedOccurrences", "associatedReferences", "associatedSequences", "associatedTaxa", "otherCatalogNumbers",
    "occurrenceRemarks", "eventID", "parentEventID", "fieldNumber", "eventDate", "eventTime", "startDayOfYear",
    "endDayOfYear", "year", "month", "day", "verbatimEventDate", "habitat", "samplingProtocol", "sampleSizeValue",
    "sampleSizeUnit", "samplingEffort", "fieldNotes", "eventRemarks", "locationID", "waterBody", "country", "locality",
    "minimumElevationInMeters", "maximumElevationInMeters", "minimumDepthInMeters", "maximumDepthInMeters",
    "decimalLatitude", "decimalLongitude", "geodeticDatum", "coordinateUncertaintyInMeters", "identificationID",
    "verbatimIdentification", "identificationQualifier", "typeStatus", "identifiedBy", "identifiedByID",
    "dateIdentified", "identificationReferences", "identificationVerificationStatus", "identificationRemarks",
    "taxonID", "scientificNameID", "scientificName", "higherClassification", "kingdom", "phylum", "class", "order",
    "family", "genus", "taxonRank", "vernacularName", "taxonRemarks",
}


def test_darwin_core_occurrences(dump_scores: Path, tmp_path: Path) -> None:
    table = pl.read_parquet(dump_scores)
    log = tmp_path / "rov_log.csv"
    pl.DataFrame({"image_id": table["image_id"], "lat": 36.7, "lon": -122.05, "depth": 812.5}).write_csv(log)
    out = tmp_path / "occ.csv"
    export_table(ExportTableConfig(scores=dump_scores, out=out, format="dwc", threshold=0.02, metadata=log,
                                   media_prefix="https://data.example.org/cruise/", exif=True))
    occ = pl.read_csv(out, infer_schema_length=0)
    assert set(occ.columns) <= DWC_TERMS
    assert occ.height == len(direct_presence(dump_scores, np.full(290, 0.02)))
    assert set(occ["basisOfRecord"]) == {"MachineObservation"}
    assert set(occ["identificationVerificationStatus"]) == {"unverified"}
    assert occ["occurrenceID"].n_unique() == occ.height
    assert set(occ["scientificName"]) <= set(TAX.names)
    assert occ["associatedMedia"].str.starts_with("https://data.example.org/cruise/").all()
    assert set(occ["fieldNumber"]) <= {"cruise", "dive0", "dive1", "dive2"}
    assert (occ["decimalLatitude"].cast(float) == 36.7).all()
    assert (occ["minimumDepthInMeters"].cast(float) == 812.5).all()
    assert occ["identificationRemarks"].str.contains("probability 0.").all()
    assert (read_provenance(out)["export"]) == "darwin core"


def test_exif_timestamps_reach_the_exports(dump_scores: Path, tmp_path: Path) -> None:
    export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "occ.csv", format="dwc", threshold=0.02,
                                   exif=True))
    occ = pl.read_csv(tmp_path / "occ.csv", infer_schema_length=0)
    dated = occ.filter(pl.col("eventDate").is_not_null())
    assert dated.height > 0 and set(dated["eventDate"]) == {"2023-05-17T10:42:03"}
    assert dated["associatedMedia"].str.starts_with("dive1/").all()


def test_occurrence_ids_differ_between_datasets(dump_scores: Path, tmp_path: Path) -> None:
    for dataset, name in (("https://a.example/cruise1", "a.csv"), ("https://a.example/cruise2", "b.csv")):
        export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / name, format="dwc", threshold=0.02,
                                       dataset_id=dataset))
    a, b = pl.read_csv(tmp_path / "a.csv"), pl.read_csv(tmp_path / "b.csv")
    assert a.height == b.height and not set(a["occurrenceID"]) & set(b["occurrenceID"])


def test_darwin_core_leaves_impossible_coordinates_and_depths_empty(dump_scores: Path, tmp_path: Path) -> None:
    table = pl.read_parquet(dump_scores)
    n = table.height
    lat = [999.0, 36.7] + [36.7] * (n - 2)
    lon = [float("inf"), -122.05] + [-122.05] * (n - 2)
    depth = [float("nan"), -5.0] + [812.5] * (n - 2)
    log = tmp_path / "log.csv"
    pl.DataFrame({"image_id": table["image_id"], "lat": lat, "lon": lon, "depth": depth}).write_csv(log)
    out = tmp_path / "occ.csv"
    result = export_table(ExportTableConfig(scores=dump_scores, out=out, format="dwc", threshold=0.02, metadata=log))
    occ = pl.read_csv(out, infer_schema_length=0)
    first, second = table["image_id"][0], table["image_id"][1]
    ids = occ["associatedMedia"].str.extract(r"([^/]+)\.[a-z]+$")
    bad_lat = occ.filter(ids == first)
    assert bad_lat.height > 0 and bad_lat["decimalLatitude"].is_null().all()
    assert bad_lat["decimalLongitude"].is_null().all() and bad_lat["minimumDepthInMeters"].is_null().all()
    neg_depth = occ.filter(ids == second)
    assert neg_depth.height > 0 and neg_depth["minimumDepthInMeters"].is_null().all()
    assert (neg_depth["decimalLatitude"].cast(float) == 36.7).all()
    good = occ.filter((ids != first) & (ids != second))
    assert (good["minimumDepthInMeters"].cast(float) == 812.5).all()
    assert (good["decimalLatitude"].cast(float) == 36.7).all()
    warning = " ".join(result.warnings)
    assert "left empty, because out of range or not a number" in warning
    assert f"{bad_lat.height} decimalLatitude" in warning and f"{bad_lat.height} decimalLongitude" in warning
    assert f"{bad_lat.height + neg_depth.height} minimumDepthInMeters" in warning


def _ids(path: Path) -> pl.DataFrame:
    """(image, category) -> occurrence, event and parent event IDs of a Darwin Core export, in a fixed order."""
    occ = pl.read_csv(path, infer_schema_length=0)
    image = occ["associatedMedia"].str.extract(r"([^/]+)\.[a-z]+$").alias("image")
    return (occ.select(image, "scientificName", pl.col("^(occurrenceID|eventID|parentEventID)$"))
            .sort("image", "scientificName"))


@pytest.mark.parametrize("dataset_id", [None, "https://doi.org/10.0000/cruise42"])
def test_ids_survive_moving_rescoring_and_media_prefix(dump_scores: Path, engines: dict, tmp_path: Path,
                                                       dataset_id: str | None) -> None:
    root = Path(read_metadata(dump_scores)["run"]["root"])
    moved = tmp_path / "elsewhere" / root.name
    shutil.copytree(root, moved)
    rescored = tmp_path / "rescored.parquet"
    score_folder(ScoreConfig(root=moved, engine=engines["onnx"], out=rescored))
    runs = {
        "first": {"scores": dump_scores},
        "media prefix": {"scores": dump_scores, "media_prefix": "https://data.example.org/cruise42"},
        "moved, old table": {"scores": dump_scores, "images_root": moved},
        "moved and rescored": {"scores": rescored, "media_prefix": "https://elsewhere.example/c42/"},
    }
    ids = {}
    identified_by = {} if dataset_id is None else {"dataset_id": dataset_id}
    for name, kwargs in runs.items():
        out = tmp_path / f"{name}.csv"
        export_table(ExportTableConfig(out=out, format="dwc", threshold=0.02, **identified_by, **kwargs))
        ids[name] = _ids(out)
    first = ids["first"]
    assert first.height > 0 and first["occurrenceID"].n_unique() == first.height
    for name, got in ids.items():
        assert got.equals(first), name
    assert first["eventID"].n_unique() == first["image"].n_unique()  # one event per image
    assert first["parentEventID"].null_count() == (first.height if dataset_id is None else 0)


def test_dataset_id_with_repeated_image_ids_is_refused_and_content_hashes_tell_them_apart(
    dump_scores: Path, tmp_path: Path
) -> None:
    table = pl.read_parquet(dump_scores)
    twin = table["image_id"][1]
    table = table.with_columns(image_id=pl.when(pl.int_range(pl.len()) == 2).then(pl.lit(twin))
                               .otherwise(pl.col("image_id")))  # two files, one stem (IMG_0001.jpg in two dives)
    table.write_parquet(tmp_path / "s.parquet", metadata=pl.read_parquet_metadata(dump_scores))
    with pytest.raises(UsageError, match=r"1 image id\(s\) .* belong to more than one file"):
        export_table(ExportTableConfig(scores=tmp_path / "s.parquet", out=tmp_path / "a.csv", format="dwc",
                                       threshold=0.02, dataset_id="cruise42"))
    assert not (tmp_path / "a.csv").exists()
    export_table(ExportTableConfig(scores=tmp_path / "s.parquet", out=tmp_path / "b.csv", format="dwc",
                                   threshold=0.02))
    occ = pl.read_csv(tmp_path / "b.csv")
    assert occ["occurrenceID"].n_unique() == occ.height > 0
    with pytest.raises(UsageError, match="dataset id must not be empty"):
        export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "c.csv", format="dwc", dataset_id=" "))


def test_content_hash_ids_need_the_images(dump_scores: Path, tmp_path: Path) -> None:
    meta = read_metadata(dump_scores)
    meta["run"]["root"] = str(tmp_path / "gone")
    pl.read_parquet(dump_scores).write_parquet(tmp_path / "s.parquet", metadata={"fathombatch": json.dumps(meta)})
    result = CliRunner().invoke(cli, ["export-table", str(tmp_path / "s.parquet"), "--format", "dwc", "--threshold",
                                      "0.02", "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: Darwin Core IDs need a dataset id, or the scored images to hash")
    assert not (tmp_path / "o.csv").exists()
    ok = CliRunner().invoke(cli, ["export-table", str(tmp_path / "s.parquet"), "--format", "dwc", "--threshold", "0.02",
                                  "--out", str(tmp_path / "o.csv"), "--dataset-id", "cruise42"])
    assert ok.exit_code == 0 and (tmp_path / "o.csv").exists()


def test_obis_terms_scientific_name_ids_datum_and_measurements(dump_scores: Path, tmp_path: Path) -> None:
    table = pl.read_parquet(dump_scores)
    n = table.height
    log = tmp_path / "log.csv"
    pl.DataFrame({"image_id": table["image_id"], "lat": [None] + [36.7] * (n - 1), "lon": -122.05,
                  "time": [None, None] + ["2023-05-17T10:00:00"] * (n - 2)}).write_csv(log)
    urchin, fish = TAX.names[159], TAX.ids[36]  # Strongylocentrotus fragilis by name, category 37 by id
    aphia = tmp_path / "aphia.csv"
    aphia.write_text(f"category,aphia_id\n{urchin},100001\n{fish},100002\n")
    out = tmp_path / "occ.parquet"
    result = export_table(ExportTableConfig(scores=dump_scores, out=out, format="dwc", threshold=0.02, metadata=log,
                                            dataset_id="cruise42", aphia_ids=aphia))
    occ = pl.read_parquet(out)
    assert set(occ.columns) <= DWC_TERMS and occ.height == result.rows > 0
    assert (occ["datasetID"] == "cruise42").all()
    lsid = dict(occ.select("scientificName", "scientificNameID").unique().iter_rows())
    assert {urchin, TAX.names[36]} & set(lsid)  # at least one mapped category is present
    assert lsid.get(urchin, "urn:lsid:marinespecies.org:taxname:100001") == "urn:lsid:marinespecies.org:taxname:100001"
    assert lsid.get(TAX.names[36], "urn:lsid:marinespecies.org:taxname:100002") == (
        "urn:lsid:marinespecies.org:taxname:100002")
    assert all(v is None for k, v in lsid.items() if k not in (urchin, TAX.names[36]))
    positioned = occ["decimalLatitude"].is_not_null()
    assert (occ.filter(positioned)["geodeticDatum"] == "EPSG:4326").all()
    assert occ.filter(~positioned)["geodeticDatum"].is_null().all()
    emof = pl.read_parquet(result.files["emof"])
    assert result.files["emof"] == tmp_path / "occ.emof.parquet" and emof.height == 2 * occ.height
    assert set(emof["occurrenceID"]) == set(occ["occurrenceID"]) and emof["measurementID"].n_unique() == emof.height
    long = pl.read_parquet(export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "l.parquet",
                                                          threshold=0.02)).files["long"])
    probs = emof.filter(pl.col("measurementType") == "classification probability")["measurementValue"]
    assert sorted(probs.to_list()) == sorted(long["probability"].to_list())
    assert (emof.filter(pl.col("measurementType") == "presence threshold")["measurementValue"] == 0.02).all()
    no_date = occ["eventDate"].null_count()
    no_position = (~positioned).sum()
    assert no_date > 0 and no_position > 0
    text = "\n".join(result.warnings)
    assert f"{no_date} of {occ.height} occurrence(s) have no eventDate, {no_position} no decimalLatitude" in text
    present = occ["scientificName"].n_unique()
    mapped = len({urchin, TAX.names[36]} & set(occ["scientificName"]))
    assert f"scientificNameID is empty for {present - mapped} of {present} categories present" in text


@pytest.mark.parametrize(("content", "message"), [
    ("name,aphia_id\nNot a FathomNet name,123\n", "line 2: 'Not a FathomNet name' is not a category name"),
    ("category_id,aphia_id\n37,100002\n999,1\n", "line 3: category id 999 is not in"),
    ("category_id,aphia_id\n37,12x\n", "line 2: aphia_id '12x' is not a positive integer"),
    ("category_id,aphia_id\n37,\u00b2\n", "line 2: aphia_id '\u00b2' is not a positive integer"),
    ("category_id,aphia_id\n37,99999999999999999999\n", "is not a positive integer up to 2147483647"),
    ("category_id,aphia_id\n\u00b3,1\n", "line 2: category_id '\u00b3' is not an integer"),
    ("category_id,aphia_id\n37,100002\n37,100003\n", "line 3: category 37 already has AphiaID 100002"),
    ("category_id,aphia_id\n37\n", "line 2: 1 fields, the header has 2"),
    ("species,worms\nx,1\n", "line 1: the AphiaID table needs an 'aphia_id' column"),
])
def test_bad_aphia_tables_are_one_error_naming_the_line(dump_scores: Path, tmp_path: Path, content: str,
                                                        message: str) -> None:
    aphia = tmp_path / "aphia.csv"
    aphia.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(cli, ["export-table", str(dump_scores), "--format", "dwc", "--out",
                                      str(tmp_path / "o.csv"), "--dataset-id", "c42", "--aphia-ids", str(aphia)])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"Error: {aphia}, ") and message in result.stderr
    assert not (tmp_path / "o.csv").exists()


def test_cli_dwc_writes_parquet_with_its_extension_and_warns_on_stderr(dump_scores: Path, tmp_path: Path) -> None:
    out = tmp_path / "occ.parquet"
    result = CliRunner().invoke(cli, ["export-table", str(dump_scores), "--format", "dwc", "--threshold", "0.02",
                                      "--out", str(out), "--dataset-id", "c42", "--geodetic-datum", "EPSG:4326"])
    assert result.exit_code == 0, result.output
    assert str(out) in result.stdout and str(tmp_path / "occ.emof.parquet") in result.stdout
    warnings = result.stderr.strip().splitlines()
    assert warnings and all(line.startswith("warning: ") for line in warnings)
    assert any("no eventDate" in line for line in warnings) and "warning" not in result.stdout
    assert read_provenance(out)["darwin_core"]["dataset_id"] == "c42"


def test_byte_identical_copies_with_one_name_are_refused_before_any_file(dump_scores: Path, engines: dict,
                                                                          tmp_path: Path) -> None:
    """Without a dataset id an image is (content hash, stem): a copy with the same name would repeat every ID."""
    root = tmp_path / "cruise"
    shutil.copytree(Path(read_metadata(dump_scores)["run"]["root"]), root)
    copied = sorted((root / "dive0").glob("*.jpg"))[:2]
    (root / "spare").mkdir()
    for image in copied:  # what a second download of part of a dive leaves behind
        shutil.copy(image, root / "spare" / image.name)
    scores = tmp_path / "scores.parquet"
    score_folder(ScoreConfig(root=root, engine=engines["onnx"], out=scores))
    out = tmp_path / "occ.csv"
    result = CliRunner().invoke(cli, ["export-table", str(scores), "--format", "dwc", "--threshold", "0.02",
                                      "--out", str(out)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith("Error: 2 scored file(s) are byte-identical copies of another file")
    assert f"dive0/{copied[0].name} = spare/{copied[0].name}" in result.stderr and "curate dedupe" in result.stderr
    assert not out.exists() and not (tmp_path / "occ.emof.csv").exists()
    (root / "spare" / copied[0].name).unlink()
    (root / "spare" / copied[1].name).unlink()
    score_folder(ScoreConfig(root=root, engine=engines["onnx"], out=scores, overwrite=True))
    export_table(ExportTableConfig(scores=scores, out=out, format="dwc", threshold=0.02))
    occ = pl.read_csv(out, infer_schema_length=0)
    assert occ.height > 0 and occ["occurrenceID"].n_unique() == occ.height


def test_a_flat_folders_dive_ids_follow_its_name_unless_dives_are_pinned(dump_scores: Path, tmp_path: Path) -> None:
    """Files directly in the scored folder belong to the dive named after it: renaming it and rescoring (here: the
    root the rescored table would record) changes their parentEventID, says so, and a metadata dive column pins it."""
    meta = read_metadata(dump_scores)
    table = pl.read_parquet(dump_scores)
    renamed = tmp_path / "renamed.parquet"
    meta["run"]["root"] = str(Path(meta["run"]["root"]).with_name("cruise-renamed"))
    table.write_parquet(renamed, metadata={"fathombatch": json.dumps(meta)})
    log = tmp_path / "log.csv"
    table.select("image_id", dive_name=pl.lit("D1234")).write_csv(log)
    ids, warnings = {}, {}
    for scores in (dump_scores, renamed):
        for pinned in (False, True):
            out = tmp_path / f"{scores.stem}-{pinned}.csv"
            pin = {"metadata": log, "dive_column": "dive_name"} if pinned else {}
            result = export_table(ExportTableConfig(scores=scores, out=out, format="dwc", threshold=0.02,
                                                    dataset_id="cruise42", **pin))
            occ = pl.read_csv(out, infer_schema_length=0)
            flat = ~occ["associatedMedia"].str.contains("/")
            ids[scores, pinned] = (occ.filter(flat)["parentEventID"].to_list(), occ.filter(~flat)["parentEventID"])
            warnings[scores, pinned] = [w for w in result.warnings if "directly in the scored folder" in w]
    flat_before, nested_before = ids[dump_scores, False]
    flat_after, nested_after = ids[renamed, False]
    assert flat_before and set(flat_before).isdisjoint(flat_after) and nested_before.equals(nested_after)
    n_flat = table.filter((pl.col("status") == "ok") & ~pl.col("path").str.contains("/")).height
    assert warnings[dump_scores, False] == [(
        f"{n_flat} image(s) lie directly in the scored folder, so their dive (parentEventID, fieldNumber) is the "
        "folder's name when it was scored, 'cruise': renaming the folder and scoring it again changes them; name "
        "dives with a column of the image metadata or a dive regex to keep them stable")]
    (flat_pinned, nested_pinned), (flat_pinned_after, nested_pinned_after) = ids[dump_scores, True], ids[renamed, True]
    assert flat_pinned == flat_pinned_after and nested_pinned.equals(nested_pinned_after)
    assert not warnings[dump_scores, True] and not warnings[renamed, True]


def test_dwc_advice_on_missing_dates_and_positions_names_what_is_really_missing(dump_scores: Path,
                                                                               tmp_path: Path) -> None:
    table = pl.read_parquet(dump_scores, columns=["image_id"])
    log = tmp_path / "rov.csv"
    # The user gave time, lat and lon, but under ids that name no scored image.
    pl.DataFrame({"image_id": [f"/data/{i}.jpg" for i in table["image_id"]], "time": "2023-05-17T10:00",
                  "lat": 36.7, "lon": -122.0}).write_csv(log)
    result = export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "o.csv", format="dwc", threshold=0.02,
                                            metadata=log))
    [where] = [w for w in result.warnings if w.startswith("OBIS needs when and where")]
    assert "give them in the image metadata" not in where
    assert where.endswith("(their images have no row in the image metadata, or an empty or invalid value there)")
    pl.DataFrame({"image_id": table["image_id"], "lat": 36.7}).write_csv(log)
    result = export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "p.csv", format="dwc", threshold=0.02,
                                            metadata=log))
    [where] = [w for w in result.warnings if w.startswith("OBIS needs when and where")]
    assert where.endswith("(the image metadata has no time, lon column)")


def test_associated_media_is_a_valid_url_whatever_the_folder_names(dump_scores: Path, tmp_path: Path) -> None:
    from urllib.parse import unquote, urlsplit

    table = pl.read_parquet(dump_scores)
    odd = table.with_columns(pl.col("path").str.replace(r"^dive0/", "dive #3 ü/").str.replace(r"^dive1/", "50%?x/"))
    odd.write_parquet(tmp_path / "odd.parquet", metadata=pl.read_parquet_metadata(dump_scores))
    prefix = "https://data.example.org/c42?v=1&x=%20"  # the user's own URL: kept exactly as given
    runs = {}
    for name, scores in (("plain", dump_scores), ("odd", tmp_path / "odd.parquet")):
        export_table(ExportTableConfig(scores=scores, out=tmp_path / f"{name}.csv", format="dwc", threshold=0.02,
                                       dataset_id="urn:cruise42", media_prefix=prefix))
        runs[name] = pl.read_csv(tmp_path / f"{name}.csv", infer_schema_length=0)
    occ = runs["odd"]
    paths = dict(zip(odd["image_id"], odd["path"], strict=True))
    assert occ.height > 0
    for media in occ["associatedMedia"]:
        assert media.startswith(prefix + "/")
        rest = media[len(prefix) + 1:]
        assert " " not in rest and "#" not in rest and "?" not in rest
        assert unquote(rest) in paths.values()
        assert urlsplit("https://h/" + rest).fragment == ""
    assert any(m.endswith(tuple(f"dive%20%233%20%C3%BC/{Path(p).name}" for p in paths.values()))
               for m in occ["associatedMedia"])
    assert any("/50%25%3Fx/" in m for m in occ["associatedMedia"])
    # IDs never depend on the media URL or the folder names (rows come in path order, so compare them sorted).
    assert occ["occurrenceID"].sort().equals(runs["plain"]["occurrenceID"].sort())


def test_event_dates_must_be_iso_8601_and_are_never_guessed(dump_scores: Path, tmp_path: Path) -> None:
    table = pl.read_parquet(dump_scores, columns=["image_id", "path"])
    paths = dict(zip(table["path"], table["image_id"], strict=True))
    export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "x.csv", format="dwc", threshold=0.02, exif=True,
                                   dataset_id="urn:c42"))
    exif_times = {paths[m]: d for m, d in pl.read_csv(tmp_path / "x.csv", infer_schema_length=0)
                  .select("associatedMedia", "eventDate").iter_rows() if d is not None}
    assert exif_times  # the fixture's one image with an EXIF capture time
    to_iso = {"17/05/2023 10:00": None, "05/06/2023": None, "2023-05-17 10:00": "2023-05-17T10:00:00",
              "2023:05:17 10:00:00": "2023-05-17T10:00:00", "2007-11-13/15": "2007-11-13/2007-11-15",
              "2023-05-17T10:00Z": "2023-05-17T10:00:00+00:00", "2023-05": "2023-05", "1015": None,
              None: None}
    cycle = list(to_iso)
    log = tmp_path / "rov.csv"
    for exif_value in ("05/06/2023", None):
        # EXIF fills eventDate where the log says nothing, never under a log value that is not ISO 8601.
        times = {i: exif_value if i in exif_times else cycle[n % len(cycle)] for n, i in enumerate(table["image_id"])}
        pl.DataFrame({"image_id": list(times), "time": list(times.values())}).write_csv(log)
        result = export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "o.csv", format="dwc",
                                                threshold=0.02, metadata=log, exif=True, dataset_id="urn:c42"))
        bad, example = 0, None
        for media, date in pl.read_csv(tmp_path / "o.csv", infer_schema_length=0).select(
                "associatedMedia", "eventDate").iter_rows():
            raw = times[paths[media]]
            want = to_iso[raw] if raw is not None else exif_times.get(paths[media])
            assert date == want, (media, raw)
            if raw is not None and want is None:
                bad, example = bad + 1, example or raw
        assert bad > 0
        assert (f"{bad} eventDate value(s) are not ISO 8601 (e.g. {example!r}) and were left empty: "
                "write them as 2023-05-17T10:00") in result.warnings
