"""Image discovery and decoders behind one interface (see :class:`~fathombatch.decode.base.Decoder`).

``create_decoder("auto" | "dali" | "pil", spec)`` builds one; ``auto`` picks DALI where it is installed (Linux)
and Pillow elsewhere.
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
    "list_decoders",
    "read_image_file",
    "resolve_decoder_name",
]


def _pil(spec: InputSpec, batch_size: int, threads: int | None) -> Decoder:
    from fathombatch.decode.pil import PilDecoder

    return PilDecoder(spec, batch_size=batch_size, threads=threads)


def _dali(spec: InputSpec, batch_size: int, threads: int | None) -> Decoder:
    from fathombatch.decode.dali import DaliDecoder

    return DaliDecoder(spec, batch_size=batch_size, threads=threads)


_DECODERS: dict[str, Callable[[InputSpec, int, int | None], Decoder]] = {"dali": _dali, "pil": _pil}


def list_decoders() -> list[str]:
    """Names accepted by :func:`create_decoder` besides ``auto``."""
    return sorted(_DECODERS)


def resolve_decoder_name(name: str) -> str:
    """Map ``auto`` to ``dali`` when DALI imports, else ``pil``; check other names."""
    if name == "auto":
        from fathombatch.decode.dali import dali_available

        return "dali" if dali_available() else "pil"
    if name not in _DECODERS:
        raise UsageError(f"unknown decoder {name!r}; choose one of auto, {', '.join(list_decoders())}")
    return name


def create_decoder(name: str, spec: InputSpec, *, batch_size: int = 32, threads: int | None = None) -> Decoder:
    """Build a decoder by name (``auto``, ``dali``, ``pil``) for an input spec."""
    return _DECODERS[resolve_decoder_name(name)](spec, batch_size, threads)
