"""Resume rules, write failures, engine mismatches and odd outputs of the scoring loop."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

import fathombatch.scoring.batch as batch_module
import fathombatch.scoring.parts as parts_module
from fathombatch.backends import manifest_path, open_engine
from fathombatch.backends.base import Engine
from fathombatch.backends.manifest import file_sha256
from fathombatch.decode.base import DecodedBatch
from fathombatch.errors import EngineError, OutputError
from fathombatch.scoring import ScoreConfig, ScoreSummary, score_folder
from fathombatch.taxonomy import fathomnet2023


def run(root: Path, engine: Path, out: Path, **kw: object) -> ScoreSummary:
    return score_folder(ScoreConfig(root=root, engine=engine, out=out, batch_size=4, part_rows=4, **kw))  # type: ignore[arg-type]


def interrupt_after(monkeypatch: pytest.MonkeyPatch, batches: int) -> None:
    real = batch_module.score_batch
    calls = {"n": 0}

    def wrapped(*args: object, **kwargs: object) -> pl.DataFrame:
        calls["n"] += 1
        if calls["n"] > batches:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(batch_module, "score_batch", wrapped)


@pytest.fixture()
def dump(dive: Path, tmp_path: Path) -> Path:
    root = tmp_path / "dump"
    shutil.copytree(dive / "images", root)
    return root


@pytest.mark.parametrize(
    ("change", "message"),
    [({"decoder": "pil"}, "different decoder"), ({"top_k": 5}, "different top_k"), ({"osd": "knn"}, "different osd")],
)
def test_resume_with_changed_settings_is_refused(dump: Path, engines: dict, tmp_path: Path, monkeypatch, change,
                                                 message) -> None:
    interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(dump, engines["onnx"], tmp_path / "s.parquet", decoder="dali")
    monkeypatch.undo()
    with pytest.raises(OutputError, match=message):
        run(dump, engines["onnx"], tmp_path / "s.parquet", **{"decoder": "dali", **change})


def test_resume_against_another_folder_is_refused(dump: Path, engines: dict, tmp_path: Path, monkeypatch) -> None:
    interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(dump, engines["onnx"], tmp_path / "s.parquet")
    monkeypatch.undo()
    other = tmp_path / "other"
    shutil.copytree(dump, other)
    with pytest.raises(OutputError, match="different folder"):
        run(other, engines["onnx"], tmp_path / "s.parquet")


def test_changed_files_and_error_rows_are_rescored_on_resume(dump: Path, engines: dict, tmp_path: Path,
                                                             monkeypatch) -> None:
    files = sorted(dump.glob("*.jpg"))
    late = dump / "0000-late.jpg"  # sorts first: still being copied when the run starts
    late.write_bytes(files[5].read_bytes()[:100])
    interrupt_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run(dump, engines["onnx"], tmp_path / "s.parquet")
    monkeypatch.undo()
    shutil.copy(files[5], late)  # the copy finished
    shutil.copy(files[7], files[0])  # and a scored file was replaced by another image
    os.utime(files[0], ns=(1, 1))
    summary = run(dump, engines["onnx"], tmp_path / "s.parquet")
    assert summary.resumed == 12 - 2 and summary.errors == 0
    fresh = run(dump, engines["onnx"], tmp_path / "fresh.parquet")
    names = list(fathomnet2023().names)
    a, b = pl.read_parquet(tmp_path / "s.parquet"), pl.read_parquet(tmp_path / "fresh.parquet")
    assert a["path"].to_list() == b["path"].to_list() and fresh.files == summary.files
    np.testing.assert_allclose(a.select(names).to_numpy(), b.select(names).to_numpy(), atol=1e-6)


def test_a_failing_write_is_one_clear_error_and_a_rerun_resumes(dump: Path, engines: dict, tmp_path: Path,
                                                                monkeypatch) -> None:
    real = pl.DataFrame.write_parquet
    calls = {"n": 0}

    def disk_full(self: pl.DataFrame, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", disk_full)
    with pytest.raises(OutputError, match="No space left on device; parts written so far are kept"):
        run(dump, engines["onnx"], tmp_path / "s.parquet", decoder="dali")
    monkeypatch.undo()
    kept = sorted((tmp_path / "s.parquet.parts").glob("part-*.parquet"))
    assert len(kept) == 2
    summary = run(dump, engines["onnx"], tmp_path / "s.parquet", decoder="dali")
    assert summary.resumed == 8 and pl.read_parquet(tmp_path / "s.parquet").height == 24


def test_merge_keeps_the_newest_row_of_each_path(tmp_path: Path) -> None:
    store = parts_module.PartStore(tmp_path / "p", {"k": 1}, overwrite=False)
    writer = store.writer()
    base = {"status": "ok", "_size": 1, "_mtime_ns": 1}
    writer.put(pl.DataFrame({"path": ["a", "c", "e"], "v": [1, 1, 1], **{k: [v] * 3 for k, v in base.items()}}))
    writer.put(pl.DataFrame({"path": ["b", "c"], "v": [2, 2], **{k: [v] * 2 for k, v in base.items()}}))
    writer.close()
    store.merge(tmp_path / "out.parquet", {"a", "b", "c"}, {"x": "y"})
    merged = pl.read_parquet(tmp_path / "out.parquet")
    assert merged.to_dict(as_series=False) == {"path": ["a", "b", "c"], "status": ["ok"] * 3, "v": [1, 2, 2]}
    assert pl.read_parquet_metadata(tmp_path / "out.parquet")["x"] == "y"


def test_onnx_input_size_must_match_the_manifest(engines: dict, tmp_path: Path) -> None:
    dest = tmp_path / "e.onnx"
    shutil.copy(engines["onnx"], dest)
    data = json.loads(manifest_path(engines["onnx"]).read_text())
    data["input"].update(height=48, width=48)
    manifest_path(dest).write_text(json.dumps(data))
    with pytest.raises(EngineError, match="takes input .* but its manifest says 3x48x48"):
        open_engine(dest)


def test_nan_logits_become_error_rows(engines: dict, dive: Path, tmp_path: Path) -> None:
    dest = tmp_path / "nan.pt"
    blob = torch.load(engines["pt"], weights_only=True)
    blob["state_dict"]["head.bias"][3] = float("nan")
    torch.save(blob, dest)
    data = json.loads(manifest_path(engines["pt"]).read_text())
    data["engine_sha256"] = file_sha256(dest)
    manifest_path(dest).write_text(json.dumps(data))
    summary = run(dive / "images", dest, tmp_path / "s.parquet")
    table = pl.read_parquet(tmp_path / "s.parquet")
    assert summary.errors == 24 and set(table["error"]) == {"the engine returned NaN or infinite logits for this image"}


class FixedLogits(Engine):
    """An Engine (the real interface) whose logits are given: saturated sigmoids must not reorder the ranking."""

    def __init__(self, manifest: object, logits: np.ndarray) -> None:
        super().__init__(Path("fixed"), manifest)  # type: ignore[arg-type]
        self.logits = logits

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return {"logits": self.logits[: batch.shape[0]]}


def test_ranking_uses_logits_where_probabilities_saturate(engines: dict) -> None:
    manifest = open_engine(engines["onnx"]).manifest
    logits = np.full((1, 290), -5.0, dtype=np.float32)
    logits[0, 5], logits[0, 100] = 18.0, 25.0  # both sigmoid to exactly 1.0 in float32
    decoded = DecodedBatch(images=np.zeros((1, 3, 32, 32), np.float32), ok=[0], sizes=[(1, 1)], errors=[None])
    frame = batch_module.score_batch(FixedLogits(manifest, logits), Path("."), ["x.jpg"], decoded, 3,
                                     lambda p, f: np.zeros(len(p), np.float32))
    assert frame["top_categories"][0].to_list()[:2] == [101, 6]


def test_fifo_gets_an_error_row(dump: Path, engines: dict, tmp_path: Path) -> None:
    os.mkfifo(dump / "pipe.jpg")
    summary = run(dump, engines["onnx"], tmp_path / "s.parquet")
    table = pl.read_parquet(tmp_path / "s.parquet")
    assert summary.errors == 1
    assert table.filter(pl.col("path") == "pipe.jpg")["error"][0] == "not a regular file (a FIFO); not read"


def test_damaged_resume_state_is_set_aside_not_fatal(dump: Path, engines: dict, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "s.parquet"
    reference = run(dump, engines["onnx"], tmp_path / "ref.parquet")
    parts = out.with_name(out.name + ".parts")

    interrupt_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run(dump, engines["onnx"], out)
    monkeypatch.undo()
    damaged = sorted(parts.glob("part-*.parquet"))[0]
    damaged.write_bytes(b"PAR1 not really")
    summary = run(dump, engines["onnx"], out)
    quarantined = out.with_name(out.name + ".parts.quarantine") / damaged.name
    assert quarantined.read_bytes() == b"PAR1 not really"  # kept, not deleted
    assert 0 < summary.resumed < summary.files and any("damaged part file" in w for w in summary.warnings)
    table = pl.read_parquet(out)
    assert table["path"].to_list() == pl.read_parquet(reference.out)["path"].to_list()
    assert table["path"].is_unique().all()

    out.unlink()
    interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(dump, engines["onnx"], out)
    monkeypatch.undo()
    (parts / "run.json").write_text("{not json")
    summary = run(dump, engines["onnx"], out)
    assert summary.resumed == 0 and any("was missing or unreadable" in w for w in summary.warnings)
    assert out.with_name(out.name + ".parts.unverified").is_dir() and pl.read_parquet(out).height == summary.files

    for damage in ("{}", None):  # an empty run.json, and none at all beside the parts
        out.unlink()
        interrupt_after(monkeypatch, 2)
        with pytest.raises(KeyboardInterrupt):
            run(dump, engines["onnx"], out)
        monkeypatch.undo()
        if damage is None:
            (parts / "run.json").unlink()
        else:
            (parts / "run.json").write_text(damage)
        summary = run(dump, engines["onnx"], out)
        assert summary.resumed == 0 and any("was missing or unreadable" in w for w in summary.warnings)
    assert out.with_name(out.name + ".parts.unverified-3").is_dir()  # each set-aside folder kept, none replaced
