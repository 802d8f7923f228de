"""The training loop: BCE-with-logits, Adam, a stratified held-out split, MAP@20 on it every epoch.

A run folder holds everything needed to reproduce and export it::

    RUN/config.json            the TrainConfig, the split sizes, the taxonomy and library versions
    RUN/split.json             held-out image ids
    RUN/metrics.parquet        one row per epoch: losses, held-out MAP@20, prior floor, learning rate, seconds
    RUN/checkpoints/last.pt    model + optimizer + epoch (plain tensors and containers: loads with weights_only)
    RUN/checkpoints/best.pt    the epoch with the best held-out MAP@20

Every file is written atomically, so an interrupted run leaves the last complete epoch behind.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from fathombatch import __version__
from fathombatch.datasets import read_labels
from fathombatch.errors import TrainingError, UsageError
from fathombatch.fsutil import atomic_path, write_json_atomic
from fathombatch.metrics import map_at_k_from_scores, prior_floor
from fathombatch.models.data import match_images, preload
from fathombatch.models.registry import Classifier, create_model
from fathombatch.preprocess import InputSpec, normalize
from fathombatch.progress import Progress
from fathombatch.splits import stratified_split

CHECKPOINT_FORMAT = "fathombatch-checkpoint"


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        images: folder with the training images (searched recursively).
        labels: Kaggle ``.csv`` or COCO ``.json`` labels.
        out: run folder to create.
        arch: registered architecture.
        epochs: passes over the training part.
        img_size: square input size in pixels.
        batch_size: images per optimiser step.
        lr: Adam learning rate.
        val_fraction: held-out share (iterative stratification).
        seed: seeds the split, initialisation and shuffling.
        pretrained: start from ImageNet weights.
        weights: local weights file to start from.
        threads: CPU threads for PyTorch (None: PyTorch's default).
    """

    images: Path
    labels: Path
    out: Path
    arch: str = "resnet18"
    epochs: int = 10
    img_size: int = 224
    batch_size: int = 32
    lr: float = 1e-3
    val_fraction: float = 0.2
    seed: int = 0
    pretrained: bool = False
    weights: Path | None = None
    threads: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


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


@dataclass(frozen=True)
class TrainResult:
    out: Path
    best_epoch: int
    best_val_map20: float
    val_prior_floor: float
    n_train: int
    n_val: int
    history: tuple[EpochMetrics, ...]


def _validate(cfg: TrainConfig) -> None:
    if not cfg.images.is_dir():
        raise UsageError(f"image folder {cfg.images} does not exist")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise UsageError("--epochs and --batch-size must be at least 1 and --lr positive")
    if not 8 <= cfg.img_size <= 1024:
        raise UsageError(f"--img-size must be between 8 and 1024 pixels, got {cfg.img_size}")
    if cfg.out.exists() and any(cfg.out.iterdir()):
        raise UsageError(f"run folder {cfg.out} already exists and is not empty; choose a new --out")


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


def _to_tensor(batch_hwc: np.ndarray, spec: InputSpec) -> torch.Tensor:
    return torch.from_numpy(normalize(batch_hwc, spec))


def predict(
    model: Classifier, cache: np.ndarray, spec: InputSpec, batch_size: int
) -> np.ndarray:
    """Logits for cached uint8 images: (N, H, W, 3) -> (N, C) float32, in eval mode."""
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, cache.shape[0], batch_size):
            out.append(model(_to_tensor(cache[start : start + batch_size], spec)).float().numpy())
    return np.concatenate(out) if out else np.empty((0, model.num_classes), dtype=np.float32)


def train_one_epoch(
    model: Classifier,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    cache: np.ndarray,
    y: np.ndarray,
    spec: InputSpec,
    batch_size: int,
    generator: torch.Generator,
    on_batch: Callable[[int], None] | None = None,
) -> float:
    """One pass over (cache, y) in a random order; returns the mean training loss."""
    model.train()
    order = torch.randperm(cache.shape[0], generator=generator).numpy()
    total, seen = 0.0, 0
    for start in range(0, len(order), batch_size):
        idx = np.sort(order[start : start + batch_size])
        x = _to_tensor(cache[idx], spec)
        target = torch.from_numpy(y[idx].astype(np.float32))
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), target)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
        seen += len(idx)
        if on_batch:
            on_batch(len(idx))
    return total / max(seen, 1)


def evaluate_split(
    model: Classifier, cache: np.ndarray, y: np.ndarray, spec: InputSpec, batch_size: int, loss_fn: nn.Module
) -> tuple[float, float]:
    """Return (mean loss, MAP@20) of the model on a held-out part."""
    logits = predict(model, cache, spec, batch_size)
    loss = float(loss_fn(torch.from_numpy(logits), torch.from_numpy(y.astype(np.float32))))
    probs = 1.0 / (1.0 + np.exp(-logits))
    return loss, map_at_k_from_scores(y, probs)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def train(
    cfg: TrainConfig,
    *,
    progress: Progress | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> TrainResult:
    """Train a model and write a run folder (see the module docstring).

    Args:
        cfg: the run.
        progress: progress bars (None: silent).
        on_epoch: called after every epoch with its metrics.
    """
    _validate(cfg)
    progress = progress or Progress(enabled=False)
    labels = read_labels(cfg.labels)
    taxonomy = labels.taxonomy
    paths = match_images(labels, cfg.images)
    y = labels.multi_hot()
    if len(labels) < 2:
        raise TrainingError(f"{cfg.labels} has {len(labels)} labelled image(s); training needs at least 2")
    train_idx, val_idx = stratified_split(y, cfg.val_fraction, cfg.seed)

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    spec = InputSpec(height=cfg.img_size, width=cfg.img_size)
    model = create_model(
        cfg.arch, len(taxonomy), img_size=cfg.img_size, pretrained=cfg.pretrained, weights=cfg.weights
    )
    cache = preload(paths, spec.size, threads=cfg.threads, progress=progress)
    train_cache, val_cache = cache[train_idx], cache[val_idx]
    y_train, y_val = y[train_idx], y[val_idx]
    del cache
    class_counts = y_train.sum(axis=0, dtype=np.int64)
    floor = prior_floor(y_val, class_counts)

    cfg.out.mkdir(parents=True, exist_ok=True)
    ids = labels.image_ids
    write_json_atomic(cfg.out / "split.json", {"val_image_ids": [ids[i] for i in val_idx]})
    write_json_atomic(
        cfg.out / "config.json",
        {
            "config": cfg.to_json(),
            "n_train": len(train_idx),
            "n_val": len(val_idx),
            "taxonomy": taxonomy.name,
            "input": spec.to_json(),
            "versions": versions(),
        },
    )

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(cfg.seed)
    history: list[EpochMetrics] = []
    best_map, best_epoch = -1.0, 0
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        with progress.task(f"Epoch {epoch}/{cfg.epochs}", len(train_idx)) as task:
            train_loss = train_one_epoch(
                model, optimizer, loss_fn, train_cache, y_train, spec, cfg.batch_size, generator, task.advance
            )
        val_loss, val_map = evaluate_split(model, val_cache, y_val, spec, cfg.batch_size, loss_fn)
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            val_map20=val_map,
            val_prior_floor=floor,
            lr=optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - start,
        )
        history.append(metrics)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "arch": cfg.arch,
            "num_classes": len(taxonomy),
            "img_size": cfg.img_size,
            "config": cfg.to_json(),
            "classes": taxonomy.to_records(),
            "taxonomy": taxonomy.name,
            "input": spec.to_json(),
            "class_counts": [int(c) for c in class_counts],
            "val_map20": val_map,
            "val_prior_floor": floor,
            "n_train": len(train_idx),
            "n_val": len(val_idx),
        }
        save_checkpoint(cfg.out / "checkpoints" / "last.pt", payload)
        if val_map > best_map:
            best_map, best_epoch = val_map, epoch
            save_checkpoint(cfg.out / "checkpoints" / "best.pt", payload)
        _write_history(cfg.out / "metrics.parquet", history)
        if on_epoch:
            on_epoch(metrics)
    return TrainResult(
        out=cfg.out,
        best_epoch=best_epoch,
        best_val_map20=best_map,
        val_prior_floor=floor,
        n_train=len(train_idx),
        n_val=len(val_idx),
        history=tuple(history),
    )


def _write_history(path: Path, history: list[EpochMetrics]) -> None:
    frame = pl.DataFrame([dataclasses.asdict(m) for m in history])
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)


def read_run_config(run: Path) -> dict[str, Any]:
    """The ``config.json`` of a run folder."""
    path = run / "config.json"
    if not path.is_file():
        raise UsageError(f"{run} is not a training run folder ({path} is missing)")
    return json.loads(path.read_text(encoding="utf-8"))
