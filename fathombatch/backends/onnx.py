"""ONNX Runtime engines (``.onnx``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fathombatch.backends.base import Engine
from fathombatch.backends.manifest import Manifest
from fathombatch.errors import EngineError


class OnnxEngine(Engine):
    """Run an ONNX model with ONNX Runtime's CPU provider, all graph optimisations on.

    ``threads`` sets intra-op parallelism (default: ONNX Runtime's choice, one per physical core).
    """

    runtime = "onnxruntime"

    def __init__(self, path: Path, manifest: Manifest, *, threads: int | None = None) -> None:
        super().__init__(path, manifest, threads=threads)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped exceptions
            raise EngineError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise EngineError(f"{path} has {len(inputs)} inputs; fathombatch engines take one image batch")
        self._input = inputs[0].name
        expected = (3, manifest.input.height, manifest.input.width)
        declared = tuple(inputs[0].shape[1:4])
        # strict=False: a wrong number of dims is its own check on the next line, with the same message
        mismatch = [d for d, e in zip(declared, expected, strict=False) if isinstance(d, int) and d != e]
        if len(declared) != 3 or mismatch:
            raise EngineError(
                f"engine {path} takes input {list(inputs[0].shape)} but its manifest says 3x{manifest.input.height}"
                f"x{manifest.input.width}; the manifest does not belong to this engine"
            )
        # The first output is the logits whatever its name; others keep their names (e.g. "features").
        self._outputs = [o.name for o in self._session.get_outputs()]
        width = self._session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != manifest.num_classes:
            raise EngineError(
                f"engine {path} outputs {width} classes but its manifest lists {manifest.num_classes} classes; "
                "the manifest does not belong to this engine"
            )

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        try:
            values = self._session.run(self._outputs, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped exceptions
            raise EngineError(f"ONNX Runtime failed on {self.path}: {str(exc).splitlines()[0][:300]}") from None
        out = dict(zip(self._outputs, values, strict=True))
        first = self._outputs[0]
        logits = out.pop(first)
        out["logits"] = self.check_logits(logits, batch.shape[0])
        return out
