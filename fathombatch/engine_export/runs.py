"""What an export reads from a training run: the checkpoint, the model it holds, the run's held-out and calibration
images, the presence thresholds fitted on them and the open-set statistics."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fathombatch.errors import EngineError, FathombatchError, UsageError
from fathombatch.preprocess import InputSpec, normalize
from fathombatch.probability import sigmoid
from fathombatch.progress import Progress
from fathombatch.safeload import load_torch_file

#: Training images used to calibrate int8 quantisation (ONNX Runtime).
CALIBRATION_IMAGES = 128
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunImages:
    """A run's images, decoded once for every check of one export.

    Attributes:
        heldout: (N, H, W, 3) uint8 held-out images.
        truth: (N, C) multi-hot labels of ``heldout``.
        calibration: (M, H, W, 3) uint8 training images for ONNX int8 calibration (M = 0 when not asked for).
    """

    heldout: np.ndarray
    truth: np.ndarray
    calibration: np.ndarray

    def normalized_calibration(self, spec: InputSpec) -> np.ndarray:
        """(M, 3, H, W) float32 calibration images normalised per ``spec``."""
        return normalize(self.calibration, spec)


def load_checkpoint(run: Path, which: str) -> dict[str, Any]:
    """The checkpoint ``which`` (``best`` or ``last``) of a training run, checked to be fathombatch's.

    Raises:
        UsageError: the run folder or the checkpoint does not exist.
        EngineError: the file is not a fathombatch checkpoint.
    """
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


def trained_model(blob: dict[str, Any], n_classes: int) -> Any:
    """The checkpoint's model with its weights, in eval mode."""
    from fathombatch.models import create_model

    model = create_model(str(blob["arch"]), n_classes, img_size=int(blob["img_size"]))
    model.load_state_dict(blob["model"])
    return model.eval()


def run_images(run: Path, spec: InputSpec, *, calibration: bool = True,
               progress: Progress | None = None) -> RunImages | None:
    """The run's held-out images and labels, and (when ``calibration``) up to :data:`CALIBRATION_IMAGES` training
    images, decoded at ``spec``'s size; None when the images are not on this machine any more."""
    from fathombatch.labels import read_labels
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
    return RunImages(preload(val_paths, spec.size, progress=progress, description="Decoding held-out images"),
                     labels.multi_hot()[is_val],
                     preload(train_paths, spec.size, progress=progress, description="Decoding calibration images"))


def presence_thresholds(
    model: Any, data: RunImages | None, spec: InputSpec
) -> tuple[tuple[float, ...] | None, dict[str, Any]]:
    """Per-class presence thresholds fitted on the run's held-out images, and how they compare with 0.5 there."""
    from fathombatch.exports.thresholds import DEFAULT, fit_thresholds, precision_recall
    from fathombatch.models.train import predict

    if data is None or len(data.heldout) == 0:
        log.warning("no held-out images: the engine gets no per-class presence thresholds")
        return None, {}
    probs = sigmoid(predict(model, data.heldout, spec, 32))
    thresholds = fit_thresholds(data.truth, probs)
    metrics = {
        "presence_at_0.5": precision_recall(data.truth, probs, DEFAULT),
        "presence_at_thresholds": precision_recall(data.truth, probs, thresholds),
    }
    return tuple(round(float(t), 6) for t in thresholds), metrics


def osd_section(run: Path, checkpoint: str, blob: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``osd`` section: max-prob, plus the run's knn statistics when they were fitted for this
    checkpoint's epoch."""
    osd: dict[str, Any] = {"method": "max-prob"}
    stats_path = run / "osd_stats.json"
    if stats_path.is_file():
        stats = json.loads(stats_path.read_text(encoding="utf-8"))
        if stats.pop("epoch", None) == int(blob["epoch"]):
            osd["stats"] = stats
        else:
            log.warning("%s was fitted for another checkpoint than %s; the knn osd method is not exported",
                        stats_path, checkpoint)
    return osd
