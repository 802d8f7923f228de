"""The architecture registry: build models by name, list them, refuse duplicate names.

Every architecture is a :class:`Classifier`: a backbone producing (N, D) features and a linear head producing
(N, C) logits. Keeping the two apart lets export ship features beside logits, which feature-based out-of-sample
scoring needs.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fathombatch.errors import TrainingError, UsageError, param
from fathombatch.safeload import load_torch_file


class Classifier(nn.Module):
    """``backbone`` (N, 3, H, W) -> (N, D) features; ``head`` (N, D) -> (N, C) logits."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (logits (N, C), features (N, D))."""
        features = self.backbone(x)
        return self.head(features), features


#: builder(num_classes, img_size, pretrained) -> Classifier
Builder = Callable[[int, int, bool], Classifier]


@dataclass(frozen=True)
class ArchSpec:
    """A registered architecture.

    Attributes:
        name: registry key, e.g. ``"resnet18"``.
        builder: makes the model.
        description: one line for ``--help`` and listings.
        pretrained: where ImageNet weights come from when ``pretrained=True`` (``None``: no pretrained weights).
    """

    name: str
    builder: Builder
    description: str
    pretrained: str | None = None


_REGISTRY: dict[str, ArchSpec] = {}


def register_model(name: str, *, description: str, pretrained: str | None = None) -> Callable[[Builder], Builder]:
    """Decorator registering an architecture builder under ``name``."""

    def wrap(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is already registered")
        _REGISTRY[name] = ArchSpec(name=name, builder=builder, description=description, pretrained=pretrained)
        return builder

    return wrap


def _ensure_loaded() -> None:
    from fathombatch.models import zoo  # noqa: F401 - registers the built-in architectures


def list_models(pattern: str = "*") -> list[str]:
    """Registered architecture names matching a glob pattern, sorted."""
    _ensure_loaded()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_arch(name: str) -> ArchSpec:
    """The registered :class:`ArchSpec`; raises UsageError listing the choices for an unknown name."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown architecture {name!r}; choose one of {', '.join(list_models())}") from None


def create_model(
    name: str,
    num_classes: int,
    *,
    img_size: int = 224,
    pretrained: bool = False,
    weights: str | Path | None = None,
) -> Classifier:
    """Build an architecture by name.

    Args:
        name: a registered architecture.
        num_classes: output width C.
        img_size: square input size in pixels (the linear baselines' width depends on it).
        pretrained: start from ImageNet weights (see :class:`ArchSpec.pretrained`).
        weights: a local state-dict file for the whole model or its backbone (loaded with ``weights_only=True``).
    """
    spec = get_arch(name)
    if pretrained and spec.pretrained is None:
        raise UsageError(f"architecture {name!r} has no pretrained weights; drop {param('pretrained')}")
    model = spec.builder(num_classes, img_size, pretrained)
    if weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model: Classifier, path: str | Path) -> None:
    """Load a local weights file into a model (whole-model keys, or backbone-only keys).

    Only tensors are loaded (``weights_only=True``): a file that would run code is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"weights file {path} does not exist")
    state = load_torch_file(path, "weights file")
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise TrainingError(f"{path} does not hold a state dict")
    target: nn.Module = model
    if not any(k.startswith(("backbone.", "head.")) for k in state):
        target = model.backbone
    result = target.load_state_dict(state, strict=False)
    matched = len(state) - len(result.unexpected_keys)
    if matched == 0:
        raise TrainingError(f"{path}: none of its {len(state)} tensors match architecture {type(target).__name__}")
