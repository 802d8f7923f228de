"""Training configuration: the TrainConfig dataclass, its option types, presets merged with explicit values and
the learning-rate schedule.

Light on purpose (no PyTorch): the command line reads TrainConfig's choices and defaults when it starts, and
importing PyTorch takes seconds. What needs PyTorch lives beside the code that uses it: checking a config against
the architecture registry (:func:`fathombatch.models.checks.validate_config`) and the autocast dtype
(:func:`fathombatch.models.steps.resolve_amp`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from fathombatch.errors import UsageError
from fathombatch.models.presets import get_preset
from fathombatch.pathargs import PathFields

if TYPE_CHECKING:
    from fathombatch.models.augment import AugmentConfig

Optimizer = Literal["adam", "adamw"]
Loss = Literal["bce", "weighted-bce", "asl", "mse"]
Schedule = Literal["constant", "cosine", "step"]
#: The names of :data:`fathombatch.models.augment.RECIPES` (a test holds the two equal).
AugmentRecipe = Literal["none", "flip", "cutout", "underwater", "underwater-cutout"]
AmpMode = Literal["off", "auto", "bf16", "fp16"]
#: Where training runs. The same values as :data:`fathombatch.scoring.config.Device`, spelt again because importing
#: that module loads the scoring package and its runtimes, which training must not reach (tests/test_layering.py).
TrainDevice = Literal["auto", "cpu", "cuda"]

OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
SCHEDULES: tuple[str, ...] = get_args(Schedule)
AMP_MODES: tuple[str, ...] = get_args(AmpMode)
DEVICES: tuple[str, ...] = get_args(TrainDevice)


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
    optimizer: Optimizer = "adam"
    weight_decay: float = 0.0
    loss: Loss = "bce"
    schedule: Schedule = "constant"
    warmup_epochs: float = 0.0
    step_epochs: int = 10
    step_gamma: float = 0.1
    augment: AugmentRecipe = "none"
    cutout: int | None = None
    amp: AmpMode = "off"
    early_stop: int = 0
    val_fraction: float = 0.2
    seed: int = 0
    pretrained: bool = False
    weights: Path | None = None
    threads: int | None = None
    device: TrainDevice = "auto"
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
        from fathombatch.models.augment import recipe  # PyTorch; see the module docstring

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


