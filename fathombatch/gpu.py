"""What this machine's GPUs are, asked of PyTorch (the one CUDA library fathombatch always has).

Every GPU code path starts here, so that a machine without an NVIDIA GPU gets one clear error instead of a CUDA
stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass

from fathombatch.errors import UsageError, param


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str
    memory_gib: float


def cuda_device_count() -> int:
    """Number of CUDA devices PyTorch sees (0 without an NVIDIA GPU, a driver, or a CUDA build of PyTorch)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken driver install counts as no GPU
        return 0


def gpu_info(index: int = 0) -> GpuInfo:
    """Name, compute capability and memory of one GPU; UsageError when it does not exist."""
    require_gpu(f"GPU {index}", [index])
    import torch

    props = torch.cuda.get_device_properties(index)
    return GpuInfo(index=index, name=props.name, compute_capability=f"{props.major}.{props.minor}",
                   memory_gib=props.total_memory / 1024**3)


def require_gpu(what: str, devices: list[int] | None = None) -> None:
    """Raise one UsageError naming ``what`` unless CUDA GPUs (the listed ones, if given) are usable."""
    count = cuda_device_count()
    if count == 0:
        raise UsageError(f"{what} needs an NVIDIA GPU with a CUDA driver, and this machine has none that PyTorch "
                         f"can use; run on a GPU machine, or use the CPU path ({param('device')} cpu, an .onnx or "
                         ".pt engine)")
    missing = [d for d in devices or [] if not 0 <= d < count]
    if missing:
        raise UsageError(f"{what}: GPU(s) {missing} do not exist; this machine has GPUs 0..{count - 1}")


def parse_devices(text: str) -> list[int]:
    """``"0,1,3"`` -> [0, 1, 3]; UsageError for anything else."""
    try:
        devices = [int(d) for d in text.split(",") if d.strip() != ""]
    except ValueError:
        raise UsageError(f"{param('devices')} must be comma-separated GPU numbers such as 0,1, got {text!r}") from None
    if not devices or len(set(devices)) != len(devices) or min(devices) < 0:
        raise UsageError(f"{param('devices')} must list distinct GPU numbers such as 0,1, got {text!r}")
    return devices
