"""OpenVINO engines (``NAME.xml`` + ``NAME.bin``) on the CPU.

Compiled with ``PERFORMANCE_HINT=LATENCY`` and one synchronous infer request: fathombatch already overlaps decoding
with inference and hands the engine whole batches, and on the 2-core machine the ``THROUGHPUT`` hint with a single
request measured 2x slower (issue 13).

Precision: OpenVINO runs float layers in bf16 by default on CPUs with AVX-512 BF16 or AMX, which would make an "fp32"
engine silently differ from what its export checked. fathombatch therefore pins ``INFERENCE_PRECISION_HINT`` to f32
unless the manifest records that the bf16 run passed the held-out accuracy check at export
(``metrics.bf16_check == "passed"``) *and* this CPU has bf16 units. int8 layers run in int8 either way.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from fathombatch.backends.base import Engine
from fathombatch.backends.manifest import Manifest
from fathombatch.errors import EngineError, require

log = logging.getLogger(__name__)

#: OpenVINO's name for this project's CPU device.
DEVICE = "CPU"


def import_openvino(purpose: str = "OpenVINO engines (.xml)") -> Any:
    """``import openvino`` or one :class:`~fathombatch.errors.MissingDependencyError` naming the extra."""
    return require("openvino", "openvino", purpose)


@lru_cache(maxsize=1)
def core() -> Any:
    """One ``openvino.Core`` per process (it caches plugins and device queries)."""
    return import_openvino().Core()


#: oneDNN ISA caps (``ONEDNN_MAX_CPU_ISA``) below the first ISA with bf16 arithmetic.
_CAPS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def cpu_has_bf16() -> bool:
    """True when OpenVINO's CPU plugin reports native bf16 (AVX-512 BF16 or AMX) and oneDNN is not capped below it.

    The plugin reports its capabilities from the CPU alone; a ``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``) cap
    below AVX512_CORE_BF16 removes bf16 kernels it would then fail to find, so such a cap counts as no bf16.
    """
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if cap in _CAPS_WITHOUT_BF16:
        return False
    try:
        return "BF16" in core().get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - an old plugin without the property: treat as no bf16
        return False


def compile_config(threads: int | None, bf16: bool) -> dict[str, str]:
    """Compile properties for :func:`compile_model` (strings, as OpenVINO's ``compile_model`` accepts them)."""
    config = {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(int(threads))
    return config


def compile_model(model: Any, *, threads: int | None = None, bf16: bool = False) -> Any:
    """Compile an ``openvino.Model`` (or a path to one) for the CPU with fathombatch's settings."""
    return core().compile_model(model, DEVICE, compile_config(threads, bf16))


def infer_logits(compiled: Any, images: np.ndarray, batch: int = 32) -> np.ndarray:
    """Run a compiled model over (N, 3, H, W) float32 images in chunks; returns (N, C) float32 logits (output 0)."""
    request = compiled.create_infer_request()
    out = [np.array(request.infer([images[i : i + batch]])[compiled.output(0)], dtype=np.float32)
           for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.empty((0, 0), dtype=np.float32)


def _output_name(names: set[str], expected: tuple[str, ...], index: int) -> str:
    """The name to report an output under: one the manifest lists (an output may carry several tensor names), else
    the alphabetically first, so the choice never depends on set order."""
    listed = names & set(expected)
    return min(listed) if listed else (min(names) if names else f"output{index}")


class OpenVinoEngine(Engine):
    """Run an OpenVINO IR model on the CPU; ``threads`` sets ``INFERENCE_NUM_THREADS`` (default: OpenVINO's, one per
    physical core)."""

    runtime = "openvino"

    def __init__(self, path: Path, manifest: Manifest, *, threads: int | None = None) -> None:
        super().__init__(path, manifest, threads=threads)
        import_openvino()
        self.bf16 = manifest.metrics.get("bf16_check") == "passed" and cpu_has_bf16()
        try:
            model = core().read_model(str(path))
            self._compiled = self._compile(model, threads)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own untyped RuntimeErrors
            raise EngineError(f"OpenVINO cannot load {path}: {str(exc).strip().splitlines()[0][:300]}") from None
        inputs = self._compiled.inputs
        if len(inputs) != 1:
            raise EngineError(f"{path} has {len(inputs)} inputs; fathombatch engines take one image batch")
        shape = inputs[0].get_partial_shape()
        expected = (3, manifest.input.height, manifest.input.width)
        dims = [shape[i] for i in range(1, shape.rank.get_length())] if shape.rank.is_static else []
        # strict=False: a wrong number of dims is its own check on the next line, with the same message
        mismatch = [d for d, e in zip(dims, expected, strict=False) if d.is_static and d.get_length() != e]
        if len(dims) != 3 or mismatch:
            raise EngineError(
                f"engine {path} takes input {shape} but its manifest says 3x{manifest.input.height}"
                f"x{manifest.input.width}; the manifest does not belong to this engine"
            )
        # The first output is the logits whatever its name; others go by a name the manifest lists (e.g. "features").
        self._outputs = list(self._compiled.outputs)
        self._names = [_output_name(o.get_names(), manifest.outputs, i) for i, o in enumerate(self._outputs)]
        width = self._outputs[0].get_partial_shape()[-1]
        if width.is_static and width.get_length() != manifest.num_classes:
            raise EngineError(
                f"engine {path} outputs {width.get_length()} classes but its manifest lists {manifest.num_classes} "
                "classes; the manifest does not belong to this engine"
            )
        self._request = self._compiled.create_infer_request()

    def _compile(self, model: Any, threads: int | None) -> Any:
        if self.bf16:
            try:
                return compile_model(model, threads=threads, bf16=True)
            except Exception as exc:  # noqa: BLE001 - a layer without a bf16 kernel here: f32 is always available
                log.warning("%s: bf16 is not available for this engine on this CPU (%s); running in f32", self.path,
                            str(exc).strip().splitlines()[-1][:200])
                self.bf16 = False
        return compile_model(model, threads=threads, bf16=False)

    @property
    def inference_precision(self) -> str:
        return f"{self.manifest.precision}+bf16" if self.bf16 else self.manifest.precision

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        try:
            result = self._request.infer([np.ascontiguousarray(batch, dtype=np.float32)])
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own untyped RuntimeErrors
            raise EngineError(f"OpenVINO failed on {self.path}: {str(exc).strip().splitlines()[0][:300]}") from None
        # infer() reuses its output buffers on the next call: copy before handing the arrays on.
        values = [np.array(result[o], dtype=np.float32) for o in self._outputs]
        out = {name: value for name, value in zip(self._names[1:], values[1:], strict=True)}
        out["logits"] = self.check_logits(values[0], batch.shape[0])
        return out

    def close(self) -> None:
        self._request = None
        self._compiled = None
