from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fathombatch.backends import manifest_path
from fathombatch.cli import cli


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help_with_an_example(command: str) -> None:
    code, out, _ = invoke(command, "--help")
    assert code == 0
    assert cli.commands[command].help and "Example" in out


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = [(prefix, group)]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _all_commands(command, (*prefix, name))
        else:
            found.append(((*prefix, name), command))
    return found


def test_help_examples_use_only_engines_that_exist_after_make_demo_or_the_example_itself() -> None:
    """An example naming `densenet121.onnx` fails on a fresh clone: an engine must be the one `make demo` exports,
    or one that an earlier line of the same example writes."""
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    demo = {Path(p).name for p in re.findall(r"export \S+ .*--out engines/(\S+)", makefile)}
    assert demo
    checked = 0
    for path, command in _all_commands(cli):
        help_text = command.get_help(click.Context(command, info_name=" ".join(("fathombatch", *path))))
        example = help_text.split("Example", 1)[1].split("Options:", 1)[0] if "Example" in help_text else ""
        made = set(demo)
        for line in example.replace("\\\n", " ").splitlines():
            words = line.split()
            used = [b for a, b in itertools.pairwise(words) if a == "--engine"]
            if words[1:2] == ["build-engine"]:
                used.append(words[2])
            for engine in used:
                assert Path(engine).name in made, f"{' '.join(path)} --help: {engine} ({line.strip()})"
                checked += 1
            made |= {Path(b).name for a, b in itertools.pairwise(words) if a == "--out"}
    assert checked >= 8  # score, bench, build-engine, dedupe and the group's own examples name engines


def test_python_dash_m_works() -> None:
    proc = subprocess.run([sys.executable, "-m", "fathombatch", "--version"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0 and "fathombatch" in proc.stdout


def test_end_to_end_through_the_cli(dive: Path, engines: dict, tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    code, stdout, stderr = invoke("score", dive / "images", "--engine", engines["onnx"], "--out", out,
                                  "--submission", tmp_path / "sub.csv", "--quiet")
    assert code == 0, stderr
    assert "Scored 24 files: 24 ok, 0 errors" in stdout and out.is_file()
    code, stdout, stderr = invoke("evaluate", out, "--truth", dive / "train.csv", "--osd-truth", dive / "osd.csv",
                                  "--report", tmp_path / "rep")
    assert code == 0, stderr
    assert "MAP@20:" in stdout and "prior floor:" in stdout and "sAUC:" in stdout
    assert json.loads((tmp_path / "rep" / "metrics.json").read_text())["n_truth_images"] == 24


def test_bad_files_in_a_dump_exit_zero_and_are_counted(dive: Path, engines: dict, tmp_path: Path) -> None:
    root = tmp_path / "dump"
    shutil.copytree(dive / "images", root)
    (root / "zero.jpg").write_bytes(b"")
    (root / "page.png").write_text("<html><body>Not Found</body></html>")
    code, stdout, stderr = invoke("score", root, "--engine", engines["onnx"], "--out", tmp_path / "s.parquet", "-q")
    assert code == 0, stderr
    assert "Scored 26 files: 24 ok, 2 errors" in stdout
    assert "1 x empty file (0 bytes)" in stdout and "1 x an HTML file, not an image" in stdout


def test_score_warns_on_stderr_that_error_rows_carry_the_prior(dive: Path, engines: dict, tmp_path: Path) -> None:
    root = tmp_path / "dump"
    shutil.copytree(dive / "images", root)
    (root / "zero.jpg").write_bytes(b"")
    code, stdout, stderr = invoke("score", root, "--engine", engines["onnx"], "--out", tmp_path / "s.parquet",
                                  "--submission", tmp_path / "sub.csv", "-q")
    assert code == 0, stderr
    assert "warning" not in stdout
    assert stderr.splitlines() == [
        ("warning: 1 file(s) could not be scored; their submission rows carry the prior ranking (the engine's "
         "training class frequencies) and osd 1.0")
    ]
    assert (tmp_path / "sub.csv").read_text().splitlines()[-1].endswith(",1.0")  # zero.jpg sorts last


def test_synth_command(tmp_path: Path) -> None:
    code, stdout, _ = invoke("synth", tmp_path / "d", "--images", "3", "--size", "64x48", "--quiet")
    assert code == 0 and "Wrote 3 images" in stdout
    assert len(list((tmp_path / "d" / "images").iterdir())) == 3
    code, _, stderr = invoke("synth", tmp_path / "e", "--size", "big")
    assert code == 2 and "expected WIDTHxHEIGHT" in stderr


def one_line_error(code: int, stderr: str, expected_code: int, text: str) -> None:
    assert code == expected_code, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and text in lines[0], stderr
    assert "Traceback" not in stderr


def test_user_errors_are_one_line(dive: Path, engines: dict, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = invoke("score", tmp_path / "missing", "--engine", engines["onnx"])
    one_line_error(code, err, 2, "does not exist")
    code, _, err = invoke("score", tmp_path / "empty", "--engine", engines["onnx"])
    one_line_error(code, err, 2, "no .jpg, .jpeg, .png, .tif or .tiff images")

    bare = tmp_path / "bare.onnx"
    shutil.copy(engines["onnx"], bare)
    code, _, err = invoke("score", dive / "images", "--engine", bare, "--out", tmp_path / "s.parquet")
    one_line_error(code, err, 1, "has no manifest")

    wrong = tmp_path / "wrong.onnx"
    shutil.copy(engines["onnx"], wrong)
    data = json.loads(manifest_path(engines["onnx"]).read_text())
    data.update(classes=data["classes"][:5], num_classes=5, class_counts=None, thresholds=None)
    manifest_path(wrong).write_text(json.dumps(data))
    code, _, err = invoke("score", dive / "images", "--engine", wrong, "--out", tmp_path / "s.parquet")
    one_line_error(code, err, 1, "manifest lists 5 classes")

    bad_labels = tmp_path / "labels.csv"
    bad_labels.write_text("id,categories\nx,[1.0]\ny,[400.0]\n")
    code, _, err = invoke("train", "--images", dive / "images", "--labels", bad_labels, "--out", tmp_path / "r")
    one_line_error(code, err, 1, "labels.csv, line 3: unknown category id 400")

    code, _, err = invoke("export", tmp_path / "empty", "--out", tmp_path / "m.onnx")
    one_line_error(code, err, 2, "has no checkpoint")

    code, _, err = invoke("evaluate", tmp_path / "none.parquet", "--truth", dive / "train.csv")
    one_line_error(code, err, 2, "does not exist")


def test_models_lists_the_registry() -> None:
    code, out, _ = invoke("models")
    assert code == 0
    for name in ("resnet18", "densenet121", "efficientnet_lite0", "logreg", "mlp"):
        assert name in out


def test_evaluate_refuses_the_runs_own_submission_and_warns_on_stderr(dive: Path, engines: dict,
                                                                       tmp_path: Path) -> None:
    table, sub = tmp_path / "s.parquet", tmp_path / "submission.csv"
    code, _, stderr = invoke("score", dive / "images", "--engine", engines["onnx"], "--out", table,
                             "--submission", sub, "--quiet")
    assert code == 0, stderr
    code, _, err = invoke("evaluate", table, "--truth", sub)
    one_line_error(code, err, 2, "is not truth: its category lists are the evaluated predictions' own top_categories")

    code, stdout, stderr = invoke("evaluate", table, "--truth", dive / "train.csv")
    assert code == 0, stderr
    assert "MAP@20:" in stdout and "warning" not in stdout
    assert any(line.startswith("warning: ") and "truth images were used to train the engine 'tiny'" in line
               for line in stderr.splitlines()), stderr

    code, stdout, stderr = invoke("evaluate", sub, "--truth", dive / "train.csv")
    assert code == 0, stderr
    assert "MAP@20:" in stdout and "Images: 24 in truth, 24 scored" in stdout


def test_logged_warnings_read_like_the_commands_own() -> None:
    import logging

    from fathombatch.cli.kit import LogFormatter

    record = logging.LogRecord("fathombatch.models.checks", logging.WARNING, __file__, 1, "%d of 40 images", (20,),
                               None)
    assert LogFormatter(verbose=False).format(record) == "warning: 20 of 40 images"
    assert LogFormatter(verbose=True).format(record) == "warning [fathombatch.models.checks]: 20 of 40 images"


def test_packaged_label_names_work_from_any_folder(dive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fathombatch.labels import read_labels
    from fathombatch.packaged import resolve_data_path

    shipped = read_labels(resolve_data_path("fathomnet2023:train.csv"))
    sub = tmp_path / "sub.csv"
    sub.write_text("id,categories,osd\n" + "".join(f"{i},1 2 3,0.5\n" for i in shipped.image_ids[:3]))
    monkeypatch.chdir(tmp_path)  # not the repository root: the short name must not depend on the folder
    code, stdout, stderr = invoke("evaluate", "sub.csv", "--truth", "fathomnet2023:train.csv")
    assert code == 0, stderr
    assert f"Images: {len(shipped)} in truth, 3 scored" in stdout

    code, stdout, stderr = invoke("curate", "dedupe", dive / "images", "--labels", "fathomnet2023:train.csv",
                                  "--out", "dupes", "--quiet")
    assert code == 0, stderr
    assert (tmp_path / "dupes" / "clusters.csv").is_file()
