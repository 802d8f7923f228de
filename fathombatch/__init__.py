"""fathombatch: batch-score ROV dive imagery with FathomNet-style multi-label classifiers.

Library first; the ``fathombatch`` command line is a thin layer on top. In a notebook (docs/python.md)::

    import fathombatch as fb
    df = fb.score("dive/images", engine="engines/r18.onnx")          # a polars.DataFrame, the scores table's schema
    eng = fb.open_engine("engines/r18.onnx"); probs = eng.predict([pil_image, np_array])   # (N, classes) float32
    m = fb.evaluate(df, truth="dive/train.csv")                      # EvalResult: m.map_at_k, m.to_json()

The other names below are the package's public surface, each an alias of the function or class that owns the job;
plain ``str`` paths work in every config::

    run = fb.train(fb.TrainConfig(images="dive/images", labels="dive/train.csv", out="runs/r18"))
    fb.export(fb.ExportConfig(run=run.out, format="onnx", out="engines/r18.onnx"))
    fb.score_folder(fb.ScoreConfig(root="dive/images", engine="engines/r18.onnx", out="scores.parquet"))
    fb.evaluate(fb.EvalConfig(scores="scores.parquet", truth="dive/train.csv"))

They are loaded on first use (PEP 562), so ``import fathombatch`` stays light: no torch, numpy or polars until a
name that needs them is touched.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("fathombatch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

#: Public name -> (module, attribute in it).
_PUBLIC: dict[str, tuple[str, str]] = {
    # ``score`` is the Python API's notebook function (issue 17); there is no ``fathombatch.score`` module any more,
    # since the import system would rebind ``fb.score`` to a submodule of that name.
    "score": ("fathombatch.api", "score"),
    "LoadedEngine": ("fathombatch.api", "LoadedEngine"),
    "score_folder": ("fathombatch.scoring", "score_folder"),
    "ScoreConfig": ("fathombatch.scoring", "ScoreConfig"),
    "ScoreSummary": ("fathombatch.scoring", "ScoreSummary"),
    "open_engine": ("fathombatch.api", "open_engine"),
    "Engine": ("fathombatch.backends", "Engine"),
    "Manifest": ("fathombatch.backends", "Manifest"),
    "read_manifest": ("fathombatch.backends", "read_manifest"),
    "create_model": ("fathombatch.models", "create_model"),
    "list_models": ("fathombatch.models", "list_models"),
    "train": ("fathombatch.models.train", "train"),
    "resume": ("fathombatch.models.train", "resume"),
    "TrainConfig": ("fathombatch.models.train", "TrainConfig"),
    "TrainResult": ("fathombatch.models.train", "TrainResult"),
    "export": ("fathombatch.engine_export", "export_run"),
    "ExportConfig": ("fathombatch.engine_export", "ExportConfig"),
    "ExportResult": ("fathombatch.engine_export", "ExportResult"),
    "build_engine": ("fathombatch.engine_export", "build_engine"),
    "BuildConfig": ("fathombatch.engine_export", "BuildConfig"),
    "evaluate": ("fathombatch.api", "evaluate"),
    "EvalConfig": ("fathombatch.report", "EvalConfig"),
    "EvalResult": ("fathombatch.report", "EvalResult"),
    "synthesize": ("fathombatch.synth", "synthesize"),
    "SynthConfig": ("fathombatch.synth", "SynthConfig"),
    "Taxonomy": ("fathombatch.taxonomy", "Taxonomy"),
    "FathombatchError": ("fathombatch.errors", "FathombatchError"),
}

__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str) -> Any:
    """Load a public name on first use and keep it in the module, so later lookups are plain attribute reads."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'fathombatch' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
