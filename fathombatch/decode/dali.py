"""NVIDIA DALI decoder: libjpeg-turbo / nvImageCodec on CPU threads here, nvJPEG on a GPU (the GPU issue).

Files are read and identified in Python (:func:`~fathombatch.decode.base.read_image_file`), then fed to a DALI
pipeline through ``fn.external_source``: decode (EXIF orientation applied), resize to the input spec with
antialiased bilinear interpolation, normalise, CHW float32.

DALI stops a whole pipeline run on one corrupt file, and the pipeline object is not to be trusted afterwards. So
when a batch fails, the pipeline is rebuilt (a few milliseconds) and that batch is decoded file by file; a file that
DALI still rejects is handed to Pillow, which either decodes it (DALI lacks, for example, some CMYK and 16-bit
variants) or gives the specific error message for its row. One bad image never costs the others their scores.
TIFF stills never reach DALI: Pillow decodes them (:data:`~fathombatch.decode.pil.PILLOW_ONLY`) and their rows join
the batch in file order.
A failure that is not about a file (out of memory, a CUDA error) switches the rest of the run to Pillow at once,
with one warning, instead of rebuilding a pipeline per file (:mod:`fathombatch.decode.fallback`).

Chroma: the ``mixed`` (nvJPEG) backend upsamples 4:2:0 chroma differently from libjpeg-turbo unless
``jpeg_fancy_upsampling`` is set, which shifts colours at sharp colour edges away from DALI's CPU backend and
Pillow. Both backends are given it (:func:`image_decoder_args`), so CPU and GPU pipelines differ only in ``device``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from fathombatch.decode.base import DecodedBatch, Decoder, ImageFile, read_batch
from fathombatch.decode.fallback import PillowFallback
from fathombatch.decode.pil import PILLOW_ONLY, decode_resized
from fathombatch.errors import DecodeError, MissingDependencyError, require
from fathombatch.preprocess import InputSpec, normalize

log = logging.getLogger(__name__)


#: Prefixes of what DALI's native code prints per bad file: image codecs, and FFmpeg's ``[matroska,webm @ 0x...]``
#: lines and DALI's own ``[/opt/dali/...]`` ones for videos (:mod:`fathombatch.decode.video_dali`).
_NATIVE_NOISE = ("[libjpeg_turbo_decoder]", "[nvjpeg", "[libpng", "[libtiff", "[opencv", "nvImageCodec", " @ 0x",
                 "[/opt/dali/")
_stderr_lock = threading.Lock()


@contextlib.contextmanager
def native_stderr_to_log() -> Iterator[None]:
    """Capture what native code writes to file descriptor 2 while DALI runs.

    nvImageCodec prints an ``[ERROR]`` line for every corrupt image straight to fd 2, whatever
    ``DALI_NVIMGCODEC_LOG_LEVEL`` says (its lowest level still shows errors). fathombatch reports each bad file in
    its error row, so those lines go to the debug log (``--verbose``); anything else written meanwhile (a progress
    bar refresh, a warning from another thread) is copied back to stderr afterwards, so nothing is lost.
    """
    with _stderr_lock, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
    for line in text.splitlines(keepends=True):
        if any(marker in line for marker in _NATIVE_NOISE):
            log.debug("DALI: %s", line.strip())
        else:
            sys.stderr.write(line)


def import_dali() -> Any:
    """Import ``nvidia.dali`` or raise MissingDependencyError."""
    return require("nvidia.dali", "dali", "the DALI decoder")


def dali_available() -> bool:
    """True when ``nvidia.dali`` imports (it is Linux-only)."""
    try:
        import_dali()
    except MissingDependencyError:
        return False
    return True


def image_decoder_args(gpu: bool, hw_decoder_load: float) -> dict[str, Any]:
    """Keyword arguments of ``fn.decoders.image`` (DALI 1.x and 2.x spell them alike) for a GPU or a CPU pipeline."""
    args: dict[str, Any] = {"device": "mixed" if gpu else "cpu", "jpeg_fancy_upsampling": True}
    if gpu:
        args["hw_decoder_load"] = hw_decoder_load
    return args


class DaliDecoder(Decoder):
    """Decode with DALI: CPU operators (``device_id=None``) by default, or on a GPU.

    On a GPU (``device=N``) JPEGs are decoded by nvJPEG (``mixed`` backend; the hardware JPEG decoder takes
    ``hw_decoder_load`` of the work where the GPU has one), and resizing and normalisation run on the GPU too. The batch
    stays on the GPU: :attr:`DecodedBatch.images` is then a CUDA ``torch.Tensor`` (a device-to-device copy of DALI's
    output, which DALI reuses on its next run), handed to the engine without a host round trip. DALI decodes PNG (and
    other non-JPEG formats) on the CPU even in a GPU pipeline, then copies the pixels to the GPU.
    """

    name = "dali"

    def __init__(self, spec: InputSpec, *, batch_size: int = 32, threads: int | None = None, device: int | None = None,
                 hw_decoder_load: float = 0.65) -> None:
        super().__init__(spec, batch_size=batch_size, threads=threads)
        import_dali()
        if device is not None:
            from fathombatch.gpu import require_gpu

            require_gpu("decoding with DALI on a GPU", [device])
        self.device = device
        self.hw_decoder_load = hw_decoder_load
        self._pipe: Any = None
        self.fallback = PillowFallback(self, to_device=self._on_device)

    def _build(self) -> Any:
        import nvidia.dali.fn as fn
        import nvidia.dali.types as types
        from nvidia.dali import pipeline_def
        from nvidia.dali.data_node import DataNode

        spec = self.spec
        gpu = self.device is not None

        @pipeline_def(
            batch_size=self.batch_size,
            num_threads=self.threads,
            device_id=cast(int, self.device),  # None: a CPU-only pipeline (documented; the stub says int)
            prefetch_queue_depth=1,
            exec_async=False,
            exec_pipelined=False,
        )
        def pipe() -> Any:
            encoded = fn.external_source(name="encoded", dtype=types.DALIDataType.UINT8, ndim=1)
            images = fn.decoders.image(encoded, output_type=types.DALIImageType.RGB,
                                       **image_decoder_args(gpu, self.hw_decoder_load))
            resized = cast(DataNode, fn.resize(  # one input gives one output node (the stub allows several)
                images,
                resize_x=spec.width,
                resize_y=spec.height,
                interp_type=types.DALIInterpType.INTERP_LINEAR,
                antialias=True,
            ))
            return fn.crop_mirror_normalize(
                resized,
                dtype=types.DALIDataType.FLOAT,
                output_layout="CHW",
                mean=[m * 255.0 for m in spec.mean],
                std=[s * 255.0 for s in spec.std],
            )

        p = pipe()
        p.build()
        return p

    def run_pipeline(self, files: Sequence[ImageFile]) -> Any:
        """(N, 3, H, W) float32: a NumPy array on the CPU, a CUDA torch tensor on a GPU.

        The one call into DALI: tests replace it on an instance to make DALI fail as a GPU would.
        """
        if self._pipe is None:
            self._pipe = self._build()
        self._pipe.feed_input("encoded", [np.frombuffer(f.data, dtype=np.uint8) for f in files])
        with native_stderr_to_log():
            (out,) = self._pipe.run()
        if self.device is None:
            return np.asarray(out.as_array(), dtype=np.float32)
        import torch
        from nvidia.dali.plugin.pytorch import feed_ndarray

        dense = out.as_tensor()
        target = torch.empty(tuple(dense.shape()), dtype=torch.float32, device=f"cuda:{self.device}")
        feed_ndarray(dense, target, cuda_stream=torch.cuda.current_stream(self.device))
        return target

    def _stack(self, rows: list[Any]) -> Any:
        if self.device is None:
            return np.stack(rows) if rows else np.empty((0, 3, *self.spec.size), dtype=np.float32)
        import torch

        device = f"cuda:{self.device}"
        if not rows:
            return torch.empty((0, 3, *self.spec.size), dtype=torch.float32, device=device)
        return torch.stack([r if isinstance(r, torch.Tensor) else torch.from_numpy(r).to(device) for r in rows])

    def _reset(self) -> None:
        self._pipe = None  # a pipeline that raised is not reused; the next run builds a fresh one

    def _decode_alone(self, image: ImageFile) -> tuple[np.ndarray, str]:
        """Decode one file that failed inside a batch: DALI alone first, then Pillow."""
        try:
            return self.run_pipeline([image])[0], "dali"
        except RuntimeError as exc:
            self._reset()
            self.fallback.file_failed(exc)  # raises DecoderUnusable when DALI itself failed
        return self._pillow_row(image), "pil"

    def _pillow_row(self, image: ImageFile) -> np.ndarray:
        """(3, H, W) float32: one file decoded by Pillow; raises DecodeError with Pillow's specific message."""
        return normalize(decode_resized(image, self.spec.size)[None], self.spec)[0]

    def _on_device(self, batch: DecodedBatch) -> DecodedBatch:
        """Move a Pillow batch to this decoder's GPU (after a switch to Pillow), so callers see one kind of batch."""
        batch.images = self._stack(list(batch.images))
        return batch

    def decode(self, paths: Sequence[str | Path]) -> DecodedBatch:
        return self.fallback.decode(paths, self._decode)

    def _decode(self, paths: Sequence[str | Path]) -> DecodedBatch:
        read, sizes, errors = read_batch(paths)
        decoders: list[str | None] = [None] * len(paths)
        rows: dict[int, Any] = {}  # position -> decoded row; a batch's rows are stacked in position order
        for i, image in read:
            if image.format in PILLOW_ONLY:
                try:
                    rows[i] = self._pillow_row(image)
                    decoders[i] = "pil"
                except DecodeError as err:
                    errors[i] = str(err)
        files = [image for _, image in read if image.format not in PILLOW_ONLY]
        positions = [i for i, image in read if image.format not in PILLOW_ONLY]
        if files:
            try:
                batch = self.run_pipeline(files)
                rows.update(zip(positions, batch, strict=True))
                for i in positions:
                    decoders[i] = "dali" if self.device is None else "dali-gpu"
            except RuntimeError as exc:
                log.debug("DALI batch failed, isolating the bad file(s): %s", str(exc).splitlines()[-1:])
                self._reset()
                self.fallback.batch_failed(exc)
                for image, i in zip(files, positions, strict=True):
                    try:
                        rows[i], decoders[i] = self._decode_alone(image)
                    except DecodeError as err:
                        errors[i] = str(err)
        ok = sorted(rows)
        return DecodedBatch(images=self._stack([rows[i] for i in ok]), ok=ok, sizes=sizes, errors=errors,
                            decoders=decoders)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._reset()
        self.fallback.close()
