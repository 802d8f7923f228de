"""Issue 6: the GPU path. Tests marked gpu / dali_gpu / trt run wherever the hardware exists and skip elsewhere.

Nothing here mocks CUDA or TensorRT: on a machine without a GPU only the "one clear error" tests run.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from fathombatch.cli import cli
from fathombatch.errors import UsageError
from fathombatch.gpu import cuda_device_count, parse_devices
from fathombatch.taxonomy import fathomnet2023

NAMES = list(fathomnet2023().names)
HAS_GPU = cuda_device_count() > 0
HAS_TRT = importlib.util.find_spec("tensorrt") is not None
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs an NVIDIA GPU (none visible to PyTorch here)")
needs_trt = pytest.mark.skipif(not (HAS_GPU and HAS_TRT), reason="needs an NVIDIA GPU and the 'tensorrt' extra")


# --- no GPU: one clear error each -------------------------------------------------------------------------------


@pytest.mark.skipif(HAS_GPU, reason="checks the message a machine without a GPU gives")
def test_without_a_gpu_every_gpu_option_is_one_clear_error(dive: Path, engines: dict, tmp_path: Path) -> None:
    runner = CliRunner()
    cases = [
        ["score", str(dive / "images"), "--engine", str(engines["pt"]), "--device", "cuda", "--out", str(tmp_path / "a")],
        ["score", str(dive / "images"), "--engine", str(engines["onnx"]), "--devices", "0,1", "--out", str(tmp_path / "b")],
        ["build-engine", str(engines["onnx"]), "--out", str(tmp_path / "m.plan")],
    ]
    for args in cases:
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "needs an NVIDIA GPU" in lines[0], (args, result.stderr)


def test_devices_are_parsed_strictly() -> None:
    assert parse_devices("0,1,3") == [0, 1, 3]
    for bad in ("", "a", "0,0", "-1"):
        with pytest.raises(UsageError, match="--devices"):
            parse_devices(bad)


# --- with a GPU -----------------------------------------------------------------------------------------------------


def _score(root: Path, engine: Path, out: Path, **kw: object) -> pl.DataFrame:
    from fathombatch.score import ScoreConfig, score_folder

    score_folder(ScoreConfig(root=root, engine=engine, out=out, batch_size=8, **kw))  # type: ignore[arg-type]
    return pl.read_parquet(out)


@pytest.mark.gpu
@needs_gpu
def test_torch_cuda_engine_matches_the_cpu(dive: Path, engines: dict, tmp_path: Path) -> None:
    cpu = _score(dive / "images", engines["pt"], tmp_path / "cpu.parquet", decoder="pil", device="cpu")
    gpu = _score(dive / "images", engines["pt"], tmp_path / "gpu.parquet", decoder="pil", device="cuda")
    np.testing.assert_allclose(gpu.select(NAMES).to_numpy(), cpu.select(NAMES).to_numpy(), atol=1e-3)
    half = _score(dive / "images", engines["pt"], tmp_path / "half.parquet", decoder="pil", device="cuda",
                  torch_precision="fp16")
    np.testing.assert_allclose(half.select(NAMES).to_numpy(), cpu.select(NAMES).to_numpy(), atol=2e-2)


@pytest.mark.gpu
@needs_gpu
def test_nvjpeg_decoder_matches_pillow(dive: Path) -> None:
    from fathombatch.decode import create_decoder
    from fathombatch.preprocess import InputSpec

    files = sorted((dive / "images").glob("*.jpg"))[:8]
    spec = InputSpec(64, 64)
    with create_decoder("nvjpeg", spec, batch_size=8) as gpu, create_decoder("pil", spec, batch_size=8) as cpu:
        a, b = gpu.decode(files), cpu.decode(files)
    assert a.ok == b.ok == list(range(8))
    assert float(np.abs(np.asarray(a.images.cpu()) - b.images).mean()) < 0.05


@pytest.mark.dali_gpu
@needs_gpu
def test_dali_gpu_decoder_isolates_bad_files_and_matches_the_cpu(dive: Path, tmp_path: Path) -> None:
    pytest.importorskip("nvidia.dali", reason="needs DALI")
    from fathombatch.decode import create_decoder
    from fathombatch.preprocess import InputSpec

    files = sorted((dive / "images").glob("*.jpg"))[:6]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(files[0].read_bytes()[:300])
    spec = InputSpec(64, 64)
    with create_decoder("dali", spec, batch_size=8, device=0) as gpu, create_decoder("dali", spec, batch_size=8) as cpu:
        a, b = gpu.decode([*files[:3], bad, *files[3:]]), cpu.decode(files)
    assert a.ok == [0, 1, 2, 4, 5, 6] and a.errors[3] is not None
    assert a.images.is_cuda  # decoded, resized and normalised on the GPU
    assert float(np.abs(a.images.cpu().numpy() - b.images).mean()) < 0.05


@pytest.mark.trt
@needs_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_plan_scores_like_the_onnx_engine(dive: Path, engines: dict, tmp_path: Path, precision: str) -> None:
    from fathombatch.backends.trt_build import BuildConfig, build_engine

    plan = build_engine(BuildConfig(onnx=engines["onnx"], out=tmp_path / f"m-{precision}.plan", precision=precision,
                                    max_batch=16)).plan
    reference = _score(dive / "images", engines["onnx"], tmp_path / "onnx.parquet", decoder="pil")
    table = _score(dive / "images", plan, tmp_path / "trt.parquet", decoder="pil")
    tolerance = 1e-3 if precision == "fp32" else 2e-2
    np.testing.assert_allclose(table.select(NAMES).to_numpy(), reference.select(NAMES).to_numpy(), atol=tolerance)


@pytest.mark.trt
@needs_trt
def test_a_plan_for_another_tensorrt_version_is_refused(engines: dict, tmp_path: Path) -> None:
    import json

    from fathombatch.backends import manifest_path, open_engine
    from fathombatch.backends.manifest import file_sha256
    from fathombatch.backends.trt_build import BuildConfig, build_engine
    from fathombatch.errors import EngineError

    plan = build_engine(BuildConfig(onnx=engines["onnx"], out=tmp_path / "m.plan", precision="fp32", max_batch=4)).plan
    data = json.loads(manifest_path(plan).read_text())
    data["versions"]["tensorrt"] = "1.0.0"
    data["engine_sha256"] = file_sha256(plan)
    manifest_path(plan).write_text(json.dumps(data))
    with pytest.raises(EngineError, match="built with TensorRT 1.0.0 .* Rebuild it here"):
        open_engine(plan)


@pytest.mark.gpu
@needs_gpu
def test_devices_shard_into_one_table(dive: Path, engines: dict, tmp_path: Path) -> None:
    root = tmp_path / "dump"
    shutil.copytree(dive / "images", root)
    (root / "bad.jpg").write_bytes(b"")
    devices = ",".join(str(i) for i in range(cuda_device_count()))
    local = _score(root, engines["pt"], tmp_path / "one.parquet", decoder="pil", device="cuda")
    from fathombatch.gpu import parse_devices

    sharded = _score(root, engines["pt"], tmp_path / "all.parquet", decoder="pil", devices=parse_devices(devices))
    assert sharded.drop(NAMES).equals(local.drop(NAMES))
    np.testing.assert_allclose(sharded.select(NAMES).to_numpy(), local.select(NAMES).to_numpy(), atol=1e-4)
