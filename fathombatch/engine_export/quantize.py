"""The one fp16/int8 conversion of fp32 ONNX graphs, shared by the ONNX export and the TensorRT build, and the one
reader of calibration images (shared with the OpenVINO int8 export).

* ``fp16``: weights and activations in float16 (``onnxconverter-common``), inputs and outputs kept float32.
* ``int8``: ONNX Runtime static quantisation to Q/DQ nodes, per-channel int8 weights, MinMax calibration. What runs
  the graph decides the rest (:data:`Int8Target`): ONNX Runtime's CPU kernels get uint8 activations with
  ``reduce_range`` (which avoids the int16 saturation of the u8s8 kernels on CPUs without VNNI); TensorRT gets
  symmetric signed int8 activations and float biases (its ONNX parser takes only activation types into
  DequantizeLinear).

OpenVINO's int8 goes through NNCF with accuracy control instead (:mod:`fathombatch.engine_export.openvino`), because
NNCF can revert the layers that cost accuracy; it reads its calibration images here too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fathombatch.errors import UsageError, param
from fathombatch.preprocess import InputSpec

#: Who runs an int8 graph: ``onnxruntime`` (CPU) or ``tensorrt``.
Int8Target = Literal["onnxruntime", "tensorrt"]
log = logging.getLogger(__name__)


def _int8_options(target: Int8Target) -> dict[str, Any]:
    """``quantize_static``'s keyword arguments for ``target`` (see the module docstring)."""
    from onnxruntime.quantization import QuantType

    if target == "onnxruntime":
        return {"reduce_range": True, "activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8}
    return {"activation_type": QuantType.QInt8, "weight_type": QuantType.QInt8,
            "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}}


class CalibrationReader:
    """ONNX Runtime ``CalibrationDataReader`` over normalised images, ``batch`` at a time.

    Args:
        images: (M, 3, H, W) float32, normalised per the engine's input spec.
    """

    def __init__(self, images: np.ndarray, batch: int = 16) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            [{"images": images[i : i + batch]} for i in range(0, len(images), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def to_fp16(src: Path, dest: Path) -> None:
    """Write ``dest``: the fp32 ONNX graph ``src`` in float16, inputs and outputs kept float32."""
    import onnx
    from onnxconverter_common import float16

    onnx.save(float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dest))


def to_int8(src: Path, dest: Path, calibration: np.ndarray, target: Int8Target) -> None:
    """Write ``dest``: the fp32 ONNX graph ``src`` with Q/DQ nodes for ``target``, calibrated on ``calibration``
    ((M, 3, H, W) float32 normalised images).

    Raises:
        UsageError: no calibration images.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quant_pre_process, quantize_static

    if len(calibration) == 0:
        raise UsageError("int8 quantisation needs calibration images, and none are available")
    prepared = dest.with_name(dest.name + ".pre.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a warning per un-foldable BatchNorm weight on the root logger
    try:
        quant_pre_process(str(src), str(prepared))  # shape inference and folding
        quantize_static(str(prepared), str(dest), CalibrationReader(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, calibrate_method=CalibrationMethod.MinMax, **_int8_options(target))
    finally:
        root.setLevel(level)
        prepared.unlink(missing_ok=True)


def reduce_precision(src: Path, dest: Path, precision: str, calibration: np.ndarray | None,
                     target: Int8Target) -> None:
    """Write ``dest``: the fp32 ONNX graph ``src`` at ``precision`` (``fp32`` copies it; ``int8`` needs
    ``calibration``, (M, 3, H, W) float32 normalised images)."""
    if precision == "fp32":
        dest.write_bytes(src.read_bytes())
    elif precision == "fp16":
        to_fp16(src, dest)
    else:
        to_int8(src, dest, np.empty((0,), np.float32) if calibration is None else calibration, target)


def calibration_images(folder: Path, spec: InputSpec, limit: int) -> np.ndarray:
    """(M, 3, H, W) float32 normalised images of a folder for int8 calibration: at most ``limit``, spread evenly
    over the sorted file list; unreadable files are skipped.

    Raises:
        UsageError: ``folder`` is not a folder, or holds no readable image (the message names the
            ``calibration`` parameter).
    """
    from fathombatch.decode import create_decoder, discover
    from fathombatch.decode.discover import describe_suffixes

    if not folder.is_dir():
        raise UsageError(f"{param('calibration')} {folder} is not a folder")
    files = discover(folder)
    if len(files) > limit:
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).astype(int)]
    with create_decoder("pil", spec) as decoder:
        batch = decoder.decode([folder / f for f in files])
    if len(batch.ok) == 0:
        raise UsageError(f"{param('calibration')} {folder} holds no readable {describe_suffixes()} images")
    return batch.images
