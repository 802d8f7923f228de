"""Issue 17 item 3: dive video sampled into frames with timecodes (PyAV), synthetic videos, the video bench stage.

Every test writes its own few-frame video with PyAV. Frame i is filled with grey level ``LEVEL * i`` so a sampled
frame can be told apart from its neighbours by its pixels alone.
"""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fathombatch.bench import bench_video
from fathombatch.cli import cli
from fathombatch.decode.pil import PilDecoder
from fathombatch.decode.video import VIDEO_SUFFIXES, frame_image_id, frames_to_batch, is_video, sample_frames
from fathombatch.errors import UsageError
from fathombatch.preprocess import InputSpec

LEVEL = 6


def write_video(path: Path, pts_ms: list[int], size: tuple[int, int] = (64, 48), faststart: bool = False,
                codec: str = "libx264", pix_fmt: str = "yuv420p") -> Path:
    """H.264 video (or ``codec``) whose frame i has presentation time ``pts_ms[i]`` milliseconds and, in its bottom
    half, grey level LEVEL * i; noise in the top half spreads the bytes over all frames, so cutting the file in half
    cuts frames off."""
    rng = np.random.default_rng(0)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height = size
        stream.pix_fmt = pix_fmt
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, pts in enumerate(pts_ms):
            pixels = np.full((size[1], size[0], 3), LEVEL * i, dtype=np.int16)
            pixels[: size[1] // 2] = rng.integers(0, 256, (size[1] // 2, size[0], 3))
            frame = av.VideoFrame.from_ndarray(np.clip(pixels, 0, 255).astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def level(frame_pixels: np.ndarray) -> int:
    """The frame number a sampled frame shows (from the noise-free bottom half)."""
    return int(round(frame_pixels[frame_pixels.shape[0] // 2 :].mean() / LEVEL))


def test_video_suffixes_any_case() -> None:
    assert {".mp4", ".mov", ".mkv", ".avi"} == set(VIDEO_SUFFIXES)
    assert is_video("dive/A.MP4") and is_video("b.Mkv") and is_video("c.mov") and is_video("d.AVI")
    assert not is_video("e.jpg") and not is_video("mp4")


def test_constant_rate_samples_first_frame_of_each_second(tmp_path: Path) -> None:
    video = write_video(tmp_path / "dive01.mp4", [i * 100 for i in range(40)])  # 10 fps, 4 s
    frames = list(sample_frames(video, interval_s=1.0))
    assert all(f.ok for f in frames)
    assert [f.timestamp_s for f in frames] == [0.0, 1.0, 2.0, 3.0]
    assert [f.frame_index for f in frames] == [0, 10, 20, 30]
    assert [level(f.pixels) for f in frames if f.pixels is not None] == [0, 10, 20, 30]
    assert [f.image_id for f in frames] == ["dive01_t00000000", "dive01_t00001000", "dive01_t00002000",
                                            "dive01_t00003000"]
    assert all(f.path == video and f.pixels is not None and f.pixels.shape == (48, 64, 3)
               and f.pixels.dtype == np.uint8 for f in frames)


def test_interval_shorter_than_frame_spacing_takes_every_frame(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mkv", [i * 100 for i in range(6)])
    frames = list(sample_frames(video, interval_s=0.05))
    assert [f.frame_index for f in frames] == list(range(6))
    assert [f.timestamp_s for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_timestamps_come_from_presentation_times_not_the_frame_rate(tmp_path: Path, suffix: str) -> None:
    # starts at 0.5 s, frames dropped between 0.7 and 1.7 s and between 1.8 and 3.6 s (the stream says 10 fps)
    video = write_video(tmp_path / f"vfr{suffix}", [500, 700, 1700, 1800, 3600])
    frames = list(sample_frames(video, interval_s=1.0))
    assert [f.timestamp_s for f in frames] == pytest.approx([0.5, 1.7, 3.6])
    assert [f.frame_index for f in frames] == [0, 2, 4]
    assert [level(f.pixels) for f in frames if f.pixels is not None] == [0, 2, 4]
    assert [f.image_id for f in frames] == ["vfr_t00000500", "vfr_t00001700", "vfr_t00003600"]


def test_image_ids_sort_by_time_and_are_unique() -> None:
    ids = [frame_image_id("d", ms) for ms in (0, 999, 1000, 61_000, 3_600_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert ids[2] == "d_t00001000"


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_truncated_video_keeps_decoded_frames_then_one_error(tmp_path: Path, suffix: str) -> None:
    whole = write_video(tmp_path / f"whole{suffix}", [i * 100 for i in range(40)], faststart=True)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    frames = list(sample_frames(cut, interval_s=1.0))
    good, last = frames[:-1], frames[-1]
    assert good and all(f.ok for f in good) and len(good) < 4
    assert [f.timestamp_s for f in good] == [float(s) for s in range(len(good))]
    assert not last.ok and last.pixels is None and last.frame_index is None
    assert last.timestamp_s is not None and good[-1].timestamp_s is not None
    assert good[-1].timestamp_s < last.timestamp_s < 4.0
    assert last.error is not None and last.error.startswith(f"could not be read from {last.timestamp_s:.3f} s on")
    assert "4.000 s" in last.error
    assert last.image_id == frame_image_id("cut", int(last.timestamp_s * 1000))
    assert [f.ok for f in sample_frames(whole)] == [True] * 4  # the whole file has no error item


def test_corrupt_packet_mid_video_reports_first_lost_frame_and_keeps_later_ones(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", [i * 100 for i in range(40)])
    data = bytearray(video.read_bytes())
    with av.open(str(video)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    pos, size = packets[15]
    data[pos : pos + size] = b"\xff" * size
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    items = list(sample_frames(broken, interval_s=0.001))  # every frame that decodes
    good, last = items[:-1], items[-1]
    decoded = [round(f.timestamp_s * 10) for f in good if f.timestamp_s is not None]
    first_missing = min(set(range(40)) - set(decoded))
    assert all(f.ok for f in good) and not last.ok and last.error is not None
    assert last.timestamp_s == pytest.approx(first_missing / 10)
    assert last.error.startswith(f"could not be read from {first_missing / 10:.3f} s on: 1 packet(s) failed")
    assert max(decoded) == 39 and last.error.endswith("later frames that decoded are kept")


def test_unreadable_files_give_one_error_item(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    empty = tmp_path / "empty.mov"
    empty.write_bytes(b"")
    cut_index = tmp_path / "noindex.mp4"  # MP4 whose index (at the end) is cut off: nothing can be read
    cut_index.write_bytes(write_video(tmp_path / "full.mp4", list(range(0, 1000, 100))).read_bytes()[:2000])
    for path, words in ((text, "not a readable video"), (empty, "empty file"), (cut_index, "not a readable video"),
                        (tmp_path / "gone.mkv", "file not found")):
        (item,) = list(sample_frames(path))
        assert not item.ok and item.error is not None and words in item.error
        assert (item.image_id, item.frame_index, item.timestamp_s, item.pixels) == (path.stem, None, None, None)


def test_no_video_stream_is_an_error_item(tmp_path: Path) -> None:
    path = tmp_path / "hydrophone.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=8000)
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    (item,) = list(sample_frames(path))
    assert item.error == "no video stream (streams: audio)"


@pytest.mark.parametrize("interval", [0.0, -1.0, 0.0004, float("nan")])
def test_interval_must_be_at_least_a_millisecond(tmp_path: Path, interval: float) -> None:
    with pytest.raises(UsageError, match="at least 0.001 seconds"):
        next(iter(sample_frames(tmp_path / "x.mp4", interval)))


def test_frames_to_batch_matches_pillow_decoded_stills(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", [i * 100 for i in range(12)], size=(96, 64))
    frames = [f for f in sample_frames(video, 0.5) if f.ok]
    spec = InputSpec(height=32, width=40)
    stills = []
    for f in frames:
        Image.fromarray(f.pixels).save(tmp_path / f"{f.image_id}.png")
        stills.append(tmp_path / f"{f.image_id}.png")
    with PilDecoder(spec, threads=1) as decoder:
        expected = decoder.decode(stills).images
    batch = frames_to_batch(frames, spec)
    assert batch.shape == (3, 3, 32, 40) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, expected)
    assert frames_to_batch([], spec).shape == (0, 3, 32, 40)


def test_frames_to_batch_refuses_error_items(tmp_path: Path) -> None:
    (item,) = list(sample_frames(tmp_path / "gone.mp4"))
    with pytest.raises(ValueError, match="gone"):
        frames_to_batch([item], InputSpec(height=32, width=32))


def test_synth_writes_videos_listed_with_their_labels(tmp_path: Path) -> None:
    out = tmp_path / "dive"
    dive = ["--images", "2", "--size", "97x64", "--deep-fraction", "0.5", "--seed", "3", "--quiet"]
    videos = ["--videos", "2", "--video-seconds", "1.5", "--video-fps", "4"]
    result = CliRunner().invoke(cli, ["synth", str(out), *dive, *videos])
    assert result.exit_code == 0, result.output
    assert "Wrote 2 videos (12 frames)" in result.output
    rows = list(csv.DictReader((out / "videos.csv").open()))
    assert len(rows) == 2 and sorted(r["osd"] for r in rows) == ["0", "1"]
    for row in rows:
        video = out / row["file_name"]
        assert video.parent == out / "videos" and video.stem == row["id"] and video.suffix == ".mp4"
        assert (row["frames"], row["fps"], row["width"], row["height"]) == ("6", "4", "96", "64")  # even width
        assert row["categories"].startswith("[") and float(row["categories"].strip("[]").split(",")[0]) >= 1
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (96, 64)
        frames = list(sample_frames(video, 0.5))
        assert [f.timestamp_s for f in frames] == [0.0, 0.5, 1.0]
        # organisms show: the frame is not plain water (objects add colours far from the blue-green background)
        assert all(f.pixels is not None and f.pixels.std(axis=(0, 1)).max() > 10 for f in frames)
    # the images are the same as a dive written without videos
    plain = tmp_path / "plain"
    assert CliRunner().invoke(cli, ["synth", str(plain), *dive]).exit_code == 0
    assert not (plain / "videos").exists() and not (plain / "videos.csv").exists()
    assert sorted(p.name for p in (plain / "images").iterdir()) == sorted(p.name for p in (out / "images").iterdir())
    assert (plain / "train.csv").read_text() == (out / "train.csv").read_text()


def test_bench_video_record(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", [i * 100 for i in range(25)])
    record = bench_video(video, interval_s=1.0, spec=InputSpec(height=32, width=32), repeats=1)
    assert record["stage"] == "video" and record["frames_per_s"] > 0 and len(record["runs"]) == 1
    assert (record["width"], record["height"], record["codec"], record["input"]) == (64, 48, "h264", "32x32")
    assert record["footage_s"] == pytest.approx(2.5) and record["realtime"] > 0
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(UsageError, match="not a readable video"):
        bench_video(tmp_path / "notes.mp4", repeats=1)


def test_without_pyav_stills_still_score_and_a_video_gets_an_error_item(tmp_path: Path) -> None:
    """The lent GPU image has no PyAV: importing the scoring core must not need it, and a video then says why."""
    import subprocess
    import sys

    video = write_video(tmp_path / "clip.mp4", [0, 100, 200])
    code = (
        "import sys; sys.modules['av'] = None\n"  # makes `import av` raise ImportError
        "import fathombatch.scoring, fathombatch.scoring.folder\n"
        "from fathombatch.decode.video import sample_frames\n"
        f"items = list(sample_frames({str(video)!r}))\n"
        "print(len(items), items[0].error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1 PyAV is not installed (pip install 'av'): videos cannot be decoded here"
