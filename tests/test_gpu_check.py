"""Issue 14: the GPU check's harness, as far as a machine without a GPU can show it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from fathombatch.gpu import cuda_device_count

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(cuda_device_count() > 0, reason="checks what a machine without a GPU records")
def test_gpu_check_without_a_gpu_exits_0_with_every_part_skipped(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--budget-s", "60", "--wheelhouse",
                           str(tmp_path / "no-wheels")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert result["complete"] is True
    assert result["wheelhouse"]["status"] == "missing" and "make gpu-wheels" in result["wheelhouse"]["reason"]
    pre = result["preflight"]
    assert pre["cuda_available"] is False and pre["python"] == sys.version.split()[0]
    assert pre["modules"]["fathombatch"]["present"] is True
    assert {"gpu tests", "bench prepare", "bench e2e-nvjpeg", "bench e2e-pil"} <= set(result["parts"])
    for name, part in result["parts"].items():
        assert part["status"] == "skipped" and "no CUDA GPU" in part["reason"], name
    assert result["targets"]["nvjpeg"]["met"] is None


def test_wheelhouse_over_its_budget_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "big-1.0-py3-none-any.whl").write_bytes(b"\0" * (2 * 2**20))
    cmd = [sys.executable, str(REPO / "benchmarks" / "wheelhouse.py"), str(tmp_path), "--max-mib"]
    over = subprocess.run([*cmd, "1"], capture_output=True, text=True, check=False)
    assert over.returncode == 1 and over.stderr.startswith("Error: ") and "over the 1 MiB budget" in over.stderr
    within = subprocess.run([*cmd, "60"], capture_output=True, text=True, check=False)
    assert within.returncode == 0 and "2.00 MiB  total in 1 wheels" in within.stdout


def test_make_gpu_wheels_downloads_for_the_gpu_image_into_an_ignored_wheelhouse() -> None:
    recipe = subprocess.run(["make", "-n", "gpu-wheels", "PYTHON=python3"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout
    for flag in ("pip download", "--python-version 3.12", "--platform manylinux2014_x86_64",
                 "--platform manylinux_2_17_x86_64", "--only-binary=:all:", "--no-deps", "-r benchmarks/gpu-wheels.txt",
                 "benchmarks/wheelhouse.py wheelhouse --max-mib 60"):
        assert flag in recipe, flag
    ignored = subprocess.run(["git", "check-ignore", "-q", "wheelhouse/polars.whl"], cwd=REPO, check=False)
    assert ignored.returncode == 0


def _names(line: str) -> set[str]:
    return {re.sub(r"[-_.]+", "-", n).lower() for n in line.split()}


def _comment(text: str, prefix: str) -> str:
    lines = [ln[len(prefix):] for ln in text.splitlines() if ln.startswith(prefix)]
    assert len(lines) == 1, prefix
    return lines[0]


def test_every_dependency_is_on_the_gpu_image_in_the_wheelhouse_or_left_out_with_a_reason() -> None:
    text = (REPO / "benchmarks" / "gpu-wheels.txt").read_text()
    wheels = {re.sub(r"[-_.]+", "-", re.split(r"[<>=!~ ;\[]", ln, maxsplit=1)[0]).lower()
              for ln in text.splitlines() if ln.strip() and not ln.startswith("#")}
    image = _names(_comment(text, "# on the image: "))
    left_out = _names(_comment(text, "# left out: "))
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name = re.sub(r"[-_.]+", "-", re.split(r"[<>=!~ ;\[]", dep, maxsplit=1)[0]).lower()
        assert name in wheels | image | left_out, name
    assert {"polars", "polars-runtime-32", "pytest-timeout", "pywavelets"} <= wheels
