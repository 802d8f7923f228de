"""The Engine interface: built from a file and its manifest, runs preprocessed batches, returns logits."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from fathombatch.backends.manifest import Manifest
from fathombatch.errors import EngineError


class Engine(ABC):
    """A loaded model ready to run.

    Subclasses implement :meth:`run`; callers use :meth:`infer` (logits only) or :meth:`run` (all outputs).
    Engines never see files or decoders: they get (N, 3, H, W) float32 arrays laid out per ``manifest.input``.
    """

    runtime: str = "base"

    def __init__(self, path: Path, manifest: Manifest, *, threads: int | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self.threads = threads

    @abstractmethod
    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run a batch.

        Args:
            batch: (N, 3, H, W) float32, normalised per the manifest.

        Returns:
            Outputs by name: ``logits`` (N, C) float32 always; ``features`` (N, D) float32 when the engine has them.
        """

    @property
    def inference_precision(self) -> str:
        """The precision this engine computes in here: the manifest's, unless the runtime chose otherwise on this
        machine (OpenVINO's bf16, where the export's check allowed it)."""
        return self.manifest.precision

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Return (N, C) float32 logits for a preprocessed batch; checks C against the manifest."""
        return self.run(batch)["logits"]

    def check_logits(self, logits: np.ndarray, n: int) -> np.ndarray:
        """Validate an output batch against the manifest; raises EngineError on a mismatch."""
        if logits.ndim != 2 or logits.shape[1] != self.manifest.num_classes:
            raise EngineError(
                f"engine {self.path} outputs shape {tuple(logits.shape)} but its manifest lists "
                f"{self.manifest.num_classes} classes; the manifest does not belong to this engine"
            )
        if logits.shape[0] != n:
            raise EngineError(f"engine {self.path} returned {logits.shape[0]} rows for a batch of {n}")
        return np.ascontiguousarray(logits, dtype=np.float32)

    def close(self) -> None:  # noqa: B027 - a no-op by default; only runtimes holding resources override it
        """Release the runtime's resources."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
