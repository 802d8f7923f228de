"""Build TensorRT plans from fathombatch ONNX engines: ``fathombatch build-engine``.

Supported TensorRT: 10.x and 11.x. Every plan is built from a *strongly typed* network (``STRONGLY_TYPED``), whose
precision is the precision of the ONNX graph itself. That is the only way TensorRT 11 offers (it removed the FP16/INT8
builder flags and calibrators), and TensorRT 10 supports it too, so one code path serves both:

* ``fp32``: the exported ONNX as it is, with TensorRT's default TF32 switched off (:func:`configure_precision`);
* ``fp16``: the ONNX converted to float16 (``onnxconverter-common``; inputs and outputs stay float32);
* ``int8``: the ONNX with Q/DQ nodes (ONNX Runtime static quantisation, symmetric signed int8 for weights and
  activations, as TensorRT requires), calibrated on images of the ``calibration`` folder.

The fp16/int8 conversion is the ONNX export's own (:mod:`fathombatch.engine_export.quantize`).

The batch dimension is dynamic through one optimisation profile (1 .. ``max_batch``, tuned for ``opt_batch``). The
manifest records the TensorRT version, the GPU name and its compute capability: a plan only runs on the TensorRT
version and GPU architecture it was built for, and TensorRT plans contain executable code — run only plans you built or
trust.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fathombatch.backends.manifest import Manifest, manifest_path, read_manifest, write_manifest
from fathombatch.backends.trt_support import tensorrt_logger
from fathombatch.engine_export.config import BuildConfig
from fathombatch.engine_export.quantize import calibration_images, reduce_precision
from fathombatch.errors import EngineError, OutputError, UsageError, param, require
from fathombatch.fsutil import atomic_path, file_sha256
from fathombatch.gpu import gpu_info, require_gpu
from fathombatch.preprocess import InputSpec


@dataclass(frozen=True)
class BuildResult:
    plan: Path
    manifest: Path
    tensorrt: str
    gpu: str


def configure_precision(config: Any, trt: Any, precision: str) -> None:
    """Builder flags for ``precision`` on a strongly typed network.

    TensorRT enables TF32 by default, so an "fp32" plan would multiply with 10-bit mantissas on Ampere and newer GPUs;
    an fp32 plan clears the flag so it computes in IEEE fp32 like the ONNX engine it is built from. fp16 and int8 plans
    keep TensorRT's default: they already trade precision for speed, and their few float32 layers may use TF32.
    """
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)


def prepare_onnx(src: Path, dest: Path, precision: str, cfg: BuildConfig, spec: InputSpec) -> None:
    """Write the ONNX graph whose own types carry the requested precision (int8: calibrated on ``cfg.calibration``).

    Raises:
        UsageError: int8 without a calibration folder, or one without readable images.
    """
    calibration = None
    if precision == "int8":
        if cfg.calibration is None:
            raise UsageError(f"{param('precision')} int8 needs {param('calibration')} DIR: images like the ones the "
                             "plan will score")
        calibration = calibration_images(cfg.calibration, spec, cfg.calibration_images)
    reduce_precision(src, dest, precision, calibration, "tensorrt")


def _check_build(cfg: BuildConfig) -> Manifest:
    """Refuse a build that cannot be done, before touching the GPU; returns the source engine's manifest."""
    if cfg.out.suffix != ".plan":
        raise UsageError(f"{param('out')} {cfg.out} must end in .plan")
    # The .plan suffix keeps a plan off its .onnx by name; a link (symbolic or hard) could still make them one file.
    pairs = [(cfg.out, cfg.onnx), (manifest_path(cfg.out), manifest_path(cfg.onnx))]
    if any(a.exists() and b.exists() and os.path.samefile(a, b) for a, b in pairs):
        raise UsageError(f"the plan {cfg.out} is the same file as its input {cfg.onnx} (or their manifests are); "
                         "outputs never replace inputs, even with overwrite: choose another out path")
    if cfg.out.exists() and not cfg.overwrite:
        raise OutputError(f"{cfg.out} already exists; pass {param('overwrite')} to replace it")
    if not 1 <= cfg.max_batch <= 65536:
        raise UsageError(f"{param('max_batch')} must be between 1 and 65536, got {cfg.max_batch}")
    source = read_manifest(cfg.onnx)
    if source.runtime != "onnxruntime" or source.precision != "fp32":
        raise UsageError(f"{cfg.onnx} must be an fp32 ONNX engine exported by fathombatch (it is {source.runtime} "
                         f"{source.precision}); build-engine makes the reduced-precision graph itself")
    return source


def _serialize(cfg: BuildConfig, trt: Any, spec: InputSpec, opt: int) -> bytes:
    """Parse the graph of ``cfg.precision`` into a strongly typed network and build the plan's bytes."""
    logger = tensorrt_logger(trt)
    mark = logger.mark()
    with tempfile.TemporaryDirectory(prefix="fb-trt-") as scratch:
        graph = Path(scratch) / f"{cfg.precision}.onnx"
        prepare_onnx(cfg.onnx, graph, cfg.precision, cfg, spec)
        builder = trt.Builder(logger.impl)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, logger.impl)
        if not parser.parse_from_file(str(graph)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"TensorRT cannot parse {cfg.onnx}: {errors[:500]}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(cfg.workspace_gib * 1024**3))
        configure_precision(config, trt, cfg.precision)
        profile = builder.create_optimization_profile()
        name = network.get_input(0).name
        shape = (3, spec.height, spec.width)
        profile.set_shape(name, (1, *shape), (min(opt, cfg.max_batch), *shape), (cfg.max_batch, *shape))
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        said = logger.since(mark) or "unknown error"
        raise EngineError(f"TensorRT could not build a plan from {cfg.onnx}: {said}")
    return bytes(serialized)


def build_engine(cfg: BuildConfig) -> BuildResult:
    """Build a plan and its manifest (see the module docstring)."""
    source = _check_build(cfg)
    require_gpu("building a TensorRT plan", [cfg.device])
    trt = require("tensorrt", "tensorrt", "building TensorRT plans")
    info = gpu_info(cfg.device)
    opt = cfg.opt_batch or cfg.max_batch

    import torch

    torch.cuda.set_device(cfg.device)
    plan = _serialize(cfg, trt, source.input, opt)
    with atomic_path(cfg.out) as tmp:
        tmp.write_bytes(plan)
    manifest = replace(
        source,
        name=cfg.out.stem,
        runtime="tensorrt",
        precision=cfg.precision,
        versions={**source.versions, "tensorrt": trt.__version__, "gpu": info.name,
                  "compute_capability": info.compute_capability, "cuda": torch.version.cuda},
        provenance={**source.provenance, "built_from": str(cfg.onnx), "built_at":
                    datetime.now(timezone.utc).isoformat(timespec="seconds"), "max_batch": cfg.max_batch,
                    "opt_batch": opt, "calibration": str(cfg.calibration) if cfg.calibration else None},
        engine_sha256=file_sha256(cfg.out),
    )
    write_manifest(cfg.out, manifest)
    return BuildResult(plan=cfg.out, manifest=manifest_path(cfg.out), tensorrt=trt.__version__, gpu=info.name)
