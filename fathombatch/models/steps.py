"""The work inside an epoch: batching, one optimisation pass over a shard, and inference on cached images."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fathombatch.metrics import map_at_k_from_scores
from fathombatch.models.augment import AugmentConfig, augment_batch
from fathombatch.models.registry import Classifier
from fathombatch.preprocess import InputSpec, normalize
from fathombatch.probability import sigmoid
from fathombatch.progress import Progress


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


def to_tensor(batch_hwc: np.ndarray, spec: InputSpec, device: torch.device) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 normalised per ``spec``, on ``device``."""
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
            x = to_tensor(cache[start : start + batch_size], spec, device)
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


@dataclass
class Step:
    """How one batch is trained: the (possibly data-parallel) model, its loss, optimiser, schedule and precision.

    Attributes:
        amp_dtype: the autocast dtype, or None for full precision.
        scaler: the fp16 gradient scaler on CUDA, else None.
    """

    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    device: torch.device
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> float:
        """One optimisation step on (N, 3, H, W) images and (N, C) float targets; returns the batch's mean loss."""
        self.optimizer.zero_grad(set_to_none=True)
        enabled = self.amp_dtype is not None
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=enabled):
            logits = self.model(x)
        loss = self.loss_fn(logits.float(), target)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())


def train_pass(step: Step, indices: np.ndarray, images: np.ndarray, y: np.ndarray, spec: InputSpec,
               augmentation: AugmentConfig, generator: torch.Generator, batch_size: int, progress: Progress,
               description: str) -> float:
    """Train on ``images[indices]`` (uint8 (N, H, W, 3)) with labels ``y[indices]`` once, in batches; returns the mean
    training loss per image."""
    step.model.train()
    total, seen = 0.0, 0
    with progress.task(description, len(indices)) as task:
        for idx in batches(indices, batch_size):
            pixels = augment_batch(images[idx], augmentation, generator)
            target = torch.from_numpy(y[idx].astype(np.float32)).to(step.device)
            total += step(to_tensor(pixels, spec, step.device), target) * len(idx)
            seen += len(idx)
            task.advance(len(idx))
    return total / max(seen, 1)
