"""Image discovery and decoders behind one interface (see :class:`~fathombatch.decode.base.Decoder`).

``create_decoder("auto" | "dali" | "pil" | "nvjpeg", spec, device=None | N)`` builds one. ``device=N`` decodes on GPU
N (DALI's nvJPEG ``mixed`` backend, or torchvision's nvJPEG) and returns CUDA tensors. ``auto`` picks the decoder
the throughput suite measured fastest for the device: Pillow on the CPU (its JPEG DCT-domain downscaling decodes a
1080p frame bound for 224 px about 1.8x as fast as DALI's CPU backend on the 2-core benchmark machine, and end to end
the Pillow default beat ``--decoder dali`` too; benchmarks/RESULTS.md), and on a GPU DALI's nvJPEG where DALI is
installed, else torchvision's nvJPEG.
"""

from __future__ import annotations

from collections.abc import Callable

from fathombatch.decode.base import DecodedBatch, Decoder, ImageFile, read_image_file
from fathombatch.decode.discover import IMAGE_SUFFIXES, discover
from fathombatch.errors import UsageError
from fathombatch.preprocess import InputSpec

__all__ = [
    "IMAGE_SUFFIXES",
    "DecodedBatch",
    "Decoder",
    "ImageFile",
    "create_decoder",
    "discover",
    "check_decoder_device",
    "list_decoders",
    "read_image_file",
    "resolve_decoder_name",
]


def _pil(spec: InputSpec, batch_size: int, threads: int | None, device: int | None) -> Decoder:
    from fathombatch.decode.pil import PilDecoder

    return PilDecoder(spec, batch_size=batch_size, threads=threads)


def _dali(spec: InputSpec, batch_size: int, threads: int | None, device: int | None) -> Decoder:
    from fathombatch.decode.dali import DaliDecoder

    return DaliDecoder(spec, batch_size=batch_size, threads=threads, device=device)


def _nvjpeg(spec: InputSpec, batch_size: int, threads: int | None, device: int | None) -> Decoder:
    from fathombatch.decode.nvjpeg import NvjpegDecoder

    return NvjpegDecoder(spec, batch_size=batch_size, threads=threads, device=device)


_DECODERS: dict[str, Callable[[InputSpec, int, int | None, int | None], Decoder]] = {
    "dali": _dali,
    "nvjpeg": _nvjpeg,
    "pil": _pil,
}


def list_decoders() -> list[str]:
    """Names accepted by :func:`create_decoder` besides ``auto``."""
    return sorted(_DECODERS)


def resolve_decoder_name(name: str, device: int | None = None) -> str:
    """Map ``auto`` to ``pil`` on the CPU (``device`` None), and on a GPU to ``dali`` when DALI imports, else
    ``nvjpeg``; check other names."""
    if name == "auto":
        if device is None:
            return "pil"
        from fathombatch.decode.dali import dali_available

        return "dali" if dali_available() else "nvjpeg"
    if name not in _DECODERS:
        raise UsageError(f"unknown decoder {name!r}; choose one of auto, {', '.join(list_decoders())}")
    return name


def check_decoder_device(name: str, device: int | None) -> None:
    """Refuse a resolved decoder name that cannot feed a run on ``device`` (None: the CPU).

    ``nvjpeg`` decodes only on a GPU and returns CUDA tensors, which an engine on the CPU cannot take; a machine
    without a GPU gets the same one-line error as every other GPU option.

    Raises:
        UsageError: ``nvjpeg`` without a usable GPU, or for a run whose engine is on the CPU.
    """
    if name != "nvjpeg":
        return
    from fathombatch.gpu import require_gpu

    require_gpu("the nvjpeg decoder", None if device is None else [device])
    if device is None:
        raise UsageError("the nvjpeg decoder decodes on a GPU, but this run's engine runs on the CPU; decode with "
                         "pil or dali, or score a TensorRT plan or .pt engine on the GPU")


def create_decoder(
    name: str, spec: InputSpec, *, batch_size: int = 32, threads: int | None = None, device: int | None = None
) -> Decoder:
    """Build a decoder by name (``auto``, ``dali``, ``pil``, ``nvjpeg``) for an input spec, on GPU ``device``
    (Pillow always decodes on the CPU)."""
    return _DECODERS[resolve_decoder_name(name, device)](spec, batch_size, threads, device)
