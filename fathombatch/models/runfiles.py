"""What a training run writes and reads back: the checkpoint payload, the run files, the history table.

See :mod:`fathombatch.models.train` for the run folder's layout.
"""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from fathombatch import __version__
from fathombatch.errors import TrainingError
from fathombatch.fsutil import atomic_path, file_sha256, write_json_atomic
from fathombatch.models.config import TrainConfig
from fathombatch.models.distributed import DistContext
from fathombatch.models.registry import Classifier
from fathombatch.preprocess import InputSpec
from fathombatch.safeload import load_torch_file

CHECKPOINT_FORMAT = "fathombatch-checkpoint"


@dataclass(frozen=True)
class EpochMetrics:
    """Metrics of one epoch; ``val_map20`` is MAP@20 on the held-out part."""

    epoch: int
    train_loss: float
    val_loss: float
    val_map20: float
    val_prior_floor: float
    lr: float
    seconds: float


def versions() -> dict[str, str]:
    """Versions worth recording next to any artefact."""
    import onnxruntime

    return {
        "fathombatch": __version__,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


@dataclass
class RunData:
    """A run's decoded images and labels: caches are (N, H, W, 3) uint8, labels (N, C) multi-hot."""

    taxonomy_records: list[dict[str, Any]]
    taxonomy_name: str
    spec: InputSpec
    train_cache: np.ndarray
    val_cache: np.ndarray
    y_train: np.ndarray
    y_val: np.ndarray
    class_counts: np.ndarray
    floor: float


@dataclass
class TrainState:
    """What a checkpoint restores: the model, optimiser, schedule, RNG and early-stopping state, the history."""

    model: Classifier
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    generator: torch.Generator
    epoch: int = 0
    best_map: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[EpochMetrics] = dataclasses.field(default_factory=list)


def checkpoint_payload(cfg: TrainConfig, data: RunData, state: TrainState, metrics: EpochMetrics) -> dict[str, Any]:
    """The checkpoint of the epoch just finished: tensors and plain containers only (``weights_only`` loads it)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "generator": state.generator.get_state(),
        "epoch": state.epoch,
        "best_val_map20": state.best_map,
        "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs,
        "history": [dataclasses.asdict(m) for m in state.history],
        "arch": cfg.arch,
        "num_classes": len(data.taxonomy_records),
        "img_size": cfg.img_size,
        "config": cfg.to_json(),
        "classes": data.taxonomy_records,
        "taxonomy": data.taxonomy_name,
        "input": data.spec.to_json(),
        "class_counts": [int(c) for c in data.class_counts],
        "val_map20": metrics.val_map20,
        "val_prior_floor": data.floor,
        "n_train": int(data.y_train.shape[0]),
        "n_val": int(data.y_val.shape[0]),
    }


def restore(state: TrainState, cfg: TrainConfig, data: RunData, path: Path) -> None:
    """Load checkpoint ``path`` into ``state``, after checking it belongs to this run (architecture, size, classes).

    Raises:
        TrainingError: not a fathombatch checkpoint, or one of another run.
    """
    blob = load_torch_file(path, "checkpoint")
    expected = {"arch": cfg.arch, "img_size": cfg.img_size, "num_classes": len(data.taxonomy_records)}
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not a fathombatch checkpoint and cannot be resumed")
    found = {k: blob.get(k) for k in expected}
    if found != expected or blob.get("classes") != data.taxonomy_records:
        raise TrainingError(f"checkpoint {path} is incompatible with this run (checkpoint {found}, run {expected})")
    try:
        state.model.load_state_dict(blob["model"])
        state.optimizer.load_state_dict(blob["optimizer"])
        state.scheduler.load_state_dict(blob["scheduler"])
        state.generator.set_state(blob["generator"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise TrainingError(f"checkpoint {path} is incompatible with this run: {str(exc)[:200]}") from None
    state.epoch = int(blob["epoch"])
    state.best_map = float(blob["best_val_map20"])
    state.best_epoch = int(blob["best_epoch"])
    state.bad_epochs = int(blob["bad_epochs"])
    state.history = [EpochMetrics(**m) for m in blob["history"]]


def write_run_files(cfg: TrainConfig, data: RunData, val_ids: list[str], device: torch.device,
                    ctx: DistContext) -> None:
    """Create the run folder with ``split.json`` and ``config.json`` (written once, when a run starts)."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cfg.out / "split.json", {"val_image_ids": val_ids})
    write_json_atomic(
        cfg.out / "config.json",
        {
            "config": cfg.to_json(),
            "n_train": int(data.y_train.shape[0]),
            "n_val": int(data.y_val.shape[0]),
            "labels_sha256": file_sha256(cfg.labels),
            "taxonomy": data.taxonomy_name,
            "input": data.spec.to_json(),
            "device": str(device),
            "world_size": ctx.world,
            "augmentation": dataclasses.asdict(cfg.augmentation),
            "versions": versions(),
        },
    )


def write_history(path: Path, history: list[EpochMetrics]) -> None:
    """Write ``metrics.parquet``: one row per epoch."""
    frame = pl.DataFrame([dataclasses.asdict(m) for m in history])
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)
