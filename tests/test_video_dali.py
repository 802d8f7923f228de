"""Issue 17 item 3: dive video decoded by DALI at the frames the PyAV sampler picks (``--video-decoder``).

DALI's CPU backend decodes MJPEG (not H.264), so the time-exact path is checked here on MJPEG Matroska files with
variable frame rates; H.264 shows the per-file fallback to PyAV. The NVDEC (``mixed``) path needs a GPU
(``dali_gpu``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import av
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from fathombatch.cli import cli
from fathombatch.decode.video import VideoFrame, resized_frames, sample_frames
from fathombatch.decode.video_dali import CPU_CODECS, DaliVideoDecoder, pick_frames, resolve_video_decoder
from fathombatch.errors import UsageError
from fathombatch.preprocess import InputSpec
from fathombatch.scores.metadata import read_metadata
from fathombatch.scoring import ScoreConfig, score_folder
from fathombatch.taxonomy import fathomnet2023
from tests.test_video import level, write_video

NAMES = list(fathomnet2023().names)
#: Variable frame rate with a 1.5 s gap (a paused recorder), starting at 0.3 s.
VFR_MS = [300, 400, 450, 700, 1000, 1100, 1350, 2900, 3000, 3033, 3066, 3100, 4250, 4300]
SPEC = InputSpec(height=32, width=40)
#: Largest difference allowed between the DALI and PyAV model inputs, in normalised units (one grey level is about
#: 0.017 of them). The two decode the same JPEG bitstream but convert YUV to RGB with different code (DALI's own
#: conversion vs FFmpeg's swscale, each with its own chroma upsampling and rounding) and resize with different kernels
#: (DALI's antialiased linear vs Pillow's). Measured on these clips: at 40x32, at most 0.56 (in the noisy half, where
#: 4:2:0 chroma of random pixels upsampled two ways differs most) and at most 0.037 averaged over a frame; without a
#: resize, frames differ by up to 55 levels in the noisy half and 2.9 levels on average.
PIXEL_ATOL = 0.8
#: ... averaged over a frame. That a frame is the right one is checked by its grey level, in
#: test_the_raw_frames_dali_decodes_show_the_sampled_frame_numbers.
PIXEL_MEAN_ATOL = 0.05


def write_mjpeg(path: Path, pts_ms: list[int], size: tuple[int, int] = (64, 48)) -> Path:
    """MJPEG video (yuvj420p) whose frame i has presentation time ``pts_ms[i]`` ms and, in its bottom half, grey level
    LEVEL * i (:func:`tests.test_video.write_video` with DALI's CPU codec); noise in the top half."""
    return write_video(path, pts_ms, size, codec="mjpeg", pix_fmt="yuvj420p")


def fields(frames: list[VideoFrame]) -> list[tuple[int | None, float | None, str, str | None]]:
    return [(f.frame_index, f.timestamp_s, f.image_id, f.error) for f in frames]


@pytest.mark.dali
@pytest.mark.parametrize("interval", [1.0, 0.25])
def test_dali_cpu_decodes_the_frames_pyav_samples_with_the_same_indices_times_and_ids(tmp_path: Path,
                                                                                    interval: float) -> None:
    video = write_mjpeg(tmp_path / "vfr.mkv", VFR_MS)
    picked = pick_frames(video, interval, CPU_CODECS)
    assert not isinstance(picked, str) and picked is not None  # nothing here to fall back for
    decoder = DaliVideoDecoder(SPEC, batch_size=3, device=None)  # 3: several pipeline runs per video
    dali = list(decoder.frames(video, interval))
    pyav = list(resized_frames(video, interval, SPEC))
    assert fields([r.frame for r in dali]) == fields([r.frame for r in pyav])
    assert len(dali) > 3 and all(r.frame.ok for r in dali)
    if interval == 1.0:  # the gap from 1.35 to 2.9 s yields no frame for the 2 s window
        assert [r.frame.timestamp_s for r in dali] == [0.3, 1.0, 2.9, 3.0, 4.25]
        assert [r.frame.frame_index for r in dali] == [0, 4, 7, 8, 12]
    assert [r.size for r in dali] == [r.size for r in pyav] == [(64, 48)] * len(dali)
    a = np.stack([r.tensor for r in dali if r.tensor is not None])
    b = np.stack([r.tensor for r in pyav if r.tensor is not None])
    assert a.shape == b.shape == (len(dali), 3, 32, 40) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=PIXEL_ATOL)
    assert np.abs(a - b).mean(axis=(1, 2, 3)).max() < PIXEL_MEAN_ATOL
    assert decoder.fallbacks.reasons == {}


@pytest.mark.dali
def test_the_raw_frames_dali_decodes_show_the_sampled_frame_numbers(tmp_path: Path) -> None:
    """The pixels DALI returns for an index are that frame's: a wrong numbering would show another grey level."""
    video = write_mjpeg(tmp_path / "vfr.mkv", VFR_MS)
    decoder = DaliVideoDecoder(InputSpec(height=48, width=64, mean=(0, 0, 0), std=(1 / 255, 1 / 255, 1 / 255)),
                               batch_size=8)
    frames = list(decoder.frames(video, 0.5))
    shown = [level(r.tensor.transpose(1, 2, 0)) for r in frames if r.tensor is not None]
    assert shown == [r.frame.frame_index for r in frames]
    assert shown == [level(f.pixels) for f in sample_frames(video, 0.5) if f.pixels is not None]


@pytest.mark.dali
def test_h264_on_the_cpu_backend_and_a_truncated_or_corrupt_mjpeg_fall_back_to_pyav_rows(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_video(tmp_path / "h264.mkv", [i * 100 for i in range(25)])
    whole = write_mjpeg(tmp_path / "whole.mkv", [i * 100 for i in range(40)])
    data = whole.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    with av.open(str(whole)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    pos, size = packets[25]
    corrupt[pos + size // 3: pos + size // 3 + 200] = bytes(200)  # inside the JPEG data: the container is intact
    (tmp_path / "bad.mkv").write_bytes(bytes(corrupt))
    assert pick_frames(tmp_path / "h264.mkv", 1.0, CPU_CODECS) == "codec h264"
    assert pick_frames(tmp_path / "cut.mkv", 1.0, CPU_CODECS) == "truncated"
    decoder = DaliVideoDecoder(SPEC, batch_size=2)
    for name in ("h264.mkv", "cut.mkv", "bad.mkv"):
        dali = [r.frame for r in decoder.frames(tmp_path / name, 1.0)]
        assert fields(dali) == fields(list(sample_frames(tmp_path / name, 1.0))), name
    bad = [r.frame for r in decoder.frames(tmp_path / "bad.mkv", 1.0)]
    assert not bad[-1].ok and "failed to decode" in str(bad[-1].error)  # the PyAV path's error row
    assert [f.frame_index for f in bad[:-1]] == [0, 10, 20, 29]  # the lost packet shifts later indices, as in PyAV
    assert decoder.fallbacks.reasons == {"codec h264": 1, "truncated": 1, "DALI failed on it": 2}
    with caplog.at_level(logging.WARNING):
        decoder.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("4 video(s) were decoded with PyAV instead of DALI")
    assert "codec h264: 1" in warnings[0]


@pytest.mark.dali
def test_a_variable_rate_avi_whose_declared_frames_differ_from_its_packets_goes_to_pyav(tmp_path: Path) -> None:
    """AVI stores a constant rate: with a 1 ms time base it declares a frame per millisecond, which DALI counts."""
    video = write_mjpeg(tmp_path / "vfr.avi", VFR_MS)
    reason = pick_frames(video, 1.0, CPU_CODECS)
    assert isinstance(reason, str) and reason.startswith("the container declares")
    decoder = DaliVideoDecoder(SPEC, batch_size=4)
    assert fields([r.frame for r in decoder.frames(video, 1.0)]) == fields(list(sample_frames(video, 1.0)))


def test_the_video_decoder_resolves_to_pyav_without_a_gpu_and_refuses_unknown_names() -> None:
    assert resolve_video_decoder("pyav", None) == "pyav"
    with pytest.raises(UsageError, match="unknown video decoder 'nvdec'; choose one of auto, pyav, dali"):
        resolve_video_decoder("nvdec", None)


def test_auto_for_an_engine_on_the_cpu_is_pyav_without_importing_dali_or_torch() -> None:
    """Every CPU run resolves the video decoder, videos or not: importing DALI and PyTorch to do it cost 1.6 s."""
    import subprocess
    import sys

    code = ("import sys; from fathombatch.decode.video_dali import resolve_video_decoder as r; "
            "print(r('auto', None), 'nvidia.dali' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["pyav", "False", "False"]


@pytest.mark.dali
def test_without_a_gpu_auto_is_pyav_and_dali_is_its_cpu_backend() -> None:
    from fathombatch.gpu import cuda_device_count

    if cuda_device_count():
        pytest.skip("this machine has a GPU: auto and dali mean NVDEC here")
    assert resolve_video_decoder("auto", None) == "pyav"
    assert resolve_video_decoder("dali", None) == "dali"


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    root = tmp_path / "dump"
    root.mkdir()
    write_mjpeg(root / "vfr.mkv", VFR_MS)
    write_video(root / "h264.mp4", [i * 100 for i in range(30)])
    return root


def score_cli(root: Path, engine: Path, out: Path, *extra: str) -> tuple[pl.DataFrame | None, str]:
    result = CliRunner().invoke(cli, ["score", str(root), "--engine", str(engine), "--out", str(out),
                                      "--decoder", "pil", "--batch-size", "2", *extra])
    return (pl.read_parquet(out) if result.exit_code == 0 else None), result.output


@pytest.mark.dali
def test_score_with_dali_gives_the_rows_of_pyav_and_records_the_decoder(
        dump: Path, engines: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pyav, _ = score_cli(dump, engines["onnx"], tmp_path / "pyav.parquet", "--video-decoder", "pyav",
                        "--frame-interval", "0.5")
    with caplog.at_level(logging.WARNING):
        dali, output = score_cli(dump, engines["onnx"], tmp_path / "dali.parquet", "--video-decoder", "dali",
                                 "--frame-interval", "0.5")
    assert pyav is not None and dali is not None, output
    floats = [*NAMES, "osd"]
    keep = ["path", "frame_index", "timestamp_s", "image_id", "status", "width", "height"]
    assert dali.select(keep).equals(pyav.select(keep))
    assert dali.filter(pl.col("path") == "vfr.mkv")["timestamp_s"].to_list() == [0.3, 0.7, 1.0, 2.9, 3.0, 4.25]
    # Probabilities of the tiny engine from slightly different pixels (see PIXEL_ATOL); the H.264 video's rows,
    # decoded by PyAV on both runs, are identical.
    np.testing.assert_allclose(dali.select(floats).to_numpy(), pyav.select(floats).to_numpy(), atol=0.02)
    h264 = pl.col("path") == "h264.mp4"
    assert dali.filter(h264).equals(pyav.filter(h264))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("1 video(s) were decoded with PyAV instead of DALI")
    assert read_metadata(tmp_path / "dali.parquet")["run"]["video_decoder"] == "dali"
    assert read_metadata(tmp_path / "pyav.parquet")["run"]["video_decoder"] == "pyav"


@pytest.mark.dali
def test_resume_or_update_with_another_video_decoder_is_refused(dump: Path, engines: dict, tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    first, _ = score_cli(dump, engines["onnx"], out, "--video-decoder", "pyav")
    assert first is not None
    _, output = score_cli(dump, engines["onnx"], out, "--video-decoder", "dali", "--update")
    assert output.strip().splitlines() == [
        f"Error: {out} was scored with a different video_decoder; update it with the settings it was scored with, "
        "or score every file again with --overwrite"]
    parts = out.parent / (out.name + ".parts")  # an interrupted run with the pyav table's settings
    parts.mkdir()
    (parts / "run.json").write_text(json.dumps(read_metadata(out)["run"]))
    out.unlink()
    _, output = score_cli(dump, engines["onnx"], out, "--video-decoder", "dali")
    assert len(output.strip().splitlines()) == 1 and output.startswith("Error: an interrupted run in ")
    assert "used a different video_decoder" in output


@pytest.mark.dali
def test_a_table_without_videos_updates_with_any_video_decoder_and_takes_new_videos(
        dive: Path, engines: dict, tmp_path: Path) -> None:
    """A stills-only run decoded no video, so it records none: a machine whose default resolves to another video
    decoder can update it, videos added since included; the updated table then records the decoder that ran."""
    import shutil

    root = tmp_path / "d"
    shutil.copytree(dive / "images", root)
    out = tmp_path / "s.parquet"
    first, output = score_cli(root, engines["onnx"], out, "--video-decoder", "pyav")
    assert first is not None, output
    assert read_metadata(out)["run"]["video_decoder"] == "none"
    write_mjpeg(root / "v.mkv", [i * 100 for i in range(12)])
    updated, output = score_cli(root, engines["onnx"], out, "--video-decoder", "dali", "--update")
    assert updated is not None, output
    assert updated.height == first.height + 2 and read_metadata(out)["run"]["video_decoder"] == "dali"


def test_a_run_without_videos_does_not_resolve_the_video_decoder(dive: Path, engines: dict, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolving may import DALI and PyTorch (seconds on every run); a stills-only run never needs it."""
    import fathombatch.scoring.plan as plan_module

    def never(*args: object) -> str:
        raise AssertionError("the video decoder was resolved for a run without videos")

    monkeypatch.setattr(plan_module, "resolve_video_decoder", never)
    summary = score_folder(ScoreConfig(root=dive / "images", engine=engines["onnx"], out=tmp_path / "s.parquet",
                                       decoder="pil", video_decoder="dali"))
    assert summary.files == summary.ok > 0 and read_metadata(tmp_path / "s.parquet")["run"]["video_decoder"] == "none"


def test_a_run_recorded_before_the_video_decoder_existed_matches_pyav() -> None:
    from fathombatch.scoring.parts import changed_params

    assert changed_params({"top_k": 20}, {"top_k": 20, "video_decoder": "pyav"}) == ""
    assert changed_params({"top_k": 20}, {"top_k": 20, "video_decoder": "dali"}) == "video_decoder"


def test_the_python_api_takes_the_video_decoder(engines: dict, tmp_path: Path) -> None:
    import fathombatch as fb

    root = tmp_path / "d"
    root.mkdir()
    write_video(root / "v.mp4", [i * 100 for i in range(12)])
    table = fb.score(root, engine=engines["onnx"], video_decoder="pyav", progress=False)
    assert table["image_id"].to_list() == ["v_t00000000", "v_t00001000"]
    with pytest.raises(UsageError, match="unknown video decoder"):
        fb.score(root, engine=engines["onnx"], video_decoder="nvdec", progress=False)  # type: ignore[arg-type]
    cfg = ScoreConfig(root=root, engine=engines["onnx"], out=tmp_path / "o.parquet", video_decoder="pyav")
    assert score_folder(cfg).ok == 2


@pytest.mark.dali_gpu
def test_h264_with_nvdec_gives_the_indices_times_and_ids_of_pyav(tmp_path: Path) -> None:
    """Not run where this was written (no GPU): H.264 with B-frames (x264's defaults) through the ``mixed`` backend."""
    video = write_video(tmp_path / "h264.mp4", VFR_MS)
    decoder = DaliVideoDecoder(SPEC, batch_size=3, device=0)
    dali = list(decoder.frames(video, 0.5))
    pyav = list(resized_frames(video, 0.5, SPEC))
    assert fields([r.frame for r in dali]) == fields([r.frame for r in pyav])
    assert decoder.fallbacks.reasons == {}
    a = np.stack([r.tensor for r in dali if r.tensor is not None])
    b = np.stack([r.tensor for r in pyav if r.tensor is not None])
    np.testing.assert_allclose(a, b, atol=PIXEL_ATOL)
    assert np.abs(a - b).mean(axis=(1, 2, 3)).max() < PIXEL_MEAN_ATOL
