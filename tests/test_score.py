from __future__ import annotations

import csv
import dataclasses
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import fathombatch.scoring.batch as batch_module
from fathombatch import __version__
from fathombatch.backends import read_manifest
from fathombatch.errors import OutputError, UsageError
from fathombatch.fsutil import FileLock
from fathombatch.scores.metadata import read_metadata
from fathombatch.scores.schema import FIXED_COLUMNS, SIGNATURE_COLUMNS
from fathombatch.scoring import ScoreConfig, ScoreSummary, score_folder
from fathombatch.taxonomy import Category, Taxonomy, fathomnet2023
from tests.conftest import data_file

BAD = {"bad/empty.jpg": b"", "bad/notes.png": b"dive log, not an image\n", "bad/z_random.jpg": bytes(range(256)) * 8}


@pytest.fixture()
def dump(dive: Path, tmp_path: Path) -> Path:
    """The tiny dive's images plus three broken files and a truncated JPEG, in a fresh folder."""
    root = tmp_path / "dump"
    shutil.copytree(dive / "images", root)
    for rel, content in BAD.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    first = sorted(root.glob("*.jpg"))[0]
    (root / "bad" / "truncated.jpg").write_bytes(first.read_bytes()[:1500])
    return root


def run(root: Path, engine: Path, out: Path, **kw: object) -> ScoreSummary:
    return score_folder(ScoreConfig(root=root, engine=engine, out=out, batch_size=kw.pop("batch_size", 8), **kw))  # type: ignore[arg-type]


def interrupt_at_batch(monkeypatch: pytest.MonkeyPatch, n: int) -> Callable[..., pl.DataFrame]:
    """Make scoring raise KeyboardInterrupt at its ``n``-th batch, as a Ctrl-C there would; returns the real batch
    function, to put back for the resumed run."""
    real = batch_module.score_batch
    calls = {"n": 0}

    def interrupted(*args: object, **kwargs: object) -> pl.DataFrame:
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(batch_module, "score_batch", interrupted)
    return real


def test_table_has_one_row_per_file_with_the_documented_columns(dump: Path, engines: dict, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    summary = run(dump, engines["onnx"], out, submission=tmp_path / "sub.csv")
    table = pl.read_parquet(out)
    names = fathomnet2023().names
    assert table.columns == [*FIXED_COLUMNS, *names, *SIGNATURE_COLUMNS]
    assert table.schema["top_categories"] == pl.List(pl.Int32) and table.schema[names[0]] == pl.Float32
    assert table.height == 28 and summary.files == 28
    assert table["path"].to_list() == sorted(table["path"].to_list())
    assert summary.ok == 24 and summary.errors == 4

    errors = dict(table.filter(pl.col("status") == "error").select("path", "error").iter_rows())
    assert errors["bad/empty.jpg"] == "empty file (0 bytes)"
    assert errors["bad/notes.png"] == "a text file, not an image"
    assert errors["bad/z_random.jpg"].startswith("not a recognised image format")
    assert "truncated" in errors["bad/truncated.jpg"].lower()
    bad_rows = table.filter(pl.col("status") == "error")
    assert bad_rows.select(names).null_count().sum_horizontal()[0] == 4 * 290

    ok = table.filter(pl.col("status") == "ok")
    probs = ok.select(names).to_numpy()
    assert probs.dtype == np.float32 and np.all((probs >= 0) & (probs <= 1))
    assert ok["image_id"].to_list() == [Path(p).stem for p in ok["path"].to_list()]
    assert (ok["width"] == 160).all() and (ok["height"] == 120).all()
    signatures = [((dump / p).stat().st_size, (dump / p).stat().st_mtime_ns) for p in table["path"]]
    assert list(table.select(*SIGNATURE_COLUMNS).iter_rows()) == signatures
    top = np.array(ok["top_categories"].to_list())
    assert top.shape == (24, 20)
    np.testing.assert_array_equal(top[:, 0], np.argmax(probs, axis=1) + 1)  # category id = column + 1
    np.testing.assert_allclose(ok["osd"].to_numpy(), 1 - probs.max(axis=1), atol=1e-6)

    meta = read_metadata(out)
    assert meta["version"] == __version__
    assert len(meta["taxonomy"]["classes"]) == 290
    assert meta["engine_manifest"]["arch"] == "resnet18"
    assert meta["run"]["top_k"] == 20 and meta["run"]["files"] == 28
    assert not (tmp_path / "scores.parquet.parts").exists()


def read_submission(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, schema_overrides={"id": pl.String, "categories": pl.String})


def test_submission_csv_has_a_row_for_every_file_errors_with_the_engines_prior(
    dump: Path, engines: dict, tmp_path: Path
) -> None:
    summary = run(dump, engines["onnx"], tmp_path / "s.parquet", submission=tmp_path / "sub.csv", top_k=5)
    sub = read_submission(tmp_path / "sub.csv")
    table = pl.read_parquet(tmp_path / "s.parquet")
    assert sub.columns == ["id", "categories", "osd"] and sub.height == table.height == 28
    assert sub["id"].to_list() == table["image_id"].to_list()
    is_error = (table["status"] == "error").to_numpy()
    ok, ok_rows = table.filter(~is_error), sub.filter(~is_error)
    assert [[int(c) for c in cats.split(" ")] for cats in ok_rows["categories"]] == ok["top_categories"].to_list()
    np.testing.assert_allclose(ok_rows["osd"].to_numpy(), ok["osd"].to_numpy(), atol=1e-6)

    # Error rows: the classes most frequent in the engine's training set (its manifest's class_counts), best first.
    counts = read_manifest(engines["onnx"]).class_counts
    by_frequency = sorted(range(1, 291), key=lambda cid: (-counts[cid - 1], cid))[:5]
    errors = sub.filter(is_error)
    assert errors.height == 4 and (errors["osd"] == 1.0).all()
    assert {tuple(int(c) for c in cats.split(" ")) for cats in errors["categories"]} == {tuple(by_frequency)}
    assert read_metadata(tmp_path / "s.parquet")["error_prior"] == {"source": "engine", "categories": by_frequency,
                                                                   "osd": 1.0}
    assert summary.error_prior_source == "engine"
    assert [w for w in summary.warnings if "could not be scored" in w] == [
        ("4 file(s) could not be scored; their submission rows carry the prior ranking (the engine's training class "
         "frequencies) and osd 1.0")
    ]


def test_error_prior_without_engine_counts_is_fathomnet2023s_then_taxonomy_order(engines: dict) -> None:
    from fathombatch.scores.submission import error_prior

    manifest = read_manifest(engines["onnx"])
    without_counts = dataclasses.replace(manifest, class_counts=None)
    counts: Counter[int] = Counter()
    with data_file("train.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            counts.update({int(float(c)) for c in row["categories"].strip("[]").split(",") if c.strip()})
    expected = sorted(range(1, 291), key=lambda cid: (-counts[cid], cid))[:20]
    prior = error_prior(without_counts, 20)
    assert prior.source == "fathomnet2023" and list(prior.categories) == expected

    renamed = Taxonomy(tuple(Category(c.id + 1000, c.name + " x", c.supercategory)
                             for c in manifest.taxonomy.categories), name="custom")
    custom = error_prior(dataclasses.replace(without_counts, taxonomy=renamed), 7)
    assert custom.source == "taxonomy-order" and list(custom.categories) == list(range(1001, 1008))


def test_a_resumed_run_writes_the_prior_rows_too(
    dump: Path, engines: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = interrupt_at_batch(monkeypatch, 2)
    out, sub = tmp_path / "s.parquet", tmp_path / "sub.csv"
    with pytest.raises(KeyboardInterrupt):
        run(dump, engines["onnx"], out, submission=sub, batch_size=8, part_rows=8)
    monkeypatch.setattr(batch_module, "score_batch", real)
    summary = run(dump, engines["onnx"], out, submission=sub, batch_size=8, part_rows=8)
    assert 0 < summary.resumed < 28 and summary.errors == 4
    rows = read_submission(sub)
    assert rows.height == 28 and rows["id"].to_list() == pl.read_parquet(out)["image_id"].to_list()
    assert (rows["osd"] == 1.0).sum() == 4


def test_torch_engine_gives_the_same_probabilities(dive: Path, engines: dict, tmp_path: Path) -> None:
    run(dive / "images", engines["onnx"], tmp_path / "a.parquet", decoder="pil")
    run(dive / "images", engines["pt"], tmp_path / "b.parquet", decoder="pil")
    names = list(fathomnet2023().names)
    a = pl.read_parquet(tmp_path / "a.parquet").select(names).to_numpy()
    b = pl.read_parquet(tmp_path / "b.parquet").select(names).to_numpy()
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_resume_after_interruption_equals_an_uninterrupted_run(
    dump: Path, engines: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(dump, engines["onnx"], tmp_path / "full.parquet", batch_size=4)
    real = interrupt_at_batch(monkeypatch, 4)
    out = tmp_path / "resumed.parquet"
    with pytest.raises(KeyboardInterrupt):
        run(dump, engines["onnx"], out, batch_size=4, part_rows=4)
    parts = sorted((tmp_path / "resumed.parquet.parts").glob("part-*.parquet"))
    assert len(parts) == 3 and not out.exists()

    monkeypatch.setattr(batch_module, "score_batch", real)
    summary = run(dump, engines["onnx"], out, batch_size=4, part_rows=4)
    assert summary.resumed == 12 and summary.scored_now == 16
    full, resumed = pl.read_parquet(tmp_path / "full.parquet"), pl.read_parquet(out)
    assert resumed["path"].n_unique() == resumed.height == full.height
    assert resumed.drop(fathomnet2023().names).equals(full.drop(fathomnet2023().names))
    names = list(fathomnet2023().names)
    np.testing.assert_allclose(resumed.select(names).to_numpy(), full.select(names).to_numpy(), atol=1e-6)
    assert not (tmp_path / "resumed.parquet.parts").exists()


def test_resume_with_a_changed_engine_is_refused(dump: Path, engines: dict, tmp_path: Path, monkeypatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(batch_module, "score_batch", boom)
    out = tmp_path / "s.parquet"
    with pytest.raises(KeyboardInterrupt):
        run(dump, engines["onnx"], out)
    monkeypatch.undo()
    with pytest.raises(OutputError, match=r"different engine \(manifest hash\)"):
        run(dump, engines["pt"], out)
    summary = run(dump, engines["pt"], out, overwrite=True)
    assert summary.files == 28 and summary.resumed == 0


def test_files_deleted_before_a_resume_leave_no_rows(dump: Path, engines: dict, tmp_path: Path, monkeypatch) -> None:
    interrupt_at_batch(monkeypatch, 3)
    out = tmp_path / "s.parquet"
    with pytest.raises(KeyboardInterrupt):
        run(dump, engines["onnx"], out, batch_size=4, part_rows=4)
    monkeypatch.undo()
    gone = sorted(dump.glob("*.jpg"))[0]
    gone.unlink()
    table = pl.read_parquet(out) if run(dump, engines["onnx"], out, batch_size=4).files else None
    assert table is not None and table.height == 27
    assert gone.name not in table["path"].to_list()


def test_existing_output_and_lock(dump: Path, engines: dict, tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    run(dump, engines["onnx"], out)
    before = out.read_bytes()
    with pytest.raises(OutputError, match="already exists; pass overwrite to replace it, or choose another out$"):
        run(dump, engines["onnx"], out)
    assert out.read_bytes() == before
    with (
        FileLock(tmp_path / "s.parquet.lock", what="test"),
        pytest.raises(OutputError, match="another fathombatch process"),
    ):
        run(dump, engines["onnx"], out, overwrite=True)
    assert out.read_bytes() == before
    run(dump, engines["onnx"], out, overwrite=True)
    assert not (tmp_path / "s.parquet.lock").exists()


def test_dali_and_pil_runs_agree(dive: Path, engines: dict, tmp_path: Path) -> None:
    a = run(dive / "images", engines["onnx"], tmp_path / "a.parquet", decoder="dali")
    b = run(dive / "images", engines["onnx"], tmp_path / "b.parquet", decoder="pil")
    assert (a.decoder, b.decoder) == ("dali", "pil")
    names = list(fathomnet2023().names)
    pa = pl.read_parquet(tmp_path / "a.parquet").select(names).to_numpy()
    pb = pl.read_parquet(tmp_path / "b.parquet").select(names).to_numpy()
    assert np.abs(pa - pb).max() < 0.05


def test_bad_arguments(tmp_path: Path, engines: dict, dive: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(UsageError, match="no .jpg, .jpeg, .png, .tif or .tiff images"):
        run(tmp_path / "empty", engines["onnx"], tmp_path / "s.parquet")
    with pytest.raises(UsageError, match="does not exist"):
        run(tmp_path / "nope", engines["onnx"], tmp_path / "s.parquet")
    with pytest.raises(UsageError, match="^top_k must be between 1 and 290, got 0$"):
        run(dive / "images", engines["onnx"], tmp_path / "s.parquet", top_k=0)
    with pytest.raises(UsageError, match="unknown out-of-sample method"):
        run(dive / "images", engines["onnx"], tmp_path / "s.parquet", osd="magic")

