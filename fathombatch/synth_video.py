"""Synthetic dive videos: short H.264 clips of the same organisms :mod:`fathombatch.synth` draws in its stills.

Each video takes one plan of :func:`fathombatch.synth.plan_image` (a real FathomNet 2023 label set and its boxes, or
an out-of-sample one), renders the water once and lets every organism drift along a straight line, bouncing off the
frame's edges, so all of them stay fully in view for the whole clip: every frame of a video shows the video's label
set. Written as ``OUT/videos/<uuid>.mp4`` (H.264 in MP4 via PyAV, the index at the front of the file so a copy cut
short still opens) and listed in ``OUT/videos.csv``.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from fathombatch.errors import UsageError
from fathombatch.fsutil import atomic_path, write_text_atomic
from fathombatch.synth import ImagePlan, SynthConfig, plan_image, render_background, render_object

#: Frame size of the videos when the dive forces none: small enough for tests and the demo to write quickly.
DEFAULT_VIDEO_SIZE = (640, 360)


@dataclass(frozen=True)
class VideoSynthConfig:
    """The videos of a synthetic dive (the dive's seed, size, deep fraction and box scale come from its SynthConfig).

    Attributes:
        videos: number of videos.
        seconds: length of each video in seconds.
        fps: frames per second (constant).
    """

    videos: int
    seconds: float = 3.0
    fps: int = 10


@dataclass(frozen=True)
class VideoSummary:
    videos: int
    frames: int
    deep: int


def _validate(cfg: VideoSynthConfig) -> None:
    if cfg.videos < 0:
        raise UsageError(f"the number of videos must be 0 or more, got {cfg.videos}")
    if not 0.1 <= cfg.seconds <= 3600:
        raise UsageError(f"video length must be between 0.1 and 3600 seconds, got {cfg.seconds}")
    if not 1 <= cfg.fps <= 240:
        raise UsageError(f"video frame rate must be between 1 and 240 frames per second, got {cfg.fps}")


def _even_size(dive: SynthConfig) -> tuple[int, int]:
    # H.264 in 4:2:0 needs even sizes: an odd size is rounded down by one pixel.
    width, height = dive.size or DEFAULT_VIDEO_SIZE
    return width - width % 2, height - height % 2


def render_frames(plan: ImagePlan, n_frames: int, fps: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The frames of one video: the plan's organisms drifting over one background, with fresh sensor noise.

    Yields:
        (plan.height, plan.width, 3) uint8 RGB per frame.
    """
    background = render_background(plan.width, plan.height, rng)
    sprites = []
    for cat, x, y, w, h in plan.boxes:
        rgb, alpha = render_object(cat, w, h, rng)
        # speed 2-10 % of the frame's size per second, so organisms move but stay recognisable from frame to frame
        velocity = rng.uniform(0.02, 0.1, 2) * (plan.width, plan.height) * rng.choice((-1, 1), 2)
        sprites.append((rgb, alpha, np.array((x, y), dtype=np.float64), velocity, (w, h)))
    for i in range(n_frames):
        img = background.copy()
        for rgb, alpha, start, velocity, (w, h) in sprites:
            x = _bounce(start[0], velocity[0] * i / fps, plan.width - w)
            y = _bounce(start[1], velocity[1] * i / fps, plan.height - h)
            region = img[y : y + h, x : x + w]
            region += alpha[..., None] * (rgb - region)
        # sensor noise changes from frame to frame: without it the clip is a still background that compresses (and
        # decodes) far more easily than real footage
        img += rng.normal(0.0, 3.0, size=(plan.height, plan.width, 1)).astype(np.float32)
        yield np.clip(img, 0, 255).astype(np.uint8)


def _bounce(start: float, travelled: float, span: int) -> int:
    """Position after moving ``travelled`` pixels from ``start`` inside [0, span], reflecting at both ends."""
    if span <= 0:
        return 0
    pos = (start + travelled) % (2 * span)
    return int(2 * span - pos if pos > span else pos)


def encode_h264(dest: Path, frames: Iterator[np.ndarray], fps: int, size: tuple[int, int],
                options: dict[str, str] | None = None) -> int:
    """Encode RGB frames as H.264 (libx264, 4:2:0, preset veryfast) in an MP4 with its index at the front, atomically.

    Args:
        frames: (height, width, 3) uint8 RGB, with (width, height) = ``size``.
        options: extra libx264 options, e.g. ``{"g": "30"}`` for a keyframe every 30 frames (default: x264's 250).

    Returns:
        number of frames written.
    """
    return encode_video(dest, frames, fps, size, codec="libx264", pix_fmt="yuv420p", container_format="mp4",
                        codec_options={"preset": "veryfast", **(options or {})},
                        container_options={"movflags": "+faststart"})


def encode_video(dest: Path, frames: Iterator[np.ndarray], fps: int, size: tuple[int, int], *, codec: str,
                 pix_fmt: str, container_format: str, codec_options: dict[str, str] | None = None,
                 container_options: dict[str, str] | None = None) -> int:
    """Encode RGB frames with any FFmpeg ``codec`` into ``dest``, atomically, frame i at i / ``fps`` seconds.

    Args:
        frames: (height, width, 3) uint8 RGB, with (width, height) = ``size``.
        pix_fmt / container_format: e.g. ``yuvj420p`` / ``matroska`` for MJPEG.

    Returns:
        number of frames written.
    """
    n = 0
    # the container closes (and writes its index) before atomic_path fsyncs and renames the file
    with atomic_path(dest) as tmp, av.open(str(tmp), mode="w", format=container_format,
                                           options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps, options=codec_options or {})
        stream.width, stream.height = size
        stream.pix_fmt = pix_fmt
        stream.time_base = Fraction(1, fps)
        for pixels in frames:
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = n, Fraction(1, fps)
            container.mux(stream.encode(frame))
            n += 1
        container.mux(stream.encode(None))
    return n


def synthesize_videos(dive: SynthConfig, cfg: VideoSynthConfig, progress: Callable[[int], None] | None = None
                      ) -> VideoSummary:
    """Write ``cfg.videos`` videos under ``dive.out / "videos"`` and list them in ``dive.out / "videos.csv"``.

    Columns of videos.csv: ``id`` (the file stem), ``file_name`` (relative to ``dive.out``), ``categories`` (as in
    train.csv), ``osd``, ``seconds``, ``fps``, ``frames``, ``width``, ``height``.
    """
    _validate(cfg)
    if cfg.videos == 0:
        return VideoSummary(0, 0, 0)
    sized = replace(dive, size=_even_size(dive))
    # videos draw from their own seed stream, so adding videos never changes the images of a dive
    rng = np.random.default_rng([dive.seed, 0x51DE0])
    deep = np.zeros(cfg.videos, dtype=bool)
    deep[rng.permutation(cfg.videos)[: int(round(cfg.videos * dive.deep_fraction))]] = True
    n_frames = max(1, int(round(cfg.seconds * cfg.fps)))
    rows = []
    for v in range(cfg.videos):
        video_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        plan = plan_image(sized, 10**9 + v, video_id, bool(deep[v]))  # indices far from the images'
        frames = render_frames(plan, n_frames, cfg.fps, np.random.default_rng([dive.seed, 10**9 + v, 1]))
        written = encode_h264(dive.out / "videos" / f"{video_id}.mp4", frames, cfg.fps, (plan.width, plan.height))
        rows.append((video_id, f"videos/{video_id}.mp4", "[" + ", ".join(f"{float(c)}" for c in plan.categories) + "]",
                     int(plan.deep), written / cfg.fps, cfg.fps, written, plan.width, plan.height))
        if progress:
            progress(1)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "file_name", "categories", "osd", "seconds", "fps", "frames", "width", "height"])
    writer.writerows(rows)
    write_text_atomic(dive.out / "videos.csv", buf.getvalue())
    return VideoSummary(videos=cfg.videos, frames=n_frames * cfg.videos, deep=int(deep.sum()))
