from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from fathombatch.datasets import read_labels
from fathombatch.errors import LabelFileError, UsageError
from fathombatch.metrics import prior_floor
from fathombatch.report import EvalConfig, evaluate
from fathombatch.score import ScoreConfig, score_folder
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
    y = dict(zip(labels.image_ids, labels.multi_hot().astype(np.float32)))
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
    result = evaluate(EvalConfig(scores=scored, truth=dive / "annotations.json", osd_truth=dive / "osd.csv", report=report))
    assert result.sauc is not None and -1.0 <= result.sauc <= 1.0
    assert result.competition_score == pytest.approx((result.sauc + result.map_at_k) / 2)
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["map@20"] == pytest.approx(result.map_at_k) and metrics["prior_floor"] == pytest.approx(result.prior_floor)
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
