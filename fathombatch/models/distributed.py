"""Data-parallel training through ``torchrun``: process group set-up, sharding, replica checks.

``torchrun --nproc_per_node N -m fathombatch train ...`` starts N processes with ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE`` set; each joins one process group (NCCL on GPUs, gloo on CPUs), wraps the model in
``DistributedDataParallel`` and trains on its shard of every epoch. Rank 0 alone writes files.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fathombatch.errors import TrainingError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistContext:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    import torch.distributed as dist

    ctx = DistContext(rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group(backend=backend)
    return ctx


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def shard(order: np.ndarray, ctx: DistContext) -> np.ndarray:
    """This rank's share of an epoch's order, padded like DistributedSampler so every rank takes as many steps."""
    if not ctx.enabled:
        return order
    total = -(-len(order) // ctx.world) * ctx.world
    padded = np.concatenate([order, order[: total - len(order)]])
    return padded[ctx.rank : total : ctx.world]


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes: identical on all replicas exactly when they are in sync."""
    h = hashlib.sha256()
    with torch.no_grad():
        for p in model.parameters():
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_replicas(model: torch.nn.Module, ctx: DistContext) -> list[str]:
    """Gather every rank's parameter digest; raise TrainingError unless all replicas hold identical weights.

    (Batch-norm running statistics are buffers, updated from each rank's own batches, and are not compared.)
    """
    local = parameter_digest(model)
    if not ctx.enabled:
        return [local]
    import torch.distributed as dist

    gathered: list[str] = [""] * ctx.world
    dist.all_gather_object(gathered, local)
    if len(set(gathered)) != 1:
        raise TrainingError(f"data-parallel replicas diverged (parameter digests differ: {gathered})")
    return gathered


def broadcast_object(value: Any, ctx: DistContext) -> Any:
    """Rank 0's value (e.g. the early-stopping count) on every rank."""
    if not ctx.enabled:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
