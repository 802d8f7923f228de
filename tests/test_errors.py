"""Library errors name parameters, never command-line flags; the CLI spells each parameter as the option that sets it,
so the user's ``Error:`` line names the flag."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fathombatch.cli.kit import option_name
from fathombatch.engine_export import ExportConfig, export_run
from fathombatch.errors import OutputError, UsageError, param

PACKAGE = Path(__file__).resolve().parents[1] / "fathombatch"
#: The parts of the library whose errors already name parameters (the rest follow as their owners move them).
PARAMETER_NAMING = ("backends", "engine_export", "models", "errors.py")


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
    from fathombatch.cli import cli

    result = CliRunner().invoke(cli, ["export", str(run_dir), "--format", "pt", "--precision", "int8",
                                      "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["Error: --precision int8 is not available for --format pt; choose fp32"]


def _raised_strings(path: Path) -> list[str]:
    """The literal text of every ``raise`` in a module: its string pieces (f-string parts included), joined."""
    return ["".join(c.value for c in ast.walk(node.exc) if isinstance(c, ast.Constant) and isinstance(c.value, str))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Raise) and node.exc is not None]


@pytest.mark.parametrize("part", PARAMETER_NAMING)
def test_library_error_messages_name_no_flag(part: str) -> None:
    # A whole command suggested to the user ("rebuild it: fathombatch build-engine M.onnx --out X") may name its flags.
    files = [PACKAGE / part] if part.endswith(".py") else sorted((PACKAGE / part).rglob("*.py"))
    found = [f"{f.name}: {text!r}" for f in files for text in _raised_strings(f)
             if re.search(r"(?<![\w-])--[a-z]", text.split("fathombatch ")[0])]
    assert found == []


def test_a_training_error_line_names_the_flag(dive: Path, tmp_path: Path) -> None:
    from fathombatch.cli import cli

    result = CliRunner().invoke(cli, ["train", "--images", str(dive / "images"), "--labels", str(dive / "train.csv"),
                                      "--batch-size", "1", "--epochs", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --batch-size must be at least 2, got 1: batch normalisation")
