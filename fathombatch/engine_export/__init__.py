"""Engine export: a training run to an engine file plus its manifest, and fathombatch engines to TensorRT plans.

* :func:`export_run` (:mod:`fathombatch.engine_export.engine`): ONNX, OpenVINO IR or PyTorch weights, each checked;
* :func:`build_engine` (:mod:`fathombatch.engine_export.tensorrt`): a TensorRT plan from an fp32 ONNX engine;
* :mod:`fathombatch.engine_export.quantize`: the one fp16/int8 conversion both use, and the calibration image reader.

The runtimes that run what this writes live in :mod:`fathombatch.backends`, which imports nothing from here.
"""

from fathombatch.engine_export.engine import (
    Checkpoint,
    ExportConfig,
    ExportFormat,
    ExportResult,
    Precision,
    export_run,
)
from fathombatch.engine_export.tensorrt import BuildConfig, BuildResult, build_engine

__all__ = ["BuildConfig", "BuildResult", "Checkpoint", "ExportConfig", "ExportFormat", "ExportResult", "Precision",
           "build_engine", "export_run"]
