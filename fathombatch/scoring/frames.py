"""Videos of a dump as engine batches of sampled frames, streamed (:func:`frame_batches`).

Each pending video is expanded into its sampled frames lazily, as the decode thread batches them: a frame is
resized for the engine as soon as it is decoded and its full-size pixels dropped, so a long video never sits in
memory, only one engine batch of resized frames and the frame being looked at. Frames are batched apart from the
stills (whose decoders may hand back GPU tensors), several short videos' frames sharing a batch.

A resumed video is decoded from its start again (a frame index is only exact when frames are counted as they are
decoded), but frames already scored (``skip``) do not reach the engine again. The last item of every pass is
always scored and marked ``last``, so a pass that ends is recorded as ended in the part files even when every frame
before it had been scored already.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fathombatch.decode.video import ResizedFrame, VideoFrame, resized_frames
from fathombatch.fsutil import display_path
from fathombatch.preprocess import InputSpec
from fathombatch.scoring.parts import file_signature

#: Samples one video: (path, interval in seconds) -> its frames resized for the engine, then its error item if any.
VideoSource = Callable[[Path, float], Iterator[ResizedFrame]]

#: The error row of a video that opened but yielded no frame and no reason why (e.g. a stream with no packets).
NO_FRAMES = "no frames could be decoded from this video"


@dataclass(frozen=True)
class FrameItem:
    """One row-to-be of a video: a sampled frame resized for the engine, or the video's error item.

    Attributes:
        path: the video, relative to the dump folder (as the pending list holds it).
        frame_index / timestamp_s / image_id / error: as :class:`~fathombatch.decode.video.VideoFrame`'s.
        size: (width, height) of the frame in pixels, None for an error item.
        tensor: (3, H, W) float32 model input, None for an error item.
        signature: (size in bytes, mtime in ns) of the video when its pass started.
        last: the last item of this pass over the video.
    """

    path: str
    frame_index: int | None
    timestamp_s: float | None
    image_id: str
    size: tuple[int, int] | None
    tensor: np.ndarray | None
    error: str | None
    signature: tuple[int | None, int | None]
    last: bool


def _item(path: str, resized: ResizedFrame, signature: tuple[int | None, int | None], last: bool) -> FrameItem:
    frame = resized.frame
    return FrameItem(path, frame.frame_index, frame.timestamp_s, frame.image_id, resized.size, resized.tensor,
                     frame.error, signature, last)


def video_items(root: Path, path: str, source: VideoSource, interval_s: float,
                skip: frozenset[int] = frozenset()) -> Iterator[FrameItem]:
    """The items of one pass over ``root / path``: its sampled frames not in ``skip`` (frame indices), the last
    item always, marked ``last``; a video that yields nothing at all gets one error item (:data:`NO_FRAMES`)."""
    # Taken before decoding: a file that changes while it is read no longer matches, so a resume reads it again.
    signature = file_signature(root / path)
    held: ResizedFrame | None = None  # one item of lookahead: whether a frame is the last is known one frame later
    for resized in source(root / path, interval_s):
        if held is not None and not (held.frame.ok and held.frame.frame_index in skip):
            yield _item(path, held, signature, last=False)
        held = resized
    if held is None:
        held = ResizedFrame(VideoFrame(root / path, None, None, Path(path).stem, error=NO_FRAMES), None, None)
    yield _item(path, held, signature, last=True)


@contextlib.contextmanager
def video_source(name: str, spec: InputSpec, batch_size: int, threads: int | None, device: int | None
                 ) -> Iterator[VideoSource]:
    """The sampler of a resolved video decoder name (``pyav``, ``dali``, ``dali-gpu``: on GPU ``device``, or 0),
    closed (its fallbacks reported) on exit."""
    if name == "pyav":
        yield functools.partial(resized_frames, spec=spec)
        return
    from fathombatch.decode.video_dali import DaliVideoDecoder

    gpu = (device or 0) if name == "dali-gpu" else None
    decoder = DaliVideoDecoder(spec, batch_size=batch_size, threads=threads, device=gpu)
    try:
        yield decoder.frames
    finally:
        decoder.close()


def frame_batches(root: Path, videos: list[str], spec: InputSpec, interval_s: float, batch_size: int,
                  done: Mapping[str, frozenset[int]] | None = None, *, video_decoder: str = "pyav",
                  threads: int | None = None, device: int | None = None) -> Iterator[list[FrameItem]]:
    """Batches of at most ``batch_size`` items over ``videos`` in order.

    Args:
        done: display path of a video -> frame indices already scored (skipped but for the last item).
        video_decoder / threads / device: what decodes the videos (:func:`video_source`).
    """
    done = done or {}
    batch: list[FrameItem] = []
    if not videos:
        return
    with video_source(video_decoder, spec, batch_size, threads, device) as source:
        for path in videos:
            for item in video_items(root, path, source, interval_s, done.get(display_path(path), frozenset())):
                batch.append(item)
                if len(batch) == batch_size:
                    yield batch
                    batch = []
    if batch:
        yield batch
