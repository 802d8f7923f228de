"""Dive video decoded by DALI (``fn.decoders.video``: NVDEC on a GPU, libavcodec on the CPU) at the frames the
PyAV sampler would pick, so ``frame_index``, ``timestamp_s`` and ``image_id`` never depend on the decoder.

How a video goes through DALI (:class:`DaliVideoDecoder`):

1. :func:`pick_frames` demuxes the video stream with PyAV without decoding anything, orders the packets' presentation
   timestamps and applies the sampler's rule (:class:`~fathombatch.decode.video.WindowSampler`, the same object the
   PyAV path uses): the sampled frames' presentation-order indices, times and ids.
2. The file's bytes and those indices go to a DALI pipeline (``fn.external_source`` twice ->
   ``fn.decoders.video(frames=...)`` -> ``fn.resize`` -> ``fn.crop_mirror_normalize``), at most ``batch_size``
   frames per pipeline run, so memory holds the file and one batch of frames however long the video.

What DALI's frame index means, read in DALI's source (dali/operators/video/frames_decoder_base.cc,
``FramesDecoderBase::BuildIndex``, of the stored snapshot of NVIDIA/DALI; the installed 2.4 wheel behaves the same in
the tests): one index entry per demuxed packet of the video stream, its timestamp the packet's pts (its dts when it
has no pts; a packet with neither fails the file), packets with a negative timestamp left out, the entries then
sorted by timestamp. So frame ``k`` is the k-th packet in presentation order, B-frames included, which is the PyAV
sampler's ``frame_index`` (frames counted as decoded, presentation order) exactly when every packet decodes to one
frame and no frame is left out. ``build_index`` (on by default) costs one demux pass over the file per pipeline run,
packets only (no decoding); ``FramesDecoderBase::SeekFrame`` then seeks to the keyframe before each requested
frame that is more than 10 frames ahead and decodes from there. A requested index past the end is not an error:
``pad_mode`` ``constant`` (the default) returns a black frame (``HandleBoundary``), so the indices must be right
before DALI is asked.

Where the numberings could differ, the file is left to the PyAV sampler (:func:`pick_frames` says why): a packet
without a timestamp (DALI would use its dts, PyAV skips the frame), a negative timestamp (pre-roll DALI leaves out
and PyAV counts), two packets with one timestamp (their order is undefined), a stream that does not start at a
keyframe (FFmpeg's decoder drops the frames before it, shifting PyAV's count), a container whose declared frame count
differs from its packets (an AVI with a variable frame rate, where DALI counts the declared frames), and a file that
ends before its declared duration (a truncated file: PyAV gives the error row). So does a file over
:data:`MAX_BYTES`, a codec the backend lacks (the CPU backend decodes VP8, VP9 and MJPEG only), and any file DALI
fails on (a corrupt stream): the PyAV sampler then produces that file's rows, error rows included, skipping the
frames DALI had already delivered. Fallbacks are counted and reported in one warning at the end of the run
(:meth:`DaliVideoDecoder.close`); a failure that is not about the file (CUDA out of memory) switches the rest of the
run to PyAV at once, as the still decoders switch to Pillow (:mod:`fathombatch.decode.fallback`).

Not checked for want of a way to see it without decoding: streams whose packets do not each hold one frame (field
pictures, packed B-frames in old AVI files), and a corrupt packet in a stretch DALI seeks over (more than 10 frames
before the next sample), which DALI never decodes: no error row then, and later frames keep their packet-order
index where the PyAV sampler, decoding every frame, reports the loss and counts one frame fewer (docs/video.md);
the GPU (``mixed``) path has not been run at all (no GPU where this was written).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import numpy as np

from fathombatch.decode.dali import dali_available, import_dali, native_stderr_to_log
from fathombatch.decode.fallback import systemic_reason
from fathombatch.decode.video import (
    ResizedFrame,
    VideoFrame,
    WindowSampler,
    frame_image_id,
    open_video,
    pyav,
    resized_frames,
    truncation,
)
from fathombatch.errors import DecodeError, UsageError
from fathombatch.preprocess import InputSpec

log = logging.getLogger(__name__)

#: Values of ``ScoreConfig.video_decoder``.
VIDEO_DECODERS = ("auto", "pyav", "dali")
#: Codecs (PyAV's names) of DALI's CPU backend, and of its ``mixed`` (NVDEC) backend (``fn.decoders.video``'s docs).
CPU_CODECS = frozenset({"mjpeg", "vp8", "vp9"})
GPU_CODECS = CPU_CODECS | {"h264", "hevc", "av1", "mpeg4"}
#: Largest file given to DALI: it decodes from memory, so the whole file is read into RAM (beside the decoded frames),
#: and DALI's in-memory reader counts the bytes left with an ``int`` (``MemoryVideoFile::Read``), which a file of 2 GiB
#: or more would overflow. Larger files are decoded by PyAV, which streams from disk.
MAX_BYTES = 2**31 - 1


def resolve_video_decoder(name: str, device: int | None) -> str:
    """``pyav``, ``dali`` (DALI's CPU backend) or ``dali-gpu`` (NVDEC) for a requested ``name``.

    ``auto`` follows the engine, as the still decoders' ``auto`` does: ``dali-gpu`` when the engine runs on a GPU
    (``device``) and DALI imports, else ``pyav`` -- decided without importing DALI or PyTorch for a CPU run (the
    two take about three seconds on the 2-core benchmark machine, paid by every run, videos or not). ``dali`` is
    ``dali-gpu`` where a GPU is (the engine's, or any visible one), else the CPU backend.

    Raises:
        UsageError: an unknown name.
        MissingDependencyError: ``dali`` without DALI installed.
    """
    if name not in VIDEO_DECODERS:
        raise UsageError(f"unknown video decoder {name!r}; choose one of {', '.join(VIDEO_DECODERS)}")
    if name == "pyav" or (name == "auto" and (device is None or not dali_available())):
        return "pyav"
    import_dali()
    if device is not None:
        return "dali-gpu"
    from fathombatch.gpu import cuda_device_count

    return "dali-gpu" if cuda_device_count() > 0 else "dali"


@dataclass(frozen=True)
class Picked:
    """The sampled frames of one video, picked from its packets without decoding.

    Attributes:
        frames: the sampled frames in presentation order, without pixels.
        size: (width, height) of the video's frames in pixels.
    """

    frames: list[VideoFrame]
    size: tuple[int, int]


def _index_problem(packets: list[tuple[int | None, bool]], declared_frames: int) -> str | None:
    """Why DALI's frame numbering could differ from PyAV's for these packets ((pts, keyframe) in decode order), or
    None when it cannot (module docstring)."""
    stamps = [pts for pts, _ in packets]
    if not packets:
        return "no video packets"
    if any(pts is None for pts in stamps):
        return "a packet without a presentation timestamp"
    if any(cast(int, pts) < 0 for pts in stamps):
        return "negative timestamps (encoder pre-roll)"
    if len(set(stamps)) != len(stamps):
        return "two packets with the same timestamp"
    if not packets[0][1]:
        return "the stream does not start at a keyframe"
    if declared_frames and declared_frames != len(packets):
        return f"the container declares {declared_frames} frames but holds {len(packets)} packets"
    return None


def pick_frames(path: Path, interval_s: float, codecs: frozenset[str]) -> Picked | str | None:
    """The frames the PyAV sampler would yield for ``path``, read from its packets.

    Returns:
        :class:`Picked`; or the reason (a phrase) to decode the file with PyAV instead, when DALI could decode it
        differently or not at all; or None when the file is not a readable video at all (PyAV gives its error row).
    """
    sampler = WindowSampler(interval_s)
    try:
        if os.stat(path).st_size > MAX_BYTES:
            return "larger than 2 GiB"
        container = open_video(path)
    except (OSError, DecodeError):
        return None
    lib = pyav()
    with container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        if codec not in codecs:
            return f"codec {codec}"
        try:
            packets = [(p.pts, p.is_keyframe, p.duration or 0) for p in container.demux(stream) if p.size]
        except lib.FFmpegError:
            return "the container could not be read through"
        if (problem := _index_problem([(p, k) for p, k, _ in packets], stream.frames)) is not None:
            return problem
        tb = stream.time_base or Fraction(1, 1)
        last, duration = max((cast(int, p), d) for p, _, d in packets)
        if truncation(container, stream, (last + duration) * tb, duration * tb) is not None:
            return "truncated"
        size = (stream.codec_context.width, stream.codec_context.height)
    frames = []
    for index, pts in enumerate(sorted(cast(int, p) for p, _, _ in packets)):
        if (ms := sampler.take(pts * tb)) is not None:
            frames.append(VideoFrame(path, index, float(pts * tb), frame_image_id(path.stem, ms)))
    return Picked(frames, size)


@dataclass
class _Fallbacks:
    """Files a run's DALI decoder left to PyAV, by reason; and the reason DALI was dropped for the run, if it was."""

    reasons: Counter[str] = field(default_factory=Counter)
    disabled: str | None = None


class DaliVideoDecoder:
    """Sampled video frames decoded by DALI and resized and normalised for the engine on the same device.

    Args:
        spec: the engine's input spec.
        batch_size: most frames per pipeline run (one engine batch).
        threads: DALI's CPU threads.
        device: GPU for NVDEC (``mixed``) and the resize; None: DALI's CPU backend.
    """

    def __init__(self, spec: InputSpec, *, batch_size: int, threads: int | None = None,
                 device: int | None = None) -> None:
        import_dali()
        self.spec, self.batch_size, self.threads, self.device = spec, batch_size, threads or 1, device
        self.codecs = GPU_CODECS if device is not None else CPU_CODECS
        self.fallbacks = _Fallbacks()
        self._pipe: Any = None

    def _build(self) -> Any:
        import nvidia.dali.fn as fn
        import nvidia.dali.types as types
        from nvidia.dali import pipeline_def
        from nvidia.dali.data_node import DataNode

        spec = self.spec

        @pipeline_def(batch_size=1, num_threads=self.threads, device_id=cast(int, self.device),
                      prefetch_queue_depth=1, exec_async=False, exec_pipelined=False)
        def pipe() -> Any:
            encoded = fn.external_source(name="encoded", dtype=types.DALIDataType.UINT8, ndim=1, no_copy=True)
            indices = fn.external_source(name="indices", dtype=types.DALIDataType.INT32, ndim=1)
            frames = fn.decoders.video(encoded, frames=indices, device="cpu" if self.device is None else "mixed")
            resized = cast(DataNode, fn.resize(frames, resize_x=spec.width, resize_y=spec.height,
                                interp_type=types.DALIInterpType.INTERP_LINEAR, antialias=True))
            return fn.crop_mirror_normalize(resized, dtype=types.DALIDataType.FLOAT, output_layout="FCHW",
                                            mean=[m * 255.0 for m in spec.mean], std=[s * 255.0 for s in spec.std])

        p = pipe()
        p.build()
        return p

    def run_pipeline(self, data: np.ndarray, indices: list[int]) -> np.ndarray:
        """(F, 3, H, W) float32 on the CPU: frames ``indices`` (presentation order) of the video ``data`` (its bytes,
        uint8), resized to the input spec and normalised (on the GPU with ``device``, then copied to the host)."""
        if self._pipe is None:
            self._pipe = self._build()
        self._pipe.feed_input("encoded", [data])
        self._pipe.feed_input("indices", [np.asarray(indices, dtype=np.int32)])
        with native_stderr_to_log():
            (out,) = self._pipe.run()
        host = out if self.device is None else out.as_cpu()
        return np.asarray(host.as_array()[0], dtype=np.float32)

    def frames(self, path: str | Path, interval_s: float) -> Iterator[ResizedFrame]:
        """The sampled frames of ``path`` (then its error item, if any), as the PyAV sampler yields them, each
        resized for the engine (:class:`~fathombatch.decode.video.ResizedFrame`)."""
        path = Path(path)
        picked = pick_frames(path, interval_s, self.codecs) if self.fallbacks.disabled is None else None
        if not isinstance(picked, Picked):
            yield from self._with_pyav(path, interval_s, picked, set())
            return
        data = np.fromfile(path, dtype=np.uint8)
        done: set[int] = set()
        for start in range(0, len(picked.frames), self.batch_size):
            chunk = picked.frames[start:start + self.batch_size]
            try:
                tensors = self.run_pipeline(data, [cast(int, f.frame_index) for f in chunk])
            except RuntimeError as exc:
                self._pipe = None  # a pipeline that raised is not reused
                yield from self._with_pyav(path, interval_s, self._failed(exc), done)
                return
            for frame, tensor in zip(chunk, tensors, strict=True):
                done.add(cast(int, frame.frame_index))
                yield ResizedFrame(frame, tensor, picked.size)

    def _failed(self, exc: RuntimeError) -> str:
        """The reason to give for a file DALI failed on; drops DALI for the run when the failure is not the file's."""
        if (reason := systemic_reason(exc)) is not None and self.fallbacks.disabled is None:
            self.fallbacks.disabled = reason
            log.warning("DALI's video decoder failed in a way that is not about one file (%s): the rest of the run's "
                        "videos are decoded with PyAV on the CPU", reason)
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        log.debug("DALI could not decode a video: %s", lines[-1:] or type(exc).__name__)
        return "DALI failed on it"

    def _with_pyav(self, path: Path, interval_s: float, reason: str | None, done: set[int]) -> Iterator[ResizedFrame]:
        """The PyAV sampler's items for ``path`` but the frames in ``done`` (already delivered); ``reason`` None: a
        file that is no readable video, which is not counted as a fallback."""
        if reason is not None and self.fallbacks.disabled is None:
            self.fallbacks.reasons[reason] += 1
            log.debug("%s: decoded with PyAV instead of DALI (%s)", path, reason)
        for item in resized_frames(path, interval_s, self.spec):
            if not (item.frame.ok and item.frame.frame_index in done):
                yield item

    def close(self) -> None:
        """Warn once about the videos left to PyAV, by reason, and release the pipeline."""
        self._pipe = None
        reasons = self.fallbacks.reasons
        if reasons:
            why = "; ".join(f"{reason}: {count}" for reason, count in reasons.most_common())
            log.warning("%d video(s) were decoded with PyAV instead of DALI (same frames and times, pixels decoded "
                        "by another YUV-to-RGB conversion and resize) (%s)", sum(reasons.values()), why)
