"""fathombatch.scores: one definition of the fixed columns, one opener with typed metadata for every consumer."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fathombatch import __version__
from fathombatch.errors import UsageError


def test_the_fixed_columns_have_one_definition() -> None:
    from fathombatch import taxonomy
    from fathombatch.scores import schema

    assert taxonomy.RESERVED_COLUMNS is schema.FIXED_COLUMN_NAMES
    assert tuple(schema.FIXED_COLUMNS) == schema.FIXED_COLUMN_NAMES


def test_typed_metadata_round_trips_a_table_written_by_score(dump_scores: Path, engines: dict) -> None:
    from fathombatch.backends import open_engine
    from fathombatch.scores.table import ScoresTable, read_metadata

    raw = read_metadata(dump_scores)
    meta = ScoresTable.open(dump_scores).metadata
    manifest = open_engine(engines["onnx"]).manifest
    assert meta.version == __version__ and meta.created == raw["created"]
    assert meta.taxonomy == manifest.taxonomy
    assert meta.run.root == (dump_scores.parent / "cruise").resolve()
    assert meta.run.engine == raw["run"]["engine"] and meta.run.engine_fingerprint == raw["run"]["engine_fingerprint"]
    assert meta.engine.name == manifest.name and meta.engine.arch == manifest.arch
    assert meta.engine.precision == manifest.precision and meta.engine.runtime == manifest.runtime
    assert meta.engine.sha256 == raw["engine_manifest"]["engine_sha256"]
    assert meta.engine.thresholds == (tuple(manifest.thresholds) if manifest.thresholds is not None else None)
    assert meta.raw == raw


def _table(tmp_path: Path, meta: dict, *, drop: tuple[str, ...] = ()) -> Path:
    from tests.test_curate_common import make_scores

    root = tmp_path / "imgs"
    root.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(root / "a.jpg")
    out = make_scores(root, tmp_path / "full.parquet")
    table = pq.read_table(out).drop_columns(list(drop))
    dest = tmp_path / "scores.parquet"
    pq.write_table(table.replace_schema_metadata({"fathombatch": json.dumps(meta)}), dest)
    return dest


def test_evaluate_and_export_refuse_a_table_that_curation_refuses(tmp_path: Path) -> None:
    """Before: evaluate checked four of the eight fixed columns (with its own message), curation and export all."""
    from fathombatch.evalinput import open_predictions
    from fathombatch.exports.source import open_source
    from fathombatch.scores.table import ScoresTable

    table = _table(tmp_path, {"version": "test"}, drop=("width",))
    for opener in (ScoresTable.open, open_predictions, open_source):
        with pytest.raises(UsageError, match=r"is not a fathombatch scores table \(missing columns \['width'\]\)"):
            opener(table)


@pytest.mark.parametrize(("meta", "field"), [({"run": "cruise"}, "run"), ({"engine_manifest": [1]}, "engine_manifest"),
                                             ({"taxonomy": "fathomnet2023"}, "taxonomy")])
def test_a_metadata_section_that_is_not_an_object_is_one_usage_error(tmp_path: Path, meta: dict, field: str) -> None:
    """Before: an AttributeError/TypeError traceback, at a different step in each consumer."""
    from fathombatch.evalinput import open_predictions
    from fathombatch.scores.table import ScoresTable

    table = _table(tmp_path, meta)
    for opener in (ScoresTable.open, open_predictions):
        with pytest.raises(UsageError, match=f"'fathombatch' metadata field '{field}' is not a json object"):
            opener(table)


def test_a_table_written_before_the_video_columns_still_opens_everywhere(tmp_path: Path) -> None:
    """frame_index/timestamp_s joined the fixed columns with dive video; earlier tables must not stop opening."""
    import polars as pl

    from fathombatch.evalinput import open_predictions
    from fathombatch.exports.source import open_source
    from fathombatch.scores.table import ScoresTable

    table = _table(tmp_path, {"version": "test"}, drop=("frame_index", "timestamp_s"))
    assert "frame_index" not in pq.read_schema(table).names
    opened = ScoresTable.open(table)
    rows = opened.lazy.select("path", "frame_index", "timestamp_s").collect()
    assert rows["path"].to_list() == ["a.jpg"]
    assert rows["frame_index"].dtype == pl.Int64 and rows["frame_index"].null_count() == 1
    assert rows["timestamp_s"].dtype == pl.Float64 and rows["timestamp_s"].null_count() == 1
    open_predictions(table)
    open_source(table)
