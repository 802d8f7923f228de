"""The curate commands through click: help texts, the docs/curation.md workflow, and the error convention."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import click
import polars as pl
import pytest
from pycocotools.coco import COCO

from fathombatch.cli import cli
from fathombatch.cli.curate import curate, download
from tests.test_curate_common import invoke, make_scores


@pytest.fixture(scope="module")
def app() -> click.Group:
    """The `fathombatch` command line, which carries both commands."""
    assert cli.commands["curate"] is curate and cli.commands["download"] is download
    return cli


@pytest.mark.parametrize("command", [*(f"curate {c}" for c in sorted(curate.commands)), "curate", "download"])
def test_every_command_has_help_with_an_example(app: click.Group, command: str) -> None:
    code, out, _ = invoke(app, *command.split(), "--help")
    assert code == 0 and "Example" in out and "fathombatch " in out.split("Example", 1)[1]


def test_the_documented_workflow_runs_end_to_end(app: click.Group, dive: Path, tmp_path: Path) -> None:
    """docs/curation.md: score -> review queue -> split -> subset for training (scores faked for speed)."""
    scores = make_scores(dive / "images", tmp_path / "scores.parquet")
    code, out, err = invoke(app, "curate", "review", scores, "--n", "12", "--strategy", "uncertain",
                            "--out", tmp_path / "review", "-q")
    assert code == 0, err
    assert "Queue of 12 images (uncertain, default thresholds)" in out
    assert (tmp_path / "review" / "index.html").is_file()
    assert err.splitlines() == [("warning: the engine manifest has no per-class thresholds; every class uses 0.5 "
                                 "(export the engine again, or pass a global threshold)")]

    code, out, err = invoke(app, "curate", "split", dive / "annotations.json", "--val", "0.25", "--seed", "0",
                            "--out", tmp_path / "split")
    assert code == 0, err
    assert "split: " in out and "coverage.md" in out

    code, out, err = invoke(app, "curate", "select", scores, "--min-osd", "0", "--limit", "8",
                            "--out", tmp_path / "keep.csv", "-q")
    assert code == 0 and "Selected 8 rows" in out, err
    code, out, err = invoke(app, "curate", "subset", tmp_path / "split" / "train.json", "--from-select",
                            tmp_path / "keep.csv", "--out", tmp_path / "train-reviewed.json")
    assert code == 0, err
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "train-reviewed.json"))
    train = json.loads((tmp_path / "split" / "train.json").read_text())
    train_stems = {Path(i["file_name"]).stem for i in train["images"]}
    keep = set(pl.read_csv(tmp_path / "keep.csv")["image_id"])
    assert {Path(i["file_name"]).stem for i in coco.dataset["images"]} == keep & train_stems

    for args in (["stats", dive / "train.csv", "--out", tmp_path / "stats"],
                 ["convert", dive / "annotations.json", "--out", tmp_path / "labels.csv"],
                 ["dedupe", dive / "images", "--out", tmp_path / "dupes", "-q"],
                 ["validate", dive / "annotations.json", "--images", dive / "images"]):
        code, out, err = invoke(app, "curate", *args)
        assert code == 0, (args, err)
    assert "No problems found." in out


def test_library_errors_become_one_error_line_and_the_exit_code(app: click.Group, dive: Path, tmp_path: Path) -> None:
    scores = make_scores(dive / "images", tmp_path / "scores.parquet")
    code, _, err = invoke(app, "curate", "select", scores, "--category", "Sebastez", "--out", tmp_path / "s.csv")
    assert code == 2
    assert err.splitlines() == [
        "Error: unknown category 'Sebastez' in taxonomy 'fathomnet2023'; did you mean 'Sebastes', 'Sebastolobus'?"
    ]

    bad = tmp_path / "bad.json"
    data = json.loads((dive / "annotations.json").read_text())
    data["annotations"][0]["bbox"] = [0, 0, 0, 0]
    bad.write_text(json.dumps(data))
    code, out, err = invoke(curate, "validate", bad, "--out", tmp_path / "p.csv")
    assert code == 1 and "1 bad-box" in out and "annotations[0]: bbox [0, 0, 0, 0] has no area" in out
    assert err.splitlines() == [f"Error: {bad} has 1 problem(s); full list in {tmp_path / 'p.csv'}"]

    code, _, err = invoke(curate, "convert", dive / "train.csv", "--out", tmp_path / "x.csv")
    assert code == 2 and err.startswith("Error: ") and len(err.splitlines()) == 1

    code, _, err = invoke(curate, "review", scores, "--strategy", "disagree", "--out", tmp_path / "r")
    assert code == 2
    assert err.splitlines() == ["Error: --strategy disagree compares two tables; pass --other SCORES2.parquet"]

    code, _, err = invoke(curate, "review", scores, "--strategy", "rare", "--threshold", "0.3", "--out", tmp_path / "t")
    assert code == 2
    assert err.splitlines() == ["Error: --threshold applies only to --strategy uncertain, not to --strategy rare"]
    assert not (tmp_path / "t").exists()  # refused before any work


@pytest.mark.parametrize("module", ["curate", "exports", "kit", "score", "train", "evaluate", "tools"])
def test_each_cli_module_imports_alone_without_a_cycle(module: str) -> None:
    # The package's __init__ registers every command group; a group importing it back would fail here.
    code = f"import fathombatch.cli.{module}"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
