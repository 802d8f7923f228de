"""OpenVINO engines: export (fp32, NNCF int8 with accuracy control), the runtime, its precision pin, and refusals."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from fathombatch.backends import manifest_path, open_engine, read_manifest
from fathombatch.backends.openvino import cpu_has_bf16
from fathombatch.cli import cli
from fathombatch.datasets import read_labels
from fathombatch.engine_export import ExportConfig, export_run
from fathombatch.errors import EngineError, ManifestError, MissingDependencyError, OutputError, UsageError
from fathombatch.metrics import map_at_k_from_lists
from fathombatch.scoring import ScoreConfig, score_folder
from fathombatch.table import read_metadata


@pytest.fixture()
def ov(ov_engines: dict[str, Path]) -> dict[str, Path]:
    return ov_engines


def _copy(engine: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for f in (engine, engine.with_suffix(".bin"), manifest_path(engine)):
        shutil.copy(f, dest / f.name)
    return dest / engine.name


def test_manifest_records_precision_and_the_heldout_check(ov: dict[str, Path]) -> None:
    fp32, int8 = read_manifest(ov["fp32"]), read_manifest(ov["int8"])
    assert (fp32.runtime, fp32.precision, int8.runtime, int8.precision) == ("openvino", "fp32", "openvino", "int8")
    m = int8.metrics
    assert m["precision_check"] == "passed" and m["max_drop"] == 0.005
    assert m["precision_drop"] == pytest.approx(m["val_map20_fp32_engine"] - m["val_map20_engine"])
    assert m["precision_drop"] <= 0.005
    assert m["calibration"] == "held-out images"
    assert int8.thresholds is not None and len(int8.thresholds) == 290  # presence thresholds still fitted
    expected = ("passed", "failed") if cpu_has_bf16() else ("not run (this CPU has no bf16 units)",)
    assert m["bf16_check"] in expected
    assert ov["int8"].with_suffix(".bin").is_file() and not list(ov["int8"].parent.glob("*.tmp"))


def _set_bf16_check(engine: Path, check: str) -> None:
    data = json.loads(manifest_path(engine).read_text())
    data["metrics"]["bf16_check"] = check
    manifest_path(engine).write_text(json.dumps(data))


def test_fp32_openvino_matches_onnx_runtime(ov: dict[str, Path], engines: dict[str, Path], tmp_path: Path) -> None:
    engine = _copy(ov["fp32"], tmp_path / "f")
    _set_bf16_check(engine, "failed")
    x = np.random.default_rng(1).standard_normal((6, 3, 32, 32)).astype(np.float32)
    with open_engine(engines["onnx"]) as onnx, open_engine(engine, threads=2) as ov_engine:
        expected, got = onnx.run(x), ov_engine.run(x)
    # 1e-4 holds only in f32: OpenVINO's default on CPUs with bf16 units is off by about 1e-2 here.
    np.testing.assert_allclose(got["logits"], expected["logits"], atol=1e-4)
    assert got["features"].shape == (6, 512)


def test_openvino_engines_score_a_dive_like_the_onnx_engine(
    ov: dict[str, Path], engines: dict[str, Path], dive: Path, tmp_path: Path
) -> None:
    tables = {}
    for name, engine in (("onnx", engines["onnx"]), ("fp32", ov["fp32"]), ("int8", ov["int8"])):
        summary = score_folder(ScoreConfig(root=dive / "images", engine=engine, out=tmp_path / f"{name}.parquet",
                                           batch_size=8))
        assert summary.decoder == "pil" and summary.errors == 0  # auto decodes with Pillow on the CPU
        tables[name] = pl.read_parquet(tmp_path / f"{name}.parquet").sort("path")
    labels = read_labels(dive / "train.csv")
    truth = dict(zip(labels.image_ids, labels.frame["categories"].to_list(), strict=True))
    ids = tables["onnx"]["image_id"].to_list()
    maps = {name: map_at_k_from_lists([truth[i] for i in ids], t["top_categories"].to_list())
            for name, t in tables.items()}
    reference = tables["onnx"]["top_categories"].to_list()
    for name in ("fp32", "int8"):  # fp32 may run in bf16 here, where its held-out check allowed it
        tolerance = read_manifest(ov[name]).metrics["max_drop"]
        assert maps["onnx"] - maps[name] <= tolerance + 0.05, maps  # the whole dive, not the check's held-out set
        top1 = np.mean([a[0] == b[0] for a, b in zip(tables[name]["top_categories"].to_list(), reference, strict=True)])
        assert top1 >= 0.75, (name, top1)


def test_int8_export_refuses_when_the_limit_is_not_met(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "refused.xml"
    # A limit that demands a gain cannot be met, whatever the accuracy control restores.
    with pytest.raises(EngineError, match=r"held-out MAP@20 drops by -?\d\.\d{4} .*more than the limit -0.5"):
        export_run(ExportConfig(run=run_dir, format="openvino", precision="int8", out=out, max_drop=-0.5))
    assert not list(tmp_path.iterdir())  # nothing written: no .xml, .bin, manifest or scratch folder


def test_tampered_or_missing_weights_are_refused(ov: dict[str, Path], tmp_path: Path) -> None:
    engine = _copy(ov["int8"], tmp_path / "a")
    weights = engine.with_suffix(".bin")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="SHA-256 differs"):
        open_engine(engine)
    weights.unlink()
    with pytest.raises(ManifestError, match="has no weights file"):
        open_engine(engine)


def test_precision_hint_follows_the_bf16_check(ov: dict[str, Path], tmp_path: Path) -> None:
    engine = _copy(ov["fp32"], tmp_path / "b")
    for check in ("passed", "failed", "not run (no held-out images)"):
        _set_bf16_check(engine, check)
        with open_engine(engine) as e:
            hint = str(e._compiled.get_property("INFERENCE_PRECISION_HINT"))
        uses_bf16 = check == "passed" and cpu_has_bf16()
        assert ("bfloat16" in hint) == uses_bf16, (check, hint)


def test_export_and_score_errors_are_one_line(run_dir: Path, ov: dict[str, Path], dive: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()

    def invoke(*args: object) -> tuple[int, str]:
        result = runner.invoke(cli, [str(a) for a in args])
        return result.exit_code, result.stderr

    code, err = invoke("export", run_dir, "--format", "openvino", "--out", tmp_path / "x.onnx")
    assert code == 2 and err.startswith("Error: ") and "must end in .xml" in err and err.count("\n") == 1
    code, err = invoke("export", run_dir, "--format", "openvino", "--precision", "fp16", "--out", tmp_path / "x.xml")
    assert code == 2 and "not available for --format openvino" in err
    code, err = invoke("export", run_dir, "--calibration", dive / "images", "--out", tmp_path / "x.onnx")
    assert code == 2 and "--calibration applies to --format openvino --precision int8" in err

    monkeypatch.setitem(sys.modules, "openvino", None)  # as if the package were not installed
    code, err = invoke("score", dive / "images", "--engine", ov["fp32"], "--out", tmp_path / "s.parquet")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("Error: OpenVINO engines (.xml) needs the Python package 'openvino'")
    assert "pip install 'fathombatch[openvino]'" in err
    with pytest.raises(MissingDependencyError):
        export_run(ExportConfig(run=run_dir, format="openvino", out=tmp_path / "y.xml"))


def test_calibration_folder(run_dir: Path, dive: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no readable"):
        export_run(ExportConfig(run=run_dir, format="openvino", precision="int8", out=tmp_path / "e.xml",
                                calibration=tmp_path / "empty"))
    result = export_run(ExportConfig(run=run_dir, format="openvino", precision="int8", out=tmp_path / "c.xml",
                                     calibration=dive / "images"))
    assert read_manifest(result.engine).metrics["calibration"] == str(dive / "images")


def test_resume_where_the_cpu_computes_otherwise_is_refused(
    ov: dict[str, Path], dive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run interrupted on a CPU that ran the engine in bf16 must not be finished in f32 on another machine."""
    import fathombatch.backends.openvino as ov_module
    import fathombatch.scoring.batch as batch_module

    engine = _copy(ov["fp32"], tmp_path / "e")
    _set_bf16_check(engine, "passed")
    real, calls = batch_module.score_batch, {"n": 0}

    def interrupted(*args: object, **kwargs: object) -> pl.DataFrame:
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    cfg = ScoreConfig(root=dive / "images", engine=engine, out=tmp_path / "s.parquet", batch_size=4, part_rows=4)
    monkeypatch.setattr(ov_module, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(batch_module, "score_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        score_folder(cfg)
    monkeypatch.setattr(batch_module, "score_batch", real)
    monkeypatch.setattr(ov_module, "cpu_has_bf16", lambda: False)
    with pytest.raises(OutputError, match="different inference_precision"):
        score_folder(cfg)
    monkeypatch.setattr(ov_module, "cpu_has_bf16", lambda: True)
    summary = score_folder(cfg)  # the same CPU behaviour resumes
    assert summary.resumed == 8 and summary.files == 24
    assert read_metadata(tmp_path / "s.parquet")["run"]["inference_precision"] == "fp32+bf16"


def test_decode_threads_change_speed_not_scores(ov: dict[str, Path], dive: Path, tmp_path: Path) -> None:
    from fathombatch.scoring import decode_threads

    assert decode_threads(None) == (os.cpu_count() or 1) + 1 and decode_threads(3) == 3
    tables = []
    for i, n in enumerate((None, 1)):
        score_folder(ScoreConfig(root=dive / "images", engine=ov["int8"], out=tmp_path / f"{i}.parquet",
                                 decode_threads=n))
        tables.append(pl.read_parquet(tmp_path / f"{i}.parquet"))
    assert tables[0].equals(tables[1])


def test_an_existing_weights_file_is_refused_before_any_work(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "e.bin").write_bytes(b"someone's weights")
    with pytest.raises(OutputError, match=r"e\.bin already exists; pass overwrite to"):
        export_run(ExportConfig(run=run_dir, format="openvino", out=tmp_path / "e.xml"))
    assert (tmp_path / "e.bin").read_bytes() == b"someone's weights" and not (tmp_path / "e.xml").exists()


def test_an_isa_cap_below_bf16_means_no_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert cpu_has_bf16() is False
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    import openvino as openvino_runtime

    capabilities = openvino_runtime.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert cpu_has_bf16() is ("BF16" in capabilities)


@pytest.mark.skipif(not cpu_has_bf16(), reason="needs a CPU with bf16 units (AVX-512 BF16 or AMX) to make bf16 fail")
def test_bf16_that_cannot_compile_falls_back_to_f32(ov: dict[str, Path], tmp_path: Path) -> None:
    """With oneDNN capped at AVX2 on a bf16 CPU, OpenVINO has no bf16 max-pooling kernel; the engine must still load."""
    import subprocess

    engine = _copy(ov["fp32"], tmp_path / "g")
    _set_bf16_check(engine, "passed")
    code = ("import fathombatch.backends.openvino as m; m.cpu_has_bf16 = lambda: True\n"
            "from fathombatch.backends import open_engine\nimport numpy as np\n"
            f"e = open_engine({str(engine)!r})\n"
            "print(e.inference_precision, e.run(np.zeros((2, 3, 32, 32), np.float32))['logits'].shape)")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["fp32", "(2,", "290)"]
    assert "bf16 is not available for this engine on this CPU" in proc.stderr
