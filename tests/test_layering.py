"""The package's layering, read from the source with ``ast`` (lazy imports inside functions included):
``fathombatch.backends`` holds runtimes only and reaches no training, dataset, metric or export code, directly or
through the fathombatch modules it imports; the training loop does not reach back into engine export."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fathombatch"

#: What a runtime must never need: the training loop and its data, the label readers, the metrics, engine export.
NOT_FOR_RUNTIMES = (
    "fathombatch.models.train", "fathombatch.models.data", "fathombatch.models.augment", "fathombatch.models.losses",
    "fathombatch.models.config", "fathombatch.models.distributed", "fathombatch.models.checks",
    "fathombatch.models.presets", "fathombatch.datasets", "fathombatch.labels", "fathombatch.metrics",
    "fathombatch.trainset", "fathombatch.splits", "fathombatch.engine_export", "fathombatch.exports",
    "fathombatch.report", "fathombatch.curate",
)


def _module_file(name: str) -> Path | None:
    """The source file of a fathombatch module or package, or None when ``name`` is not one."""
    base = PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    """Every fathombatch module ``path`` imports, at the top or inside a function (``from a import b`` yields
    ``a.b`` too when that is a module)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        yield from (n for n in names if n.startswith("fathombatch") and _module_file(n) is not None)


def _reach(start: Path) -> dict[str, str]:
    """Every fathombatch module reachable from ``start`` by imports, mapped to the module that imports it."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        path = todo.pop()
        for name in _imports(path):
            if name not in seen:
                seen[name] = _module_name(path)
                todo.append(_module_file(name))  # type: ignore[arg-type]
    return seen


def _forbidden(reached: dict[str, str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(f"{name} (imported by {by})" for name, by in reached.items()
                  if any(name == p or name.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("path", sorted((PACKAGE / "backends").glob("*.py")), ids=lambda p: p.name)
def test_a_runtime_module_reaches_no_training_dataset_metric_or_export_code(path: Path) -> None:
    assert _forbidden(_reach(path), NOT_FOR_RUNTIMES) == []


def test_backends_holds_runtimes_only() -> None:
    names = {p.stem for p in (PACKAGE / "backends").glob("*.py")}
    assert names <= {"__init__", "base", "manifest", "onnx", "openvino", "torch_engine", "tensorrt", "store",
                     "trt_support"}, names


def test_the_training_loop_does_not_import_engine_export_or_runtimes() -> None:
    for path in sorted((PACKAGE / "models").glob("*.py")):
        assert _forbidden(_reach(path), ("fathombatch.engine_export", "fathombatch.backends")) == [], path.name


def test_the_walk_sees_lazy_imports(tmp_path: Path) -> None:
    # The walk must find an import inside a function body: the layering rule covers lazy imports too.
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    from fathombatch.metrics import map_at_k\n", encoding="utf-8")
    assert "fathombatch.metrics" in set(_imports(lazy))
