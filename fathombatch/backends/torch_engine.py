"""PyTorch engines (``.pt``): a registered architecture plus a state dict, loaded without running any code.

A ``.pt`` engine is a dict ``{"format": "fathombatch-torch-engine", "arch", "num_classes", "img_size",
"state_dict"}`` saved with ``torch.save``. It is loaded with ``torch.load(weights_only=True)``, which unpickles only
tensors and plain containers, so a file crafted to execute code is refused instead of run; the network itself
is rebuilt from fathombatch's own architecture registry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fathombatch.backends.base import Engine
from fathombatch.backends.manifest import Manifest
from fathombatch.errors import EngineError
from fathombatch.safeload import load_torch_file

TORCH_ENGINE_FORMAT = "fathombatch-torch-engine"


class TorchEngine(Engine):
    """Run a ``.pt`` engine with eager PyTorch on the CPU (``torch.inference_mode``)."""

    runtime = "torch"

    def __init__(self, path: Path, manifest: Manifest, *, threads: int | None = None) -> None:
        super().__init__(path, manifest, threads=threads)
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
        self._model = model.eval()

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with self._torch.inference_mode():
            logits, features = self._model.forward_with_features(self._torch.from_numpy(np.ascontiguousarray(batch)))
        return {
            "logits": self.check_logits(logits.float().numpy(), batch.shape[0]),
            "features": features.float().numpy(),
        }
