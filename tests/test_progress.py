"""Issue 16: progress outside a terminal is a plain status line every few seconds, and --quiet silences it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import fathombatch.progress as progress_module
from fathombatch.cli import cli
from fathombatch.progress import Progress


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_status_lines_come_at_most_every_interval_without_control_characters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = FakeClock()
    progress = Progress(interval=5.0, clock=clock)
    with progress.task("Scoring", 10, show_errors=True) as task:
        for step in range(10):
            clock.now += 2.0  # a step every 2 s: a line after steps 3, 6 and 9 (6 s, 12 s, 18 s)
            if step == 4:
                task.update(errors=1)
            task.advance()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines == [
        "Scoring: 3/10 img (30%), 0.5 img/s, 6 s, about 14 s left, errors: 0",
        "Scoring: 6/10 img (60%), 0.5 img/s, 12 s, about 8 s left, errors: 1",
        "Scoring: 9/10 img (90%), 0.5 img/s, 18 s, about 2 s left, errors: 1",
        "Scoring: 10/10 img (100%), 0.5 img/s, 20 s, errors: 1",
    ]
    assert "\r" not in err and "\x1b" not in err


def test_a_step_shorter_than_the_interval_prints_nothing_and_quiet_prints_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = FakeClock()
    with Progress(interval=5.0, clock=clock).task("Hashing", None, unit="file") as task:
        clock.now += 4.0
        task.advance(7)
    with Progress(enabled=False, interval=0.0, clock=clock).task("Hashing", 3) as task:
        clock.now += 60.0
        task.advance(3)
    assert capsys.readouterr().err == ""


def test_unknown_total_counts_without_a_percentage(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    with Progress(interval=1.0, clock=clock).task("Downloading", None, unit="file") as task:
        clock.now += 2.0
        task.advance(4)
    assert capsys.readouterr().err.splitlines()[0] == "Downloading: 4 file, 2.0 file/s, 2 s"


def test_cli_prints_status_lines_when_stderr_is_not_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "STATUS_INTERVAL", 0.0)  # a line at every step, whatever the speed
    result = CliRunner().invoke(cli, ["synth", str(tmp_path / "a"), "--images", "3", "--size", "64x48"])
    assert result.exit_code == 0, result.stderr
    assert [line.split(",")[0] for line in result.stderr.splitlines()] == [
        "Synthesising: 1/3 img (33%)", "Synthesising: 2/3 img (67%)", "Synthesising: 3/3 img (100%)",
    ]  # no closing line repeating the last one
    quiet = CliRunner().invoke(cli, ["synth", str(tmp_path / "b"), "--images", "3", "--size", "64x48", "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def status_steps(stderr: str) -> set[str]:
    """The step names of the status lines in a command's stderr (``Step: done/total ...``)."""
    return {line.split(":")[0] for line in stderr.splitlines() if "/s, " in line}


def test_train_and_export_report_their_long_steps_outside_a_terminal(
    dive: Path, run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress_module, "STATUS_INTERVAL", 0.0)
    train = ["train", "--images", str(dive / "images"), "--labels", str(dive / "train.csv"), "--arch", "mlp",
             "--epochs", "2", "--img-size", "16"]
    result = CliRunner().invoke(cli, [*train, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.stderr
    assert {"Decoding training images", "Epoch 1/2", "Epoch 2/2"} <= status_steps(result.stderr)
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    quiet = CliRunner().invoke(cli, [*train, "--out", str(tmp_path / "q"), "--quiet"])
    assert quiet.exit_code == 0 and status_steps(quiet.stderr) == set()

    export = ["export", str(run_dir), "--format", "onnx", "--precision", "int8"]
    result = CliRunner().invoke(cli, [*export, "--out", str(tmp_path / "e.onnx")])
    assert result.exit_code == 0, result.stderr
    assert {"Decoding held-out images", "Decoding calibration images"} <= status_steps(result.stderr)
    quiet = CliRunner().invoke(cli, ["export", str(run_dir), "--out", str(tmp_path / "q.onnx"), "--quiet"])
    assert quiet.exit_code == 0 and status_steps(quiet.stderr) == set()


def test_score_and_dedupe_report_their_long_steps_outside_a_terminal(
    dive: Path, engines: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress_module, "STATUS_INTERVAL", 0.0)
    result = CliRunner().invoke(cli, ["score", str(dive / "images"), "--engine", str(engines["onnx"]), "--out",
                                      str(tmp_path / "s.parquet")])
    assert result.exit_code == 0, result.stderr
    scoring = [line for line in result.stderr.splitlines() if line.startswith("Scoring: ")]
    assert scoring and scoring[-1].startswith("Scoring: 24/24 img (100%)") and scoring[-1].endswith("errors: 0")
    result = CliRunner().invoke(cli, ["curate", "dedupe", str(dive / "images"), "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.stderr
    assert "Hashing" in status_steps(result.stderr)
