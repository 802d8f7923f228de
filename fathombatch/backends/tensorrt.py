"""TensorRT engines (``.plan``): need the ``tensorrt`` extra and an NVIDIA GPU.

The GPU path (building plans, running them with ``execute_async_v3``) is the subject of the GPU issue; until it
lands, opening a plan explains exactly what is missing instead of failing obscurely.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fathombatch.backends.base import Engine
from fathombatch.backends.manifest import Manifest
from fathombatch.errors import EngineError, require


def cuda_device_count() -> int:
    """Number of CUDA devices PyTorch sees (0 on machines without an NVIDIA GPU or driver)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken driver install counts as no GPU
        return 0


class TensorRTEngine(Engine):
    """Placeholder that reports what a TensorRT plan needs on this machine."""

    runtime = "tensorrt"

    def __init__(self, path: Path, manifest: Manifest, *, threads: int | None = None) -> None:
        super().__init__(path, manifest, threads=threads)
        if cuda_device_count() == 0:
            raise EngineError(
                f"{path} is a TensorRT plan, which needs an NVIDIA GPU and TensorRT; this machine has no usable "
                "GPU - score with the .onnx or .pt export of the same model instead"
            )
        require("tensorrt", "tensorrt", f"running the TensorRT plan {path}")
        raise EngineError(
            f"running TensorRT plans ({path}) is not implemented in this version of fathombatch; "
            "use the .onnx export of the same model"
        )

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:  # pragma: no cover - never constructed
        raise EngineError("TensorRT engines are not available")
