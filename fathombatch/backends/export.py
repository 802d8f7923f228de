"""Export a training run as an engine file plus its manifest.

* ``onnx``: ``torch.onnx.export`` (the dynamo exporter) with a dynamic batch axis and two outputs, ``logits``
  (N, C) and ``features`` (N, D); the result is checked against the PyTorch model with ONNX Runtime and refused
  when any logit differs by more than :data:`ONNX_TOLERANCE`.
* ``pt``: the architecture name plus the state dict, loadable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fathombatch.backends.manifest import Manifest, file_sha256, manifest_path, write_manifest
from fathombatch.backends.torch_engine import TORCH_ENGINE_FORMAT
from fathombatch.errors import EngineError, OutputError, UsageError
from fathombatch.fsutil import atomic_path
from fathombatch.preprocess import InputSpec
from fathombatch.safeload import load_torch_file
from fathombatch.taxonomy import Taxonomy

#: Largest tolerated |logit difference| between the exported ONNX engine and the PyTorch model.
ONNX_TOLERANCE = 1e-4

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportConfig:
    """What to export.

    Attributes:
        run: training run folder.
        format: ``onnx`` or ``pt``.
        out: engine path (suffix must match the format); the manifest goes to ``<out>.json``.
        checkpoint: ``best`` (highest held-out MAP@20) or ``last``.
        overwrite: replace an existing engine file.
    """

    run: Path
    format: Literal["onnx", "pt"]
    out: Path
    checkpoint: Literal["best", "last"] = "best"
    overwrite: bool = False


@dataclass(frozen=True)
class ExportResult:
    engine: Path
    manifest: Path
    max_abs_diff: float | None


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


def export_run(cfg: ExportConfig) -> ExportResult:
    """Export a run's checkpoint as an engine and write its manifest (atomically, both)."""
    import torch

    from fathombatch.models import create_model
    from fathombatch.models.train import versions

    suffix = {"onnx": ".onnx", "pt": ".pt"}.get(cfg.format)
    if suffix is None:
        raise UsageError(f"unknown export format {cfg.format!r}; choose onnx or pt")
    if cfg.out.suffix.lower() != suffix:
        raise UsageError(f"--out {cfg.out} must end in {suffix} for --format {cfg.format}")
    if cfg.out.exists() and not cfg.overwrite:
        raise OutputError(f"{cfg.out} already exists; pass --overwrite to replace it")

    blob = _load_checkpoint(cfg.run, cfg.checkpoint)
    taxonomy = Taxonomy.from_records(blob["classes"], name=str(blob.get("taxonomy", "custom")))
    spec = InputSpec.from_json(blob["input"])
    model = create_model(str(blob["arch"]), len(taxonomy), img_size=int(blob["img_size"]))
    model.load_state_dict(blob["model"])
    model.eval()

    osd: dict[str, Any] = {"method": "max-prob"}
    stats_path = cfg.run / "osd_stats.json"
    if stats_path.is_file():
        stats = json.loads(stats_path.read_text(encoding="utf-8"))
        if stats.pop("epoch", None) == int(blob["epoch"]):
            osd["stats"] = stats
        else:
            log.warning("%s was fitted for another checkpoint than %s; the knn osd method is not exported",
                        stats_path, cfg.checkpoint)

    diff: float | None = None
    if cfg.format == "onnx":
        diff = _export_onnx(model, spec, cfg.out)
        runtime = "onnxruntime"
    else:
        payload = {
            "format": TORCH_ENGINE_FORMAT,
            "arch": str(blob["arch"]),
            "num_classes": len(taxonomy),
            "img_size": int(blob["img_size"]),
            "state_dict": model.state_dict(),
        }
        with atomic_path(cfg.out) as tmp:
            torch.save(payload, tmp)
        runtime = "torch"

    manifest = Manifest(
        name=cfg.out.stem,
        arch=str(blob["arch"]),
        runtime=runtime,
        precision="fp32",
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
        },
        provenance={
            "run": str(cfg.run),
            "checkpoint": cfg.checkpoint,
            "epoch": int(blob["epoch"]),
            "train_config": blob["config"],
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "onnx_max_abs_diff": diff,
        },
        versions=versions(),
        engine_sha256=file_sha256(cfg.out),
    )
    write_manifest(cfg.out, manifest)
    return ExportResult(engine=cfg.out, manifest=manifest_path(cfg.out), max_abs_diff=diff)
