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

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fathombatch.errors import TrainingError, UsageError, param
from fathombatch.fsutil import file_sha256, write_json_atomic
from fathombatch.labels import read_labels
from fathombatch.labels.splits import stratified_split
from fathombatch.metrics import prior_floor
from fathombatch.models.checks import labelled_image_files, record_outcome, validate_config, warn_empty_label_sets
from fathombatch.models.config import TrainConfig, config_from, lr_factor
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
from fathombatch.models.registry import create_model
from fathombatch.models.runfiles import (
    CHECKPOINT_FORMAT,
    EpochMetrics,
    RunData,
    TrainState,
    checkpoint_payload,
    restore,
    save_checkpoint,
    versions,
    write_history,
    write_run_files,
)
from fathombatch.models.steps import Step, batches, evaluate_split, predict, resolve_amp, train_pass
from fathombatch.osd import fit_osd_stats
from fathombatch.preprocess import InputSpec
from fathombatch.progress import Progress

__all__ = ["CHECKPOINT_FORMAT", "EpochMetrics", "TrainConfig", "TrainResult", "batches", "config_from",
           "evaluate_split", "predict", "resume", "save_checkpoint", "train", "versions"]


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


def _device(cfg: TrainConfig, ctx_local_rank: int = 0) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UsageError(f"{param('device')} cuda was asked for but PyTorch sees no CUDA GPU")
        return torch.device("cuda", ctx_local_rank)
    return torch.device("cpu")


def _load_data(cfg: TrainConfig, progress: Progress, val_ids: list[str] | None) -> tuple[RunData, list[str]]:
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
                            f"{param('val_fraction')})")
    if not y.any():
        raise TrainingError(f"{cfg.labels}: every image has an empty category list, so there is nothing to learn "
                            "(a model trained on it scores MAP@20 0); check the file's categories column")
    warn_empty_label_sets(labels)
    spec = InputSpec(height=cfg.img_size, width=cfg.img_size)
    cache = preload(paths, spec.size, threads=cfg.threads, progress=progress)
    class_counts = y[train_idx].sum(axis=0, dtype=np.int64)
    data = RunData(
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


def _build_state(cfg: TrainConfig, data: RunData, device: torch.device, steps_per_epoch: int) -> TrainState:
    torch.manual_seed(cfg.seed)
    model = create_model(
        cfg.arch, len(data.taxonomy_records), img_size=cfg.img_size, pretrained=cfg.pretrained, weights=cfg.weights
    ).to(device)
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch))
    generator = torch.Generator().manual_seed(cfg.seed)
    return TrainState(model=model, optimizer=optimizer, scheduler=scheduler, generator=generator)


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
        raise UsageError(f"run folder {cfg.out} already exists and is not empty; choose a new {param('out')} or "
                         f"{param('resume')} it")
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
    data, state = _prepare(cfg, ctx, device, progress, resume_from)
    step = _step(cfg, ctx, data, state, device)
    stopped_early = False
    digests: list[str] = []
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        if cfg.early_stop and state.bad_epochs >= cfg.early_stop:
            stopped_early = True
            break
        start = time.perf_counter()
        order = np.random.default_rng([cfg.seed, epoch]).permutation(data.y_train.shape[0])
        train_loss = train_pass(step, shard(order, ctx), data.train_cache, data.y_train, data.spec,
                                cfg.augmentation, state.generator, cfg.batch_size, progress,
                                f"Epoch {epoch}/{cfg.epochs}")
        digests = check_replicas(state.model, ctx)
        _end_epoch(cfg, ctx, data, state, step, epoch, train_loss, time.perf_counter() - start, digests, on_epoch)

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


def _prepare(cfg: TrainConfig, ctx: DistContext, device: torch.device, progress: Progress,
             resume_from: Path | None) -> tuple[RunData, TrainState]:
    """Decode the run's images and build (or restore) the training state; a new run's files are written here."""
    val_ids = None
    if resume_from is not None:
        val_ids = json.loads((cfg.out / "split.json").read_text(encoding="utf-8"))["val_image_ids"]
    data, val_ids = _load_data(cfg, progress, val_ids)
    steps_per_epoch = len(batches(shard(np.arange(data.y_train.shape[0]), ctx), cfg.batch_size))
    state = _build_state(cfg, data, device, steps_per_epoch)
    if resume_from is not None:
        restore(state, cfg, data, resume_from)
    elif ctx.is_main:
        write_run_files(cfg, data, val_ids, device, ctx)
    return data, state


def _step(cfg: TrainConfig, ctx: DistContext, data: RunData, state: TrainState, device: torch.device) -> Step:
    """The optimisation step: the model (wrapped for data-parallel runs), the loss, mixed precision."""
    model: nn.Module = state.model
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(state.model, device_ids=[device.index] if device.type == "cuda" else None)
    amp_dtype = resolve_amp(cfg.amp, device)
    scaler = torch.amp.GradScaler("cuda") if (amp_dtype == torch.float16 and device.type == "cuda") else None
    loss_fn = create_loss(cfg.loss, data.class_counts, data.y_train.shape[0]).to(device)
    return Step(model=model, loss_fn=loss_fn, optimizer=state.optimizer, scheduler=state.scheduler, device=device,
                amp_dtype=amp_dtype, scaler=scaler)


def _end_epoch(cfg: TrainConfig, ctx: DistContext, data: RunData, state: TrainState, step: Step, epoch: int,
               train_loss: float, seconds: float, digests: list[str],
               on_epoch: Callable[[EpochMetrics], None] | None) -> None:
    """Evaluate on the held-out part, update early stopping, and (rank 0) write the checkpoints and history."""
    val_loss, val_map = evaluate_split(state.model, data.val_cache, data.y_val, data.spec, cfg.batch_size,
                                       step.loss_fn, step.device)
    state.epoch = epoch
    metrics = EpochMetrics(epoch=epoch, train_loss=train_loss, val_loss=val_loss, val_map20=val_map,
                           val_prior_floor=data.floor, lr=state.optimizer.param_groups[0]["lr"], seconds=seconds)
    state.history.append(metrics)
    improved = val_map > state.best_map
    if improved:
        state.best_map, state.best_epoch, state.bad_epochs = val_map, epoch, 0
    else:
        state.bad_epochs += 1
    if ctx.is_main:
        payload = checkpoint_payload(cfg, data, state, metrics)
        save_checkpoint(cfg.out / "checkpoints" / "last.pt", payload)
        if improved:
            save_checkpoint(cfg.out / "checkpoints" / "best.pt", payload)
        write_history(cfg.out / "metrics.parquet", state.history)
        if ctx.enabled:
            write_json_atomic(cfg.out / "replicas.json", {"epoch": epoch, "world_size": ctx.world,
                                                          "parameter_sha256": digests})
        if on_epoch:
            on_epoch(metrics)
    # Every rank evaluates the same weights on the same data; rank 0's count is made authoritative anyway.
    state.bad_epochs = broadcast_object(state.bad_epochs, ctx)


def _fit_osd(cfg: TrainConfig, data: RunData, state: TrainState, device: torch.device) -> None:
    """Fit out-of-sample statistics on the training part's features, with the best checkpoint's weights."""
    best = cfg.out / "checkpoints" / "best.pt"
    if not best.is_file():
        return
    blob = torch.load(best, map_location="cpu", weights_only=True)
    state.model.load_state_dict(blob["model"])
    features = predict(state.model, data.train_cache, data.spec, cfg.batch_size, device, features=True)
    stats = fit_osd_stats(features, seed=cfg.seed)
    write_json_atomic(cfg.out / "osd_stats.json", {"epoch": int(blob["epoch"]), **stats})
