"""Issue 17, item 1: ``score --update`` brings a finished table up to date with a folder that changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from PIL import Image

from fathombatch.cli import cli
from fathombatch.scores.schema import SIGNATURE_COLUMNS
from fathombatch.scoring import ScoreConfig, score_folder
from fathombatch.taxonomy import fathomnet2023
from tests.test_kill_resume import run_until

NAMES = list(fathomnet2023().names)


def invoke(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def score(root: Path, engine: Path, out: Path, *extra: object) -> tuple[int, str, str]:
    return invoke("score", root, "--engine", engine, "--out", out, "--batch-size", 4, "--part-rows", 4, "--quiet",
                  *extra)


def assert_same_table(a_path: Path, b_path: Path) -> None:
    """Same rows, columns and values (probabilities to 1e-6), rows in path order."""
    a, b = pl.read_parquet(a_path), pl.read_parquet(b_path)
    assert a.columns == b.columns
    assert a["path"].to_list() == sorted(a["path"].to_list())
    assert a.drop(NAMES).equals(b.drop(NAMES))
    np.testing.assert_allclose(a.select(NAMES).to_numpy(), b.select(NAMES).to_numpy(), atol=1e-6)


def new_image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)).save(path)


@pytest.fixture()
def dump(dive: Path, tmp_path: Path) -> Path:
    """The tiny dive's 24 images and 4 broken files (28 files) in a folder of the test's own."""
    root = tmp_path / "dump"
    shutil.copytree(dive / "images", root)
    (root / "bad").mkdir()
    (root / "bad" / "empty.jpg").write_bytes(b"")
    (root / "bad" / "notes.png").write_text("not an image")
    (root / "bad" / "random.jpg").write_bytes(bytes(range(256)) * 4)
    (root / "bad" / "truncated.jpg").write_bytes(sorted(root.glob("*.jpg"))[0].read_bytes()[:1500])
    return root


def change_dump(root: Path) -> None:
    """Add 3 images, rewrite 1 with other pixels, delete 2."""
    images = sorted(p for p in root.glob("*.jpg"))
    for i in range(3):
        new_image(root / f"zz_new{i}.jpg", seed=100 + i)
    new_image(images[0], seed=7)
    images[1].unlink()
    images[2].unlink()


def test_update_equals_a_fresh_run_and_counts_what_it_did(dump: Path, engines: dict, tmp_path: Path) -> None:
    out, sub = tmp_path / "scores.parquet", tmp_path / "sub.csv"
    assert score(dump, engines["onnx"], out, "--submission", sub)[0] == 0
    change_dump(dump)

    code, stdout, stderr = score(dump, engines["onnx"], out, "--submission", sub, "--update")
    assert code == 0, stderr
    # 28 files: 4 broken (error rows are retried) + 1 rewritten = 5 rescored; 24 - 2 deleted - 1 rewritten kept.
    assert "Update: 3 added, 5 rescored, 2 removed, 21 kept." in stdout
    assert "Scored 29 files" in stdout and "8 scored now" in stdout and "interrupted" not in stdout

    fresh, fresh_sub = tmp_path / "fresh.parquet", tmp_path / "fresh.csv"
    assert score(dump, engines["onnx"], fresh, "--submission", fresh_sub)[0] == 0
    assert_same_table(out, fresh)
    assert pl.read_parquet(out).height == 29
    a, b = pl.read_csv(sub), pl.read_csv(fresh_sub)
    assert a["id"].equals(b["id"]) and a["categories"].equals(b["categories"])
    assert not list(tmp_path.glob("scores.parquet.*")) and not list(tmp_path.glob(".*.tmp"))


def test_the_library_reports_the_counts_and_a_first_update_is_a_fresh_run(dump: Path, engines: dict,
                                                                          tmp_path: Path) -> None:
    cfg = ScoreConfig(root=dump, engine=engines["onnx"], out=tmp_path / "s.parquet", batch_size=4, update=True)
    first = score_folder(cfg)
    assert first.update is not None and first.update.fresh
    assert (first.update.added, first.update.rescored, first.update.removed, first.update.kept) == (28, 0, 0, 0)
    again = score_folder(cfg)
    assert again.update is not None and not again.update.fresh
    assert (again.update.added, again.update.rescored, again.update.removed, again.update.kept) == (0, 4, 0, 24)
    assert again.scored_now == 4 and again.resumed == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--top-k", 5), "different top_k"),
        (("--decoder", "dali"), "different decoder"),
        (("--osd", "knn"), "different osd"),
        (("--engine-swap",), "different engine (manifest hash)"),
    ],
)
def test_an_update_with_other_settings_is_refused_and_the_table_is_untouched(
    dump: Path, engines: dict, tmp_path: Path, change: tuple, message: str
) -> None:
    out = tmp_path / "s.parquet"
    assert score(dump, engines["onnx"], out, "--decoder", "pil")[0] == 0
    before = out.read_bytes()
    change_dump(dump)
    engine, extra = engines["onnx"], change
    if change == ("--engine-swap",):
        engine, extra = engines["pt"], ()
    if "--decoder" not in extra:
        extra = ("--decoder", "pil", *extra)
    code, _, stderr = score(dump, engine, out, "--update", *extra)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("Error: ") and message in stderr
    assert "--overwrite" in stderr
    assert out.read_bytes() == before and not (tmp_path / "s.parquet.parts").exists()


def test_update_of_a_file_that_is_not_a_scores_table_is_refused(dump: Path, engines: dict, tmp_path: Path) -> None:
    out = tmp_path / "other.parquet"
    pl.DataFrame({"path": ["a.jpg"], "status": ["ok"]}).write_parquet(out)
    before = out.read_bytes()
    code, _, stderr = score(dump, engines["onnx"], out, "--update")
    assert code == 2 and stderr.startswith("Error: ") and "is not a fathombatch scores table" in stderr
    assert out.read_bytes() == before


def test_update_with_overwrite_is_refused_as_contradictory(dump: Path, engines: dict, tmp_path: Path) -> None:
    code, _, stderr = score(dump, engines["onnx"], tmp_path / "s.parquet", "--update", "--overwrite")
    assert code == 2 and stderr.startswith("Error: --update keeps") and "--overwrite" in stderr
    assert not (tmp_path / "s.parquet").exists()


def test_error_rows_are_retried_even_when_the_file_looks_unchanged(dump: Path, engines: dict, tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    new_image(good, seed=5)
    late = dump / "late.png"
    late.write_bytes(b"\0" * good.stat().st_size)  # a file still being copied: its size, but no image yet
    out = tmp_path / "s.parquet"
    assert score(dump, engines["onnx"], out)[0] == 0
    row = pl.read_parquet(out).filter(pl.col("path") == "late.png")
    assert row["status"].item() == "error"
    stamp = late.stat().st_mtime_ns
    shutil.copyfile(good, late)
    os.utime(late, ns=(stamp, stamp))  # same size and mtime: only the retry of error rows can pick it up

    code, stdout, stderr = score(dump, engines["onnx"], out, "--update")
    assert code == 0, stderr
    assert "0 added, 5 rescored, 0 removed, 24 kept" in stdout
    assert pl.read_parquet(out).filter(pl.col("path") == "late.png")["status"].item() == "ok"


def test_a_table_without_file_signatures_is_scored_again_with_a_warning(dump: Path, engines: dict,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    assert score(dump, engines["onnx"], out)[0] == 0
    import pyarrow.parquet as pq

    old = pq.read_table(out)  # as written before tables carried file signatures
    pq.write_table(old.drop_columns(list(SIGNATURE_COLUMNS)), out)
    code, stdout, stderr = score(dump, engines["onnx"], out, "--update")
    assert code == 0, stderr
    assert "0 added, 28 rescored, 0 removed, 0 kept" in stdout
    assert stderr.count("warning: ") == 1 and "every file is scored again" in stderr
    fresh = tmp_path / "fresh.parquet"
    assert score(dump, engines["onnx"], fresh)[0] == 0
    assert_same_table(out, fresh)


def command(root: Path, engine: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fathombatch", "score", str(root), "--engine", str(engine), "--out", str(out),
            "--batch-size", "4", "--part-rows", "4", "--decoder", "pil", "--threads", "1", "--quiet", *extra]


@pytest.mark.slow
def test_kill_9_during_an_update_then_the_same_command_gives_the_same_table(dump: Path, engines: dict,
                                                                            tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    subprocess.run(command(dump, engines["onnx"], out), check=True)
    before = out.read_bytes()
    change_dump(dump)
    for i in range(40):  # enough new files that the update writes several parts after the seed
        new_image(dump / f"more{i:02d}.jpg", seed=200 + i)
    parts = tmp_path / "scores.parquet.parts"
    update = command(dump, engines["onnx"], out, "--update")

    def n_parts() -> int:
        return len(list(parts.glob("part-*.parquet"))) if parts.exists() else 0

    assert run_until(update, lambda: n_parts() >= 1)  # the seed (or more) written
    assert out.read_bytes() == before  # the table is replaced only by a complete new one
    assert run_until(update, lambda: n_parts() >= 4)
    assert out.read_bytes() == before
    run_until(update, lambda: any(tmp_path.glob(".scores.parquet.*.tmp")))  # during the merge, if caught
    final = subprocess.run(update, capture_output=True, text=True, check=False)
    assert final.returncode == 0, final.stderr

    fresh = tmp_path / "fresh.parquet"
    subprocess.run(command(dump, engines["onnx"], fresh), check=True)
    assert_same_table(out, fresh)
    assert not parts.exists() and not list(tmp_path.glob(".*.tmp"))
