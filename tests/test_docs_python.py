"""docs/python.md runs as written: its shell block makes the dive and the engine, then its Python blocks run in order
in one namespace, as notebook cells, and the lines of their shown output that do not depend on the trained weights
are what they print."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from tests.test_docs import doc_commands, run

DOC = Path(__file__).resolve().parents[1] / "docs" / "python.md"


def blocks(kind: str) -> list[str]:
    """The fenced code blocks of docs/python.md whose info string is ``kind``."""
    return re.findall(rf"^```{kind}\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_the_doc_shows_an_output_after_every_python_block() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert len(blocks("python")) == len(blocks("text")) == 5
    assert all(text.index(p) < text.index(o) for p, o in zip(blocks("python"), blocks("text"), strict=True))


@pytest.mark.timeout(900)
def test_python_doc_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for words in doc_commands(DOC):
        run(words, tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    printed = []
    for i, code in enumerate(blocks("python")):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{DOC.name} block {i + 1}", "exec"), namespace)  # noqa: S102 - the doc's own code
        printed.append(out.getvalue().splitlines())
    shown = [block.splitlines() for block in blocks("text")]
    # Lines that depend only on the code and the data, not on what the one-epoch engine learnt.
    for block, line in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 7), (4, 0), (4, 1)]:
        assert printed[block][line] == shown[block][line], (block, line)
    assert (tmp_path / "scores.parquet").is_file()
