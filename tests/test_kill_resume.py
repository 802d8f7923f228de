"""Issue 5: kill -9 at many points (including the final merge), then the same command; and concurrent runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from fathombatch.taxonomy import fathomnet2023

NAMES = list(fathomnet2023().names)


@pytest.fixture(scope="module")
def big_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,200 tiny JPEGs and a few broken files: enough rows that the final merge takes a visible moment."""
    root = tmp_path_factory.mktemp("big") / "dump"
    rng = np.random.default_rng(0)
    for i in range(1200):
        folder = root / f"dive{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, size=(24, 32, 3), dtype=np.uint8)).save(folder / f"f{i:05d}.jpg")
    (root / "dive0" / "zero.jpg").write_bytes(b"")
    (root / "dive1" / "text.png").write_text("not an image")
    return root


def command(root: Path, engine: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "fathombatch", "score", str(root), "--engine", str(engine), "--out", str(out),
            "--batch-size", "16", "--part-rows", "32", "--decoder", "pil", "--threads", "1", "--quiet"]


def run_until(cmd: list[str], condition: Callable[[], bool], timeout: float = 120) -> bool:
    """Start cmd, SIGKILL it as soon as condition() holds; True if it was killed, False if it finished first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if condition():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.001)
    proc.wait()
    return False


@pytest.mark.slow
def test_kill_9_at_many_points_then_rerun_equals_an_uninterrupted_run(big_dump: Path, engines: dict,
                                                                       tmp_path: Path) -> None:
    reference = tmp_path / "reference.parquet"
    subprocess.run(command(big_dump, engines["onnx"], reference), check=True)

    out = tmp_path / "scores.parquet"
    parts = tmp_path / "scores.parquet.parts"
    cmd = command(big_dump, engines["onnx"], out)

    def n_parts() -> int:
        return len(list(parts.glob("part-*.parquet"))) if parts.exists() else 0

    started = time.monotonic()
    kills = [
        ("while starting, before any part", lambda: time.monotonic() - started > 1.0),
        ("after the first part", lambda: n_parts() >= 1),
        ("a third of the way", lambda: n_parts() >= 12),
        ("two thirds of the way", lambda: n_parts() >= 25),
        ("near the end", lambda: n_parts() >= 36),
        ("during the final merge", lambda: any(tmp_path.glob(".scores.parquet.*.tmp"))),
    ]
    killed = []
    for name, condition in kills:
        started = time.monotonic()
        if run_until(cmd, condition):
            killed.append(name)
        assert not out.exists() or name == "during the final merge" or parts.exists()
    assert "during the final merge" in killed, killed
    assert len(killed) >= 5, killed

    final = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert final.returncode == 0, final.stderr
    a, b = pl.read_parquet(out), pl.read_parquet(reference)
    assert a.height == b.height == 1202 and a["path"].n_unique() == a.height
    assert a.drop(NAMES).equals(b.drop(NAMES))
    np.testing.assert_allclose(a.select(NAMES).to_numpy(), b.select(NAMES).to_numpy(), atol=1e-6)
    assert not parts.exists() and not list(tmp_path.glob(".*.tmp")) and not (tmp_path / "scores.parquet.lock").exists()


@pytest.mark.slow
def test_a_second_run_on_the_same_output_is_refused(big_dump: Path, engines: dict, tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    first = subprocess.Popen(command(big_dump, engines["onnx"], out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (tmp_path / "s.parquet.parts").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    second = subprocess.run(command(big_dump, engines["onnx"], out), capture_output=True, text=True, check=False)
    assert second.returncode == 1
    assert second.stderr.strip().startswith("Error: ")
    assert "being written by another fathombatch process" in second.stderr
    assert first.wait(timeout=120) == 0
    table = pl.read_parquet(out)
    assert table.height == 1202 and table["path"].n_unique() == 1202
