"""Issue 9: presence thresholds, long tables, per-dive summaries, Darwin Core occurrences.
Issue 16: stable Darwin Core IDs, OBIS terms and eMoF, dive summaries that keep every dive."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from PIL import Image

from fathombatch.cli import cli
from fathombatch.errors import UsageError
from fathombatch.exports import ExportTableConfig, export_table
from fathombatch.exports.thresholds import DEFAULT, FLOOR, RARE_FLOOR, best_f1_threshold, fit_thresholds
from fathombatch.exports.writers import read_provenance
from fathombatch.score import ScoreConfig, score_folder
from fathombatch.table import read_metadata
from fathombatch.taxonomy import fathomnet2023

TAX = fathomnet2023()

# Darwin Core terms (https://dwc.tdwg.org/terms/, the Occurrence, Event, Location, Identification and Taxon classes
# and record-level terms) that an occurrence CSV may use.
DWC_TERMS = {
    "type", "modified", "language", "license", "rightsHolder", "accessRights", "bibliographicCitation", "references",
    "institutionID", "collectionID", "datasetID", "institutionCode", "collectionCode", "datasetName", "ownerInstitutionCode",
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


def test_best_f1_threshold_and_the_rules() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    t, f1 = best_f1_threshold(y, p)
    assert 0.3 < t < 0.6 and f1 == 1.0
    y2 = np.zeros((40, 3), dtype=int)
    probs = np.random.default_rng(0).random((40, 3)) * 0.2
    y2[:10, 0] = 1
    probs[:10, 0] = 0.35  # a frequent class, separable at a low threshold
    y2[:2, 1] = 1
    probs[:2, 1] = 0.15  # a rare class: its tiny F1-optimal threshold is raised to the floor
    thresholds = fit_thresholds(y2, probs)
    assert FLOOR <= thresholds[0] < 0.35
    assert thresholds[1] == RARE_FLOOR
    assert thresholds[2] == DEFAULT  # no positives at all


@pytest.fixture(scope="module")
def dump_scores(dive: Path, engines: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dive split into three dive folders (plus one file at the root) and scored."""
    root = tmp_path_factory.mktemp("exports") / "cruise"
    files = sorted((dive / "images").glob("*.jpg"))
    for i, f in enumerate(files):
        dest = root / (f"dive{i % 3}" if i else ".") / f.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)
    exif = Image.Exif()
    exif[0x8769] = {36867: "2023:05:17 10:42:03"}
    Image.open(files[1]).save(root / "dive1" / files[1].name, exif=exif)  # one image with a capture time
    out = root.parent / "scores.parquet"
    score_folder(ScoreConfig(root=root, engine=engines["onnx"], out=out))
    return out


def direct_presence(scores: Path, thresholds: np.ndarray) -> set[tuple[str, int]]:
    table = pl.read_parquet(scores).filter(pl.col("status") == "ok")
    probs = table.select(list(TAX.names)).to_numpy()
    rows, cols = np.nonzero(probs >= thresholds)
    paths = table["path"].to_list()
    return {(paths[r], TAX.ids[c]) for r, c in zip(rows, cols, strict=True)}


def test_long_table_equals_a_direct_computation(dump_scores: Path, tmp_path: Path) -> None:
    result = export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "long.parquet", threshold=0.02))
    long = pl.read_parquet(tmp_path / "long.parquet")
    assert long.columns == ["image_id", "path", "dive", "category_id", "name", "supercategory", "probability", "threshold"]
    got = set(zip(long["path"].to_list(), long["category_id"].to_list(), strict=True))
    assert got == direct_presence(dump_scores, np.full(290, 0.02)) and result.rows == long.height > 0
    assert long["path"].to_list() == sorted(long["path"].to_list())
    assert (long["probability"] >= 0.02).all() and result.threshold_source == "global"
    assert long.filter(pl.col("path").str.starts_with("dive2/"))["dive"].unique().to_list() == ["dive2"]
    names = dict(zip(TAX.ids, TAX.names, strict=True))
    assert all(names[c] == n for c, n in long.select("category_id", "name").iter_rows())
    prov = read_provenance(tmp_path / "long.parquet")
    assert prov["scores_table"] == str(dump_scores.resolve()) and prov["thresholds"]["source"] == "global"
    assert prov["engine"]["sha256"] == read_metadata(dump_scores)["engine_manifest"]["engine_sha256"]

    export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "long.csv", threshold=0.02))
    assert pl.read_csv(tmp_path / "long.csv").height == long.height
    assert read_provenance(tmp_path / "long.csv")["export"] == "long presence table"


def test_manifest_thresholds_are_applied(dump_scores: Path, tmp_path: Path) -> None:
    meta = read_metadata(dump_scores)
    thresholds = np.linspace(0.01, 0.9, 290)
    meta["engine_manifest"]["thresholds"] = thresholds.tolist()
    table = pl.read_parquet(dump_scores)
    table.write_parquet(tmp_path / "s.parquet", metadata={"fathombatch": json.dumps(meta)})
    result = export_table(ExportTableConfig(scores=tmp_path / "s.parquet", out=tmp_path / "long.parquet"))
    long = pl.read_parquet(tmp_path / "long.parquet")
    assert result.threshold_source == "manifest"
    got = set(zip(long["path"].to_list(), long["category_id"].to_list(), strict=True))
    assert got == direct_presence(dump_scores, thresholds)
    np.testing.assert_allclose(long["threshold"].to_numpy(), thresholds[np.asarray(long["category_id"]) - 1])


def test_no_manifest_thresholds_falls_back_to_the_seed_default_with_a_warning(dump_scores: Path, tmp_path: Path) -> None:
    meta = read_metadata(dump_scores)
    meta["engine_manifest"].pop("thresholds", None)
    pl.read_parquet(dump_scores).write_parquet(tmp_path / "s.parquet", metadata={"fathombatch": json.dumps(meta)})
    result = export_table(ExportTableConfig(scores=tmp_path / "s.parquet", out=tmp_path / "l.parquet"))
    assert result.threshold_source == "default" and "0.5" in result.warnings[0]


def test_dive_summary_counts_equal_a_direct_computation(dump_scores: Path, tmp_path: Path) -> None:
    t = 0.02
    result = export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "dives", format="dives", threshold=t))
    dives = pl.read_parquet(result.files["dives"])
    table = pl.read_parquet(dump_scores).filter(pl.col("status") == "ok")
    table = table.with_columns(dive=pl.when(pl.col("path").str.contains("/")).then(pl.col("path").str.split("/")
                                                                                 .list.first()).otherwise(pl.lit("cruise")))
    assert set(dives["dive"]) == {"cruise", "dive0", "dive1", "dive2"}  # the root's own files: the folder's name
    assert (dives["threshold"] == t).all()
    for (dive,), part in table.group_by("dive"):
        probs = part.select(list(TAX.names)).to_numpy()
        present = (probs >= t).sum(axis=0)
        expected = {TAX.ids[j]: int(present[j]) for j in range(len(TAX))}  # zeros included
        rows = dives.filter(pl.col("dive") == dive)
        assert dict(rows.select("category_id", "images_present").iter_rows()) == expected
        assert (rows["images_in_dive"] == part.height).all()
        j = int(np.argmax(present))
        row = rows.filter(pl.col("category_id") == TAX.ids[j]).row(0, named=True)
        assert row["mean_probability"] == pytest.approx(probs[probs[:, j] >= t, j].mean(), rel=1e-6)
        assert row["fraction"] == pytest.approx(present[j] / part.height)
    supers = pl.read_parquet(result.files["supercategories"])
    urchin = [TAX.column_of[c] for c, s in zip(TAX.ids, TAX.supercategories, strict=True) if s == "Urchin"]
    probs = table.filter(pl.col("dive") == "dive0").select(list(TAX.names)).to_numpy()
    expected_urchin = int((probs[:, urchin] >= t).any(axis=1).sum())
    got = supers.filter((pl.col("dive") == "dive0") & (pl.col("supercategory") == "Urchin"))["images_present"]
    assert got.to_list() == [expected_urchin]
    assert result.files["heatmap"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
    assert (occ["decimalLatitude"].cast(float) == 36.7).all() and (occ["minimumDepthInMeters"].cast(float) == 812.5).all()
    assert occ["identificationRemarks"].str.contains("probability 0.").all()
    assert (read_provenance(out)["export"]) == "darwin core"


def test_exif_timestamps_reach_the_exports(dump_scores: Path, tmp_path: Path) -> None:
    export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "occ.csv", format="dwc", threshold=0.02, exif=True))
    occ = pl.read_csv(tmp_path / "occ.csv", infer_schema_length=0)
    dated = occ.filter(pl.col("eventDate").is_not_null())
    assert dated.height > 0 and set(dated["eventDate"]) == {"2023-05-17T10:42:03"}
    assert dated["associatedMedia"].str.starts_with("dive1/").all()


def test_bad_options(dump_scores: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="extension must be one of .parquet, .csv"):
        export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "o.txt", format="dwc"))
    with pytest.raises(UsageError, match="--threshold must be in"):
        export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "o.parquet", threshold=1.5))
    with pytest.raises(UsageError, match="must be a column of the --metadata CSV"):
        export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "o.parquet", dive_column="site"))
    result = CliRunner().invoke(cli, ["export-table", str(dump_scores), "--out", str(tmp_path / "x.txt")])
    assert result.exit_code == 2 and result.stderr.startswith("Error: --out")


def test_exported_engines_carry_held_out_thresholds_that_exports_use(
    dump_scores: Path, engines: dict, tmp_path: Path
) -> None:
    from fathombatch.backends import read_manifest

    manifest = read_manifest(engines["onnx"])
    assert manifest.thresholds is not None and len(manifest.thresholds) == 290
    assert all(FLOOR <= t <= 1 for t in manifest.thresholds)
    assert {"presence_at_0.5", "presence_at_thresholds"} <= set(manifest.metrics)
    result = export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "long.parquet"))
    assert result.threshold_source == "manifest" and not result.warnings
    long = pl.read_parquet(tmp_path / "long.parquet")
    got = set(zip(long["path"].to_list(), long["category_id"].to_list(), strict=True))
    assert got == direct_presence(dump_scores, np.asarray(manifest.thresholds))


def test_metadata_joins_and_batches_do_not_change_results(dump_scores: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import fathombatch.exports.source as source_module

    table = pl.read_parquet(dump_scores)
    log = tmp_path / "log.csv"
    pl.DataFrame({"image_id": table["image_id"], "depth_m": np.arange(table.height, dtype=float),
                  "site": "Sur Ridge"}).write_csv(log)
    export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "a.parquet", threshold=0.02, metadata=log))
    monkeypatch.setattr(source_module, "BATCH_ROWS", 7)  # many batches, crossing dive boundaries
    export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "b.parquet", threshold=0.02, metadata=log))
    export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "d7", format="dives", threshold=0.02))
    monkeypatch.undo()
    export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "d", format="dives", threshold=0.02))
    a, b = pl.read_parquet(tmp_path / "a.parquet"), pl.read_parquet(tmp_path / "b.parquet")
    assert a.equals(b) and a.columns[-2:] == ["depth_m", "site"] and (a["site"] == "Sur Ridge").all()
    depth = dict(zip(table["image_id"], range(table.height), strict=True))
    assert all(depth[i] == d for i, d in a.select("image_id", "depth_m").iter_rows())
    assert pl.read_parquet(tmp_path / "d7" / "dives.parquet").equals(pl.read_parquet(tmp_path / "d" / "dives.parquet"))


def test_nothing_present_still_writes_every_file(dump_scores: Path, tmp_path: Path) -> None:
    result = export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "d", format="dives", threshold=1.0))
    dives = pl.read_parquet(result.files["dives"])
    assert dives.height == 4 * len(TAX) and (dives["images_present"] == 0).all()  # every dive stays, with zeros
    assert result.files["heatmap"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    long = export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "l.csv", threshold=1.0))
    assert long.rows == 0 and pl.read_csv(tmp_path / "l.csv").columns[:3] == ["image_id", "path", "dive"]


def test_dive_regex(dump_scores: Path, tmp_path: Path) -> None:
    export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "l.parquet", threshold=0.02,
                                   dive_regex=r"^dive(\d)/"))
    dives = set(pl.read_parquet(tmp_path / "l.parquet")["dive"])
    assert dives <= {"0", "1", "2", "(unmatched)"} and "(unmatched)" in dives  # the file at the root matches nothing
    export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "m.parquet", threshold=0.02,
                                   dive_regex=r"^(zzz)?"))  # an optional group that never matches
    assert set(pl.read_parquet(tmp_path / "m.parquet")["dive"]) == {"(unmatched)"}


def test_bad_metadata_and_hostile_tables_are_refused(dump_scores: Path, tmp_path: Path) -> None:
    from fathombatch.errors import LabelFileError

    table = pl.read_parquet(dump_scores)
    bad = tmp_path / "bad.csv"
    pl.DataFrame({"image_id": table["image_id"], "lat": "36.7N"}).write_csv(bad)
    with pytest.raises(LabelFileError, match="column 'lat' must hold numbers"):
        export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "o.csv", format="dwc", metadata=bad))
    pl.DataFrame({"image_id": table["image_id"], "threshold": 1}).write_csv(bad)
    with pytest.raises(LabelFileError, match="clash with export columns"):
        export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "o.csv", metadata=bad))
    hostile = table.with_columns(pl.col("path").str.replace(r"^dive0/", "../outside/"))
    hostile.write_parquet(tmp_path / "h.parquet", metadata=pl.read_parquet_metadata(dump_scores))
    with pytest.raises(LabelFileError, match="points outside the scored folder"):
        export_table(ExportTableConfig(scores=tmp_path / "h.parquet", out=tmp_path / "o.parquet", exif=True,
                                       images_root=tmp_path))


def test_occurrence_ids_differ_between_datasets(dump_scores: Path, tmp_path: Path) -> None:
    for dataset, name in (("https://a.example/cruise1", "a.csv"), ("https://a.example/cruise2", "b.csv")):
        export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / name, format="dwc", threshold=0.02,
                                       dataset_id=dataset))
    a, b = pl.read_csv(tmp_path / "a.csv"), pl.read_csv(tmp_path / "b.csv")
    assert a.height == b.height and not set(a["occurrenceID"]) & set(b["occurrenceID"])


def test_csv_exports_neutralise_formulas_but_keep_numbers(dump_scores: Path, tmp_path: Path) -> None:
    from fathombatch.csvsafe import safe_cell, safe_frame
    from fathombatch.curate.download import Failure, write_failures

    assert [safe_cell(v) for v in ("=1+1", "+cmd", "-x", "@SUM(A1)", "\tq", "-12.5", "+3", "plain", "")] == [
        "'=1+1", "'+cmd", "'-x", "'@SUM(A1)", "'\tq", "-12.5", "+3", "plain", ""]
    frame = pl.DataFrame({"s": ["=A1", "-7.25", "ok", None], "n": [1.0, -2.0, 3.0, 4.0]})
    assert safe_frame(frame).to_dict(as_series=False) == {"s": ["'=A1", "-7.25", "ok", None], "n": [1.0, -2.0, 3.0, 4.0]}

    table = pl.read_parquet(dump_scores)
    log = tmp_path / "log.csv"
    hostile = '=HYPERLINK("http://evil.example","x")'
    pl.DataFrame({"image_id": table["image_id"], "site": hostile, "depth_m": "-812.5"}).write_csv(log)
    export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "long.csv", threshold=0.02, metadata=log))
    out = pl.read_csv(tmp_path / "long.csv", infer_schema_length=0)
    assert out.height > 0 and (out["site"] == "'" + hostile).all() and (out["depth_m"] == "-812.5").all()
    export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "long.parquet", threshold=0.02, metadata=log))
    assert (pl.read_parquet(tmp_path / "long.parquet")["site"] == hostile).all()  # Parquet keeps values verbatim

    write_failures(tmp_path / "failures.csv", (Failure(file_name="=cmd|' /C calc'!A0.jpg", url="@x", reason="-"),))
    assert (tmp_path / "failures.csv").read_text().splitlines()[1] == "'=cmd|' /C calc'!A0.jpg,'@x,'-"


def test_a_parquet_that_is_not_a_scores_table_is_one_error_line(tmp_path: Path) -> None:
    pl.DataFrame({"a": [1, 2]}).write_parquet(tmp_path / "other.parquet")
    result = CliRunner().invoke(cli, ["export-table", str(tmp_path / "other.parquet"), "--out", str(tmp_path / "o.csv"),
                                      "--threshold", "0.5"])
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "is not a fathombatch scores table (missing columns" in result.stderr and not (tmp_path / "o.csv").exists()


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
    assert (good["minimumDepthInMeters"].cast(float) == 812.5).all() and (good["decimalLatitude"].cast(float) == 36.7).all()
    warning = " ".join(result.warnings)
    assert "left empty, because out of range or not a number" in warning
    assert f"{bad_lat.height} decimalLatitude" in warning and f"{bad_lat.height} decimalLongitude" in warning
    assert f"{bad_lat.height + neg_depth.height} minimumDepthInMeters" in warning


def test_dive_summary_csv_with_dives_that_look_like_numbers(dump_scores: Path, tmp_path: Path) -> None:
    """`--dive-regex '(.)'` names dives by one character; numeric-looking names must not break the row count."""
    result = export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "d", format="dives",
                                            dive_regex="(.)", threshold=0.02, table_ext=".csv"))
    written = pl.read_csv(tmp_path / "d" / "dives.csv", infer_schema=False)
    assert result.rows == written.height > 0


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
    ("category_id,aphia_id\n37,100002\n37,100003\n", "line 3: category 37 already has AphiaID 100002"),
    ("category_id,aphia_id\n37\n", "line 2: 1 fields, the header has 2"),
    ("species,worms\nx,1\n", "line 1: the AphiaID table needs an 'aphia_id' column"),
])
def test_bad_aphia_tables_are_one_error_naming_the_line(dump_scores: Path, tmp_path: Path, content: str,
                                                        message: str) -> None:
    aphia = tmp_path / "aphia.csv"
    aphia.write_text(content)
    result = CliRunner().invoke(cli, ["export-table", str(dump_scores), "--format", "dwc", "--out",
                                      str(tmp_path / "o.csv"), "--dataset-id", "c42", "--aphia-ids", str(aphia)])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"Error: {aphia}, ") and message in result.stderr
    assert not (tmp_path / "o.csv").exists()


def test_dive_summary_keeps_a_dive_without_detections(dump_scores: Path, tmp_path: Path) -> None:
    table = pl.read_parquet(dump_scores).filter(pl.col("status") == "ok")
    top = table.select(pl.max_horizontal(list(TAX.names))).to_series()
    t = float(top.sort()[table.height // 2])  # half the images have nothing at or above t
    quiet = top < t
    log = tmp_path / "log.csv"
    pl.DataFrame({"image_id": table["image_id"], "site": ["quiet" if q else "busy" for q in quiet]}).write_csv(log)
    result = export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "d", format="dives", threshold=t,
                                            metadata=log, dive_column="site", table_ext=".csv"))
    dives = pl.read_csv(result.files["dives"])
    rows = dives.filter(pl.col("dive") == "quiet")
    assert rows.height == len(TAX) and (rows["images_present"] == 0).all() and (rows["fraction"] == 0).all()
    assert (rows["images_in_dive"] == int(quiet.sum())).all() and rows["mean_probability"].is_null().all()
    assert np.allclose(dives["threshold"].to_numpy(), t)
    supers = pl.read_csv(result.files["supercategories"]).filter(pl.col("dive") == "quiet")
    assert supers.height == len(set(TAX.supercategories)) and (supers["images_present"] == 0).all()
    assert np.allclose(supers["min_threshold"].to_numpy(), t) and np.allclose(supers["max_threshold"].to_numpy(), t)


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
