"""Outputs of `score` never replace inputs, name files rather than folders, and obey --overwrite (issue 18)."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from fathombatch.backends import manifest_path, open_engine, resolve_engine_path
from fathombatch.cli import cli
from fathombatch.decode import create_decoder
from fathombatch.errors import MAX_THREADS, ManifestError, UsageError
from fathombatch.osd import create_osd
from fathombatch.preprocess import InputSpec


def invoke(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def one_error_line(code: int, err: str, expected: int, text: str) -> None:
    assert code == expected, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and text in lines[0], err


@pytest.fixture()
def dump(dive: Path, tmp_path: Path) -> Path:
    root = tmp_path / "dump"
    shutil.copytree(dive / "images", root)
    return root


@pytest.fixture()
def engine(engines: dict, tmp_path: Path) -> Path:
    dest = tmp_path / "store" / "tiny.onnx"
    dest.parent.mkdir()
    shutil.copy(engines["onnx"], dest)
    shutil.copy(manifest_path(engines["onnx"]), manifest_path(dest))
    return dest


def test_out_and_submission_must_differ(dump: Path, engine: Path, tmp_path: Path) -> None:
    same = tmp_path / "same.parquet"
    code, _, err = invoke("score", dump, "--engine", engine, "--out", same, "--submission", same)
    one_error_line(code, err, 2, "--out and --submission name the same file")
    assert not same.exists()


def test_submission_obeys_overwrite_and_never_replaces_an_image(dump: Path, engine: Path, tmp_path: Path) -> None:
    existing = tmp_path / "keep.csv"
    existing.write_text("my notes\n")
    code, _, err = invoke("score", dump, "--engine", engine, "--out", tmp_path / "a.parquet", "--submission", existing)
    one_error_line(code, err, 1, "keep.csv already exists; pass --overwrite")
    assert existing.read_text() == "my notes\n" and not (tmp_path / "a.parquet").exists()

    image = sorted(dump.glob("*.jpg"))[0]
    before = image.read_bytes()
    code, _, err = invoke("score", dump, "--engine", engine, "--out", tmp_path / "b.parquet", "--submission", image,
                          "--overwrite")
    one_error_line(code, err, 2, "is an image of the dump being scored; outputs never replace inputs")
    assert image.read_bytes() == before

    code, _, _ = invoke("score", dump, "--engine", engine, "--out", tmp_path / "c.parquet", "--submission", existing,
                        "--overwrite")
    assert code == 0 and existing.read_text().startswith("id,categories,osd")


@pytest.mark.parametrize("target", ["engine", "manifest"])
def test_out_never_replaces_the_engine(dump: Path, engine: Path, target: str) -> None:
    victim = engine if target == "engine" else manifest_path(engine)
    before = victim.read_bytes()
    code, _, err = invoke("score", dump, "--engine", engine, "--out", victim, "--overwrite")
    one_error_line(code, err, 2, "is the engine or its manifest; outputs never replace inputs")
    assert victim.read_bytes() == before


def test_out_must_name_a_file(dump: Path, engine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for out in ("newdir/", ".", "/", str(dump)):
        code, _, err = invoke("score", dump, "--engine", engine, "--out", out)
        one_error_line(code, err, 2, "is a folder; name the file to write")
    assert not (tmp_path / "newdir").exists()


def test_an_engine_folder_says_what_it_is_and_a_run_gets_the_export_command_that_works(
    run_dir: Path, dump: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("score", dump, "--engine", run_dir, "--out", tmp_path / "s.parquet")
    one_error_line(code, err, 2, "is a folder, not an engine file: this is a training run; export it first: ")
    command = err.split("export it first: ", 1)[1].split(" (then use the engine ")[0]
    assert command == f"fathombatch export {run_dir} --format onnx --out engines/{run_dir.name}.onnx"
    code, _, err = invoke(*shlex.split(command)[1:])  # the command as given works, and the engine then resolves
    assert code == 0, err
    assert resolve_engine_path(f"{run_dir.name}.onnx") == Path("engines") / f"{run_dir.name}.onnx"

    (tmp_path / "plain.onnx").mkdir()
    with pytest.raises(UsageError, match="is a folder, not an engine file: expected a file ending in"):
        open_engine(tmp_path / "plain.onnx")


def test_a_run_folder_without_best_checkpoint_is_still_named_a_run(tmp_path: Path) -> None:
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(UsageError, match="this is a training run with no checkpoint yet; export it once"):
        resolve_engine_path(run)
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    with pytest.raises(UsageError, match=f"fathombatch export {run} --format onnx --checkpoint last --out"):
        resolve_engine_path(run)
    only_config = tmp_path / "c"
    only_config.mkdir()
    (only_config / "config.json").write_text("{}")
    with pytest.raises(UsageError, match="this is a training run with no checkpoint yet"):
        resolve_engine_path(only_config)


def test_thread_counts_are_bounded(dump: Path, engine: Path, tmp_path: Path) -> None:
    code, _, err = invoke("score", dump, "--engine", engine, "--out", tmp_path / "s.parquet", "--threads", 100000)
    assert code == 2 and f"1<=x<={MAX_THREADS}" in err and not (tmp_path / "s.parquet").exists()
    with pytest.raises(UsageError, match=f"engine threads must be between 1 and {MAX_THREADS}, got 100000"):
        open_engine(engine, threads=100000)
    with pytest.raises(UsageError, match="decoder threads must be between 1 and"):
        create_decoder("pil", InputSpec(height=32, width=32), threads=100000)


def test_knn_statistics_that_are_missing_or_misshapen_are_one_error_line(
    dump: Path, engine: Path, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="needs training statistics"):
        create_osd("knn", {"knn_bank": {"b64": "", "shape": [0, 4]}})
    bank = {"dtype": "float32", "b64": "AACAPwAAgD8=", "shape": [2]}  # two floats, but 1-D
    with pytest.raises(ManifestError, match="osd statistics are misshapen"):
        create_osd("knn", {"knn_bank": bank, "knn_quantiles": bank})
    data = json.loads(manifest_path(engine).read_text())
    data["osd"] = {"method": "knn", "stats": {"knn_bank": bank, "knn_quantiles": bank}}
    manifest_path(engine).write_text(json.dumps(data))
    code, _, err = invoke("score", dump, "--engine", engine, "--out", tmp_path / "s.parquet")
    one_error_line(code, err, 1, "osd statistics are misshapen")


def test_names_that_are_not_utf8_keep_one_row_each_and_resolve_back(dump: Path, engine: Path, tmp_path: Path) -> None:
    import os

    import polars as pl

    from fathombatch.curate.select import SelectConfig, run_select
    from fathombatch.scoring import ScoreConfig, score_folder

    first = sorted(dump.glob("*.jpg"))[0]
    shutil.copy(first, os.path.join(os.fsencode(dump), b"latin1_\xe9.jpg"))  # the byte 0xE9: not UTF-8
    shutil.copy(first, dump / "latin1_\\xe9.jpg")  # the four characters \ x e 9, once spelled the same
    shutil.copy(first, dump / "back\\slash.jpg")
    summary = score_folder(ScoreConfig(root=dump, engine=engine, out=tmp_path / "s.parquet"))
    table = pl.read_parquet(tmp_path / "s.parquet")
    assert table.height == summary.files and table["path"].is_unique().all() and summary.errors == 0
    assert {"latin1_\\xe9.jpg", "latin1_\\\\xe9.jpg", "back\\\\slash.jpg"} <= set(table["path"])

    result = run_select(SelectConfig(scores=tmp_path / "s.parquet", out=tmp_path / "sel.parquet",
                                     copy_to=tmp_path / "copies"))
    assert result.not_placed == () and result.placed == table.height
    copied = {os.fsencode(p.name) for p in (tmp_path / "copies").rglob("*.jpg")}
    assert {b"latin1_\xe9.jpg", b"latin1_\\xe9.jpg", b"back\\slash.jpg"} <= copied


def test_ctrl_c_that_a_native_library_turns_into_its_own_error_still_exits_130(
    dump: Path, engine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal

    import fathombatch.scoring as score_module

    def polars_like(*args: object, **kwargs: object) -> None:
        try:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, delivered while "native code" runs
        except KeyboardInterrupt:
            raise RuntimeError("polars: ComputeError while collecting") from None  # what the user used to see

    monkeypatch.setattr(score_module, "score_folder", polars_like)
    code, _, err = invoke("score", dump, "--engine", engine, "--out", tmp_path / "s.parquet")
    assert code == 130
    assert err.strip() == "Error: interrupted; finished work is saved - run the same command again to resume"
    monkeypatch.undo()
    code, _, _ = invoke("score", dump, "--engine", engine, "--out", tmp_path / "s.parquet")
    assert code == 0  # the next command is not taken for interrupted
