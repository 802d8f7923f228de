from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from fathombatch.datasets import read_labels
from fathombatch.errors import LabelFileError, UsageError
from fathombatch.metrics import prior_floor
from fathombatch.report import EvalConfig, evaluate
from fathombatch.scoring import ScoreConfig, score_folder
from fathombatch.table import read_metadata
from fathombatch.taxonomy import fathomnet2023


@pytest.fixture(scope="module")
def scored(dive: Path, engines: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scored") / "scores.parquet"
    score_folder(ScoreConfig(root=dive / "images", engine=engines["onnx"], out=out, batch_size=8))
    return out


def perfect_copy(scored: Path, dive: Path, dest: Path) -> Path:
    """The scores table with every probability replaced by the truth (1 for true labels, 0 otherwise)."""
    table = pl.read_parquet(scored)
    labels = read_labels(dive / "train.csv")
    y = dict(zip(labels.image_ids, labels.multi_hot().astype(np.float32), strict=True))
    names = fathomnet2023().names
    probs = np.stack([y[i] for i in table["image_id"].to_list()])
    table = table.with_columns([pl.Series(n, probs[:, j]) for j, n in enumerate(names)])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :20] + 1  # FathomNet ids are column + 1
    table = table.with_columns(pl.Series("top_categories", top.tolist(), dtype=pl.List(pl.Int32)))
    table.write_parquet(dest, metadata=pl.read_parquet_metadata(scored))
    return dest


def test_perfect_scores_give_map_one(scored: Path, dive: Path, tmp_path: Path) -> None:
    result = evaluate(EvalConfig(scores=perfect_copy(scored, dive, tmp_path / "p.parquet"), truth=dive / "train.csv"))
    assert result.map_at_k == pytest.approx(1.0)
    assert result.n_truth == result.n_scored == 24 and not result.missing


def test_floor_uses_the_engine_training_counts(scored: Path, dive: Path) -> None:
    result = evaluate(EvalConfig(scores=scored, truth=dive / "train.csv"))
    counts = np.array(read_metadata(scored)["engine_manifest"]["class_counts"])
    y = read_labels(dive / "train.csv").multi_hot()
    assert result.floor_source == "engine training-set frequencies"
    assert result.prior_floor == pytest.approx(prior_floor(y, counts))
    assert 0.0 <= result.map_at_k <= 1.0


def test_missing_images_count_as_zero_and_are_listed(scored: Path, dive: Path, tmp_path: Path) -> None:
    perfect = perfect_copy(scored, dive, tmp_path / "p.parquet")
    table = pl.read_parquet(perfect)
    dropped = table["image_id"][:6].to_list()
    table.slice(6).write_parquet(tmp_path / "partial.parquet", metadata=pl.read_parquet_metadata(perfect))
    report = tmp_path / "report"
    result = evaluate(EvalConfig(scores=tmp_path / "partial.parquet", truth=dive / "train.csv", report=report))
    assert result.map_at_k == pytest.approx(18 / 24)
    assert sorted(result.missing) == sorted(dropped)
    assert (report / "missing.csv").read_text().splitlines()[1:] == result.missing


def test_report_files_and_osd(scored: Path, dive: Path, tmp_path: Path) -> None:
    report = tmp_path / "r"
    result = evaluate(EvalConfig(scores=scored, truth=dive / "annotations.json", osd_truth=dive / "osd.csv",
                                 report=report))
    assert result.sauc is not None and -1.0 <= result.sauc <= 1.0
    assert result.competition_score == pytest.approx((result.sauc + result.map_at_k) / 2)
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["map@20"] == pytest.approx(result.map_at_k)
    assert metrics["prior_floor"] == pytest.approx(result.prior_floor)
    per_class = pl.read_parquet(report / "per_class.parquet")
    assert per_class.columns == ["category_id", "name", "supercategory", "support", "ap"]
    assert per_class.height == 290
    assert per_class.filter(pl.col("support") == 0)["ap"].null_count() == (per_class["support"] == 0).sum()
    text = (report / "report.md").read_text()
    assert "MAP@20" in text and "frequency-prior floor" in text and f"{result.map_at_k:.4f}" in text


def test_bad_inputs(scored: Path, dive: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        evaluate(EvalConfig(scores=tmp_path / "none.parquet", truth=dive / "train.csv"))
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(UsageError, match="not a readable Parquet file"):
        evaluate(EvalConfig(scores=tmp_path / "x.parquet", truth=dive / "train.csv"))
    (tmp_path / "osd.csv").write_text("id,osd\na,7\n")
    with pytest.raises(LabelFileError, match="line 2"):
        evaluate(EvalConfig(scores=scored, truth=dive / "train.csv", osd_truth=tmp_path / "osd.csv"))


def test_error_rows_count_as_zero(scored: Path, dive: Path, tmp_path: Path) -> None:
    perfect = perfect_copy(scored, dive, tmp_path / "p.parquet")
    table = pl.read_parquet(perfect)
    broken = table["image_id"][2]
    table = table.with_columns(
        status=pl.when(pl.col("image_id") == broken).then(pl.lit("error")).otherwise(pl.col("status"))
    )
    table.write_parquet(tmp_path / "e.parquet", metadata=pl.read_parquet_metadata(perfect))
    result = evaluate(EvalConfig(scores=tmp_path / "e.parquet", truth=dive / "train.csv"))
    assert result.map_at_k == pytest.approx(23 / 24) and result.missing == [broken]


# --- issue 16: no silent wrong answer ------------------------------------------------------------------------------


def with_metadata(scored: Path, dest: Path, change) -> Path:  # type: ignore[no-untyped-def]
    """A copy of the scores table whose ``fathombatch`` metadata went through ``change(meta)``."""
    meta = read_metadata(scored)
    change(meta)
    pl.read_parquet(scored).write_parquet(dest, metadata={"fathombatch": json.dumps(meta)})
    return dest


def rewrite_ids(labels: Path, dest: Path, rename) -> Path:  # type: ignore[no-untyped-def]
    """The Kaggle CSV ``labels`` with every id passed through ``rename(index, id)``."""
    frame = pl.read_csv(labels, schema_overrides={"id": pl.String})
    frame = frame.with_columns(pl.Series("id", [rename(i, v) for i, v in enumerate(frame["id"].to_list())]))
    frame.write_csv(dest)
    return dest


def write_submission(table: pl.DataFrame, dest: Path) -> Path:
    """The competition's submission CSV of a table's ok rows: ``id,categories,osd``, categories best first."""
    ok = table.filter(pl.col("status") == "ok")
    ok.select(
        pl.col("image_id").alias("id"),
        pl.col("top_categories").cast(pl.List(pl.String)).list.join(" ").alias("categories"),
        pl.col("osd").round(6),
    ).write_csv(dest)
    return dest


def test_own_submission_as_truth_is_refused(scored: Path, tmp_path: Path) -> None:
    sub = tmp_path / "submission.csv"
    write_submission(pl.read_parquet(scored), sub)
    with pytest.raises(UsageError, match="is not truth: its category lists are the evaluated predictions' own"):
        evaluate(EvalConfig(scores=scored, truth=sub))


def test_truth_whose_label_sets_all_have_top_k_labels_is_refused(scored: Path, tmp_path: Path) -> None:
    # Another run's submission: 20 categories per image, but not this table's own lists.
    table = pl.read_parquet(scored)
    ids = fathomnet2023().ids
    others = [[c for c in ids if c not in own][:20] for own in table["top_categories"].to_list()]
    other = table.with_columns(pl.Series("top_categories", others, dtype=pl.List(pl.Int32)))
    sub = tmp_path / "other.csv"
    write_submission(other, sub)
    with pytest.raises(UsageError, match="every image in it has exactly 20 categories"):
        evaluate(EvalConfig(scores=scored, truth=sub))


def kaggle_truth(ids: list[str], lists: list[list[int]], dest: Path) -> Path:
    """A Kaggle CSV whose category lists are written in the given order."""
    dest.write_text("id,categories\n" + "".join(
        f'{i},"[{", ".join(f"{c}.0" for c in cats)}]"\n' for i, cats in zip(ids, lists, strict=True)))
    return dest


def test_truth_that_is_the_start_of_each_ranking_is_refused(scored: Path, tmp_path: Path) -> None:
    # A --top-k 5 submission of this run used as truth, and one whose lists stop at 2..6 categories.
    table = pl.read_parquet(scored)
    ids, tops = table["image_id"].to_list(), table["top_categories"].to_list()
    for name, lists in (("top5", [t[:5] for t in tops]), ("uneven", [t[: 2 + i % 5] for i, t in enumerate(tops)])):
        with pytest.raises(UsageError, match="is not truth: its category lists are the evaluated predictions' own "
                                             "top_categories, in order"):
            evaluate(EvalConfig(scores=scored, truth=kaggle_truth(ids, lists, tmp_path / f"{name}.csv")))


def test_truth_whose_sets_are_a_perfect_models_is_not_refused(scored: Path, tmp_path: Path) -> None:
    table = pl.read_parquet(scored)
    ids, tops = table["image_id"].to_list(), table["top_categories"].to_list()
    # A top-1 submission right on every image of single-label truth: one label carries no order, so nothing shows
    # the truth is a ranking.
    top1 = table.with_columns(pl.col("top_categories").list.head(1))
    truth = kaggle_truth(ids, [t[:1] for t in tops], tmp_path / "single.csv")
    result = evaluate(EvalConfig(scores=write_submission(top1, tmp_path / "top1.csv"), truth=truth))
    assert result.map_at_k == pytest.approx(1.0) and result.n_scored == 24
    # Multi-label truth listed in another order than the model ranks it: a set the model got right, not a ranking.
    truth = kaggle_truth(ids, [t[:3][::-1] for t in tops], tmp_path / "sets.csv")
    assert evaluate(EvalConfig(scores=scored, truth=truth)).map_at_k == pytest.approx(1.0)


def test_truth_whose_label_sets_all_have_one_length_is_refused_whatever_the_top_k(scored: Path, tmp_path: Path) -> None:
    # Another run's --top-k 6 submission, its lists in ascending order: no prefix of this table's rankings.
    table = pl.read_parquet(scored)
    ids = fathomnet2023().ids
    others = [sorted(c for c in ids if c not in own)[:6] for own in table["top_categories"].to_list()]
    truth = kaggle_truth(table["image_id"].to_list(), others, tmp_path / "other6.csv")
    with pytest.raises(UsageError, match="every image in it has exactly 6 categories"):
        evaluate(EvalConfig(scores=scored, truth=truth))


def test_ids_with_an_image_extension_are_matched_and_said(scored: Path, dive: Path, tmp_path: Path) -> None:
    perfect = perfect_copy(scored, dive, tmp_path / "p.parquet")
    truth = rewrite_ids(dive / "train.csv", tmp_path / "ext.csv", lambda i, v: f"{v}.PNG" if i % 2 else f"{v}.jpg")
    result = evaluate(EvalConfig(scores=perfect, truth=truth))
    assert result.map_at_k == pytest.approx(1.0) and not result.missing
    assert any("24 truth id(s) carry an image extension" in w for w in result.warnings)


def test_evaluated_ids_with_an_image_extension_are_matched_too(scored: Path, dive: Path, tmp_path: Path) -> None:
    perfect = pl.read_parquet(perfect_copy(scored, dive, tmp_path / "p.parquet"))
    with_ext = perfect.with_columns(pl.col("image_id") + ".jpg")
    with_ext.write_parquet(tmp_path / "ext.parquet", metadata=pl.read_parquet_metadata(scored))
    result = evaluate(EvalConfig(scores=tmp_path / "ext.parquet", truth=dive / "train.csv"))
    assert result.map_at_k == pytest.approx(1.0) and not result.missing
    assert any("24 evaluated id(s) carry an image extension" in w for w in result.warnings)
    # The same clash rule as on the truth side: two files that strip to one truth id match neither.
    clash = pl.concat([with_ext, with_ext.head(1).with_columns(pl.col("image_id").str.replace(r"\.jpg$", ".png"))])
    clash.write_parquet(tmp_path / "clash.parquet", metadata=pl.read_parquet_metadata(scored))
    result = evaluate(EvalConfig(scores=tmp_path / "clash.parquet", truth=dive / "train.csv"))
    assert result.missing == [perfect["image_id"][0]] and result.map_at_k == pytest.approx(23 / 24)
    assert any("1 id(s) appear in" in w and "with two image extensions" in w for w in result.warnings)


def test_mostly_unmatched_ids_say_what_both_sides_look_like(scored: Path, dive: Path, tmp_path: Path) -> None:
    truth = rewrite_ids(dive / "train.csv", tmp_path / "t.csv", lambda i, v: f"dive7/{v}" if i >= 4 else v)
    result = evaluate(EvalConfig(scores=scored, truth=truth))
    warning = next(w for w in result.warnings if "only 4 of 24 truth ids" in w)
    assert "truth ids look like 'dive7/" in warning and "evaluated ids like '" in warning
    nothing = rewrite_ids(dive / "train.csv", tmp_path / "n.csv", lambda i, v: f"dive7/{v}")
    with pytest.raises(UsageError, match="none of the 24 ids in .* is in .*truth ids look like 'dive7/"):
        evaluate(EvalConfig(scores=scored, truth=nothing))


def split_ids(run_dir: Path, dive: Path) -> tuple[list[str], list[str]]:
    """(training ids, held-out ids) of the fixture run."""
    heldout = json.loads((run_dir / "split.json").read_text())["val_image_ids"]
    train = [i for i in read_labels(dive / "train.csv").image_ids if i not in set(heldout)]
    return sorted(train), sorted(heldout)


def test_export_records_the_training_images(engines: dict, run_dir: Path, dive: Path) -> None:
    from fathombatch.backends import read_manifest

    provenance = read_manifest(engines["onnx"]).provenance
    train, heldout = split_ids(run_dir, dive)
    record = provenance["training_images"]
    assert record["train_image_ids"] == train and record["heldout_image_ids"] == heldout
    assert record["labels_sha256"] == json.loads((run_dir / "config.json").read_text())["labels_sha256"]
    assert Path(provenance["run"]).is_absolute() and Path(provenance["run"]).samefile(run_dir)


def test_truth_the_engine_was_trained_on_is_counted(scored: Path, dive: Path, run_dir: Path, tmp_path: Path) -> None:
    train, heldout = split_ids(run_dir, dive)
    result = evaluate(EvalConfig(scores=scored, truth=dive / "train.csv", report=tmp_path / "r"))
    assert result.n_truth_in_training == len(train) > 0
    said = f"{len(train)} of the 24 scored truth images were used to train the engine 'tiny'"
    assert any(said in w for w in result.warnings)
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["n_truth_in_training"] == len(train)
    labels = pl.read_csv(dive / "train.csv", schema_overrides={"id": pl.String})
    labels.filter(pl.col("id").is_in(heldout)).write_csv(tmp_path / "heldout.csv")
    held = evaluate(EvalConfig(scores=scored, truth=tmp_path / "heldout.csv"))
    assert held.n_truth_in_training == 0 and not any("train the engine" in w for w in held.warnings)


def test_training_overlap_from_the_label_file_hash(scored: Path, dive: Path, run_dir: Path, tmp_path: Path) -> None:
    # An engine exported where the training labels were gone records only their hash and the held-out ids.
    def forget_train_ids(meta: dict) -> None:
        meta["engine_manifest"]["provenance"]["training_images"]["train_image_ids"] = None

    table = with_metadata(scored, tmp_path / "s.parquet", forget_train_ids)
    train, _ = split_ids(run_dir, dive)
    assert evaluate(EvalConfig(scores=table, truth=dive / "train.csv")).n_truth_in_training == len(train)
    (tmp_path / "other.csv").write_text((dive / "train.csv").read_text() + "\n")  # same labels, other bytes
    result = evaluate(EvalConfig(scores=table, truth=tmp_path / "other.csv"))
    assert result.n_truth_in_training is None
    assert any("cannot tell whether the truth holds images the engine was trained on" in w for w in result.warnings)


def prior_copy(scored: Path, dest: Path) -> Path:
    """The scores table with every image given the engine's frequency-prior ranking."""
    from fathombatch.metrics import prior_ranking

    table = pl.read_parquet(scored)
    counts = np.array(read_metadata(scored)["engine_manifest"]["class_counts"])
    ids = np.asarray(fathomnet2023().ids)[prior_ranking(counts)].tolist()
    table = table.with_columns(pl.Series("top_categories", [ids] * table.height, dtype=pl.List(pl.Int32)))
    table.write_parquet(dest, metadata=pl.read_parquet_metadata(scored))
    return dest


def test_a_model_at_the_prior_floor_is_flagged(scored: Path, dive: Path, tmp_path: Path) -> None:
    report = tmp_path / "r"
    result = evaluate(EvalConfig(scores=prior_copy(scored, tmp_path / "prior.parquet"), truth=dive / "train.csv",
                                 report=report))
    assert result.map_at_k == pytest.approx(result.prior_floor) and result.at_or_below_floor
    assert any("is at or below the frequency-prior floor" in w for w in result.warnings)
    assert json.loads((report / "metrics.json").read_text())["at_or_below_floor"] is True
    assert "**At or below the floor:**" in (report / "report.md").read_text()
    assert 'class="flag"' in (report / "report.html").read_text()
    good = evaluate(EvalConfig(scores=perfect_copy(scored, dive, tmp_path / "p.parquet"), truth=dive / "train.csv"))
    assert not good.at_or_below_floor and not any("frequency-prior floor" in w for w in good.warnings)


def test_report_names_engine_fingerprint_version_and_date(scored: Path, dive: Path, tmp_path: Path) -> None:
    from datetime import datetime

    from fathombatch import __version__

    meta = read_metadata(scored)
    result = evaluate(EvalConfig(scores=scored, truth=dive / "train.csv", report=tmp_path / "r"))
    evaluated_at = datetime.fromisoformat(result.provenance["evaluated_at"])
    for page in ("report.md", "report.html"):
        text = (tmp_path / "r" / page).read_text()
        assert meta["engine_manifest"]["name"] in text and meta["run"]["engine_fingerprint"] in text, page
        assert f"fathombatch {__version__}" in text and evaluated_at.date().isoformat() in text, page
        assert f"fathombatch {meta['version']}, {meta['created']}" in text, page


def test_supercategory_table_says_how_it_averages(scored: Path, dive: Path, tmp_path: Path) -> None:
    result = evaluate(EvalConfig(scores=scored, truth=dive / "train.csv", report=tmp_path / "r"))
    text = (tmp_path / "r" / "report.md").read_text()
    assert "unweighted mean of the AP of the supercategory's classes" in text
    assert "| supercategory | classes | images (summed over its classes) | mean AP | image-weighted AP |" in text
    pc = result.per_class.filter(pl.col("support") > 0)
    name = pc.group_by("supercategory").len().sort("len", descending=True)["supercategory"][0]
    part = pc.filter(pl.col("supercategory") == name)
    mean = part["ap"].mean()
    weighted = float((part["ap"] * part["support"]).sum() / part["support"].sum())
    row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
    assert row.endswith(f"| {mean:.4f} | {weighted:.4f} |")


def test_headline_floor_line_spans_only_the_map_bars() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    from fathombatch.plots import draw_headline

    fig, ax = plt.subplots()
    draw_headline(ax, 0.62, 0.5, 20, sauc=0.3, competition=0.46)
    fig.canvas.draw()
    spans = []
    for line in ax.lines:
        if np.allclose(line.get_ydata(), 0.5):
            spans.append(line.get_transform().transform(line.get_xydata())[:, 0])
    for coll in ax.collections:
        if isinstance(coll, LineCollection):
            spans += [coll.get_transform().transform(s)[:, 0] for s in coll.get_segments() if np.allclose(s[:, 1], 0.5)]
    bars = [p.get_window_extent() for p in ax.patches]
    assert spans and any(s.min() <= bars[0].x0 and s.max() >= bars[0].x1 for s in spans)  # over MAP@20
    for bar in bars[2:]:  # sAUC and the competition score
        assert all(s.max() <= bar.x0 or s.min() >= bar.x1 for s in spans)
    plt.close(fig)


def test_training_curves_tick_whole_epochs() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fathombatch.plots import draw_training_curves

    history = pl.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.7, 0.5, 0.4], "val_loss": [0.6, 0.55, 0.5],
                            "val_map20": [0.3, 0.4, 0.45], "val_prior_floor": [0.35] * 3})
    fig, axes = plt.subplots(1, 2)
    draw_training_curves(axes, history)
    fig.canvas.draw()
    for ax in axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    plt.close(fig)


def test_relative_run_path_resolves_against_the_manifest_folder(
    scored: Path, dive: Path, run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    def relative_run(meta: dict) -> None:
        engine_dir = Path(meta["run"]["engine"]).resolve().parent
        meta["run"]["engine"] = str(Path(meta["run"]["engine"]).resolve())
        meta["engine_manifest"]["provenance"]["run"] = os.path.relpath(run_dir, engine_dir)

    table = with_metadata(scored, tmp_path / "s.parquet", relative_run)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = evaluate(EvalConfig(scores=table, truth=dive / "train.csv", report=tmp_path / "r"))
    assert result.run is not None and result.run.samefile(run_dir)
    assert (tmp_path / "r" / "training_curves.png").is_file()


def test_a_submission_csv_can_be_evaluated(scored: Path, dive: Path, tmp_path: Path) -> None:
    sub = tmp_path / "submission.csv"
    table = pl.read_parquet(scored)
    write_submission(table, sub)
    from_table = evaluate(EvalConfig(scores=scored, truth=dive / "annotations.json", osd_truth=dive / "osd.csv"))
    result = evaluate(EvalConfig(scores=sub, truth=dive / "annotations.json", osd_truth=dive / "osd.csv",
                                 report=tmp_path / "r"))
    assert result.evaluated == "submission" and result.n_scored == 24
    assert result.map_at_k == pytest.approx(from_table.map_at_k)
    assert result.sauc == pytest.approx(from_table.sauc, abs=1e-4)
    assert result.per_class.filter(pl.col("support") > 0)["ap"].null_count() == 0
    assert "a submission CSV names no engine" in (tmp_path / "r" / "report.md").read_text()


def test_a_submission_row_without_categories_scores_zero(scored: Path, dive: Path, tmp_path: Path) -> None:
    perfect = pl.read_parquet(perfect_copy(scored, dive, tmp_path / "p.parquet"))
    sub = tmp_path / "submission.csv"
    write_submission(perfect, sub)
    lines = sub.read_text().splitlines()
    first = lines[1].split(",")
    lines[1] = f"{first[0]},,1.0"  # what a scoring run may write for a file it could not decode
    sub.write_text("\n".join(lines) + "\n")
    assert evaluate(EvalConfig(scores=sub, truth=dive / "train.csv")).map_at_k == pytest.approx(23 / 24)


def test_malformed_submission_names_the_line(dive: Path, tmp_path: Path) -> None:
    for body, message in (("a,1 2 999,0.5\n", "line 2: unknown category id 999 \\(not in taxonomy"),
                          ("a,1 2,high\n", "line 2: osd 'high' is not a number")):
        (tmp_path / "s.csv").write_text("id,categories,osd\n" + body)
        with pytest.raises(LabelFileError, match=message):
            evaluate(EvalConfig(scores=tmp_path / "s.csv", truth=dive / "train.csv"))


def test_repeated_ids_keep_the_first_row_in_table_and_submission_alike(
    dive: Path, engines: dict, tmp_path: Path
) -> None:
    # The same file names in two folders: score keeps both rows and its submission CSV repeats the ids.
    root = tmp_path / "root"
    for folder in ("a", "b"):
        shutil.copytree(dive / "images", root / folder)
    table, sub = tmp_path / "s.parquet", tmp_path / "submission.csv"
    score_folder(ScoreConfig(root=root, engine=engines["onnx"], out=table, submission=sub, batch_size=16))
    results = [evaluate(EvalConfig(scores=path, truth=dive / "train.csv")) for path in (table, sub)]
    for result in results:
        assert result.n_scored == 24 and result.n_extra == 0
        assert sum("24 duplicate image_id(s)" in w and "the first row" in w for w in result.warnings) == 1
    assert results[0].map_at_k == pytest.approx(results[1].map_at_k)


def test_a_submissions_error_rows_are_counted_in_a_warning(scored: Path, dive: Path, engines: dict,
                                                           tmp_path: Path) -> None:
    from fathombatch.backends import read_manifest
    from fathombatch.submission import error_prior, prior_for
    from fathombatch.submission import write_submission as write_scored_submission

    table = pl.read_parquet(scored)
    broken = table["image_id"][[1, 5]].to_list()
    with_errors = table.with_columns(
        status=pl.when(pl.col("image_id").is_in(broken)).then(pl.lit("error")).otherwise(pl.col("status")))
    from_table = evaluate(EvalConfig(scores=scored, truth=dive / "train.csv"))
    assert not any("error rows" in w for w in from_table.warnings)
    priors = {"engine": error_prior(read_manifest(engines["onnx"]), 20),
              "fathomnet2023": prior_for(fathomnet2023(), None, 20)}
    for source, prior in priors.items():
        sub = tmp_path / f"{source}.csv"
        assert write_scored_submission(with_errors, sub, prior=prior) == 2
        result = evaluate(EvalConfig(scores=sub, truth=dive / "train.csv"))
        assert prior.source == source and result.n_scored == 24
        assert ("2 rows look like score's error rows (osd 1.0, what score writes with the prior ranking for files "
                "it could not decode)" in "\n".join(result.warnings)), source
    # One bad file, with the engine's own prior (which a submission does not record): still counted.
    one = tmp_path / "one.csv"
    write_scored_submission(table.with_columns(status=pl.when(pl.col("image_id") == broken[0]).then(pl.lit("error"))
                                               .otherwise(pl.col("status"))), one, prior=priors["engine"])
    assert any(w.startswith("1 rows look like score's error rows")
               for w in evaluate(EvalConfig(scores=one, truth=dive / "train.csv")).warnings)
    plain = tmp_path / "plain.csv"
    write_scored_submission(table, plain, prior=priors["engine"])
    assert not any("error rows" in w for w in evaluate(EvalConfig(scores=plain, truth=dive / "train.csv")).warnings)


def test_a_label_file_is_not_evaluated_as_predictions(dive: Path, tmp_path: Path) -> None:
    # Kaggle's train.csv (id,categories) given as the predictions: against itself it would score MAP@20 1.0.
    with pytest.raises(UsageError, match="same file"):
        evaluate(EvalConfig(scores=dive / "train.csv", truth=dive / "train.csv"))
    copy = tmp_path / "copy.csv"
    copy.write_bytes((dive / "train.csv").read_bytes())
    with pytest.raises(UsageError, match="same file"):
        evaluate(EvalConfig(scores=copy, truth=dive / "train.csv"))
    other = tmp_path / "labels.csv"
    other.write_text((dive / "train.csv").read_text() + "\n")
    with pytest.raises(UsageError, match="no 'osd' column"):
        evaluate(EvalConfig(scores=other, truth=dive / "train.csv"))


def test_truth_that_is_the_whole_ranking_as_sets_is_refused(
    dive: Path, engines: dict, tmp_path: Path
) -> None:
    # This run's top-3 predictions written as a sorted label file: MAP@20 against it would be 1.0.
    top3 = tmp_path / "top3.parquet"
    score_folder(ScoreConfig(root=dive / "images", engine=engines["onnx"], out=top3, batch_size=8, top_k=3))
    table = pl.read_parquet(top3).filter(pl.col("status") == "ok")
    lists = [sorted(c) for c in table["top_categories"].to_list()]
    truth = kaggle_truth(table["image_id"].to_list(), lists, tmp_path / "sorted.csv")
    with pytest.raises(UsageError, match="exactly the set of the evaluated predictions' own top_categories"):
        evaluate(EvalConfig(scores=top3, truth=truth))
    # One label per image and a top-1 ranking: a perfect model looks the same, so only a warning.
    top1 = tmp_path / "top1.parquet"
    score_folder(ScoreConfig(root=dive / "images", engine=engines["onnx"], out=top1, batch_size=8, top_k=1))
    table = pl.read_parquet(top1).filter(pl.col("status") == "ok")
    truth1 = kaggle_truth(table["image_id"].to_list(), table["top_categories"].to_list(), tmp_path / "one.csv")
    result = evaluate(EvalConfig(scores=top1, truth=truth1))
    assert result.map_at_k == 1.0
    assert any("equals the top-1 prediction on every one of the" in w for w in result.warnings)


def test_truth_without_labels_is_refused_and_partly_unlabelled_truth_is_counted(
    scored: Path, dive: Path, tmp_path: Path
) -> None:
    data = json.loads((dive / "annotations.json").read_text())
    unlabelled = tmp_path / "eval.json"
    unlabelled.write_text(json.dumps({**data, "annotations": []}))
    with pytest.raises(UsageError, match="has no labels for any of its 24 images"):
        evaluate(EvalConfig(scores=scored, truth=unlabelled))
    first = {a["image_id"] for a in data["annotations"]}
    keep = sorted(first)[: len(first) // 2]
    half = tmp_path / "half.json"
    half.write_text(json.dumps({**data, "annotations": [a for a in data["annotations"] if a["image_id"] in keep]}))
    result = evaluate(EvalConfig(scores=scored, truth=half))
    assert any(f"{24 - len(keep)} of 24 truth images in {half} have no label" in w for w in result.warnings)
