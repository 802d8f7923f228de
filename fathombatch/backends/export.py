"""Export a training run as an engine file plus its manifest.

* ``onnx``: ``torch.onnx.export`` (the dynamo exporter) with a dynamic batch axis and two outputs, ``logits``
  (N, C) and ``features`` (N, D); the result is checked against the PyTorch model with ONNX Runtime and refused
  when any logit differs by more than :data:`ONNX_TOLERANCE`.
* ``pt``: the architecture name plus the state dict, loadable with ``torch.load(weights_only=True)``.
* ``openvino``: OpenVINO IR (``NAME.xml`` + ``NAME.bin``) converted from the checked ONNX export; ``int8`` through
  NNCF with accuracy control, calibrated on the run's held-out images (or ``calibration``), refused when the
  held-out MAP@20 drops by more than ``max_drop`` (:mod:`fathombatch.backends.openvino_export`).

Reduced precision for ONNX (``--precision``):

* ``int8``: ONNX Runtime static quantisation (QDQ format, per-channel int8 weights, uint8 activations with
  ``reduce_range``, which avoids the int16 saturation of the u8s8 kernels on CPUs without VNNI), calibrated on
  training images of the run (MinMax).
* ``fp16``: weights and activations in float16 (``onnxconverter-common``), inputs and outputs kept float32. Meant for
  GPUs; ONNX Runtime's CPU provider runs most float16 operators slower than float32.

A reduced-precision export is checked on the run's held-out images: the manifest records the held-out MAP@20 of the
fp32 model and of the exported engine, and the export warns when they differ by more than
:data:`PRECISION_TOLERANCE`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fathombatch.backends.manifest import Manifest, engine_files, engine_sha256, manifest_path, write_manifest
from fathombatch.backends.torch_engine import TORCH_ENGINE_FORMAT
from fathombatch.errors import EngineError, OutputError, UsageError
from fathombatch.fsutil import atomic_path
from fathombatch.pathguard import inside
from fathombatch.preprocess import InputSpec
from fathombatch.probability import sigmoid
from fathombatch.progress import Progress
from fathombatch.safeload import load_torch_file
from fathombatch.taxonomy import Taxonomy
from fathombatch.trainset import run_reference, training_images

#: Largest tolerated |logit difference| between the exported ONNX engine and the PyTorch model.
ONNX_TOLERANCE = 1e-4
#: Largest held-out MAP@20 change a reduced-precision engine may have and still be offered as equivalent.
PRECISION_TOLERANCE = 0.005
#: Training images used to calibrate int8 quantisation (ONNX Runtime).
CALIBRATION_IMAGES = 128

ExportFormat = Literal["onnx", "openvino", "pt"]
Checkpoint = Literal["best", "last"]
Precision = Literal["fp32", "fp16", "int8"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportConfig:
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
class ExportResult:
    engine: Path
    manifest: Path
    max_abs_diff: float | None
    precision: str = "fp32"
    val_map20_fp32: float | None = None
    val_map20_engine: float | None = None
    warning: str | None = None
    bf16_check: str | None = None


def _load_checkpoint(run: Path, which: str) -> dict[str, Any]:
    from fathombatch.models.train import CHECKPOINT_FORMAT

    path = run / "checkpoints" / f"{which}.pt"
    if not run.is_dir():
        raise UsageError(f"training run folder {run} does not exist")
    if not path.is_file():
        raise UsageError(f"{run} has no checkpoint {path.name} (is it a fathombatch training run?)")
    blob = load_torch_file(path, "checkpoint")
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise EngineError(f"{path} is not a fathombatch checkpoint")
    return blob


#: (held-out uint8 images (N, H, W, 3), their (N, C) multi-hot labels, training images for ONNX int8 calibration)
_Cache = tuple[np.ndarray, np.ndarray, np.ndarray]


def _heldout_cache(
    run: Path, spec: InputSpec, *, calibration: bool = True, progress: Progress | None = None
) -> _Cache | None:
    """The run's images as uint8 caches: (held-out images, held-out multi-hot labels, training images for
    calibration, empty unless ``calibration``), or None when the images are not on this machine any more."""
    from fathombatch.datasets import read_labels
    from fathombatch.errors import FathombatchError
    from fathombatch.models.data import match_images, preload

    try:
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))["config"]
        val_ids = set(json.loads((run / "split.json").read_text(encoding="utf-8"))["val_image_ids"])
        labels = read_labels(config["labels"])
        paths = match_images(labels, Path(config["images"]))
    except (OSError, KeyError, ValueError, FathombatchError) as exc:
        log.warning("held-out images of %s are not available (%s)", run, exc)
        return None
    is_val = np.array([i in val_ids for i in labels.image_ids])
    val_paths = [p for p, v in zip(paths, is_val, strict=True) if v]
    train_paths = [p for p, v in zip(paths, is_val, strict=True) if not v][:CALIBRATION_IMAGES] if calibration else []
    return (preload(val_paths, spec.size, progress=progress, description="Decoding held-out images"),
            labels.multi_hot()[is_val],
            preload(train_paths, spec.size, progress=progress, description="Decoding calibration images"))


def _presence_thresholds(
    model: Any, data: _Cache | None, spec: InputSpec
) -> tuple[tuple[float, ...] | None, dict[str, Any]]:
    """Per-class presence thresholds fitted on the run's held-out images, and how they compare with 0.5 there."""
    from fathombatch.exports.thresholds import DEFAULT, fit_thresholds, precision_recall
    from fathombatch.models.train import predict

    if data is None or len(data[0]) == 0:
        log.warning("no held-out images: the engine gets no per-class presence thresholds")
        return None, {}
    logits = predict(model, data[0], spec, 32)
    probs = sigmoid(logits)
    thresholds = fit_thresholds(data[1], probs)
    metrics = {
        "presence_at_0.5": precision_recall(data[1], probs, DEFAULT),
        "presence_at_thresholds": precision_recall(data[1], probs, thresholds),
    }
    return tuple(round(float(t), 6) for t in thresholds), metrics


def _onnx_map20(path: Path, cache: np.ndarray, y: np.ndarray, spec: InputSpec) -> float:
    import onnxruntime as ort

    from fathombatch.metrics import map_at_k_from_scores
    from fathombatch.preprocess import normalize

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = np.concatenate(
        [session.run(["logits"], {"images": normalize(cache[i : i + 32], spec)})[0] for i in range(0, len(cache), 32)]
    )
    return map_at_k_from_scores(y, logits)


class _Calibration:
    """ONNX Runtime CalibrationDataReader over normalised training images."""

    def __init__(self, cache: np.ndarray, spec: InputSpec, batch: int = 16) -> None:
        from fathombatch.preprocess import normalize

        self._batches = iter([{"images": normalize(cache[i : i + batch], spec)} for i in range(0, len(cache), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _reduce_precision(fp32: Path, dest: Path, precision: str, calibration: np.ndarray | None, spec: InputSpec) -> None:
    """Write a fp16 or int8 version of an fp32 ONNX file."""
    import onnx

    if precision == "fp16":
        from onnxconverter_common import float16

        model = float16.convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
        onnx.save(model, str(dest))
        return
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    if calibration is None or len(calibration) == 0:
        raise UsageError("int8 export needs the run's training images for calibration, and they are not available")
    prepared = dest.with_name(dest.name + ".pre.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a warning per un-foldable BatchNorm weight on the root logger
    try:
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(
            str(prepared), str(dest), _Calibration(calibration, spec), quant_format=QuantFormat.QDQ,
            per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    finally:
        root.setLevel(level)
        prepared.unlink(missing_ok=True)


def _export_onnx(model: Any, spec: InputSpec, dest: Path) -> float:
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


_SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "pt": ".pt"}
_PRECISIONS = {"onnx": ("fp32", "fp16", "int8"), "openvino": ("fp32", "int8"), "pt": ("fp32",)}


@dataclass(frozen=True)
class _Written:
    """What writing one engine format produced: the ONNX check, precision metrics for the manifest, a warning."""

    diff: float | None = None
    metrics: dict[str, Any] | None = None
    warning: str | None = None
    versions: dict[str, str] | None = None


def _check_config(cfg: ExportConfig) -> None:
    suffix = _SUFFIXES.get(cfg.format)
    if suffix is None:
        raise UsageError(f"unknown export format {cfg.format!r}; choose one of {', '.join(_SUFFIXES)}")
    if cfg.out.suffix.lower() != suffix:
        raise UsageError(f"--out {cfg.out} must end in {suffix} for --format {cfg.format}")
    if cfg.precision not in _PRECISIONS[cfg.format]:
        raise UsageError(f"--precision {cfg.precision} is not available for --format {cfg.format}; choose "
                         f"{' or '.join(_PRECISIONS[cfg.format])}")
    # The CLI takes 0..1; a negative limit (demanding a gain) is accepted here so that tests can force a refusal.
    if not -1.0 <= cfg.max_drop <= 1.0:
        raise UsageError(f"--max-drop must be between 0 and 1, got {cfg.max_drop}")
    if cfg.calibration is not None and (cfg.format, cfg.precision) != ("openvino", "int8"):
        raise UsageError("--calibration applies to --format openvino --precision int8 only")
    if cfg.calibration is not None and not cfg.calibration.is_dir():
        raise UsageError(f"--calibration {cfg.calibration} is not a folder")
    if any(inside(p, cfg.run) for p in (*engine_files(cfg.out), manifest_path(cfg.out))):  # the run is an input
        raise UsageError(f"the engine {cfg.out} is inside the run folder {cfg.run}, the export's input; an engine is "
                         "never written into its run, even with overwrite: choose an out path outside it")
    for path in engine_files(cfg.out):
        if path.exists() and not cfg.overwrite:
            raise OutputError(f"{path} already exists; pass --overwrite to replace it")


def _osd_section(cfg: ExportConfig, blob: dict[str, Any]) -> dict[str, Any]:
    osd: dict[str, Any] = {"method": "max-prob"}
    stats_path = cfg.run / "osd_stats.json"
    if stats_path.is_file():
        stats = json.loads(stats_path.read_text(encoding="utf-8"))
        if stats.pop("epoch", None) == int(blob["epoch"]):
            osd["stats"] = stats
        else:
            log.warning("%s was fitted for another checkpoint than %s; the knn osd method is not exported",
                        stats_path, cfg.checkpoint)
    return osd


def _write_pt(cfg: ExportConfig, model: Any, blob: dict[str, Any], n_classes: int) -> _Written:
    import torch

    payload = {
        "format": TORCH_ENGINE_FORMAT,
        "arch": str(blob["arch"]),
        "num_classes": n_classes,
        "img_size": int(blob["img_size"]),
        "state_dict": model.state_dict(),
    }
    with atomic_path(cfg.out) as tmp:
        torch.save(payload, tmp)
    return _Written()


def _write_onnx(cfg: ExportConfig, model: Any, spec: InputSpec, data: _Cache | None) -> _Written:
    if cfg.precision == "fp32":
        return _Written(diff=_export_onnx(model, spec, cfg.out))
    map_fp32 = map_engine = None
    with tempfile.TemporaryDirectory(prefix="fb-export-") as scratch:
        fp32 = Path(scratch) / "fp32.onnx"
        diff = _export_onnx(model, spec, fp32)
        with atomic_path(cfg.out) as tmp:
            _reduce_precision(fp32, tmp, cfg.precision, data[2] if data else None, spec)
            if data is not None:
                map_fp32 = _onnx_map20(fp32, data[0], data[1], spec)
                map_engine = _onnx_map20(tmp, data[0], data[1], spec)
    warning = None
    if map_fp32 is None or map_engine is None:
        warning = "held-out images unavailable: the reduced-precision engine's accuracy was not checked"
    elif abs(map_engine - map_fp32) > PRECISION_TOLERANCE:
        warning = (f"held-out MAP@20 moved from {map_fp32:.4f} (fp32) to {map_engine:.4f} ({cfg.precision}), more "
                   f"than {PRECISION_TOLERANCE}; prefer the fp32 engine")
    if warning:
        log.warning(warning)
    check = "not run" if map_fp32 is None else ("failed" if warning else "passed")
    return _Written(diff=diff, warning=warning, metrics={
        "val_map20_fp32_engine": map_fp32, "val_map20_engine": map_engine, "precision_check": check})


def _write_openvino(cfg: ExportConfig, model: Any, spec: InputSpec, data: _Cache | None) -> _Written:
    from fathombatch.backends import openvino_export as ovx
    from fathombatch.preprocess import normalize

    heldout = ovx.HeldOut(normalize(data[0], spec), data[1]) if data is not None and len(data[0]) else None
    with tempfile.TemporaryDirectory(prefix="fb-export-") as scratch:
        onnx_path = Path(scratch) / "fp32.onnx"
        diff = _export_onnx(model, spec, onnx_path)
        metrics = ovx.export_ir(onnx_path, cfg.out, spec, precision=cfg.precision, heldout=heldout,
                                calibration=cfg.calibration, max_drop=cfg.max_drop)
    return _Written(diff=diff, metrics=metrics, versions=ovx.runtime_versions())


def _trained_model(blob: dict[str, Any], n_classes: int) -> Any:
    """The checkpoint's model with its weights, in eval mode."""
    from fathombatch.models import create_model

    model = create_model(str(blob["arch"]), n_classes, img_size=int(blob["img_size"]))
    model.load_state_dict(blob["model"])
    return model.eval()


def _write_engine(cfg: ExportConfig, model: Any, spec: InputSpec, data: _Cache | None, blob: dict[str, Any],
                  n_classes: int) -> _Written:
    """Write the engine file of ``cfg.format``; returns the writer's result (diff, metrics, versions, warning)."""
    if cfg.format == "pt":
        return _write_pt(cfg, model, blob, n_classes)
    if cfg.format == "onnx":
        return _write_onnx(cfg, model, spec, data)
    return _write_openvino(cfg, model, spec, data)


def export_run(cfg: ExportConfig, *, progress: Progress | None = None) -> ExportResult:
    """Export a run's checkpoint as an engine and write its manifest (atomically, both); ``progress`` reports
    the decoding of the run's images (the quantisers run as one step each)."""
    from fathombatch.models.train import versions

    _check_config(cfg)
    blob = _load_checkpoint(cfg.run, cfg.checkpoint)
    taxonomy = Taxonomy.from_records(blob["classes"], name=str(blob.get("taxonomy", "custom")))
    spec = InputSpec.from_json(blob["input"])
    model = _trained_model(blob, len(taxonomy))
    osd = _osd_section(cfg, blob)

    data = _heldout_cache(cfg.run, spec, calibration=(cfg.format, cfg.precision) == ("onnx", "int8"), progress=progress)
    thresholds, threshold_metrics = _presence_thresholds(model, data, spec)
    written = _write_engine(cfg, model, spec, data, blob, len(taxonomy))
    extra = written.metrics or {}

    manifest = Manifest(
        name=cfg.out.stem,
        arch=str(blob["arch"]),
        runtime={"onnx": "onnxruntime", "openvino": "openvino", "pt": "torch"}[cfg.format],
        precision=cfg.precision,
        input=spec,
        taxonomy=taxonomy,
        outputs=("logits", "features"),
        feature_dim=int(model.feature_dim),
        osd=osd,
        class_counts=tuple(int(c) for c in blob["class_counts"]),
        metrics={
            "val_map20": float(blob["val_map20"]),
            "val_prior_floor": float(blob["val_prior_floor"]),
            "n_train": int(blob["n_train"]),
            "n_val": int(blob["n_val"]),
            **extra,
            **threshold_metrics,
        },
        provenance={
            "run": run_reference(cfg.run),
            "training_images": training_images(cfg.run),
            "checkpoint": cfg.checkpoint,
            "epoch": int(blob["epoch"]),
            "train_config": blob["config"],
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "onnx_max_abs_diff": written.diff,
        },
        versions={**versions(), **(written.versions or {})},
        engine_sha256=engine_sha256(cfg.out),
        thresholds=thresholds,
    )
    write_manifest(cfg.out, manifest)
    return ExportResult(engine=cfg.out, manifest=manifest_path(cfg.out), max_abs_diff=written.diff,
                        precision=cfg.precision, val_map20_fp32=extra.get("val_map20_fp32_engine"),
                        val_map20_engine=extra.get("val_map20_engine"), warning=written.warning,
                        bf16_check=extra.get("bf16_check"))
