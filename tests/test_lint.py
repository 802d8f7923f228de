"""The lint gate: ruff (with the project's rule set) and mypy pass, and ``make test`` runs both before pytest."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed (it comes with the 'dev' extra)")


def test_the_ruff_rule_set_covers_bugbear_pyupgrade_simplify_and_blind_except() -> None:
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert {"E", "F", "B", "UP", "SIM", "BLE"} <= set(config["tool"]["ruff"]["lint"]["select"])
    assert config["tool"]["mypy"]["warn_unused_ignores"] is True


def test_ruff_finds_nothing() -> None:
    _tool("ruff")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "fathombatch", "tests", "benchmarks"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.slow
def test_mypy_finds_nothing_in_the_package() -> None:
    _tool("mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy", "fathombatch"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_make_test_runs_ruff_and_mypy_before_pytest() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    proc = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True)
    steps = [line for line in proc.stdout.splitlines() if "ruff check" in line or "mypy" in line or "pytest" in line]
    assert [s.split("/")[-1].split()[0] for s in steps] == ["ruff", "mypy", "python"], steps
