"""What the TensorRT builder and runtime share, kept free of CUDA so a CPU can test it.

* :func:`tensorrt_logger`: the one logger of the process. TensorRT keeps the first ``ILogger`` it is given for the
  whole process and ignores later ones, so a second logger (one per build, one per engine) would never see a message:
  the errors fathombatch quotes would be lost. Both ``build-engine`` and the runtime use this one.
* :func:`chunk_plan` / :func:`bind_address`: TensorRT requires every I/O tensor address to be aligned to
  :data:`TRT_ALIGNMENT` bytes, and ``set_tensor_address`` says False (it does not raise) when one is not.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from typing import Any

from fathombatch.errors import EngineError

log = logging.getLogger(__name__)

#: Bytes every TensorRT I/O tensor address must be a multiple of (TensorRT 10/11 ``setTensorAddress``).
TRT_ALIGNMENT = 256


class TrtLogger:
    """The process's TensorRT logger: keeps the latest warnings and errors for the messages fathombatch raises.

    Messages are numbered; take :meth:`mark` before an operation and :meth:`since` after it, so an error quotes what
    TensorRT said about *that* operation and not about an earlier one (the logger lives as long as the process).
    """

    def __init__(self, trt: Any, keep: int = 200) -> None:
        self._messages: deque[tuple[int, str]] = deque(maxlen=keep)
        self._count = 0
        outer = self

        class Impl(trt.ILogger):
            def __init__(inner) -> None:  # noqa: N805 - TensorRT's base class needs its own __init__ called
                trt.ILogger.__init__(inner)

            def log(inner, severity: Any, msg: str) -> None:  # noqa: N805
                if severity <= trt.ILogger.Severity.WARNING:
                    outer._count += 1
                    outer._messages.append((outer._count, msg))
                    log.debug("TensorRT: %s", msg)

        self.impl = Impl()

    def mark(self) -> int:
        """A position in the message stream, for :meth:`since`."""
        return self._count

    def since(self, mark: int, last: int = 3) -> str:
        """The last ``last`` messages logged after ``mark``, joined by "; " ("" when there are none)."""
        return "; ".join([m for n, m in self._messages if n > mark][-last:])


@functools.cache
def tensorrt_logger(trt: Any) -> TrtLogger:
    """The one :class:`TrtLogger` of this process for the module ``trt`` (created on first use)."""
    return TrtLogger(trt)


def chunk_plan(n: int, max_batch: int, sample_bytes: int, base_address: int,
               alignment: int = TRT_ALIGNMENT) -> list[tuple[int, int, bool]]:
    """How to feed a contiguous batch of ``n`` samples to a plan that takes at most ``max_batch`` at a time.

    Args:
        n: samples in the batch.
        max_batch: the plan's largest batch.
        sample_bytes: bytes of one sample (e.g. 3·H·W·4 for float32 images).
        base_address: device address of the first sample.
        alignment: required address alignment in bytes.

    Returns:
        ``(start, stop, copy)`` per chunk: samples ``start:stop``, and whether that slice starts at an address
        TensorRT refuses, so it must be copied to a fresh (aligned) buffer first. At 224 px every slice is aligned
        whatever ``max_batch`` is; at 260, 299, 300 or 380 px (H·W not a multiple of 64) later slices are not unless
        ``max_batch`` happens to make up the difference (a multiple of 4 at 260, 300 and 380 px, of 64 at 299 px).
    """
    if max_batch < 1:
        raise EngineError(f"the plan's largest batch must be at least 1, got {max_batch}")
    return [(start, min(start + max_batch, n), (base_address + start * sample_bytes) % alignment != 0)
            for start in range(0, n, max_batch)]


def bind_address(context: Any, name: str, address: int, what: str, logger: TrtLogger | None = None,
                 mark: int = 0) -> None:
    """``context.set_tensor_address(name, address)``, raising EngineError when TensorRT refuses it.

    Args:
        context: a TensorRT execution context.
        name: the I/O tensor's name.
        address: device address of its buffer.
        what: the engine, for the message.
        logger, mark: where to read what TensorRT said since ``mark`` about the refusal.
    """
    if not context.set_tensor_address(name, address):
        said = logger.since(mark) if logger is not None else ""
        raise EngineError(f"TensorRT refused the address of tensor {name!r} of {what} (address {address:#x}, "
                          f"{address % TRT_ALIGNMENT} bytes past a {TRT_ALIGNMENT}-byte boundary)"
                          + (f": {said}" if said else ""))
