"""Engine export: a training run to an engine file plus its manifest, and fathombatch engines to TensorRT plans.

* :func:`export_run` (:mod:`fathombatch.engine_export.engine`): ONNX, OpenVINO IR or PyTorch weights, each checked;
* :func:`build_engine` (:mod:`fathombatch.engine_export.tensorrt`): a TensorRT plan from an fp32 ONNX engine;
* :mod:`fathombatch.engine_export.quantize`: the one fp16/int8 conversion both use, and the calibration image reader;
* :mod:`fathombatch.engine_export.config`: the configs and their option types (light: the command line reads them).

The runtimes that run what this writes live in :mod:`fathombatch.backends`, which imports nothing from here. Names
load on first use (PEP 562), so reading a config does not import the exporters.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "BuildConfig": "config", "Checkpoint": "config", "ExportConfig": "config", "ExportFormat": "config",
    "Precision": "config", "ExportResult": "engine", "export_run": "engine", "BuildResult": "tensorrt",
    "build_engine": "tensorrt",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
