"""Issue 17 item 3: ``score`` samples the videos of a dump into frame rows, beside the stills; resume per frame."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from PIL import Image

from fathombatch.backends import open_engine
from fathombatch.cli import cli
from fathombatch.decode import discover
from fathombatch.decode.video import frames_to_batch, sample_frames
from fathombatch.errors import OutputError, UsageError
from fathombatch.probability import sigmoid
from fathombatch.scores.schema import FIXED_COLUMNS
from fathombatch.scoring import RayOptions, ScoreConfig, score_folder
from fathombatch.scoring import batch as batch_module
from fathombatch.taxonomy import fathomnet2023
from tests.test_video import write_video

NAMES = list(fathomnet2023().names)
TEN_FPS_4S = [i * 100 for i in range(40)]  # 40 frames at 10 fps: 4 s
GAPPY = [500, 700, 1700, 1800, 3600]  # starts at 0.5 s, with gaps


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    """2 stills and 2 short videos (one in a subfolder, MKV)."""
    root = tmp_path / "dump"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(root / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / "b.png")
    write_video(root / "dive01.mp4", TEN_FPS_4S)
    write_video(root / "sub" / "dive02.mkv", GAPPY, size=(48, 32))
    return root


def score(root: Path, engine: Path, out: Path, **kwargs: object) -> pl.DataFrame:
    score_folder(ScoreConfig(root=root, engine=engine, out=out, decoder="pil", **kwargs))  # type: ignore[arg-type]
    return pl.read_parquet(out)


def test_videos_are_discovered_with_the_stills_and_a_videos_only_folder_scores(dump: Path, engines: dict,
                                                                               tmp_path: Path) -> None:
    from fathombatch.decode.discover import SCORED_SUFFIXES

    assert discover(dump, SCORED_SUFFIXES) == ["a.jpg", "b.png", "dive01.mp4", "sub/dive02.mkv"]
    assert discover(dump) == ["a.jpg", "b.png"]  # other commands still list images only
    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(dump / "dive01.mp4", only / "CLIP.MOV")
    table = score(only, engines["onnx"], tmp_path / "only.parquet")
    assert table["image_id"].to_list() == [f"CLIP_t0000{s}000" for s in range(4)]
    (tmp_path / "none").mkdir()
    with pytest.raises(UsageError, match="no .jpg, .jpeg, .png, .tif or .tiff images, nor .mp4, .mov, .mkv or .avi "
                                         "videos, under"):
        score(tmp_path / "none", engines["onnx"], tmp_path / "none.parquet")


def test_each_sampled_frame_is_one_row_with_the_samplers_fields_and_the_engines_probabilities(
        dump: Path, engines: dict, tmp_path: Path) -> None:
    table = score(dump, engines["onnx"], tmp_path / "s.parquet", batch_size=3)
    assert table.columns[: len(FIXED_COLUMNS)] == list(FIXED_COLUMNS)
    assert table["path"].to_list() == ["a.jpg", "b.png"] + ["dive01.mp4"] * 4 + ["sub/dive02.mkv"] * 3
    stills = table.filter(pl.col("frame_index").is_null())
    assert stills["path"].to_list() == ["a.jpg", "b.png"] and stills["timestamp_s"].null_count() == 2
    assert stills["image_id"].to_list() == ["a", "b"] and stills["width"].to_list() == [40, 24]
    engine = open_engine(engines["onnx"])
    for rel in ("dive01.mp4", "sub/dive02.mkv"):
        frames = list(sample_frames(dump / rel, 1.0))
        rows = table.filter(pl.col("path") == rel)
        assert rows["frame_index"].to_list() == [f.frame_index for f in frames]
        assert rows["timestamp_s"].to_list() == [f.timestamp_s for f in frames]
        assert rows["image_id"].to_list() == [f.image_id for f in frames]
        assert rows["status"].to_list() == ["ok"] * len(frames)
        width, height = (64, 48) if rel.endswith("mp4") else (48, 32)
        assert rows["width"].to_list() == [width] * len(frames) and rows["height"].to_list() == [height] * len(frames)
        for frame, probs in zip(frames, rows.select(NAMES).to_numpy(), strict=True):
            expected = sigmoid(engine.run(frames_to_batch([frame], engine.manifest.input))["logits"])[0]
            np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert table["timestamp_s"].filter(table["path"] == "sub/dive02.mkv").to_list() == pytest.approx([0.5, 1.7, 3.6])


def test_frame_interval_sets_the_sampling(dump: Path, engines: dict, tmp_path: Path) -> None:
    table = score(dump, engines["onnx"], tmp_path / "s.parquet", frame_interval=0.5)
    assert table.filter(pl.col("path") == "dive01.mp4")["frame_index"].to_list() == list(range(0, 40, 5))
    with pytest.raises(UsageError, match="frame interval must be at least 0.001 seconds"):
        score(dump, engines["onnx"], tmp_path / "t.parquet", frame_interval=0.0001)


def test_a_truncated_video_gives_its_frames_then_one_error_row_and_the_run_goes_on(dump: Path, engines: dict,
                                                                                 tmp_path: Path) -> None:
    whole = write_video(tmp_path / "whole.mp4", TEN_FPS_4S, faststart=True)
    data = whole.read_bytes()
    (dump / "cut.mp4").write_bytes(data[: len(data) // 2])
    (dump / "empty.mkv").write_bytes(b"")
    table = score(dump, engines["onnx"], tmp_path / "s.parquet")
    expected = list(sample_frames(dump / "cut.mp4"))
    cut = table.filter(pl.col("path") == "cut.mp4")
    assert cut["status"].to_list() == ["ok"] * (len(expected) - 1) + ["error"]
    assert cut["image_id"].to_list() == [f.image_id for f in expected]
    assert cut["frame_index"].to_list() == [f.frame_index for f in expected]
    assert cut["frame_index"][-1] is None and cut["timestamp_s"].to_list() == [f.timestamp_s for f in expected]
    assert cut["error"][-1] == expected[-1].error and "truncated" in cut["error"][-1]
    assert cut[NAMES[0]][-1] is None and cut["top_categories"][-1] is None
    empty = table.filter(pl.col("path") == "empty.mkv")
    assert empty.select("image_id", "status", "error").row(0) == ("empty", "error", "empty file (0 bytes)")
    assert table.filter(pl.col("path") == "dive01.mp4")["status"].to_list() == ["ok"] * 4


def frames_run(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the image ids of the frames the engine runs on (score_frames is looked up at each call)."""
    seen: list[str] = []
    real = batch_module.score_frames

    def spy(engine, items, top_k, osd):  # type: ignore[no-untyped-def]
        seen.extend(i.image_id for i in items if i.tensor is not None)
        return real(engine, items, top_k, osd)

    monkeypatch.setattr(batch_module, "score_frames", spy)
    return seen


def test_an_interrupted_video_resumes_per_frame_and_another_interval_is_refused(
        dump: Path, engines: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = score(dump, engines["onnx"], tmp_path / "ref.parquet", batch_size=2, frame_interval=0.5)
    out = tmp_path / "s.parquet"
    real = batch_module.score_frames
    calls = {"n": 0}

    def dies_on_the_third_frame_batch(engine, items, top_k, osd):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(engine, items, top_k, osd)

    monkeypatch.setattr(batch_module, "score_frames", dies_on_the_third_frame_batch)
    with pytest.raises(KeyboardInterrupt):
        score(dump, engines["onnx"], out, batch_size=2, frame_interval=0.5, part_rows=2)
    monkeypatch.undo()
    with pytest.raises(OutputError, match="used a different frame_interval"):
        score(dump, engines["onnx"], out, batch_size=2, frame_interval=1.0, part_rows=2)
    seen = frames_run(monkeypatch)
    resumed = score(dump, engines["onnx"], out, batch_size=2, frame_interval=0.5, part_rows=2)
    # The two frame batches of dive01 written before the interruption (0 to 1.5 s) are not run again.
    assert seen == ["dive01_t00002000", "dive01_t00002500", "dive01_t00003000", "dive01_t00003500",
                    "dive02_t00000500", "dive02_t00001700", "dive02_t00003600"]
    assert_same_table(resumed, reference)


def assert_same_table(a: pl.DataFrame, b: pl.DataFrame) -> None:
    """Same rows; probabilities and osd to 1e-6 (batches were composed differently)."""
    floats = [*NAMES, "osd"]
    assert a.drop(floats).equals(b.drop(floats))
    np.testing.assert_allclose(a.select(floats).to_numpy(), b.select(floats).to_numpy(), atol=1e-6)


def test_a_video_changed_since_an_interrupted_run_is_scored_again_without_its_old_frames(
        dump: Path, engines: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "s.parquet"
    real = batch_module.score_frames

    def dies_on_the_second_video(engine, items, top_k, osd):  # type: ignore[no-untyped-def]
        if any(i.path.startswith("sub/") for i in items):
            raise KeyboardInterrupt
        return real(engine, items, top_k, osd)

    monkeypatch.setattr(batch_module, "score_frames", dies_on_the_second_video)
    with pytest.raises(KeyboardInterrupt):
        score(dump, engines["onnx"], out, batch_size=4, part_rows=1)
    monkeypatch.undo()
    write_video(dump / "dive01.mp4", TEN_FPS_4S[:25])  # replaced by a 2.5 s clip: 3 samples, not 4
    seen = frames_run(monkeypatch)
    table = score(dump, engines["onnx"], out, batch_size=4, part_rows=1)
    assert seen == ["dive01_t00000000", "dive01_t00001000", "dive01_t00002000", "dive02_t00000500",
                    "dive02_t00001700", "dive02_t00003600"]
    assert table.filter(pl.col("path") == "dive01.mp4")["image_id"].to_list() == [
        "dive01_t00000000", "dive01_t00001000", "dive01_t00002000"]


def kill_command(root: Path, engine: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "fathombatch", "score", str(root), "--engine", str(engine), "--out", str(out),
            "--batch-size", "4", "--part-rows", "8", "--frame-interval", "0.1", "--decoder", "pil", "--threads", "1",
            "--quiet"]


def test_kill_9_mid_video_then_the_same_command_equals_an_uninterrupted_run(engines: dict, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "dump"
    root.mkdir()
    write_video(root / "long.mp4", [i * 100 for i in range(240)])  # 24 s at 10 fps, every frame sampled
    reference = tmp_path / "ref.parquet"
    subprocess.run(kill_command(root, engines["onnx"], reference), check=True)
    out = tmp_path / "s.parquet"
    parts = tmp_path / "s.parquet.parts"
    proc = subprocess.Popen(kill_command(root, engines["onnx"], out), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and len(list(parts.glob("part-*.parquet")) if parts.exists() else []) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert proc.poll() is None, "the run finished before it could be killed mid-video"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = pl.concat([pl.read_parquet(p) for p in parts.glob("part-*.parquet")])
    assert 24 <= kept.height < 240 and kept["path"].unique().to_list() == ["long.mp4"]
    seen = frames_run(monkeypatch)
    result = CliRunner().invoke(cli, kill_command(root, engines["onnx"], out)[3:])
    assert result.exit_code == 0, result.output
    # Only the frames the killed run had not written reach the engine (and the last frame, which closes the pass).
    assert len(seen) == 240 - kept.height + (1 if "long_t00023900" in kept["image_id"].to_list() else 0)
    assert set(seen) & set(kept["image_id"].to_list()) <= {"long_t00023900"}
    a = pl.read_parquet(out)
    assert a.height == 240
    assert_same_table(a, pl.read_parquet(reference))


def test_ray_and_several_gpus_refuse_a_dump_with_videos(dump: Path, engines: dict, tmp_path: Path) -> None:
    for extra in ({"ray": RayOptions()}, {"devices": [0, 1]}):
        with pytest.raises(UsageError, match=r"holds 2 video file\(s\) \(e.g. dive01.mp4\), which are scored in a "
                                             "single process only"):
            score_folder(ScoreConfig(root=dump, engine=engines["onnx"], out=tmp_path / "s.parquet", **extra))
    assert not (tmp_path / "s.parquet").exists()


def test_cli_summary_and_evaluate_on_a_table_with_frame_rows(dump: Path, engines: dict, tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    result = CliRunner().invoke(cli, ["score", str(dump), "--engine", str(engines["onnx"]), "--out", str(out),
                                      "--frame-interval", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Scored 4 files as 6 rows (a row per sampled video frame): 6 ok, 0 errors" in result.output
    table = pl.read_parquet(out)
    truth = tmp_path / "truth.csv"
    with truth.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "categories"])
        for image_id in table["image_id"]:
            writer.writerow([image_id, "[1.0, 2.0]"])
    result = CliRunner().invoke(cli, ["evaluate", str(out), "--truth", str(truth), "--report", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "MAP@20" in result.output


def test_exports_take_a_table_with_frame_rows(dump: Path, engines: dict, tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    score(dump, engines["onnx"], out)
    review = tmp_path / "review"
    result = CliRunner().invoke(cli, ["export-table", str(out), "--format", "fiftyone", "--out", str(review)])
    assert result.exit_code == 0, result.output
    assert "warning: 7 video frame row(s) are not in the dataset" in result.output
    assert sorted(json.loads((review / "labels.json").read_text())["labels"]) == ["a", "b"]
    result = CliRunner().invoke(cli, ["export-table", str(out), "--format", "coco-results", "--out",
                                      str(tmp_path / "preds.json")])
    assert result.exit_code == 0, result.output
    assert {p["image_id"] for p in json.loads((tmp_path / "preds.json").read_text())} >= {"dive01_t00001000", "a"}
