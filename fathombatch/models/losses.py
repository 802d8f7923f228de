"""Multi-label losses: plain and class-weighted BCE, MSE on probabilities (the seed study's MLP), and ASL.

All take logits (N, C) and multi-hot targets (N, C) in {0, 1} and return a scalar mean.
"""

from __future__ import annotations

from typing import get_args

import numpy as np
import torch
from torch import nn

from fathombatch.errors import UsageError
from fathombatch.models.config import Loss

LOSSES: tuple[str, ...] = get_args(Loss)


class MSEOnProbabilities(nn.Module):
    """Mean squared error between sigmoid probabilities and targets (how the seed study trained its MLP)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.mean((torch.sigmoid(logits) - target) ** 2)


class AsymmetricLoss(nn.Module):
    """Asymmetric loss for multi-label classification (Ridnik et al., ICCV 2021).

    Positives: ``-(1 - p)^gamma_pos * log(p)``; negatives: ``-p_m^gamma_neg * log(1 - p_m)`` with the shifted
    probability ``p_m = max(p - clip, 0)``, which discards very easy negatives. With 290 classes and 1.5 labels per
    image almost every target is negative, which is what this loss is for.
    """

    def __init__(self, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05, eps: float = 1e-8) -> None:
        super().__init__()
        self.gamma_pos, self.gamma_neg, self.clip, self.eps = gamma_pos, gamma_neg, clip, eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        p = torch.sigmoid(logits)
        p_neg = (p - self.clip).clamp(min=0) if self.clip > 0 else p
        loss_pos = target * torch.log(p.clamp(min=self.eps)) * (1 - p) ** self.gamma_pos
        loss_neg = (1 - target) * torch.log((1 - p_neg).clamp(min=self.eps)) * p_neg**self.gamma_neg
        return -(loss_pos + loss_neg).sum(dim=1).mean() / target.shape[1]


def class_weights(train_counts: np.ndarray, n_images: int, max_weight: float = 50.0) -> torch.Tensor:
    """``pos_weight`` for BCE: sqrt(negatives / positives) per class, clipped to [1, max_weight].

    The square root tempers the 2,643 : 1 imbalance of FathomNet 2023; classes absent from training get 1.
    """
    pos = np.asarray(train_counts, dtype=np.float64)
    neg = n_images - pos
    w = np.where(pos > 0, np.sqrt(np.divide(neg, pos, out=np.ones_like(pos), where=pos > 0)), 1.0)
    return torch.tensor(np.clip(w, 1.0, max_weight), dtype=torch.float32)


def create_loss(name: str, train_counts: np.ndarray, n_images: int) -> nn.Module:
    """Build a loss by name: ``bce``, ``weighted-bce``, ``asl`` or ``mse``."""
    if name == "bce":
        return nn.BCEWithLogitsLoss()
    if name == "weighted-bce":
        return nn.BCEWithLogitsLoss(pos_weight=class_weights(train_counts, n_images))
    if name == "asl":
        return AsymmetricLoss()
    if name == "mse":
        return MSEOnProbabilities()
    raise UsageError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
