"""The package's seams (issue 15): no private names taken across modules, no import cycles (lazy and TYPE_CHECKING
imports included), no function over 60 lines or module over 400, and no test hook left in the package. Written for
the scoring core first; it holds for the whole package."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.importgraph import cycles, imports, modules

PACKAGE = Path(__file__).resolve().parents[2] / "fathombatch"


def test_no_module_takes_a_private_name_from_another() -> None:
    """The whole package, not only the scoring core (issue 15: "no module imports a private name from another")."""
    _, private = imports(modules(PACKAGE))
    assert private == []


def test_no_import_cycle_anywhere_in_the_package() -> None:
    edges, _ = imports(modules(PACKAGE))
    assert cycles(edges) == []


def test_the_cycle_finder_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.b import g\n    return g\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\n")
    (pkg / "c.py").write_text("from .a import f, _hidden\n")
    edges, private = imports(modules(pkg))
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert [(p.importer, p.source, p.name) for p in private] == [("pkg.c", "pkg.a", "_hidden")]


def test_functions_stay_under_60_lines_and_modules_under_400() -> None:
    """Every module of the package (issue 15: "no function over 60 lines; no module over 400 lines")."""
    long_functions, long_modules = [], []
    for path in modules(PACKAGE).values():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 400:
            long_modules.append(str(path.relative_to(PACKAGE)))
        for node in ast.walk(ast.parse(text)):
            is_function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if is_function and node.end_lineno and node.end_lineno - node.lineno + 1 > 60:
                long_functions.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert (long_functions, long_modules) == ([], [])


def test_no_test_hook_lives_in_the_package() -> None:
    assert [p.name for p in PACKAGE.rglob("*.py") if "os._exit" in p.read_text(encoding="utf-8")] == []
