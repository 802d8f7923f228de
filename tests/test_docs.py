"""The documented commands run as written: README and quickstart after the demo, and the real-data walkthrough on a
synthetic COCO file served from 127.0.0.1.

Commands are read from the docs themselves (every ``fathombatch ...`` line of a fenced code block), so a doc that
drifts from the code fails here.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Appended to every documented ``train`` in the walkthrough: the same command, small enough for CI.
TRAIN_SMALL = ["--epochs", "2", "--img-size", "64", "--batch-size", "16"]
#: The first line of a code block that needs an NVIDIA GPU; the docs show such blocks, CI cannot run them.
GPU_MARK = "# NVIDIA GPU only"


def doc_commands(path: Path, *, gpu: bool = True) -> list[list[str]]:
    """Every ``fathombatch`` command in the fenced code blocks of ``path``, continuation lines joined, comments cut.

    ``gpu=False`` leaves out the blocks that start with :data:`GPU_MARK`.
    """
    commands: list[list[str]] = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M):
        if not gpu and block.startswith(GPU_MARK):
            continue
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["fathombatch"]:
                commands.append(words)
    return commands


def makefile_demo() -> list[list[str]]:
    """The ``demo`` target's fathombatch commands, as a user would type them (``$(FB)`` and ``$(DEMO)`` expanded)."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    recipe = text.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    return [shlex.split(line.strip().replace("$(FB)", "fathombatch").replace("$(DEMO)", "demo"))
            for line in recipe.splitlines() if line.strip().startswith("$(FB)")]


def run(words: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run one documented command with this interpreter, in ``cwd``; fail the test with its output if it fails."""
    proc = subprocess.run([sys.executable, "-m", "fathombatch", *words[1:]], cwd=cwd, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, f"`{shlex.join(words)}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def without_quiet(commands: list[list[str]]) -> list[list[str]]:
    return [[w for w in c if w != "--quiet"] for c in commands]


def test_doc_commands_are_read_with_continuations_and_comments() -> None:
    commands = doc_commands(ROOT / "README.md")
    train = next(c for c in commands if c[1] == "train" and "--images" in c)
    assert train[train.index("--out") + 1] == "runs/lite0"  # the continuation line was joined
    assert all("#" not in w for c in commands for w in c)
    assert len(makefile_demo()) >= 6


def test_quickstart_shows_exactly_the_demo_commands() -> None:
    demo = without_quiet(makefile_demo())
    shown = doc_commands(ROOT / "docs" / "quickstart.md")[: len(demo)]
    assert shown == demo


def test_data_readme_lists_only_shipped_files() -> None:
    folder = ROOT / "fathombatch" / "data" / "fathomnet2023"
    listed = set(re.findall(r"^\| `([^`]+)` \|", (folder / "README.md").read_text(encoding="utf-8"), flags=re.M))
    shipped = {p.name for p in folder.iterdir() if p.suffix == ".csv"}
    assert listed == shipped


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the demo, the tour and the quickstart: 276 s on 2 cores (2026-11-30)
def test_readme_and_quickstart_commands_run_after_the_demo(tmp_path: Path) -> None:
    demo = makefile_demo()
    for words in demo:
        run(words, tmp_path)
    done = without_quiet(demo)
    for doc in (ROOT / "README.md", ROOT / "docs" / "quickstart.md"):
        for words in doc_commands(doc):
            if words not in done:
                run(words, tmp_path)
                done.append(words)
    assert (tmp_path / "dive" / "report" / "report.html").is_file()
    assert pl.read_parquet(tmp_path / "dive7-int8.parquet").height == 200


class _Server:
    """A web server on 127.0.0.1 serving ``root``, as FathomNet serves ``coco_url``s."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[_Server]:
    server = _Server(tmp_path / "web")
    yield server
    server.close()


def _kaggle_coco(dive: Path, web: Path, url: str, *, labelled: bool) -> dict:
    """The dive's COCO file as Kaggle ships it: images carry a coco_url (served from ``web``), eval has no labels."""
    data = json.loads((dive / "annotations.json").read_text(encoding="utf-8"))
    web.mkdir(parents=True, exist_ok=True)
    for image in data["images"]:
        (web / image["file_name"]).write_bytes((dive / "images" / image["file_name"]).read_bytes())
        image["coco_url"] = f"{url}/{web.name}/{image['file_name']}"
    if not labelled:
        del data["annotations"]  # an evaluation set: images to fetch, no labels
    return data


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_walkthrough_runs_on_a_synthetic_coco_file_served_locally(tmp_path: Path, served: _Server) -> None:
    for name, n, deep in (("train-dive", 80, "0"), ("eval-dive", 30, "0.5")):
        run(["fathombatch", "synth", name, "--images", str(n), "--seed", "3", "--size", "320x180",
             "--box-scale", "2.5", "--deep-fraction", deep, "--quiet"], tmp_path)
    coco = tmp_path / "fathomnet" / "object_detection"
    coco.mkdir(parents=True)
    for name, dive, labelled in (("train.json", "train-dive", True), ("eval.json", "eval-dive", False)):
        data = _kaggle_coco(tmp_path / dive, tmp_path / "web" / dive, served.url, labelled=labelled)
        (coco / name).write_text(json.dumps(data), encoding="utf-8")

    walkthrough = ROOT / "docs" / "walkthrough.md"
    commands = doc_commands(walkthrough, gpu=False)
    gpu_only = [c for c in doc_commands(walkthrough) if c not in commands]
    assert any("cuda" in c for c in gpu_only) and any("build-engine" in c for c in gpu_only)
    assert not any("cuda" in c or "build-engine" in c for c in commands)
    for words in commands:
        run(words + TRAIN_SMALL if words[1] == "train" else words, tmp_path)

    split_val = json.loads((tmp_path / "fathomnet" / "split" / "val.json").read_text(encoding="utf-8"))
    val = pl.read_parquet(tmp_path / "val-scores.parquet")
    assert val.height == len(split_val["images"]) > 0
    assert (tmp_path / "val-report" / "report.html").is_file()
    submission = pl.read_csv(tmp_path / "submission.csv")
    assert submission.columns == ["id", "categories", "osd"]
    assert submission.height == 30
