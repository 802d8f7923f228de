"""Every public config dataclass takes plain ``str`` paths (issue 17, item 2): they become ``Path`` when the config
is made, and a value that is not a path is refused by name."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from fathombatch.bench import BenchConfig
from fathombatch.curate.convert import ConvertConfig
from fathombatch.curate.dedupe import DedupeConfig
from fathombatch.curate.download import DownloadConfig
from fathombatch.curate.review import ReviewConfig
from fathombatch.curate.select import SelectConfig
from fathombatch.curate.split import SplitConfig
from fathombatch.curate.stats import StatsConfig
from fathombatch.curate.subset import SubsetConfig
from fathombatch.curate.validate import ValidateConfig
from fathombatch.engine_export import BuildConfig, ExportConfig
from fathombatch.errors import UsageError
from fathombatch.exports import ExportTableConfig
from fathombatch.exports.darwincore import DwcOptions
from fathombatch.models.config import TrainConfig
from fathombatch.pathargs import PathFields, path_members
from fathombatch.report import EvalConfig
from fathombatch.scoring import ScoreConfig
from fathombatch.synth import SynthConfig

PACKAGE = Path(__file__).resolve().parents[1] / "fathombatch"
#: Required fields that are not paths, with a valid value.
OTHER_REQUIRED: dict[str, Any] = {"format": "onnx", "images": 1}
CONFIGS = [ExportConfig, BuildConfig, BenchConfig, ConvertConfig, DedupeConfig, DownloadConfig, ReviewConfig,
           SelectConfig, SplitConfig, StatsConfig, SubsetConfig, ValidateConfig, ExportTableConfig, DwcOptions,
           TrainConfig, EvalConfig, ScoreConfig, SynthConfig]


def path_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if path_members(f.type) is not None]


def required(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_str_paths_become_paths(cls: type) -> None:
    fields = path_fields(cls)
    assert fields, f"{cls.__name__} has no path field: drop it from CONFIGS"
    given = {f.name: f"some dir/{f.name}.x" for f in fields}
    cfg = cls(**given, **{n: OTHER_REQUIRED[n] for n in required(cls) if n not in given})
    for f in fields:
        value = getattr(cfg, f.name)
        if "str" in (path_members(f.type) or ()):  # str | Path: a name (e.g. an engine in the store) stays a str
            assert value == given[f.name]
        else:
            assert isinstance(value, Path) and value == Path(given[f.name]), f.name


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_a_value_that_is_not_a_path_is_refused_by_name(cls: type) -> None:
    field = path_fields(cls)[0]
    given = {f.name: "x" for f in path_fields(cls)} | {field.name: 42}
    with pytest.raises(UsageError, match=rf"^{cls.__name__}\.{field.name} must be a path \(str or pathlib.Path\), "
                                         "got int 42$"):
        cls(**given, **{n: OTHER_REQUIRED[n] for n in required(cls) if n not in given})


def test_optional_paths_stay_none_and_paths_stay_themselves() -> None:
    cfg = EvalConfig(scores=Path("s.parquet"), truth="t.csv")
    assert cfg.osd_truth is None and cfg.report is None and cfg.scores == Path("s.parquet")
    assert cfg.truth == Path("t.csv")


def test_every_config_dataclass_with_a_path_field_takes_str() -> None:
    """A walk over the package's source: a new config with a path field must inherit PathFields (and be listed)."""
    listed = {c.__name__ for c in CONFIGS}
    found = set()
    for source in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ClassDef) and node.name.endswith(("Config", "Options"))):
                continue
            annotations = [ast.unparse(s.annotation) for s in node.body if isinstance(s, ast.AnnAssign)]
            if any(path_members(a) for a in annotations):
                found.add(node.name)
                bases = [ast.unparse(b) for b in node.bases]
                assert PathFields.__name__ in bases, f"{source.name}: {node.name} does not inherit PathFields"
    assert found == listed
