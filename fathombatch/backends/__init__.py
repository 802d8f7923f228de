"""Engines: the runtimes that run engine files, chosen by suffix, each described by a manifest.

``open_engine(path)`` resolves the path (also inside the ``engines/`` store), reads ``<path>.json``, checks it
belongs to the file (SHA-256) and returns an :class:`~fathombatch.backends.base.Engine`:

* ``.onnx`` -> ONNX Runtime;
* ``.xml``  -> OpenVINO (with ``NAME.bin`` beside it; CPU, the fastest int8 path on CPUs without VNNI);
* ``.pt``   -> PyTorch (weights only; the architecture comes from fathombatch's registry);
* ``.plan`` -> TensorRT (needs an NVIDIA GPU and the ``tensorrt`` extra).

The package is named apart from the top-level ``engines/`` folder (the engine store) on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fathombatch.backends.base import Engine
from fathombatch.backends.manifest import (
    Manifest,
    engine_files,
    engine_sha256,
    file_sha256,
    manifest_path,
    read_manifest,
    write_manifest,
)
from fathombatch.backends.store import engine_store, export_hint, is_training_run, suggestions, where_looked
from fathombatch.errors import ManifestError, UsageError, check_threads, param

__all__ = [
    "ENGINE_SUFFIXES",
    "Engine",
    "Manifest",
    "checked_manifest",
    "engine_files",
    "engine_sha256",
    "engine_store",
    "file_sha256",
    "manifest_path",
    "open_engine",
    "read_manifest",
    "resolve_engine_path",
    "write_manifest",
]


def _onnx(path: Path, manifest: Manifest, threads: int | None, device: int | None, precision: str) -> Engine:
    from fathombatch.backends.onnx import OnnxEngine

    if device is not None:
        raise UsageError(f"{path}: ONNX engines run on the CPU in fathombatch; for the GPU build a TensorRT plan "
                         "(fathombatch build-engine) or score the .pt export")
    return OnnxEngine(path, manifest, threads=threads)


def _openvino(path: Path, manifest: Manifest, threads: int | None, device: int | None, precision: str) -> Engine:
    from fathombatch.backends.openvino import OpenVinoEngine

    if device is not None:
        raise UsageError(f"{path}: OpenVINO engines run on the CPU in fathombatch; for the GPU build a TensorRT plan "
                         "(fathombatch build-engine) or score the .pt export")
    return OpenVinoEngine(path, manifest, threads=threads)


def _torch(path: Path, manifest: Manifest, threads: int | None, device: int | None, precision: str) -> Engine:
    from fathombatch.backends.torch_engine import TorchEngine

    return TorchEngine(path, manifest, threads=threads, device=device, precision=precision)


def _tensorrt(path: Path, manifest: Manifest, threads: int | None, device: int | None, precision: str) -> Engine:
    from fathombatch.backends.tensorrt import TensorRTEngine

    return TensorRTEngine(path, manifest, threads=threads, device=0 if device is None else device)


_RUNTIMES: dict[str, tuple[str, Callable[[Path, Manifest, int | None, int | None, str], Engine]]] = {
    ".onnx": ("onnxruntime", _onnx),
    ".xml": ("openvino", _openvino),
    ".pt": ("torch", _torch),
    ".plan": ("tensorrt", _tensorrt),
}
ENGINE_SUFFIXES = tuple(_RUNTIMES)


def resolve_engine_path(name: str | Path) -> Path:
    """Find an engine file: the path as given, else the same name inside the engine store.

    Raises:
        UsageError: neither exists, the path is a folder (a training run gets the command that exports it), or the
            suffix is not one of :data:`ENGINE_SUFFIXES`. The message stays one line and lists the store's engines
            and the closest names.
    """
    path = Path(name)
    if path.is_dir():
        hint = export_hint(path) if is_training_run(path) else f"expected a file ending in {', '.join(ENGINE_SUFFIXES)}"
        raise UsageError(f"engine {name} is a folder, not an engine file: {hint}")
    if path.suffix.lower() not in _RUNTIMES:
        raise UsageError(f"engine {name}: unknown engine type {path.suffix or '(none)'!r}; expected one of "
                         f"{', '.join(ENGINE_SUFFIXES)}; {suggestions(name, ENGINE_SUFFIXES)}")
    if path.is_file():
        return path
    stored = engine_store() / path.name
    if stored.is_file():
        return stored
    raise UsageError(f"engine {str(name)!r} not found ({where_looked(name)}); {suggestions(name, ENGINE_SUFFIXES)}")


def checked_manifest(name: str | Path, *, verify_hash: bool = True) -> tuple[Path, Manifest]:
    """Resolve an engine and read its manifest, checked against the file, without loading the engine.

    Args:
        name: an engine path, or a file name inside the engine store.
        verify_hash: check the file's SHA-256 against the manifest's ``engine_sha256``.

    Returns:
        The engine's path and its manifest.

    Raises:
        UsageError: the engine cannot be found (see :func:`resolve_engine_path`).
        ManifestError: the manifest names another runtime, or the file does not match it.
    """
    path = resolve_engine_path(name)
    manifest = read_manifest(path)
    runtime, _ = _RUNTIMES[path.suffix.lower()]
    if manifest.runtime != runtime:
        raise ManifestError(f"{manifest_path(path)} says runtime {manifest.runtime!r} but {path} is a {runtime} file")
    if verify_hash and manifest.engine_sha256 and engine_sha256(path) != manifest.engine_sha256:
        files = " + ".join(str(f) for f in engine_files(path))
        raise ManifestError(
            f"{files} does not match its manifest (SHA-256 differs): the engine was replaced or damaged; re-export it"
        )
    return path, manifest


def open_engine(
    name: str | Path,
    *,
    threads: int | None = None,
    verify_hash: bool = True,
    device: int | None = None,
    precision: str = "fp32",
) -> Engine:
    """Resolve, validate against the manifest (:func:`checked_manifest`) and load an engine.

    Args:
        name: an engine path, or a file name inside the engine store.
        threads: CPU threads for the runtime (None: the runtime's default).
        verify_hash: check the file's SHA-256 against the manifest's ``engine_sha256``.
        device: GPU to run on (None: the CPU; TensorRT plans always run on a GPU, GPU 0 by default).
        precision: ``.pt`` engines on a GPU: ``fp32``, or autocast to ``fp16``/``bf16``.
    """
    check_threads(threads, "engine threads")
    path, manifest = checked_manifest(name, verify_hash=verify_hash)
    _, factory = _RUNTIMES[path.suffix.lower()]
    return factory(path, manifest, threads, device, precision)


def engine_device(name: str | Path, device: str) -> int | None:
    """Where an engine runs for ``--device auto|cpu|cuda``: a GPU number, or None for the CPU.

    ``auto`` puts TensorRT plans and ``.pt`` engines on GPU 0 when PyTorch sees one; ONNX and OpenVINO engines run on
    the CPU.
    """
    from fathombatch.gpu import cuda_device_count, require_gpu

    suffix = Path(name).suffix.lower()
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"{param('device')} must be auto, cpu or cuda, got {device!r}")
    if suffix == ".plan":
        if device == "cpu":
            raise UsageError(f"{name} is a TensorRT plan, which runs only on an NVIDIA GPU; drop {param('device')} cpu")
        return 0
    if device == "cuda":
        require_gpu(f"{param('device')} cuda ({name})")
        if suffix in (".onnx", ".xml"):
            kind = "ONNX" if suffix == ".onnx" else "OpenVINO"
            raise UsageError(f"{name}: {kind} engines run on the CPU in fathombatch; for the GPU build a TensorRT plan "
                             "(fathombatch build-engine) or score the .pt export")
        return 0
    if device == "auto" and suffix == ".pt" and cuda_device_count() > 0:
        return 0
    return None
