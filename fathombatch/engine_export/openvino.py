"""OpenVINO IR export: fp32 conversion, NNCF int8 with accuracy control, and the held-out checks behind both.

The fp32 ONNX export (already checked against PyTorch) is converted with ``openvino.convert_model``. int8 goes
through ``nncf.quantize_with_accuracy_control``: post-training quantisation calibrated on the given images, then, if
the held-out MAP@20 drops by more than ``max_drop`` (absolute), the quantised layers that hurt most are reverted to
float one group at a time, at most :data:`MAX_RESTORE_ITERATIONS` times. Whatever NNCF returns is then measured again
here, on every held-out image and with the runtime settings scoring uses; an engine whose drop still exceeds
``max_drop`` is refused (:class:`~fathombatch.errors.EngineError` naming the drop), never written.

bf16: where the CPU has bf16 units (AVX-512 BF16, AMX), OpenVINO would run float layers in bf16. The export measures
the held-out MAP@20 with the bf16 hint too and records ``bf16_check`` (``passed`` / ``failed`` / ``not run``); the
runtime uses bf16 only when it ``passed`` (see :mod:`fathombatch.backends.openvino`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fathombatch.backends.openvino import compile_model, cpu_has_bf16, import_openvino, infer_logits
from fathombatch.engine_export.quantize import calibration_images
from fathombatch.errors import EngineError, UsageError, param, require
from fathombatch.preprocess import InputSpec

#: Most images of the ``calibration`` folder used to calibrate int8 (NNCF's default statistics subset).
CALIBRATION_IMAGES = 300
#: Largest number of accuracy-restoring steps (each reverts one group of quantised layers to float and re-validates).
#: Past this many, an int8 engine keeps too little int8 to be worth its accuracy risk, and the export is refused.
MAX_RESTORE_ITERATIONS = 16

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldOut:
    """The held-out check's data.

    Attributes:
        images: (N, 3, H, W) float32, normalised per the engine's input spec.
        truth: (N, C) multi-hot labels.
    """

    images: np.ndarray
    truth: np.ndarray


def map20(compiled: Any, data: HeldOut) -> float:
    """Held-out MAP@20 of a compiled OpenVINO model (output 0 = logits)."""
    from fathombatch.metrics import map_at_k_from_scores

    return map_at_k_from_scores(data.truth, infer_logits(compiled, data.images))


def runtime_versions() -> dict[str, str]:
    """Versions of OpenVINO and NNCF (when installed), for the manifest."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("openvino", "nncf"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    return out


def convert_onnx(onnx_path: Path) -> Any:
    """Read an ONNX file into an ``openvino.Model`` (inputs and outputs keep their ONNX names)."""
    ov = import_openvino("OpenVINO export")
    try:
        return ov.convert_model(str(onnx_path))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own untyped errors
        raise EngineError(f"OpenVINO cannot convert {onnx_path}: {str(exc).strip().splitlines()[0][:300]}") from None


def quantize_int8(model: Any, calibration: np.ndarray, data: HeldOut, max_drop: float) -> Any:
    """NNCF int8 quantisation with accuracy control; returns the quantised ``openvino.Model``.

    Args:
        model: the fp32 model.
        calibration: (M, 3, H, W) float32 normalised images for the activation statistics.
        data: held-out images and labels; the validation metric is MAP@20 with per-image AP@20 for NNCF's ranking.
        max_drop: largest tolerated absolute drop of held-out MAP@20.
    """
    with _quiet_nncf():
        nncf = require("nncf", "openvino", "int8 OpenVINO export")
        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    from fathombatch.metrics import average_precision_at_k, ranking_from_scores

    if len(calibration) == 0:
        raise UsageError("int8 export needs calibration images, and none could be read")

    def validate(compiled: Any, items: Any) -> tuple[float, list[float]]:
        pairs = list(items)
        if not pairs:
            return 0.0, []
        images = np.concatenate([image for image, _ in pairs])
        truth = np.stack([labels for _, labels in pairs])
        ap = average_precision_at_k(truth, ranking_from_scores(infer_logits(compiled, images)), distinct=True)
        return float(ap.mean()), [float(a) for a in ap]

    calibration_set = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    validation_set = nncf.Dataset([(data.images[i : i + 1], data.truth[i]) for i in range(len(data.images))])
    # NNCF reports through its own logger and prints progress bars on stdout; fathombatch reports the outcome itself.
    with _quiet_nncf():
        return nncf.quantize_with_accuracy_control(
            model, calibration_set, validation_set, validate,
            max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, preset=nncf.QuantizationPreset.PERFORMANCE,
            subset_size=len(calibration),
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=MAX_RESTORE_ITERATIONS),
        )


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """Silence NNCF's logger and progress bars, and the warning torch logs when NNCF imports its C++ extension
    loader on a machine without CUDA (it concerns NNCF's PyTorch backend, which fathombatch does not use)."""
    loggers = [logging.getLogger(name) for name in ("nncf", "torch.utils.cpp_extension")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def check_drop(reference: float, candidate: Any, data: HeldOut, max_drop: float, what: str, *,
               bf16: bool = False) -> float:
    """Held-out MAP@20 of a candidate (the int8 model, or a model under the bf16 hint), checked against the fp32
    model's ``reference`` MAP@20 measured in f32.

    Raises:
        EngineError: the candidate's MAP@20 is lower by more than ``max_drop``.
    """
    value = map20(compile_model(candidate, bf16=bf16), data)
    drop = reference - value
    if drop > max_drop:
        raise EngineError(
            f"the {what} engine's held-out MAP@20 drops by {drop:.4f} ({reference:.4f} fp32 -> {value:.4f}), "
            f"more than the limit {max_drop}; not written (export fp32, or relax the limit with {param('max_drop')})"
        )
    return value


def bf16_check(reference: float | None, model: Any, data: HeldOut | None, max_drop: float) -> dict[str, Any]:
    """Measure ``model`` (the engine about to be written) under OpenVINO's bf16 hint where the CPU has bf16, against
    the fp32 model's ``reference`` MAP@20 in f32, so that bf16 on top of int8 counts in the same drop; returns the
    manifest metrics to record."""
    if not cpu_has_bf16():
        return {"bf16_check": "not run (this CPU has no bf16 units)"}
    if data is None or reference is None:
        return {"bf16_check": "not run (no held-out images)"}
    try:
        value = check_drop(reference, model, data, max_drop, "bf16", bf16=True)
    except EngineError as exc:
        log.warning("bf16 inference is not used for this engine: %s", exc)
        return {"bf16_check": "failed"}
    except RuntimeError as exc:  # OpenVINO's own: no bf16 kernel for some layer here
        reason = str(exc).strip().splitlines()[-1][:160]
        return {"bf16_check": f"not run (OpenVINO cannot compile it in bf16 here: {reason})"}
    return {"bf16_check": "passed", "val_map20_bf16": value, "bf16_drop": reference - value}


def save_ir(model: Any, dest: Path) -> None:
    """Write ``dest`` (.xml) and its .bin (replacing them: the caller decides about overwriting). Both are written in
    a scratch folder beside ``dest``, fsynced and renamed into place, .bin first; a reader between the two renames
    sees a pair that no longer matches its manifest's hash and is refused, never a silently mixed engine."""
    ov = import_openvino("OpenVINO export")
    bin_dest = dest.with_suffix(".bin")
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        ov.save_model(model, str(scratch / dest.name), compress_to_fp16=False)
        for src, final in ((scratch / bin_dest.name, bin_dest), (scratch / dest.name, dest)):
            with open(src, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(src, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def export_ir(
    onnx_path: Path,
    dest: Path,
    spec: InputSpec,
    *,
    precision: str,
    heldout: HeldOut | None,
    calibration: Path | None,
    max_drop: float,
) -> dict[str, Any]:
    """Convert a checked fp32 ONNX file to OpenVINO IR at ``dest`` (fp32, or int8 calibrated on ``calibration``'s
    images or else the held-out ones) and return the precision metrics for the manifest.

    Raises:
        UsageError: int8 without held-out images to check it on.
        EngineError: the int8 engine's held-out MAP@20 drops by more than ``max_drop`` (nothing is written).
    """
    if precision == "int8" and heldout is None:
        raise UsageError("int8 export needs the run's held-out images and labels to check its accuracy, and they "
                         "are not available on this machine; export fp32, or export where the run's images are")
    fp32 = convert_onnx(onnx_path)
    reference = map20(compile_model(fp32), heldout) if heldout is not None else None
    metrics: dict[str, Any] = {"max_drop": max_drop, "val_map20_fp32_engine": reference, "val_map20_engine": reference}
    engine = fp32
    if precision == "int8" and heldout is not None and reference is not None:
        images = heldout.images if calibration is None else calibration_images(calibration, spec, CALIBRATION_IMAGES)
        engine = quantize_int8(fp32, images, heldout, max_drop)
        value = check_drop(reference, engine, heldout, max_drop, "int8")
        metrics.update(val_map20_engine=value, precision_drop=reference - value, precision_check="passed",
                       calibration=str(calibration) if calibration else "held-out images")
    metrics.update(bf16_check(reference, engine, heldout, max_drop))
    save_ir(engine, dest)
    return metrics
