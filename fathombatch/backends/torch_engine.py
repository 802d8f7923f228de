"""PyTorch engines (``.pt``): a registered architecture plus a state dict, loaded without running any code.

A ``.pt`` engine is a dict ``{"format": "fathombatch-torch-engine", "arch", "num_classes", "img_size",
"state_dict"}`` saved with ``torch.save``. It is loaded with ``torch.load(weights_only=True)``, which unpickles only
tensors and plain containers, so a file crafted to execute code is refused instead of run; the network itself
is rebuilt from fathombatch's own architecture registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from fathombatch.backends.base import Engine
from fathombatch.backends.manifest import Manifest
from fathombatch.errors import EngineError, param
from fathombatch.safeload import load_torch_file

TORCH_ENGINE_FORMAT = "fathombatch-torch-engine"


@contextmanager
def ieee_fp32(torch: Any) -> Iterator[None]:
    """Within the block, CUDA matmuls and cuDNN convolutions compute in IEEE fp32, not TF32; restored after.

    PyTorch lets cuDNN convolutions use TF32 by default (``torch.backends.cudnn.allow_tf32``), which on Ampere and newer
    GPUs rounds inputs to 10-bit mantissas: an "fp32" run would not be fp32. The switches are process-wide, so they are
    set only around the engine's own forward pass and put back as they were, leaving the caller's choice alone.
    """
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


class TorchEngine(Engine):
    """Run a ``.pt`` engine with PyTorch (``torch.inference_mode``) on the CPU or one GPU.

    On a GPU the model runs in channels-last memory format and, with ``precision`` ``fp16``/``bf16``, under autocast;
    in ``fp32`` it runs in IEEE fp32 with TF32 switched off around each call (:func:`ieee_fp32`). Batches that are
    already CUDA tensors (decoded on the GPU) are used where they are.
    """

    runtime = "torch"

    def __init__(self, path: Path, manifest: Manifest, *, threads: int | None = None, device: int | None = None,
                 precision: str = "fp32") -> None:
        super().__init__(path, manifest, threads=threads)
        if precision not in ("fp32", "fp16", "bf16"):
            raise EngineError(f"torch engines run in fp32, fp16 or bf16, not {precision!r}")
        if precision != "fp32" and device is None:
            raise EngineError(f"{param('torch_precision')} {precision} is for GPUs; on the CPU torch engines run in "
                              "fp32")
        import torch

        from fathombatch.models import create_model

        blob = load_torch_file(path, "engine")
        if not isinstance(blob, dict) or blob.get("format") != TORCH_ENGINE_FORMAT or "state_dict" not in blob:
            raise EngineError(f"{path} is not a fathombatch torch engine (export one with `fathombatch export`)")
        if blob.get("num_classes") != manifest.num_classes:
            raise EngineError(
                f"engine {path} has {blob.get('num_classes')} outputs but its manifest lists "
                f"{manifest.num_classes} classes; the manifest does not belong to this engine"
            )
        img_size = int(blob.get("img_size", 224))
        if blob["arch"] in ("logreg", "mlp") and (manifest.input.height, manifest.input.width) != (img_size, img_size):
            raise EngineError(
                f"engine {path} takes {img_size}x{img_size} images but its manifest says "
                f"{manifest.input.height}x{manifest.input.width}; the manifest does not belong to this engine"
            )
        model = create_model(str(blob["arch"]), manifest.num_classes, img_size=img_size)
        try:
            model.load_state_dict(blob["state_dict"])
        except RuntimeError as exc:
            raise EngineError(f"engine {path} does not fit architecture {blob['arch']!r}: {str(exc)[:300]}") from None
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = torch.device("cpu") if device is None else torch.device("cuda", device)
        if device is not None:
            from fathombatch.gpu import require_gpu

            require_gpu(f"running {path} on GPU {device}", [device])
            model = model.to(self.device).to(memory_format=torch.channels_last)
        self._autocast = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        self._model = model.eval()

    def run(self, batch: Any) -> dict[str, np.ndarray]:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)) if isinstance(batch, np.ndarray) else batch
        x = x.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        strict = ieee_fp32(torch) if self.device.type == "cuda" and self._autocast is None else nullcontext()
        with strict, torch.inference_mode(), torch.autocast(self.device.type, dtype=self._autocast or torch.float32,
                                                            enabled=self._autocast is not None):
            logits, features = self._model.forward_with_features(x)
        return {
            "logits": self.check_logits(logits.float().cpu().numpy(), int(x.shape[0])),
            "features": features.float().cpu().numpy(),
        }
