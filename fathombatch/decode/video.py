"""Dive video in, sampled frames with timecodes out: PyAV (FFmpeg) decoding on the CPU.

Sampling rule: on the stream's own clock (presentation timestamp x time base, in whole milliseconds, rounded
down), the first frame of every window ``[k * interval, (k + 1) * interval)`` is sampled, k = 0, 1, 2, ... That is
the first decoded frame at or after each multiple of the interval (0, interval, 2 * interval, ...), one frame per
window: a gap in the footage (dropped frames, a paused recorder) yields no frame for the windows it covers rather than
the same frame twice. Timestamps are never derived from a frame rate, so variable frame rates, dropped frames and
streams whose timestamps do not start at 0 are sampled where the frames really are. Frames with a negative
timestamp (encoder pre-roll that players do not show) are skipped.

The whole stream is decoded, not sought through (``container.seek``): only by counting decoded frames is
``frame_index`` exact, and at the default 1 s interval seeking re-decodes from the previous keyframe for every sample,
which is slower whenever keyframes are further apart than the interval (x264's default is 250 frames). The
measurement on a 1080p H.264 clip is in docs/video.md (``benchmarks/video_seek.py``).

Errors never raise: an unreadable file, a file with no video stream, a packet that does not decode or a file that
ends before its declared duration (a truncated recording) each become one error item, after the frames that did
decode.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fathombatch.decode.discover import VIDEO_SUFFIXES
from fathombatch.decode.pil import resize_rgb
from fathombatch.errors import DecodeError, UsageError
from fathombatch.preprocess import InputSpec, normalize

if TYPE_CHECKING:
    import av

#: Digits of the zero-padded millisecond part of a frame's image id: 8 digits sort correctly up to 27.7 hours, longer
#: than any single recording file of a dive; past that the number simply grows (ids stay unique).
MS_DIGITS = 8

#: A file whose last decoded frame ends this long (or two frame durations, whichever is longer) before the duration
#: its container declares is reported as truncated; smaller gaps are rounding between container and stream clocks.
TRUNCATION_TOLERANCE_S = 0.5


def is_video(path: str | Path) -> bool:
    """True when the file name ends in one of :data:`VIDEO_SUFFIXES` (any case)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def frame_image_id(stem: str, ms: int) -> str:
    """``<stem>_t<milliseconds>``, the milliseconds zero-padded to :data:`MS_DIGITS` digits so ids sort by time."""
    return f"{stem}_t{ms:0{MS_DIGITS}d}"


@dataclass(frozen=True)
class VideoFrame:
    """One sampled frame of a video, or one error item.

    Attributes:
        path: the video file.
        frame_index: 0-based position of the frame among those the decoder returned (in presentation order), or
            None for an error item.
        timestamp_s: presentation time in seconds on the stream's clock; for an error item the time from which the
            video could not be read (None when the file could not be opened at all).
        image_id: ``<stem>_t<milliseconds>`` (:func:`frame_image_id`); ``<stem>`` for a file that did not open.
        pixels: (H, W, 3) uint8 RGB at the video's size, or None for an error item.
        error: a one-line message for an error item, else None.
    """

    path: Path
    frame_index: int | None
    timestamp_s: float | None
    image_id: str
    pixels: np.ndarray | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def interval_ms(interval_s: float) -> int:
    """The sampling interval in whole milliseconds (at least 1).

    Raises:
        UsageError: under 1 ms or not a finite number.
    """
    if not (isinstance(interval_s, (int, float)) and np.isfinite(interval_s)) or round(interval_s * 1000) < 1:
        raise UsageError(f"the frame interval must be at least 0.001 seconds, got {interval_s!r}")
    return int(round(interval_s * 1000))


def pyav() -> Any:
    """PyAV, imported on first use: a dump of stills scores without it (the lent GPU image has none), and a video
    then gets an error row naming the missing package instead of failing the run."""
    try:
        import av
    except ImportError:
        raise DecodeError("PyAV is not installed (pip install 'av'): videos cannot be decoded here") from None
    return av


def open_video(path: Path) -> av.container.InputContainer:
    """Open a video file with PyAV.

    Raises:
        DecodeError: with one specific message per way it can fail (missing, empty, not a video, ...).
    """
    lib = pyav()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DecodeError("broken symbolic link" if os.path.islink(path) else "file not found") from None
    except OSError as exc:
        raise DecodeError(f"cannot read file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DecodeError("not a regular file; not read")
    if st.st_size == 0:
        raise DecodeError("empty file (0 bytes)")
    try:
        return lib.open(str(path), mode="r")
    except PermissionError:
        raise DecodeError("permission denied") from None
    except lib.FFmpegError as exc:
        raise DecodeError(
            f"not a readable video ({exc.strerror or exc}): not a video file, or a recording cut off before its "
            "index was written"
        ) from None


def _seconds(value: int, time_base: Fraction) -> Fraction:
    return value * time_base


def _declared_end(container: av.container.InputContainer, stream: av.VideoStream) -> Fraction | None:
    """End time of the video stream its container declares, in seconds on the stream's clock, or None if unknown.

    The container's own duration counts only when the file holds this stream alone: an audio track may outlast the
    video, which is no truncation.
    """
    tb = stream.time_base or Fraction(1, 1)
    start = _seconds(stream.start_time, tb) if stream.start_time is not None else Fraction(0)
    if stream.duration:
        return start + _seconds(stream.duration, tb)
    tag = stream.metadata.get("DURATION")  # Matroska writes the track's duration as a tag, e.g. 00:00:04.000000000
    if tag:
        try:
            h, m, s = tag.split(":")
            return start + int(h) * 3600 + int(m) * 60 + Fraction(s)
        except ValueError:
            pass
    if container.duration and len(container.streams) == 1:
        return start + Fraction(container.duration, 1_000_000)
    return None


#: Packets remembered before a failure, and watched after it, to find the first frame the failure cost: with B-frames
#: and frame threads, the first frame lost may belong to a packet read well before the one that failed.
WATCH_PACKETS = 256


class _Reader:
    """Decodes every frame of a stream packet by packet, keeping going past packets that fail, and remembers the first
    frame a failure cost and where the last decoded frame ended."""

    def __init__(self, container: av.container.InputContainer, stream: av.VideoStream) -> None:
        self.container, self.stream = container, stream
        self.tb = stream.time_base or Fraction(1, 1)
        self.decoded = 0
        self.end: Fraction | None = None  # end time of the last decoded frame, in seconds
        self.frame_duration = Fraction(0)
        self.max_pts: int | None = None
        self.recent: deque[int] = deque(maxlen=WATCH_PACKETS)  # pts of the latest packets read
        self.recent_frames: deque[int] = deque(maxlen=2 * WATCH_PACKETS)  # pts of the latest frames decoded
        self.failed = 0  # packets that did not decode
        self.message = ""
        self.failed_after: Fraction | None = None  # end of the last frame decoded when the first failure came
        self.watch: set[int] = set()  # after the first failure: pts of packets around it whose frames should appear
        self.watch_left = 0
        self.seen: set[int] = set()  # pts of the frames decoded among ``watch``

    def _note_packet(self, packet: av.Packet) -> None:
        if packet.pts is None or not packet.size:
            return
        self.recent.append(packet.pts)
        if self.watch_left > 0:
            self.watch.add(packet.pts)
            self.watch_left -= 1

    def _fail(self, exc: av.FFmpegError) -> None:
        self.failed += 1
        if self.failed == 1:
            self.message = str(exc.strerror or exc)
            self.failed_after = self.end
            self.watch, self.watch_left = set(self.recent), WATCH_PACKETS
            self.seen = self.watch.intersection(self.recent_frames)

    def _note_frame(self, frame: av.VideoFrame) -> None:
        if frame.pts is None:
            return
        self.frame_duration = _seconds(frame.duration, self.tb) if frame.duration else self.frame_duration
        self.end = _seconds(frame.pts, self.tb) + self.frame_duration
        self.max_pts = frame.pts if self.max_pts is None else max(self.max_pts, frame.pts)
        self.recent_frames.append(frame.pts)
        if frame.pts in self.watch:
            self.seen.add(frame.pts)

    def frames(self) -> Iterator[tuple[int, av.VideoFrame]]:
        """(frame index, frame) for every frame that decodes."""
        lib = pyav()
        try:
            for packet in self.container.demux(self.stream):
                self._note_packet(packet)
                try:
                    decoded = packet.decode()
                except lib.FFmpegError as exc:
                    self._fail(exc)
                    continue
                for frame in decoded:
                    if isinstance(frame, lib.VideoFrame):
                        self._note_frame(frame)
                        yield self.decoded, frame
                        self.decoded += 1
        except lib.FFmpegError as exc:  # the demuxer itself gave up: nothing after this point can be read
            self._fail(exc)

    def _failure(self) -> tuple[Fraction, str]:
        lost = sorted(self.watch - self.seen)
        if lost:
            when = _seconds(lost[0], self.tb)
        else:
            start = self.stream.start_time or 0
            when = self.failed_after if self.failed_after is not None else _seconds(start, self.tb)
        later = "; later frames that decoded are kept" if lost and self.max_pts is not None and \
            self.max_pts > lost[0] else ""
        return when, (f"could not be read from {float(when):.3f} s on: {self.failed} packet(s) failed to decode "
                      f"({self.message}){later}")

    def problem(self) -> tuple[Fraction, str] | None:
        """(time from which reading failed, message) after :meth:`frames` is exhausted, or None when all was read."""
        if self.failed:
            return self._failure()
        return truncation(self.container, self.stream, self.end, self.frame_duration)


def truncation(container: av.container.InputContainer, stream: av.VideoStream, read_to: Fraction | None,
               frame_duration: Fraction) -> tuple[Fraction, str] | None:
    """(``read_to``, message) when the stream's frames end well before the duration its container declares (a
    truncated file), else None (also when no duration is declared).

    Args:
        read_to: end time, in seconds, of the last frame (None: no frame).
        frame_duration: duration of one frame in seconds (0 when unknown).
    """
    declared = _declared_end(container, stream)
    if declared is None:
        return None
    read_to = read_to if read_to is not None else Fraction(0)
    if declared - read_to > max(Fraction(TRUNCATION_TOLERANCE_S), 2 * frame_duration):
        return read_to, (f"could not be read from {float(read_to):.3f} s on: the file ends before its declared "
                         f"{float(declared):.3f} s (truncated, or an unfinished recording)")
    return None


class WindowSampler:
    """The sampling rule (module docstring), applied to frames in presentation order: one object per pass over a
    video, shared by the PyAV sampler and the DALI path (:mod:`fathombatch.decode.video_dali`), so both pick the same
    frames."""

    def __init__(self, interval_s: float) -> None:
        self.step_ms = interval_ms(interval_s)
        self.last_window = -1

    def take(self, when: Fraction) -> int | None:
        """The frame's time in whole milliseconds (rounded down) when the frame presented at ``when`` seconds is
        sampled, else None (a negative time, or a window already sampled)."""
        ms = int(when * 1000)  # exact: Fraction -> int rounds toward zero, and negatives are skipped
        if when < 0 or ms // self.step_ms <= self.last_window:
            return None
        self.last_window = ms // self.step_ms
        return ms


def _error(path: Path, message: str, when: Fraction | None, taken: set[int]) -> VideoFrame:
    if when is None:
        return VideoFrame(path, None, None, path.stem, error=message)
    ms = max(0, int(when * 1000))
    while ms in taken:  # an error item never shares an id with a sampled frame
        ms += 1
    return VideoFrame(path, None, float(when), frame_image_id(path.stem, ms), error=message)


def sample_frames(path: str | Path, interval_s: float = 1.0) -> Iterator[VideoFrame]:
    """Sample a video every ``interval_s`` seconds of presentation time (rule in the module docstring).

    Decoding uses FFmpeg's threads (``thread_type = "AUTO"``, frame and slice threading over every core).

    Yields:
        :class:`VideoFrame` items in presentation order, then at most one error item.

    Raises:
        UsageError: ``interval_s`` under 1 ms or not a finite number.
    """
    sampler = WindowSampler(interval_s)
    path = Path(path)
    try:
        container = open_video(path)
    except DecodeError as exc:
        yield VideoFrame(path, None, None, path.stem, error=str(exc))
        return
    taken: set[int] = set()
    with container:
        if not container.streams.video:
            kinds = ", ".join(sorted({str(s.type) for s in container.streams})) or "none"
            yield VideoFrame(path, None, None, path.stem, error=f"no video stream (streams: {kinds})")
            return
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        reader = _Reader(container, stream)
        for index, frame in reader.frames():
            if frame.pts is None:
                continue
            tb = frame.time_base or stream.time_base or Fraction(1, 1)
            when = _seconds(frame.pts, tb)
            if (ms := sampler.take(when)) is None:
                continue
            taken.add(ms)
            yield VideoFrame(path, index, float(when), frame_image_id(path.stem, ms), frame.to_ndarray(format="rgb24"))
        problem = reader.problem()
    if problem is not None:
        yield _error(path, problem[1], problem[0], taken)


def frames_to_batch(frames: Sequence[VideoFrame], spec: InputSpec) -> np.ndarray:
    """Resize and normalise sampled frames for a model, exactly as Pillow-decoded stills are
    (:func:`fathombatch.decode.pil.resize_rgb`, then :func:`fathombatch.preprocess.normalize`).

    Args:
        frames: sampled frames; error items have no pixels and are refused.

    Returns:
        (N, 3, H, W) float32 with (H, W) = ``spec.size``.

    Raises:
        ValueError: one of ``frames`` is an error item.
    """
    bad = [f.image_id for f in frames if f.pixels is None]
    if bad:
        raise ValueError(f"error items have no pixels to batch: {', '.join(bad[:3])}")
    if not frames:
        return np.empty((0, 3, *spec.size), dtype=np.float32)
    return normalize(np.stack([resize_rgb(f.pixels, spec.size) for f in frames if f.pixels is not None]), spec)


@dataclass(frozen=True)
class ResizedFrame:
    """A sampled frame (or error item) as the engine takes it, with its full-size pixels dropped.

    Attributes:
        frame: the :class:`VideoFrame`, its ``pixels`` None.
        tensor: (3, H, W) float32 model input with (H, W) = the input spec's size; None for an error item.
        size: (width, height) of the frame as decoded, in pixels; None for an error item.
    """

    frame: VideoFrame
    tensor: np.ndarray | None
    size: tuple[int, int] | None


def resize_frame(frame: VideoFrame, spec: InputSpec) -> ResizedFrame:
    """``frame`` resized and normalised by :func:`frames_to_batch`, its full-size pixels dropped."""
    pixels = frame.pixels
    if pixels is None:
        return ResizedFrame(frame, None, None)
    tensor = frames_to_batch([frame], spec)[0]
    return ResizedFrame(replace(frame, pixels=None), tensor, (int(pixels.shape[1]), int(pixels.shape[0])))


def resized_frames(path: str | Path, interval_s: float, spec: InputSpec) -> Iterator[ResizedFrame]:
    """:func:`sample_frames` decoded with PyAV, each frame resized for the engine as soon as it is decoded."""
    for frame in sample_frames(path, interval_s):
        yield resize_frame(frame, spec)
