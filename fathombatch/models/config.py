"""Training configuration: the TrainConfig dataclass, presets merged with explicit values, validation,
learning-rate schedules and the mixed-precision policy."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fathombatch.errors import UsageError, param
from fathombatch.models.augment import AugmentConfig, recipe
from fathombatch.models.losses import LOSSES
from fathombatch.models.presets import get_preset
from fathombatch.models.registry import get_arch
from fathombatch.pathargs import PathFields

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")
AMP_MODES = ("off", "auto", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig(PathFields):
    """One training run.

    Attributes:
        images: folder with the training images (searched recursively).
        labels: Kaggle ``.csv`` or COCO ``.json`` labels.
        out: run folder to create.
        arch: registered architecture.
        epochs: passes over the training part.
        img_size: square input size in pixels.
        batch_size: images per optimiser step (per process when data-parallel).
        lr: peak learning rate.
        optimizer: ``adam`` or ``adamw``.
        weight_decay: L2 (adam) or decoupled (adamw) weight decay.
        loss: ``bce``, ``weighted-bce`` (per-class pos_weight), ``asl`` (asymmetric loss) or ``mse``.
        schedule: ``constant``, ``cosine`` (to 0 at the last epoch) or ``step``; all after ``warmup_epochs``.
        warmup_epochs: linear warm-up from 0, in epochs (fractions allowed).
        step_epochs, step_gamma: the ``step`` schedule multiplies the rate by ``step_gamma`` every ``step_epochs``.
        augment: augmentation recipe (``none``, ``flip``, ``cutout``, ``underwater``, ``underwater-cutout``).
        cutout: Cutout square side in pixels (overrides the recipe's; 0 turns Cutout off).
        amp: mixed precision: ``off``, ``auto`` (bf16/fp16 on GPUs, bf16 on CPUs that support it natively), or forced.
        early_stop: stop after this many epochs without a better held-out MAP@20 (0 = never).
        val_fraction: held-out share (iterative stratification).
        seed: seeds the split, initialisation, shuffling and augmentation.
        pretrained: start from ImageNet weights.
        weights: local weights file to start from.
        threads: CPU threads for PyTorch (None: PyTorch's default, divided among data-parallel processes).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        preset: the preset the values came from (recorded only).
    """

    images: Path
    labels: Path
    out: Path
    arch: str = "resnet18"
    epochs: int = 10
    img_size: int = 224
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    loss: str = "bce"
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    step_epochs: int = 10
    step_gamma: float = 0.1
    augment: str = "none"
    cutout: int | None = None
    amp: str = "off"
    early_stop: int = 0
    val_fraction: float = 0.2
    seed: int = 0
    pretrained: bool = False
    weights: Path | None = None
    threads: int | None = None
    device: str = "auto"
    preset: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The config as json values; the input paths made absolute, so that a run read from another folder (export,
        evaluate's training-overlap check) still finds its labels and images."""
        values = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}
        for key in ("images", "labels", "weights"):
            if values.get(key) is not None:
                values[key] = str(Path(values[key]).absolute())
        return values

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainConfig:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        for key in ("images", "labels", "out", "weights"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        return cls(**values)

    @property
    def augmentation(self) -> AugmentConfig:
        return recipe(self.augment, self.cutout)


def config_from(preset: str | None = None, **values: Any) -> TrainConfig:
    """Merge defaults, a preset and explicit values (``None`` = not given) into a TrainConfig."""
    merged: dict[str, Any] = dict(get_preset(preset).values) if preset else {}
    merged.update({k: v for k, v in values.items() if v is not None})
    missing = [k for k in ("images", "labels", "out") if k not in merged]
    if missing:
        raise UsageError(f"training needs --{' --'.join(missing)}")
    for key in ("images", "labels", "out", "weights"):
        if merged.get(key) is not None:
            merged[key] = Path(merged[key])
    unknown = set(merged) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise UsageError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    return TrainConfig(preset=preset, **merged)


def validate_config(cfg: TrainConfig) -> None:
    if not cfg.images.is_dir():
        raise UsageError(f"image folder {cfg.images} does not exist")
    if cfg.epochs < 1 or cfg.lr <= 0:
        raise UsageError(f"{param('epochs')} must be at least 1 and {param('lr')} positive")
    if cfg.batch_size < 2:
        raise UsageError(f"{param('batch_size')} must be at least 2, got {cfg.batch_size}: batch normalisation "
                         "cannot train on one image per step")
    if not 8 <= cfg.img_size <= 1024:
        raise UsageError(f"{param('img_size')} must be between 8 and 1024 pixels, got {cfg.img_size}")
    for name, value, allowed in (
        ("optimizer", cfg.optimizer, OPTIMIZERS),
        ("loss", cfg.loss, LOSSES),
        ("schedule", cfg.schedule, SCHEDULES),
        ("amp", cfg.amp, AMP_MODES),
        ("device", cfg.device, ("auto", "cpu", "cuda")),
    ):
        if value not in allowed:
            raise UsageError(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")
    if cfg.warmup_epochs < 0 or cfg.early_stop < 0 or cfg.step_epochs < 1:
        raise UsageError(f"{param('warmup_epochs')} and {param('early_stop')} must be >= 0 and "
                         f"{param('step_epochs')} >= 1")
    cfg.augmentation  # noqa: B018 - raises UsageError for an unknown recipe
    get_arch(cfg.arch)


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--amp`` on a device, or None for full precision.

    ``auto`` uses bf16 on GPUs that support it (else fp16), and bf16 on CPUs with native bf16 (AVX-512 BF16 or AMX);
    elsewhere bf16 is emulated and slower than fp32, so ``auto`` stays in fp32.
    """
    if mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or getattr(
        torch.cpu, "_is_amx_tile_supported", lambda: False
    )()
    return torch.bfloat16 if native else None


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at an optimiser step (0-based): warm-up, then constant, cosine or step decay."""
    warmup = cfg.warmup_epochs * steps_per_epoch
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "cosine":
        total = cfg.epochs * steps_per_epoch
        t = min(1.0, (step - warmup) / max(1.0, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if cfg.schedule == "step":
        return cfg.step_gamma ** ((step // steps_per_epoch) // cfg.step_epochs)
    return 1.0


