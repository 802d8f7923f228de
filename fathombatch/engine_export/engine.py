"""Export a training run as an engine file plus its manifest.

* ``onnx``: ``torch.onnx.export`` (the dynamo exporter) with a dynamic batch axis and two outputs, ``logits``
  (N, C) and ``features`` (N, D); the result is checked against the PyTorch model with ONNX Runtime and refused
  when any logit differs by more than :data:`ONNX_TOLERANCE`.
* ``pt``: the architecture name plus the state dict, loadable with ``torch.load(weights_only=True)``.
* ``openvino``: OpenVINO IR (``NAME.xml`` + ``NAME.bin``) converted from the checked ONNX export; ``int8`` through
  NNCF with accuracy control, calibrated on the run's held-out images (or ``calibration``), refused when the
  held-out MAP@20 drops by more than ``max_drop`` (:mod:`fathombatch.engine_export.openvino`).

Reduced precision for ONNX (``precision``), through the conversion the TensorRT build shares
(:mod:`fathombatch.engine_export.quantize`):

* ``int8``: ONNX Runtime static quantisation for its CPU kernels, calibrated on training images of the run (MinMax).
* ``fp16``: weights and activations in float16, inputs and outputs kept float32. Meant for GPUs; ONNX Runtime's CPU
  provider runs most float16 operators slower than float32.

A reduced-precision export is checked on the run's held-out images: the manifest records the held-out MAP@20 of the
fp32 model and of the exported engine, and the export warns when they differ by more than
:data:`~fathombatch.engine_export.onnx.PRECISION_TOLERANCE`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fathombatch.backends.manifest import Manifest, engine_files, engine_sha256, manifest_path, write_manifest
from fathombatch.backends.torch_engine import TORCH_ENGINE_FORMAT
from fathombatch.engine_export.config import PRECISION_TOLERANCE, Checkpoint, ExportConfig, ExportFormat, Precision
from fathombatch.engine_export.onnx import ONNX_TOLERANCE, Written, export_onnx, write_onnx
from fathombatch.engine_export.runs import (
    RunImages,
    load_checkpoint,
    osd_section,
    presence_thresholds,
    run_images,
    trained_model,
)
from fathombatch.errors import OutputError, UsageError, param
from fathombatch.fsutil import atomic_path
from fathombatch.pathguard import inside
from fathombatch.preprocess import InputSpec, normalize
from fathombatch.progress import Progress
from fathombatch.taxonomy import Taxonomy
from fathombatch.trainset import run_reference, training_images

__all__ = ["ONNX_TOLERANCE", "PRECISION_TOLERANCE", "Checkpoint", "ExportConfig", "ExportFormat", "ExportResult",
           "Precision", "export_run"]

log = logging.getLogger(__name__)


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


_SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "pt": ".pt"}
_PRECISIONS = {"onnx": ("fp32", "fp16", "int8"), "openvino": ("fp32", "int8"), "pt": ("fp32",)}


def check_config(cfg: ExportConfig) -> None:
    """Refuse a config that cannot be exported, before any work; the messages name the config's fields.

    Raises:
        UsageError: an unknown format, a suffix or precision the format does not take, a limit out of range, a
            calibration folder where none applies or that is missing, an engine path inside the run.
        OutputError: an engine file exists and ``overwrite`` is off.
    """
    suffix = _SUFFIXES.get(cfg.format)
    if suffix is None:
        raise UsageError(f"unknown export format {cfg.format!r}; choose one of {', '.join(_SUFFIXES)}")
    out, fmt, precision = param("out"), param("format"), param("precision")
    if cfg.out.suffix.lower() != suffix:
        raise UsageError(f"{out} {cfg.out} must end in {suffix} for {fmt} {cfg.format}")
    if cfg.precision not in _PRECISIONS[cfg.format]:
        raise UsageError(f"{precision} {cfg.precision} is not available for {fmt} {cfg.format}; choose "
                         f"{' or '.join(_PRECISIONS[cfg.format])}")
    # The CLI takes 0..1; a negative limit (demanding a gain) is accepted here so that tests can force a refusal.
    if not -1.0 <= cfg.max_drop <= 1.0:
        raise UsageError(f"{param('max_drop')} must be between 0 and 1, got {cfg.max_drop}")
    if cfg.calibration is not None and (cfg.format, cfg.precision) != ("openvino", "int8"):
        raise UsageError(f"{param('calibration')} applies to {fmt} openvino {precision} int8 only")
    if cfg.calibration is not None and not cfg.calibration.is_dir():
        raise UsageError(f"{param('calibration')} {cfg.calibration} is not a folder")
    if any(inside(p, cfg.run) for p in (*engine_files(cfg.out), manifest_path(cfg.out))):  # the run is an input
        raise UsageError(f"the engine {cfg.out} is inside the run folder {cfg.run}, the export's input; an engine is "
                         "never written into its run, even with overwrite: choose an out path outside it")
    for path in engine_files(cfg.out):
        if path.exists() and not cfg.overwrite:
            raise OutputError(f"{path} already exists; pass {param('overwrite')} to replace it")


def _write_pt(cfg: ExportConfig, model: Any, blob: dict[str, Any], n_classes: int) -> Written:
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
    return Written()


def _write_openvino(cfg: ExportConfig, model: Any, spec: InputSpec, data: RunImages | None) -> Written:
    import tempfile

    from fathombatch.engine_export import openvino as ovx

    heldout = ovx.HeldOut(normalize(data.heldout, spec), data.truth) if data is not None and len(data.heldout) else None
    with tempfile.TemporaryDirectory(prefix="fb-export-") as scratch:
        onnx_path = Path(scratch) / "fp32.onnx"
        diff = export_onnx(model, spec, onnx_path)
        metrics = ovx.export_ir(onnx_path, cfg.out, spec, precision=cfg.precision, heldout=heldout,
                                calibration=cfg.calibration, max_drop=cfg.max_drop)
    return Written(diff=diff, metrics=metrics, versions=ovx.runtime_versions())


def _write_engine(cfg: ExportConfig, model: Any, spec: InputSpec, data: RunImages | None, blob: dict[str, Any],
                  n_classes: int) -> Written:
    """Write the engine file of ``cfg.format``; returns the writer's result (diff, metrics, versions, warning)."""
    if cfg.format == "pt":
        return _write_pt(cfg, model, blob, n_classes)
    if cfg.format == "onnx":
        return write_onnx(model, spec, cfg.out, cfg.precision, data)
    return _write_openvino(cfg, model, spec, data)


def _manifest(cfg: ExportConfig, blob: dict[str, Any], model: Any, written: Written, osd: dict[str, Any],
              thresholds: tuple[tuple[float, ...] | None, dict[str, Any]]) -> Manifest:
    """The engine's manifest: the checkpoint's taxonomy and input spec, the run's metrics and provenance, the osd
    section, what the writer measured, and the presence thresholds (with their metrics)."""
    from fathombatch.models.train import versions

    return Manifest(
        name=cfg.out.stem,
        arch=str(blob["arch"]),
        runtime={"onnx": "onnxruntime", "openvino": "openvino", "pt": "torch"}[cfg.format],
        precision=cfg.precision,
        input=InputSpec.from_json(blob["input"]),
        taxonomy=Taxonomy.from_records(blob["classes"], name=str(blob.get("taxonomy", "custom"))),
        outputs=("logits", "features"),
        feature_dim=int(model.feature_dim),
        osd=osd,
        class_counts=tuple(int(c) for c in blob["class_counts"]),
        metrics={
            "val_map20": float(blob["val_map20"]),
            "val_prior_floor": float(blob["val_prior_floor"]),
            "n_train": int(blob["n_train"]),
            "n_val": int(blob["n_val"]),
            **(written.metrics or {}),
            **thresholds[1],
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
        thresholds=thresholds[0],
    )


def export_run(cfg: ExportConfig, *, progress: Progress | None = None) -> ExportResult:
    """Export a run's checkpoint as an engine and write its manifest (atomically, both); ``progress`` reports
    the decoding of the run's images (the quantisers run as one step each)."""
    check_config(cfg)
    blob = load_checkpoint(cfg.run, cfg.checkpoint)
    n_classes = len(Taxonomy.from_records(blob["classes"], name=str(blob.get("taxonomy", "custom"))))
    spec = InputSpec.from_json(blob["input"])
    model = trained_model(blob, n_classes)
    osd = osd_section(cfg.run, cfg.checkpoint, blob)
    data = run_images(cfg.run, spec, calibration=(cfg.format, cfg.precision) == ("onnx", "int8"), progress=progress)
    thresholds = presence_thresholds(model, data, spec)
    written = _write_engine(cfg, model, spec, data, blob, n_classes)
    write_manifest(cfg.out, _manifest(cfg, blob, model, written, osd, thresholds))
    extra = written.metrics or {}
    return ExportResult(engine=cfg.out, manifest=manifest_path(cfg.out), max_abs_diff=written.diff,
                        precision=cfg.precision, val_map20_fp32=extra.get("val_map20_fp32_engine"),
                        val_map20_engine=extra.get("val_map20_engine"), warning=written.warning,
                        bf16_check=extra.get("bf16_check"))
