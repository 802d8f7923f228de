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

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fathombatch.decode.video import VideoFrame, frames_to_batch, sample_frames
from fathombatch.fsutil import display_path
from fathombatch.preprocess import InputSpec
from fathombatch.scoring.parts import file_signature

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


def _item(path: str, frame: VideoFrame, spec: InputSpec, signature: tuple[int | None, int | None],
          last: bool) -> FrameItem:
    pixels = frame.pixels
    size = None if pixels is None else (int(pixels.shape[1]), int(pixels.shape[0]))
    tensor = None if pixels is None else frames_to_batch([frame], spec)[0]
    return FrameItem(path, frame.frame_index, frame.timestamp_s, frame.image_id, size, tensor, frame.error,
                     signature, last)


def video_items(root: Path, path: str, spec: InputSpec, interval_s: float,
                skip: frozenset[int] = frozenset()) -> Iterator[FrameItem]:
    """The items of one pass over ``root / path``: its sampled frames not in ``skip`` (frame indices), the last
    item always, marked ``last``; a video that yields nothing at all gets one error item (:data:`NO_FRAMES`)."""
    # Taken before decoding: a file that changes while it is read no longer matches, so a resume reads it again.
    signature = file_signature(root / path)
    held: VideoFrame | None = None  # one item of lookahead: whether a frame is the last is known one frame later
    for frame in sample_frames(root / path, interval_s):
        if held is not None and not (held.ok and held.frame_index in skip):
            yield _item(path, held, spec, signature, last=False)
        held = frame
    if held is None:
        held = VideoFrame(root / path, None, None, Path(path).stem, error=NO_FRAMES)
    yield _item(path, held, spec, signature, last=True)


def frame_batches(root: Path, videos: list[str], spec: InputSpec, interval_s: float, batch_size: int,
                  done: Mapping[str, frozenset[int]] | None = None) -> Iterator[list[FrameItem]]:
    """Batches of at most ``batch_size`` items over ``videos`` in order.

    Args:
        done: display path of a video -> frame indices already scored (skipped but for the last item).
    """
    done = done or {}
    batch: list[FrameItem] = []
    for path in videos:
        for item in video_items(root, path, spec, interval_s, done.get(display_path(path), frozenset())):
            batch.append(item)
            if len(batch) == batch_size:
                yield batch
                batch = []
    if batch:
        yield batch
