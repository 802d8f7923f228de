"""The package's public surface: ``fathombatch.__all__`` names the library's entry points, every one resolves, and
``import fathombatch`` alone loads none of the heavy dependencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The entry points the Python API is built on (the scoring, training, export and evaluation jobs).
ENTRY_POINTS = {"score", "score_folder", "open_engine", "create_model", "train", "export", "evaluate"}


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return proc.stdout.strip()


def test_every_public_name_resolves_to_what_owns_the_job() -> None:
    # A fresh interpreter: resolving a name must not depend on what an earlier test imported.
    out = _python(
        "import inspect, fathombatch as fb\n"
        "for name in fb.__all__:\n"
        "    value = getattr(fb, name)\n"
        "    kind = 'module' if inspect.ismodule(value) else 'ok'\n"
        "    print(name, kind, getattr(value, '__module__', ''))\n"
    )
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    import fathombatch

    assert set(fathombatch.__all__) >= ENTRY_POINTS
    assert set(rows) == set(fathombatch.__all__)
    assert [name for name, (kind, *_) in rows.items() if kind != "ok"] == []
    assert rows["export"][1] == "fathombatch.engine_export.engine" and rows["train"][1] == "fathombatch.models.train"
    assert set(fathombatch.__all__) <= set(dir(fathombatch))


def test_an_unknown_name_is_an_attribute_error() -> None:
    import fathombatch

    try:
        fathombatch.no_such_name  # noqa: B018 - the lookup is the test
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("fathombatch.no_such_name resolved")


def test_importing_the_package_loads_no_heavy_dependency() -> None:
    out = _python("import sys, fathombatch\n"
                  "print(sorted(m for m in ('torch', 'numpy', 'polars', 'onnxruntime', 'click') if m in sys.modules))")
    assert out == "[]"
