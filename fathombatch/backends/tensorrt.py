"""TensorRT engines (``.plan``): need the ``tensorrt`` extra and an NVIDIA GPU.

The runtime follows TensorRT 10's name-based API: one execution context, created once, on one CUDA stream of its own;
input shapes set per batch with ``set_input_shape``; every I/O tensor bound by name with ``set_tensor_address``; and
``execute_async_v3`` on that stream. Buffers are PyTorch CUDA tensors, so a batch decoded on the GPU (DALI, nvJPEG)
reaches the engine without a trip through host memory.

A plan only runs on the TensorRT version and the GPU architecture it was built for: a mismatch gives one error naming
both and saying to rebuild. TensorRT plans contain executable code (NVIDIA's own warning): run only plans you built
or trust.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fathombatch.backends.base import Engine
from fathombatch.backends.manifest import Manifest
from fathombatch.backends.trt_support import TRT_ALIGNMENT, bind_address, chunk_plan, tensorrt_logger
from fathombatch.errors import EngineError, require
from fathombatch.gpu import cuda_device_count, gpu_info, require_gpu

__all__ = ["TensorRTEngine", "cuda_device_count"]


def _torch_dtype(trt: Any, dtype: Any) -> Any:
    import torch

    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int8: torch.int8}
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    try:
        return table[dtype]
    except KeyError:
        raise EngineError(f"TensorRT output type {dtype} is not supported by fathombatch") from None


class TensorRTEngine(Engine):
    """Run a TensorRT plan on one GPU."""

    runtime = "tensorrt"

    def __init__(self, path: Path, manifest: Manifest, *, threads: int | None = None, device: int = 0) -> None:
        super().__init__(path, manifest, threads=threads)
        require_gpu(f"{path} is a TensorRT plan, which", [device])
        trt = require("tensorrt", "tensorrt", f"running the TensorRT plan {path}")
        import torch

        info = gpu_info(device)
        built_trt = manifest.versions.get("tensorrt")
        built_cc = manifest.versions.get("compute_capability")
        if built_trt != trt.__version__ or (built_cc and built_cc != info.compute_capability):
            raise EngineError(
                f"{path} was built with TensorRT {built_trt} for {manifest.versions.get('gpu')} (compute capability "
                f"{built_cc}); this machine has TensorRT {trt.__version__} and {info.name} (compute capability "
                f"{info.compute_capability}). Rebuild it here: fathombatch build-engine "
                f"{manifest.provenance.get('built_from', 'MODEL.onnx')} --out {path}"
            )
        self.device = torch.device("cuda", device)
        self._torch = torch
        self._trt = trt
        self._logger = tensorrt_logger(trt)
        # TensorRT deserialises onto, and allocates on, whichever GPU is current: make it this engine's.
        torch.cuda.set_device(self.device)
        mark = self._logger.mark()
        runtime = trt.Runtime(self._logger.impl)
        self._engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            reason = self._logger.since(mark) or "unknown error"
            raise EngineError(f"TensorRT cannot load {path}: {reason}")
        self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream(device=self.device)
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise EngineError(f"{path} has {len(inputs)} inputs; fathombatch engines take one image batch")
        self._input = inputs[0]
        self._outputs = [n for n in names if n not in inputs]
        self.max_batch = int(self._engine.get_tensor_profile_shape(self._input, 0)[2][0])

    def _to_device(self, batch: Any) -> Any:
        torch = self._torch
        if isinstance(batch, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, non_blocking=True)
        return batch.to(self.device, dtype=torch.float32).contiguous()

    def _run_chunk(self, x: Any) -> dict[str, Any]:
        torch = self._torch
        ctx = self._context
        mark = self._logger.mark()
        if not ctx.set_input_shape(self._input, tuple(x.shape)):
            raise EngineError(f"{self.path} does not accept input shape {tuple(x.shape)}")
        bind_address(ctx, self._input, x.data_ptr(), str(self.path), self._logger, mark)
        outputs = {}
        for name in self._outputs:
            shape = tuple(ctx.get_tensor_shape(name))
            out = torch.empty(shape, dtype=_torch_dtype(self._trt, self._engine.get_tensor_dtype(name)),
                              device=self.device)
            bind_address(ctx, name, out.data_ptr(), str(self.path), self._logger, mark)
            outputs[name] = out
        # The input may have been written on another stream (DALI's, nvJPEG's): wait for it.
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        if not ctx.execute_async_v3(self._stream.cuda_stream):
            raise EngineError(f"TensorRT failed to run {self.path}: {self._logger.since(mark) or 'unknown error'}")
        self._stream.synchronize()
        return outputs

    def _chunks(self, x: Any) -> list[Any]:
        """``x`` cut into slices of at most ``max_batch``; a slice TensorRT could not address is copied."""
        out = []
        sample_bytes = int(x.stride(0)) * x.element_size()  # x is contiguous
        for start, stop, copy in chunk_plan(int(x.shape[0]), self.max_batch, sample_bytes, x.data_ptr()):
            # clone() takes a fresh block from PyTorch's CUDA caching allocator, which hands out 512-byte-aligned
            # blocks: aligned for TensorRT whatever H·W is.
            chunk = x[start:stop].clone() if copy else x[start:stop]
            if chunk.data_ptr() % TRT_ALIGNMENT:
                raise EngineError(f"cannot align a batch slice for {self.path} to {TRT_ALIGNMENT} bytes")
            out.append(chunk)
        return out

    def run(self, batch: Any) -> dict[str, np.ndarray]:
        x = self._to_device(batch)
        n = int(x.shape[0])
        chunks = [self._run_chunk(chunk) for chunk in self._chunks(x)]
        merged = {name: self._torch.cat([c[name] for c in chunks]).float().cpu().numpy() for name in self._outputs}
        # fathombatch exports name the outputs ("logits", "features"); a plan from elsewhere: its first output.
        first = "logits" if "logits" in merged else self._outputs[0]
        out = {k: v for k, v in merged.items() if k != first}
        out["logits"] = self.check_logits(merged[first], n)
        return out
