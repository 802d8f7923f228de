"""Named training presets: the seed study's six models and stronger recipes.

The seed study (FathomNet 2023, MAP@20 on its held-out data) trained every model with batch size 32, learning rate
1e-3, Adam, 224x224 inputs and BCE-with-logits, except the MLP (MSE loss); EfficientNet-B0 and DenseNet121 started
from ImageNet weights; the Cutout variant erased one 16x16 square per image. It proposed, without doing them,
longer training with learning-rate decay, a class-weighted loss, augmentation for rare classes and larger models:
the ``-plus`` presets do those.

A preset is a set of :class:`~fathombatch.models.train.TrainConfig` field values; every one can be overridden on
the command line (``fathombatch train --preset seed-resnet18 --epochs 3``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fathombatch.errors import UsageError

_SEED = {"batch_size": 32, "lr": 1e-3, "optimizer": "adam", "img_size": 224, "loss": "bce"}
_PLUS = {
    "batch_size": 32,
    "lr": 1e-3,
    "optimizer": "adamw",
    "weight_decay": 1e-4,
    "img_size": 224,
    "loss": "asl",
    "schedule": "cosine",
    "warmup_epochs": 1.0,
    "augment": "underwater",
    "amp": "auto",
    "early_stop": 5,
}


@dataclass(frozen=True)
class Preset:
    """A named set of training values, with the study's reported MAP@20 where it has one."""

    name: str
    description: str
    values: Mapping[str, Any]
    study_map20: float | None = None
    study_epochs: int | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("seed-logreg", "logistic regression on pixels", {**_SEED, "arch": "logreg", "epochs": 3}, 0.4767, 3),
        Preset("seed-mlp", "basic MLP on pixels, MSE loss", {**_SEED, "arch": "mlp", "epochs": 3, "loss": "mse"},
               0.5203, 3),
        Preset("seed-resnet18", "ResNet18 from scratch", {**_SEED, "arch": "resnet18", "epochs": 15}, 0.7074, 15),
        Preset("seed-efficientnet-b0", "EfficientNet-B0, ImageNet weights",
               {**_SEED, "arch": "efficientnet_b0", "epochs": 80, "pretrained": True}, 0.2483, 80),
        Preset("seed-densenet121", "DenseNet121, ImageNet weights",
               {**_SEED, "arch": "densenet121", "epochs": 10, "pretrained": True}, 0.7532, 10),
        Preset("seed-resnet18-cutout", "ResNet18 with Cutout (one 16x16 square)",
               {**_SEED, "arch": "resnet18", "epochs": 12, "augment": "cutout", "cutout": 16}, 0.6877, 12),
        Preset("densenet121-plus", "DenseNet121 + AdamW, warm-up + cosine decay, ASL, underwater augmentation, "
               "early stopping", {**_PLUS, "arch": "densenet121", "epochs": 10, "pretrained": True}),
        Preset("efficientnet-lite0-plus", "EfficientNet-Lite0 (offline ImageNet weights) with the -plus recipe",
               {**_PLUS, "arch": "efficientnet_lite0", "epochs": 10, "pretrained": True}),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def _as_option(key: str, value: Any) -> str:
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else f"--no-{key.replace('_', '-')}"
    return f"{flag} {value}"


def describe_presets() -> str:
    """A table of every preset and its values, for ``fathombatch train --list-presets``."""
    lines = []
    for p in PRESETS.values():
        study = f"  (study: MAP@20 {p.study_map20} after {p.study_epochs} epochs)" if p.study_map20 else ""
        lines.append(f"{p.name}: {p.description}{study}")
        lines.append("    " + " ".join(_as_option(k, v) for k, v in p.values.items()))
    return "\n".join(lines)
