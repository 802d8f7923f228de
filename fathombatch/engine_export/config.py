"""What an export or a build is asked for: the configs and the closed sets of their options.

Kept free of heavy imports, so the command line can build its options (choices, defaults) from these types at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fathombatch.pathargs import PathFields

ExportFormat = Literal["onnx", "openvino", "pt"]
Checkpoint = Literal["best", "last"]
Precision = Literal["fp32", "fp16", "int8"]

#: Largest held-out MAP@20 change a reduced-precision engine may have and still be offered as equivalent.
PRECISION_TOLERANCE = 0.005


@dataclass(frozen=True)
class ExportConfig(PathFields):
    """What to export.

    Attributes:
        run: training run folder.
        format: ``onnx``, ``openvino`` or ``pt``.
        out: engine path (suffix must match the format); the manifest goes to ``<out>.json``.
        checkpoint: ``best`` (highest held-out MAP@20) or ``last``.
        precision: ``fp32``, ``fp16`` (ONNX) or ``int8`` (ONNX, OpenVINO).
        overwrite: replace an existing engine file.
        calibration: OpenVINO int8: a folder of images to calibrate on instead of the run's held-out images.
        max_drop: OpenVINO int8: largest tolerated drop of held-out MAP@20 (absolute); the export fails beyond it.
    """

    run: Path
    format: ExportFormat
    out: Path
    checkpoint: Checkpoint = "best"
    precision: Precision = "fp32"
    overwrite: bool = False
    calibration: Path | None = None
    max_drop: float = PRECISION_TOLERANCE


@dataclass(frozen=True)
class BuildConfig(PathFields):
    """A plan to build.

    Attributes:
        onnx: an fp32 ONNX engine exported by fathombatch (its manifest is required).
        out: the ``.plan`` to write (manifest beside it).
        precision: ``fp32``, ``fp16`` or ``int8``.
        max_batch: largest batch the plan accepts.
        opt_batch: batch size TensorRT tunes for (default: ``max_batch``).
        calibration: image folder for ``int8`` calibration.
        calibration_images: at most this many calibration images.
        workspace_gib: builder workspace limit.
        device: GPU to build on (the plan is for that GPU's architecture).
        overwrite: replace an existing plan.
    """

    onnx: Path
    out: Path
    precision: Precision = "fp16"
    max_batch: int = 256
    opt_batch: int | None = None
    calibration: Path | None = None
    calibration_images: int = 512
    workspace_gib: float = 8.0
    device: int = 0
    overwrite: bool = False
