"""What an architecture is: the :class:`Classifier` every model is, and :func:`register_model`, with which the model
zoo (:mod:`fathombatch.models.zoo`) and plug-ins add builders. Apart from :mod:`fathombatch.models.registry`, which
looks builders up, so that the zoo imports this module and the registry imports the zoo without a cycle.

Every architecture is a :class:`Classifier`: a backbone producing (N, D) features and a linear head producing
(N, C) logits. Keeping the two apart lets export ship features beside logits, which feature-based out-of-sample
scoring needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


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


#: name -> spec, filled by :func:`register_model`.
REGISTRY: dict[str, ArchSpec] = {}


def register_model(name: str, *, description: str, pretrained: str | None = None) -> Callable[[Builder], Builder]:
    """Decorator registering an architecture builder under ``name``."""

    def wrap(builder: Builder) -> Builder:
        if name in REGISTRY:
            raise ValueError(f"architecture {name!r} is already registered")
        REGISTRY[name] = ArchSpec(name=name, builder=builder, description=description, pretrained=pretrained)
        return builder

    return wrap
