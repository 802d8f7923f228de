"""When a GPU decoder fails: about one file (hand that file to Pillow) or about the decoder (switch the run to Pillow).

A corrupt JPEG makes nvJPEG or DALI raise for that file only; the decoders then decode the batch file by file and
give the files they reject to Pillow. A failure of the device or the library itself (CUDA out of memory, a CUDA
error, torchvision built without nvJPEG) would fail every file the same way, and retrying file by file would cost a
rebuilt pipeline or a failed GPU call per file for the whole run. :func:`systemic_reason` tells the two apart, and
:class:`PillowFallback` switches the rest of the run to Pillow once, with one warning naming the reason.

The classification is by the error's text, since neither torchvision nor DALI raises a distinct type for these
(torch's ``OutOfMemoryError`` is a ``RuntimeError`` whose text says "out of memory" too). An error the list does not
name is treated as being about the file: the old, safe per-file behaviour, never a wrong switch for a corrupt file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from fathombatch.decode.base import DecodedBatch, Decoder
from fathombatch.decode.pil import PilDecoder

log = logging.getLogger(__name__)

#: Lower-case fragments of error texts that are about the device or the library, never about one file's bytes.
SYSTEMIC_MARKERS = (
    "out of memory",  # torch.cuda.OutOfMemoryError, cudaErrorMemoryAllocation, DALI's allocation failures
    "cuda error",  # torch: "CUDA error: ..." (a sticky error fails every later call)
    "cudaerror",  # DALI / CUDA runtime names: cudaErrorLaunchFailure, ...
    "cuda driver",
    "not compiled with",  # torchvision: "decode_jpegs_cuda: torchvision not compiled with nvJPEG support"
    "failed to initialize nvjpeg",
    "allocator_failure",  # NVJPEG_STATUS_ALLOCATOR_FAILURE
    "arch_mismatch",  # NVJPEG_STATUS_ARCH_MISMATCH
)


class DecoderUnusable(Exception):  # noqa: N818 - it names the state, like StopIteration
    """Raised inside a decoder when its failure is not about one file; :class:`PillowFallback` catches it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def systemic_reason(exc: BaseException) -> str | None:
    """The reason to stop using a decoder for the whole run, or None when ``exc`` is about one file.

    Returns:
        the error's first non-empty line (at most 200 characters) when its text names a device or library failure
        (:data:`SYSTEMIC_MARKERS`), else None.
    """
    text = str(exc)
    if not any(marker in text.lower() for marker in SYSTEMIC_MARKERS):
        return None
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return first[:200]


class PillowFallback:
    """A GPU decoder's bookkeeping of its fallbacks to Pillow, for one run (one decoder object).

    ``file_failed(exc)`` is called by the decoder for each file it gives up on: it counts the file, or raises
    :class:`DecoderUnusable` when the failure is not about the file. ``decode(paths, primary)`` runs the decoder's
    own decoding until that happens, then warns once and decodes every later batch (and the failed one, from the
    start) with Pillow on the CPU. ``close()`` warns once with the per-file count, if any.
    """

    def __init__(self, owner: Decoder, *, to_device: Callable[[DecodedBatch], DecodedBatch] | None = None) -> None:
        self.owner = owner
        self.per_file = 0  # files the owner rejected one by one and handed to Pillow
        self.reason: str | None = None  # set once the run has switched to Pillow
        self._pillow: PilDecoder | None = None
        self._to_device = to_device

    def file_failed(self, exc: BaseException) -> None:
        """Count one file handed to Pillow, or raise DecoderUnusable when ``exc`` is about the decoder."""
        reason = systemic_reason(exc)
        if reason is not None:
            raise DecoderUnusable(reason) from exc
        self.per_file += 1

    def batch_failed(self, exc: BaseException) -> None:
        """A whole-batch call failed: raise DecoderUnusable when that is not about one of its files."""
        reason = systemic_reason(exc)
        if reason is not None:
            raise DecoderUnusable(reason) from exc

    def decode(self, paths: Sequence[str | Path], primary: Callable[[Sequence[str | Path]], DecodedBatch]
               ) -> DecodedBatch:
        """Decode with ``primary`` until it is found unusable, then with Pillow for the rest of the run."""
        if self.reason is None:
            try:
                return primary(paths)
            except DecoderUnusable as exc:
                self._switch(exc.reason)
        assert self._pillow is not None
        batch = self._pillow.decode(paths)
        return self._to_device(batch) if self._to_device is not None else batch

    def _switch(self, reason: str) -> None:
        self.reason = reason
        owner = self.owner
        log.warning("the %s decoder failed in a way that is not about one file (%s): the rest of the run is decoded "
                    "with Pillow on the CPU; %d file(s) before this had already been handed to Pillow one by one",
                    owner.name, reason, self.per_file)
        self._pillow = PilDecoder(owner.spec, batch_size=owner.batch_size, threads=owner.threads)

    def close(self) -> None:
        """Warn once about the files handed to Pillow one by one, and release the Pillow decoder's threads."""
        if self.per_file and self.reason is None:
            log.warning("%d file(s) the %s decoder rejected were handed to Pillow one by one (decoded there, or given "
                        "Pillow's error message)", self.per_file, self.owner.name)
        if self._pillow is not None:
            self._pillow.close()
            self._pillow = None
