"""Issue 4: the benchmark runners and the seed-style baseline, on tiny inputs (no timing assertions)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from PIL import Image

from fathombatch.bench import BenchConfig, Variant, bench_decode, bench_e2e, bench_e2e_variants, bench_engine, run_suite
from fathombatch.cli import cli
from fathombatch.scoring import ScoreConfig, score_folder
from fathombatch.taxonomy import fathomnet2023

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from baseline_seed import run_baseline  # noqa: E402


@pytest.fixture(scope="module")
def png_dive(dive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dive as PNGs: both pipelines then decode every pixel the same way (no JPEG DCT scaling)."""
    root = tmp_path_factory.mktemp("png") / "images"
    root.mkdir()
    for p in sorted((dive / "images").glob("*.jpg"))[:12]:
        Image.open(p).save(root / (p.stem + ".png"))
    return root


def test_runners_return_flat_records(png_dive: Path, engines: dict) -> None:
    cfg = BenchConfig(root=png_dive, engine=engines["onnx"], batch_sizes=(4,), decoders=("pil",), repeats=1)
    decode = bench_decode(cfg, "pil", 4)
    engine = bench_engine(cfg, 4)
    e2e = bench_e2e(cfg, "pil", 4)
    for r in (decode, engine, e2e):
        assert r["images_per_s"] > 0 and r["seconds"] > 0 and len(r["runs"]) == 1
        assert r["peak_rss_mb"] is None or r["peak_rss_mb"] > 10
        assert all(isinstance(v, (int, float, str, list, type(None))) for v in r.values())
    assert (decode["stage"], decode["images"], decode["decoder"]) == ("decode", 12, "pil")
    got = (engine["stage"], engine["arch"], engine["precision"], engine["input"])
    assert got == ("engine", "resnet18", "fp32", "32x32")
    assert (e2e["stage"], e2e["images"]) == ("e2e", 12)
    records = run_suite(cfg, ["decode", "engine", "e2e"])
    assert [r["stage"] for r in records] == ["decode", "engine", "e2e"]
    assert pl.DataFrame([{k: v for k, v in r.items() if k != "runs"} for r in records]).height == 3


def test_seed_baseline_matches_fathombatch_on_the_same_weights(png_dive: Path, engines: dict, tmp_path: Path) -> None:
    base = run_baseline(png_dive, engines["pt"], batch_size=4, workers=0)
    score_folder(ScoreConfig(root=png_dive, engine=engines["onnx"], out=tmp_path / "s.parquet", decoder="pil"))
    table = pl.read_parquet(tmp_path / "s.parquet")
    assert base["paths"] == table["path"].to_list()
    ours = table.select(list(fathomnet2023().names)).to_numpy()
    np.testing.assert_allclose(base["probs"], ours, atol=1e-4)


def test_bench_command_writes_json(png_dive: Path, engines: dict, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", "engine", str(png_dive), "--engine", str(engines["onnx"]),
                                      "--batch-sizes", "2,4", "--repeats", "1", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.stderr
    records = json.loads((tmp_path / "b.json").read_text())
    assert [r["batch_size"] for r in records] == [2, 4] and "images/s" in result.stdout
    bad = CliRunner().invoke(cli, ["bench", "engine", str(png_dive), "--engine", str(engines["onnx"]),
                                   "--batch-sizes", "x"])
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: --batch-sizes")


def test_engines_side_by_side_and_e2e_variants(png_dive: Path, engines: dict, ov_engines: dict, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", "engine", str(png_dive), "--engine", str(engines["onnx"]),
                                      "--engine", str(ov_engines["int8"]), "--batch-sizes", "4", "--repeats", "1",
                                      "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.stderr
    records = json.loads((tmp_path / "b.json").read_text())
    assert [(r["runtime"], r["precision"]) for r in records] == [("onnxruntime", "fp32"), ("openvino", "int8")]
    assert "tiny-int8.xml" in result.stdout and "openvino int8" in result.stdout

    cfg = BenchConfig(root=png_dive, engine=ov_engines["int8"], repeats=2)
    variants = [Variant("default"), Variant("dali-16", decoder="dali", batch_size=16, decode_threads=1)]
    rows = bench_e2e_variants(cfg, variants)
    assert [r["variant"] for r in rows] == ["default", "dali-16"]
    assert all(len(r["runs"]) == 2 and r["images"] == 12 and r["images_per_s"] > 0 for r in rows)
    assert rows[1]["decoder"] == "dali" and rows[1]["decode_threads"] == 1
