"""Issue 9: presence thresholds, long tables, per-dive summaries (Darwin Core: test_exports_dwc.py).
Issue 16: dive summaries that keep every dive."""

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
from fathombatch.exports.thresholds import DEFAULT, FLOOR, RARE_FLOOR, best_f1_threshold, fit_thresholds
from fathombatch.exports.writers import read_provenance
from fathombatch.scores.metadata import read_metadata
from fathombatch.scoring import ScoreConfig, score_folder
from fathombatch.taxonomy import fathomnet2023

TAX = fathomnet2023()


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


def direct_presence(scores: Path, thresholds: np.ndarray) -> set[tuple[str, int]]:
    table = pl.read_parquet(scores).filter(pl.col("status") == "ok")
    probs = table.select(list(TAX.names)).to_numpy()
    rows, cols = np.nonzero(probs >= thresholds)
    paths = table["path"].to_list()
    return {(paths[r], TAX.ids[c]) for r, c in zip(rows, cols, strict=True)}


def test_long_table_equals_a_direct_computation(dump_scores: Path, tmp_path: Path) -> None:
    result = export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "long.parquet", threshold=0.02))
    long = pl.read_parquet(tmp_path / "long.parquet")
    assert long.columns == ["image_id", "path", "dive", "category_id", "name", "supercategory", "probability",
                            "threshold"]
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


def test_no_manifest_thresholds_falls_back_to_the_seed_default_with_a_warning(dump_scores: Path,
                                                                              tmp_path: Path) -> None:
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


def test_bad_options(dump_scores: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="extension must be one of .parquet, .csv"):
        export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "o.txt", format="dwc"))
    with pytest.raises(UsageError, match=r"^threshold must be in \(0, 1\], got 1.5$"):
        export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "o.parquet", threshold=1.5))
    with pytest.raises(UsageError, match="^dive_column 'site' must be a column of the metadata CSV$"):
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


def test_csv_exports_neutralise_formulas_but_keep_numbers(dump_scores: Path, tmp_path: Path) -> None:
    from fathombatch.csvsafe import safe_cell, safe_frame
    from fathombatch.curate.download import Failure, write_failures

    assert [safe_cell(v) for v in ("=1+1", "+cmd", "-x", "@SUM(A1)", "\tq", "-12.5", "+3", "plain", "")] == [
        "'=1+1", "'+cmd", "'-x", "'@SUM(A1)", "'\tq", "-12.5", "+3", "plain", ""]
    frame = pl.DataFrame({"s": ["=A1", "-7.25", "ok", None], "n": [1.0, -2.0, 3.0, 4.0]})
    want = {"s": ["'=A1", "-7.25", "ok", None], "n": [1.0, -2.0, 3.0, 4.0]}
    assert safe_frame(frame).to_dict(as_series=False) == want

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


def test_dive_summary_csv_with_dives_that_look_like_numbers(dump_scores: Path, tmp_path: Path) -> None:
    """`--dive-regex '(.)'` names dives by one character; numeric-looking names must not break the row count."""
    result = export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "d", format="dives",
                                            dive_regex="(.)", threshold=0.02, table_ext=".csv"))
    written = pl.read_csv(tmp_path / "d" / "dives.csv", infer_schema=False)
    assert result.rows == written.height > 0


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




def test_dive_summary_keeps_a_dive_whose_files_all_failed_to_read(dump_scores: Path, engines: dict,
                                                                   tmp_path: Path) -> None:
    root = tmp_path / "cruise"
    shutil.copytree(Path(read_metadata(dump_scores)["run"]["root"]), root)
    (root / "dive9").mkdir()
    for name in ("a.jpg", "b.jpg", "c.png"):  # a dive whose camera wrote nothing usable
        (root / "dive9" / name).write_bytes(b"not an image")
    (root / "dive0" / "torn.jpg").write_bytes(b"\xff\xd8\xff truncated")  # one bad file in a readable dive
    scores = tmp_path / "scores.parquet"
    score_folder(ScoreConfig(root=root, engine=engines["onnx"], out=scores))
    readable = pl.read_parquet(scores).filter((pl.col("status") == "ok") & pl.col("path").str.starts_with("dive0/"))
    result = export_table(ExportTableConfig(scores=scores, out=tmp_path / "d", format="dives", threshold=0.02,
                                            table_ext=".csv"))
    dives = pl.read_csv(result.files["dives"])
    lost = dives.filter(pl.col("dive") == "dive9")
    assert lost.height == len(TAX) and (lost["images_in_dive"] == 0).all() and (lost["images_unreadable"] == 3).all()
    assert (lost["images_present"] == 0).all() and lost["fraction"].is_null().all()
    assert lost["mean_probability"].is_null().all()
    dive0 = dives.filter(pl.col("dive") == "dive0")
    assert (dive0["images_in_dive"] == readable.height).all() and (dive0["images_unreadable"] == 1).all()
    assert dive0["fraction"].is_not_null().all()
    assert (dives.filter(pl.col("dive").is_in(["dive1", "dive2", "cruise"]))["images_unreadable"] == 0).all()
    supers = pl.read_csv(result.files["supercategories"]).filter(pl.col("dive") == "dive9")
    assert supers.height == len(set(TAX.supercategories)) and (supers["images_unreadable"] == 3).all()
    assert (supers["images_in_dive"] == 0).all() and supers["fraction"].is_null().all()
    assert result.files["heatmap"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metadata_ids_given_as_file_names_or_paths_are_matched_and_said(dump_scores: Path, tmp_path: Path) -> None:
    table = pl.read_parquet(dump_scores, columns=["image_id", "path"])
    n = table.height
    # ROV logs name images by file name (any case of extension) or by path; the table by stem.
    ids = [p if i % 3 == 0 else f"{s}.JPG" if i % 3 == 1 else s
           for i, (s, p) in enumerate(table.select("image_id", "path").iter_rows())]
    log = tmp_path / "rov.csv"
    pl.DataFrame({"image_id": ids, "depth_m": np.arange(n, dtype=float), "dive_no": [f"D{i % 2}" for i in range(n)]}
                 ).write_csv(log)
    result = export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "l.csv", threshold=1e-6, metadata=log))
    long = pl.read_csv(tmp_path / "l.csv")
    depth = dict(zip(table["path"], range(n), strict=True))
    assert long["path"].n_unique() == n and long["depth_m"].null_count() == 0
    assert all(depth[p] == d for p, d in long.select("path", "depth_m").iter_rows())
    by_path = sum("/" in i for i in ids)  # the file at the root is named by its file name alone
    by_name = sum(i.lower().endswith(".jpg") for i in ids) - by_path
    assert [w for w in result.warnings if "rov.csv" in w] == [
        (f"rov.csv: {by_name} by file name without its extension and {by_path} by path inside the scored folder "
         "matched to scored images, whose image ids are file names without extension")]
    dives = export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "d", format="dives", metadata=log,
                                           dive_column="dive_no", table_ext=".csv"))
    assert set(pl.read_csv(dives.files["dives"])["dive"]) == {"D0", "D1"}  # no image left in "(unknown)"


def test_metadata_that_matches_few_scored_images_is_a_warning(dump_scores: Path, tmp_path: Path) -> None:
    table = pl.read_parquet(dump_scores, columns=["image_id"])
    log = tmp_path / "rov.csv"
    pl.DataFrame({"image_id": [f"cruise42/{i}.jpg" for i in table["image_id"]], "depth_m": 800.0}).write_csv(log)
    result = export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "l.csv", metadata=log))
    [warning] = [w for w in result.warnings if "rov.csv" in w]
    assert warning.startswith(f"{table.height} of {table.height} scored image(s) have no row in rov.csv; "
                              f"its ids look like 'cruise42/")
    first = pl.read_parquet(dump_scores)["image_id"][0]
    assert f"the table's like '{first}'" in warning
    runner = CliRunner()
    cli_run = runner.invoke(cli, ["export-table", str(dump_scores), "--out", str(tmp_path / "m.csv"), "--metadata",
                                  str(log)])
    assert cli_run.exit_code == 0 and f"warning: {warning}" in cli_run.stderr
    # Two rows naming one file (its stem and its file name) are refused, not joined twice.
    both = tmp_path / "both.csv"
    pl.DataFrame({"image_id": [first, f"{first}.jpg"], "depth_m": [1.0, 2.0]}).write_csv(both)
    from fathombatch.errors import LabelFileError

    with pytest.raises(LabelFileError, match=f"rows '{first}' and '{first}.jpg' both name the scored file"):
        export_table(ExportTableConfig(scores=dump_scores, out=tmp_path / "n.csv", metadata=both))


def test_a_metadata_id_naming_files_in_two_dives_is_refused_not_applied_to_both(
    dive: Path, engines: dict, tmp_path: Path
) -> None:
    """ROV cameras restart IMG_0001 every dive: one log row must not give two dives' images one time and place."""
    first, second = sorted((dive / "images").glob("*.jpg"))[:2]
    root = tmp_path / "dup"
    for sub, src in (("a", first), ("b", second)):
        (root / sub).mkdir(parents=True)
        shutil.copy(src, root / sub / "X.jpg")
    scores = tmp_path / "dup.parquet"
    score_folder(ScoreConfig(root=root, engine=engines["onnx"], out=scores))
    meta = tmp_path / "dupmeta.csv"
    meta.write_text("image_id,time,lat,lon,depth\nX,2023-05-17T10:00:00,36.7,-122.0,800\n")
    run = CliRunner().invoke(cli, ["export-table", str(scores), "--format", "long", "--out", str(tmp_path / "l.csv"),
                                   "--metadata", str(meta)])
    assert run.exit_code != 0 and not (tmp_path / "l.csv").exists()
    assert run.stderr.splitlines() == [(
        "Error: dupmeta.csv: image id 'X' names 2 scored files ('a/X.jpg', 'b/X.jpg'), the same file name in several "
        "folders; the row cannot say which one it describes, so key such rows by their path inside the scored folder "
        "(e.g. 'a/X.jpg')")]
    by_path = tmp_path / "bypath.csv"
    by_path.write_text("image_id,depth\na/X.jpg,800\nb/X.jpg,1200\n")
    export_table(ExportTableConfig(scores=scores, out=tmp_path / "p.csv", threshold=1e-6, metadata=by_path))
    depths = dict(pl.read_csv(tmp_path / "p.csv").select("path", "depth").unique().iter_rows())
    assert depths == {"a/X.jpg": 800, "b/X.jpg": 1200}
