"""ONNX export of a trained model: ``torch.onnx.export`` checked against PyTorch, and its reduced-precision versions
checked on the run's held-out images."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fathombatch.engine_export.config import PRECISION_TOLERANCE
from fathombatch.engine_export.quantize import reduce_precision
from fathombatch.engine_export.runs import RunImages
from fathombatch.errors import EngineError, UsageError
from fathombatch.fsutil import atomic_path
from fathombatch.preprocess import InputSpec, normalize

#: Largest tolerated |logit difference| between the exported ONNX engine and the PyTorch model.
ONNX_TOLERANCE = 1e-4
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Written:
    """What writing one engine format produced: the ONNX check, precision metrics for the manifest, a warning."""

    diff: float | None = None
    metrics: dict[str, Any] | None = None
    warning: str | None = None
    versions: dict[str, str] | None = None


def onnx_map20(path: Path, images: np.ndarray, truth: np.ndarray, spec: InputSpec) -> float:
    """Held-out MAP@20 of an ONNX file on (N, H, W, 3) uint8 ``images`` with (N, C) multi-hot ``truth``."""
    import onnxruntime as ort

    from fathombatch.metrics import map_at_k_from_scores

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = np.concatenate(
        [session.run(["logits"], {"images": normalize(images[i : i + 32], spec)})[0] for i in range(0, len(images), 32)]
    )
    return map_at_k_from_scores(truth, logits)


def export_onnx(model: Any, spec: InputSpec, dest: Path) -> float:
    """Write ``model`` as an fp32 ONNX file with outputs ``logits`` (N, C) and ``features`` (N, D) and a dynamic batch
    axis; returns the largest |logit difference| from PyTorch on three random images.

    Raises:
        EngineError: the difference exceeds :data:`ONNX_TOLERANCE` (nothing is written).
    """
    import onnxruntime as ort
    import torch

    class WithFeatures(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.inner.forward_with_features(images)

    wrapped = WithFeatures(model).eval()
    example = torch.randn(2, 3, spec.height, spec.width)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with atomic_path(dest) as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            (example,),
            str(tmp),
            input_names=["images"],
            output_names=["logits", "features"],
            dynamic_shapes={"images": {0: batch}},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        check = torch.randn(3, 3, spec.height, spec.width, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            expected = model(check).numpy()
        got = session.run(["logits"], {"images": check.numpy()})[0]
        diff = float(np.abs(got - expected).max())
        if not diff <= ONNX_TOLERANCE:
            raise EngineError(
                f"the ONNX export differs from the PyTorch model by {diff:.2e} (tolerance {ONNX_TOLERANCE}); "
                "not written"
            )
    return diff


def write_onnx(model: Any, spec: InputSpec, dest: Path, precision: str, data: RunImages | None) -> Written:
    """Write the ONNX engine at ``precision``; a reduced-precision one is compared with the fp32 export on the
    held-out images and warned about when their MAP@20 differ by more than :data:`PRECISION_TOLERANCE`."""
    if precision == "fp32":
        return Written(diff=export_onnx(model, spec, dest))
    map_fp32 = map_engine = None
    calibration = data.normalized_calibration(spec) if data is not None else None
    if precision == "int8" and (calibration is None or len(calibration) == 0):
        raise UsageError("int8 export needs the run's training images for calibration, and they are not available")
    with tempfile.TemporaryDirectory(prefix="fb-export-") as scratch:
        fp32 = Path(scratch) / "fp32.onnx"
        diff = export_onnx(model, spec, fp32)
        with atomic_path(dest) as tmp:
            reduce_precision(fp32, tmp, precision, calibration, "onnxruntime")
            if data is not None:
                map_fp32 = onnx_map20(fp32, data.heldout, data.truth, spec)
                map_engine = onnx_map20(tmp, data.heldout, data.truth, spec)
    warning = None
    if map_fp32 is None or map_engine is None:
        warning = "held-out images unavailable: the reduced-precision engine's accuracy was not checked"
    elif abs(map_engine - map_fp32) > PRECISION_TOLERANCE:
        warning = (f"held-out MAP@20 moved from {map_fp32:.4f} (fp32) to {map_engine:.4f} ({precision}), more "
                   f"than {PRECISION_TOLERANCE}; prefer the fp32 engine")
    if warning:
        log.warning(warning)
    check = "not run" if map_fp32 is None else ("failed" if warning else "passed")
    return Written(diff=diff, warning=warning, metrics={
        "val_map20_fp32_engine": map_fp32, "val_map20_engine": map_engine, "precision_check": check})
