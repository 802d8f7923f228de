"""The training loop: a stratified held-out split, MAP@20 on it every epoch, resumable, data-parallel.

A run folder holds everything needed to reproduce, resume and export it::

    RUN/config.json            the TrainConfig, split sizes, labels hash, device, world size, library versions;
                               at the end its outcome: best epoch, its MAP@20 and whether it beat the prior floor
    RUN/split.json             held-out image ids
    RUN/metrics.parquet        one row per epoch: losses, held-out MAP@20, prior floor, learning rate, seconds
    RUN/checkpoints/last.pt    model, optimizer, scheduler, RNG state, early-stopping state, history
    RUN/checkpoints/best.pt    the epoch with the best held-out MAP@20
    RUN/osd_stats.json         training-feature statistics for out-of-sample scoring (fitted at the end)
    RUN/replicas.json          data-parallel runs: every rank's parameter SHA-256 after the last epoch

Checkpoints hold only tensors and plain containers, so they load with ``torch.load(weights_only=True)``. Every file
is written atomically; ``resume`` continues an interrupted run from ``last.pt`` exactly where it stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import shutil
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
from fathombatch.backends.manifest import file_sha256
from fathombatch.errors import TrainingError, UsageError
from fathombatch.fsutil import atomic_path, write_json_atomic
from fathombatch.labels import read_labels
from fathombatch.labels.splits import stratified_split
from fathombatch.metrics import map_at_k_from_scores, prior_floor
from fathombatch.models.augment import augment_batch
from fathombatch.models.checks import labelled_image_files, record_outcome, warn_empty_label_sets
from fathombatch.models.config import TrainConfig, config_from, lr_factor, resolve_amp, validate_config
from fathombatch.models.data import preload
from fathombatch.models.distributed import (
    DistContext,
    broadcast_object,
    check_replicas,
    init_distributed,
    shard,
    shutdown,
)
from fathombatch.models.losses import create_loss
from fathombatch.models.registry import Classifier, create_model
from fathombatch.osd import fit_osd_stats
from fathombatch.preprocess import InputSpec, normalize
from fathombatch.probability import sigmoid
from fathombatch.progress import Progress
from fathombatch.safeload import load_torch_file

CHECKPOINT_FORMAT = "fathombatch-checkpoint"
__all__ = ["CHECKPOINT_FORMAT", "EpochMetrics", "TrainConfig", "TrainResult", "config_from", "resume", "train"]
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
    stopped_early: bool = False
    world_size: int = 1
    replica_digests: tuple[str, ...] = ()


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


def _device(cfg: TrainConfig, ctx_local_rank: int = 0) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for but PyTorch sees no CUDA GPU")
        return torch.device("cuda", ctx_local_rank)
    return torch.device("cpu")


def _to_tensor(batch_hwc: np.ndarray, spec: InputSpec, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(normalize(batch_hwc, spec)).to(device, non_blocking=True)


def predict(
    model: Classifier, cache: np.ndarray, spec: InputSpec, batch_size: int, device: torch.device | None = None,
    *, features: bool = False,
) -> np.ndarray:
    """Logits (or features) for cached uint8 images: (N, H, W, 3) -> (N, C) or (N, D) float32, eval mode."""
    device = device or torch.device("cpu")
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, cache.shape[0], batch_size):
            x = _to_tensor(cache[start : start + batch_size], spec, device)
            logits, feats = model.forward_with_features(x)
            out.append((feats if features else logits).float().cpu().numpy())
    width = model.feature_dim if features else model.num_classes
    return np.concatenate(out) if out else np.empty((0, width), dtype=np.float32)


def evaluate_split(
    model: Classifier, cache: np.ndarray, y: np.ndarray, spec: InputSpec, batch_size: int, loss_fn: nn.Module,
    device: torch.device | None = None,
) -> tuple[float, float]:
    """Return (mean loss, MAP@20) of the model on a held-out part."""
    logits = predict(model, cache, spec, batch_size, device)
    with torch.no_grad():
        cpu_loss = copy.deepcopy(loss_fn).cpu()  # the training loss may live on the GPU (pos_weight)
        loss = float(cpu_loss(torch.from_numpy(logits), torch.from_numpy(y.astype(np.float32))))
    probs = sigmoid(logits)
    return loss, map_at_k_from_scores(y, probs)


def batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Split an epoch's order into sorted index batches; a last batch of one image joins the one before it.

    (Batch normalisation cannot train on a single image, and dropping it would silently skip data.)
    """
    cuts = list(range(0, len(order), batch_size))
    if len(order) > 1 and len(order) % batch_size == 1:
        cuts.pop()
    return [np.sort(order[a:b]) for a, b in zip(cuts, cuts[1:] + [len(order)], strict=True)]


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


@dataclass
class _Data:
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
class _State:
    model: Classifier
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    generator: torch.Generator
    epoch: int = 0
    best_map: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[EpochMetrics] = dataclasses.field(default_factory=list)


def _load_data(cfg: TrainConfig, progress: Progress, val_ids: list[str] | None) -> tuple[_Data, list[str]]:
    labels = read_labels(cfg.labels)
    if len(labels) < 2:
        raise TrainingError(f"{cfg.labels} has {len(labels)} labelled image(s); training needs at least 2")
    paths = labelled_image_files(labels, cfg.images)
    y = labels.multi_hot()
    ids = labels.image_ids
    if val_ids is None:
        train_idx, val_idx = stratified_split(y, cfg.val_fraction, cfg.seed)
    else:
        in_val = np.isin(np.array(ids, dtype=object), np.array(val_ids, dtype=object))
        train_idx, val_idx = np.flatnonzero(~in_val), np.flatnonzero(in_val)
    if len(train_idx) < 2:
        raise TrainingError(f"{cfg.labels}: {len(train_idx)} of its {len(labels)} images are left for training after "
                            "the held-out split; training needs at least 2 (label more images, or lower "
                            "--val-fraction)")
    if not y.any():
        raise TrainingError(f"{cfg.labels}: every image has an empty category list, so there is nothing to learn "
                            "(a model trained on it scores MAP@20 0); check the file's categories column")
    warn_empty_label_sets(labels)
    spec = InputSpec(height=cfg.img_size, width=cfg.img_size)
    cache = preload(paths, spec.size, threads=cfg.threads, progress=progress)
    class_counts = y[train_idx].sum(axis=0, dtype=np.int64)
    data = _Data(
        taxonomy_records=labels.taxonomy.to_records(),
        taxonomy_name=labels.taxonomy.name,
        spec=spec,
        train_cache=cache[train_idx],
        val_cache=cache[val_idx],
        y_train=y[train_idx],
        y_val=y[val_idx],
        class_counts=class_counts,
        floor=prior_floor(y[val_idx], class_counts),
    )
    return data, [ids[i] for i in val_idx]


def _build_state(cfg: TrainConfig, data: _Data, device: torch.device, steps_per_epoch: int) -> _State:
    torch.manual_seed(cfg.seed)
    model = create_model(
        cfg.arch, len(data.taxonomy_records), img_size=cfg.img_size, pretrained=cfg.pretrained, weights=cfg.weights
    ).to(device)
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch))
    generator = torch.Generator().manual_seed(cfg.seed)
    return _State(model=model, optimizer=optimizer, scheduler=scheduler, generator=generator)


def _payload(cfg: TrainConfig, data: _Data, state: _State, metrics: EpochMetrics) -> dict[str, Any]:
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


def train(
    cfg: TrainConfig,
    *,
    progress: Progress | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> TrainResult:
    """Train a model from scratch (or pretrained weights) and write a run folder (see the module docstring).

    Under ``torchrun`` every process calls this; they share the work and rank 0 writes the files.
    """
    validate_config(cfg)
    if cfg.out.exists() and any(cfg.out.iterdir()):
        raise UsageError(f"run folder {cfg.out} already exists and is not empty; choose a new --out or --resume it")
    try:
        return _run(cfg, progress=progress, on_epoch=on_epoch, resume_from=None)
    except BaseException:
        # A run that fails before its first checkpoint leaves nothing worth resuming; its half-made folder (which
        # this call created, or found empty) would block both a new run and --resume.
        if not (cfg.out / "checkpoints" / "last.pt").exists():
            shutil.rmtree(cfg.out, ignore_errors=True)
        raise


def resume(
    run: Path,
    *,
    epochs: int | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> TrainResult:
    """Continue an interrupted run from ``RUN/checkpoints/last.pt`` (optionally with more epochs)."""
    config_path = run / "config.json"
    last = run / "checkpoints" / "last.pt"
    if not config_path.is_file() or not last.is_file():
        raise UsageError(f"{run} is not a resumable training run (needs config.json and checkpoints/last.pt)")
    saved = json.loads(config_path.read_text(encoding="utf-8"))
    cfg = TrainConfig.from_json(saved["config"])
    changes: dict[str, Any] = {"out": run}
    if epochs is not None:
        changes["epochs"] = epochs
    if threads is not None:
        changes["threads"] = threads
    cfg = dataclasses.replace(cfg, **changes)
    validate_config(cfg)
    if saved.get("labels_sha256") and file_sha256(cfg.labels) != saved["labels_sha256"]:
        raise TrainingError(f"{cfg.labels} changed since run {run} started; start a new run instead of resuming")
    return _run(cfg, progress=progress, on_epoch=on_epoch, resume_from=last)


def _restore(state: _State, cfg: TrainConfig, data: _Data, path: Path) -> None:
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


def _run(
    cfg: TrainConfig,
    *,
    progress: Progress | None,
    on_epoch: Callable[[EpochMetrics], None] | None,
    resume_from: Path | None,
) -> TrainResult:
    device_type = "cuda" if (cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())) else "cpu"
    ctx = init_distributed(device_type)
    try:
        return _run_in_context(cfg, ctx, progress, on_epoch, resume_from)
    finally:
        shutdown(ctx)


def _run_in_context(
    cfg: TrainConfig,
    ctx: DistContext,
    progress: Progress | None,
    on_epoch: Callable[[EpochMetrics], None] | None,
    resume_from: Path | None,
) -> TrainResult:
    device = _device(cfg, ctx.local_rank)
    if cfg.threads or ctx.enabled:
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // ctx.world))
    progress = progress if (progress is not None and ctx.is_main) else Progress(enabled=False)
    val_ids = None
    if resume_from is not None:
        val_ids = json.loads((cfg.out / "split.json").read_text(encoding="utf-8"))["val_image_ids"]
    data, val_ids = _load_data(cfg, progress, val_ids)
    steps_per_epoch = len(batches(shard(np.arange(data.y_train.shape[0]), ctx), cfg.batch_size))
    state = _build_state(cfg, data, device, steps_per_epoch)
    if resume_from is not None:
        _restore(state, cfg, data, resume_from)
    elif ctx.is_main:
        _write_run_files(cfg, data, val_ids, device, ctx)

    model: nn.Module = state.model
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(state.model, device_ids=[device.index] if device.type == "cuda" else None)
    amp_dtype = resolve_amp(cfg.amp, device)
    scaler = torch.amp.GradScaler("cuda") if (amp_dtype == torch.float16 and device.type == "cuda") else None
    loss_fn = create_loss(cfg.loss, data.class_counts, data.y_train.shape[0]).to(device)
    augmentation = cfg.augmentation
    stopped_early = False
    digests: list[str] = []

    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        if cfg.early_stop and state.bad_epochs >= cfg.early_stop:
            stopped_early = True
            break
        start = time.perf_counter()
        order = np.random.default_rng([cfg.seed, epoch]).permutation(data.y_train.shape[0])
        mine = shard(order, ctx)
        model.train()
        total, seen = 0.0, 0
        with progress.task(f"Epoch {epoch}/{cfg.epochs}", len(mine)) as task:
            for idx in batches(mine, cfg.batch_size):
                pixels = augment_batch(data.train_cache[idx], augmentation, state.generator)
                x = _to_tensor(pixels, data.spec, device)
                target = torch.from_numpy(data.y_train[idx].astype(np.float32)).to(device)
                state.optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                    logits = model(x)
                loss = loss_fn(logits.float(), target)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(state.optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    state.optimizer.step()
                state.scheduler.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
                task.advance(len(idx))
        digests = check_replicas(state.model, ctx)
        val_loss, val_map = evaluate_split(state.model, data.val_cache, data.y_val, data.spec, cfg.batch_size,
                                           loss_fn, device)
        state.epoch = epoch
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=total / max(seen, 1),
            val_loss=val_loss,
            val_map20=val_map,
            val_prior_floor=data.floor,
            lr=state.optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - start,
        )
        state.history.append(metrics)
        improved = val_map > state.best_map
        if improved:
            state.best_map, state.best_epoch, state.bad_epochs = val_map, epoch, 0
        else:
            state.bad_epochs += 1
        if ctx.is_main:
            payload = _payload(cfg, data, state, metrics)
            save_checkpoint(cfg.out / "checkpoints" / "last.pt", payload)
            if improved:
                save_checkpoint(cfg.out / "checkpoints" / "best.pt", payload)
            _write_history(cfg.out / "metrics.parquet", state.history)
            if ctx.enabled:
                write_json_atomic(cfg.out / "replicas.json", {"epoch": epoch, "world_size": ctx.world,
                                                              "parameter_sha256": digests})
            if on_epoch:
                on_epoch(metrics)
        # Every rank evaluates the same weights on the same data; rank 0's count is made authoritative anyway.
        state.bad_epochs = broadcast_object(state.bad_epochs, ctx)

    if ctx.is_main:
        _fit_osd(cfg, data, state, device)
        record_outcome(cfg.out, best_epoch=state.best_epoch, best_val_map20=state.best_map, prior_floor=data.floor)
    return TrainResult(
        out=cfg.out,
        best_epoch=state.best_epoch,
        best_val_map20=state.best_map,
        val_prior_floor=data.floor,
        n_train=int(data.y_train.shape[0]),
        n_val=int(data.y_val.shape[0]),
        history=tuple(state.history),
        stopped_early=stopped_early,
        world_size=ctx.world,
        replica_digests=tuple(digests),
    )


def _write_run_files(cfg: TrainConfig, data: _Data, val_ids: list[str], device: torch.device, ctx: DistContext) -> None:
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


def _fit_osd(cfg: TrainConfig, data: _Data, state: _State, device: torch.device) -> None:
    """Fit out-of-sample statistics on the training part's features, with the best checkpoint's weights."""
    best = cfg.out / "checkpoints" / "best.pt"
    if not best.is_file():
        return
    blob = torch.load(best, map_location="cpu", weights_only=True)
    state.model.load_state_dict(blob["model"])
    features = predict(state.model, data.train_cache, data.spec, cfg.batch_size, device, features=True)
    stats = fit_osd_stats(features, seed=cfg.seed)
    write_json_atomic(cfg.out / "osd_stats.json", {"epoch": int(blob["epoch"]), **stats})


def _write_history(path: Path, history: list[EpochMetrics]) -> None:
    frame = pl.DataFrame([dataclasses.asdict(m) for m in history])
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)

