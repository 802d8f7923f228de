"""Issue 6: the GPU path. Tests marked gpu / dali_gpu / trt run wherever the hardware exists and skip elsewhere.

Nothing here mocks CUDA or TensorRT: on a machine without a GPU only the "one clear error" tests run.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

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


# --- no GPU: one clear error each -------------------------------------------------------------------------------


@pytest.mark.skipif(HAS_GPU, reason="checks the message a machine without a GPU gives")
def test_without_a_gpu_every_gpu_option_is_one_clear_error(dive: Path, engines: dict, tmp_path: Path) -> None:
    runner = CliRunner()
    cases = [
        ["score", str(dive / "images"), "--engine", str(engines["pt"]), "--device", "cuda",
         "--out", str(tmp_path / "a")],
        ["score", str(dive / "images"), "--engine", str(engines["onnx"]), "--devices", "0,1",
         "--out", str(tmp_path / "b")],
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
        said = rf"^devices must (be comma-separated|list distinct) GPU numbers such as 0,1, got {re.escape(repr(bad))}$"
        with pytest.raises(UsageError, match=said):
            parse_devices(bad)


def test_score_offers_every_decoder_the_library_has() -> None:
    from fathombatch.decode import list_decoders

    (option,) = [p for p in cli.commands["score"].params if p.name == "decoder"]
    assert list(option.type.choices) == ["auto", *list_decoders()] and "nvjpeg" in option.type.choices
    assert "else torchvision's nvJPEG" in (option.help or "")


@pytest.mark.skipif(HAS_GPU, reason="checks the message a machine without a GPU gives")
def test_without_a_gpu_the_nvjpeg_decoder_is_one_clear_error(dive: Path, engines: dict, tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    result = CliRunner().invoke(cli, ["score", str(dive / "images"), "--engine", str(engines["onnx"]),
                                      "--decoder", "nvjpeg", "--out", str(out)])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the nvjpeg decoder needs an NVIDIA GPU"), result.stderr
    assert not list(tmp_path.iterdir())  # refused before any output, lock or part file


def test_int8_graph_for_tensorrt_keeps_biases_float_and_scores_like_fp32(dive: Path, engines: dict,
                                                                         tmp_path: Path) -> None:
    """The Q/DQ graph ``build-engine --precision int8`` hands TensorRT, checked with ONNX Runtime (no GPU needed).

    TensorRT's ONNX parser accepts only activation types into DequantizeLinear, so no int32 bias may feed one.
    """
    import onnx
    import onnxruntime as ort

    from fathombatch.backends.manifest import read_manifest
    from fathombatch.engine_export.tensorrt import BuildConfig, prepare_onnx

    spec = read_manifest(engines["onnx"]).input
    cfg = BuildConfig(onnx=engines["onnx"], out=tmp_path / "m.plan", precision="int8", calibration=dive / "images")
    dest = tmp_path / "int8.onnx"
    prepare_onnx(engines["onnx"], dest, "int8", cfg, spec)
    graph = onnx.load(str(dest)).graph
    types = {t.name: t.data_type for t in graph.initializer}
    dq_inputs = [n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"]
    assert dq_inputs, "no Q/DQ nodes: the graph was not quantised"
    assert all(types.get(name) != onnx.TensorProto.INT32 for name in dq_inputs)
    assert not list(tmp_path.glob("*.pre.onnx"))
    x = np.random.default_rng(0).normal(size=(4, 3, spec.height, spec.width)).astype(np.float32)
    fp32 = ort.InferenceSession(str(engines["onnx"]), providers=["CPUExecutionProvider"])
    int8 = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    name = fp32.get_inputs()[0].name
    a, b = fp32.run(["logits"], {name: x})[0], int8.run(["logits"], {name: x})[0]
    assert a.shape == b.shape and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9


def test_the_parent_of_gpu_workers_reads_the_manifest_only(engines: dict, tmp_path: Path) -> None:
    """``--devices 0,1``: the workers open the engine; the parent gets its checked manifest and loads nothing."""
    from fathombatch.backends import manifest_path, read_manifest
    from fathombatch.errors import EngineError, ManifestError
    from fathombatch.scoring.runners.multigpu import unopened_engine

    engine = unopened_engine(engines["pt"])
    assert engine.path == engines["pt"] and engine.manifest == read_manifest(engines["pt"])
    assert engine.inference_precision == "fp32"
    with pytest.raises(EngineError, match="opened by the GPU workers"):
        engine.run(np.zeros((1, 3, 32, 32), dtype=np.float32))
    with pytest.raises(UsageError, match="onnxruntime engines run on the CPU"):
        unopened_engine(engines["onnx"])
    damaged = tmp_path / engines["pt"].name
    damaged.write_bytes(engines["pt"].read_bytes() + b"x")
    shutil.copy(manifest_path(engines["pt"]), manifest_path(damaged))
    with pytest.raises(ManifestError, match="SHA-256 differs"):
        unopened_engine(damaged)


# --- with a GPU -----------------------------------------------------------------------------------------------------


def _score(root: Path, engine: Path, out: Path, **kw: object) -> pl.DataFrame:
    from fathombatch.scoring import ScoreConfig, score_folder

    score_folder(ScoreConfig(root=root, engine=engine, out=out, batch_size=8, **kw))  # type: ignore[arg-type]
    return pl.read_parquet(out)


@pytest.mark.gpu
def test_torch_cuda_engine_matches_the_cpu(dive: Path, engines: dict, tmp_path: Path) -> None:
    cpu = _score(dive / "images", engines["pt"], tmp_path / "cpu.parquet", decoder="pil", device="cpu")
    gpu = _score(dive / "images", engines["pt"], tmp_path / "gpu.parquet", decoder="pil", device="cuda")
    np.testing.assert_allclose(gpu.select(NAMES).to_numpy(), cpu.select(NAMES).to_numpy(), atol=1e-3)
    half = _score(dive / "images", engines["pt"], tmp_path / "half.parquet", decoder="pil", device="cuda",
                  torch_precision="fp16")
    np.testing.assert_allclose(half.select(NAMES).to_numpy(), cpu.select(NAMES).to_numpy(), atol=2e-2)


@pytest.mark.gpu
def test_nvjpeg_decoder_matches_pillow(dive: Path) -> None:
    from fathombatch.decode import create_decoder
    from fathombatch.preprocess import InputSpec

    files = sorted((dive / "images").glob("*.jpg"))[:8]
    spec = InputSpec(64, 64)
    with create_decoder("nvjpeg", spec, batch_size=8) as gpu, create_decoder("pil", spec, batch_size=8) as cpu:
        a, b = gpu.decode(files), cpu.decode(files)
    assert a.ok == b.ok == list(range(8))
    assert float(np.abs(np.asarray(a.images.cpu()) - b.images).mean()) < 0.05


@pytest.mark.gpu
def test_nvjpeg_decoding_in_parts_keeps_every_file_in_its_place(dive: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch decoded in parts (the next part read during nvJPEG) gives every file its own pixels and error."""
    from PIL import Image

    from fathombatch.decode import create_decoder, nvjpeg
    from fathombatch.preprocess import InputSpec

    monkeypatch.setattr(nvjpeg, "NVJPEG_PART", 3)
    files: list[Path] = sorted((dive / "images").glob("*.jpg"))[:8]
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image")
    with Image.open(files[0]) as im:
        im.convert("RGB").resize((50, 40)).save(tmp_path / "small.png")
    files[2:2] = [tmp_path / "empty.jpg"]
    files[5:5] = [tmp_path / "small.png"]
    files.append(tmp_path / "notes.jpg")
    spec = InputSpec(64, 64)
    with create_decoder("nvjpeg", spec, batch_size=16) as gpu, create_decoder("pil", spec, batch_size=16) as cpu:
        a, b = gpu.decode(files), cpu.decode(files)
    assert a.ok == b.ok == [i for i in range(len(files)) if i not in (2, 10)]
    assert a.sizes == b.sizes and [e is None for e in a.errors] == [e is None for e in b.errors]
    assert a.decoders[5] == "pil" and a.decoders[0] == a.decoders[9] == "nvjpeg"
    assert float(np.abs(np.asarray(a.images.cpu()) - b.images).mean(axis=(1, 2, 3)).max()) < 0.05


@pytest.mark.gpu
def test_nvjpeg_turns_an_exif_rotated_jpeg_like_pillow(tmp_path: Path) -> None:
    from PIL import Image

    from fathombatch.decode import create_decoder
    from fathombatch.preprocess import InputSpec

    rgb = np.zeros((80, 120, 3), dtype=np.uint8)
    rgb[:40, :40] = 255  # a corner block, so a missed rotation shows
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    spec = InputSpec(64, 64)
    with create_decoder("nvjpeg", spec, batch_size=2) as gpu, create_decoder("pil", spec, batch_size=2) as cpu:
        a, b = gpu.decode([tmp_path / "rotated.jpg"]), cpu.decode([tmp_path / "rotated.jpg"])
    assert a.ok == b.ok == [0] and a.sizes == b.sizes == [(80, 120)]
    assert float(np.abs(np.asarray(a.images.cpu()) - b.images).mean()) < 0.05


@pytest.mark.gpu
def test_an_nvjpeg_batch_is_not_overwritten_while_the_caller_still_reads_it(dive: Path) -> None:
    import torch

    from fathombatch.decode import create_decoder
    from fathombatch.preprocess import InputSpec

    files = sorted((dive / "images").glob("*.jpg"))[:16]
    with create_decoder("nvjpeg", InputSpec(64, 64), batch_size=8, device=0) as decoder:
        assert decoder.stream != torch.cuda.current_stream(0)
        first = decoder.decode(files[:8]).images
        expected = float(first.sum().item())
        busy = torch.randn(4096, 4096, device="cuda:0")
        for _ in range(40):  # keep this (the caller's) stream busy for a while
            busy = torch.tanh(busy @ busy)
        pending = first.sum()  # queued behind that work on the caller's stream
        del first  # its memory must not go to nvJPEG before `pending` has read it
        for _ in range(4):
            decoder.decode(files[8:])
        assert float(pending.item()) == pytest.approx(expected, rel=1e-6)


@pytest.mark.gpu
def test_nvjpeg_switches_the_run_to_pillow_once_when_nvjpeg_itself_fails(dive: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    from fathombatch.decode import create_decoder
    from fathombatch.preprocess import InputSpec

    files = sorted((dive / "images").glob("*.jpg"))[:8]
    calls: list[int] = []

    def without_nvjpeg(data: list[object]) -> list[object]:
        calls.append(len(data))
        raise RuntimeError("decode_jpegs_cuda: torchvision not compiled with nvJPEG support")

    spec = InputSpec(64, 64)
    with create_decoder("nvjpeg", spec, batch_size=4, device=0) as gpu, create_decoder("pil", spec) as cpu:
        gpu.decode_jpegs = without_nvjpeg
        batches = [gpu.decode(files[:4]), gpu.decode(files[4:])]
        expected = cpu.decode(files).images
    assert calls == [4]  # not retried file by file, nor on the next batch
    assert all(b.images.is_cuda and b.decoders == ["pil"] * 4 for b in batches)
    got = np.concatenate([b.images.cpu().numpy() for b in batches])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "not compiled with nvJPEG" in warnings[0]


@pytest.mark.gpu
def test_the_nvjpeg_decoder_needs_an_engine_on_the_gpu(dive: Path, engines: dict, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="engine runs on the CPU"):
        _score(dive / "images", engines["onnx"], tmp_path / "s.parquet", decoder="nvjpeg")


@pytest.mark.dali_gpu
def test_dali_mixed_decoding_matches_the_cpu_at_colour_edges(tmp_path: Path) -> None:
    from PIL import Image

    from fathombatch.decode import create_decoder
    from fathombatch.preprocess import InputSpec

    rgb = np.zeros((96, 128, 3), dtype=np.uint8)
    rgb[:, ::8] = (255, 0, 0)  # one-pixel red and blue stripes: 4:2:0 chroma is upsampled across every edge
    rgb[:, 4::8] = (0, 0, 255)
    Image.fromarray(rgb).save(tmp_path / "edges.jpg", quality=95, subsampling="4:2:0")
    spec = InputSpec(96, 128)  # the image's own size: no resize filter to hide the chroma upsampling
    with create_decoder("dali", spec, device=0) as gpu, create_decoder("dali", spec) as cpu:
        a, b = gpu.decode([tmp_path / "edges.jpg"]).images.cpu().numpy(), cpu.decode([tmp_path / "edges.jpg"]).images
    levels = np.abs(a - b) * np.asarray(spec.std).reshape(1, 3, 1, 1) * 255.0  # back to 8-bit steps
    # Same upsampling: only IDCT rounding is left (a few steps); without it the stripes' colours differ by tens.
    assert float(np.percentile(levels, 99)) <= 4.0 and float(levels.mean()) <= 1.0


@pytest.mark.dali_gpu
def test_dali_gpu_decoder_isolates_bad_files_and_matches_the_cpu(dive: Path, tmp_path: Path) -> None:
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
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_plan_scores_like_the_onnx_engine(dive: Path, engines: dict, tmp_path: Path, precision: str) -> None:
    from fathombatch.engine_export import BuildConfig, build_engine

    plan = build_engine(BuildConfig(onnx=engines["onnx"], out=tmp_path / f"m-{precision}.plan", precision=precision,
                                    max_batch=16)).plan
    reference = _score(dive / "images", engines["onnx"], tmp_path / "onnx.parquet", decoder="pil")
    table = _score(dive / "images", plan, tmp_path / "trt.parquet", decoder="pil")
    tolerance = 1e-3 if precision == "fp32" else 2e-2
    np.testing.assert_allclose(table.select(NAMES).to_numpy(), reference.select(NAMES).to_numpy(), atol=tolerance)


@pytest.mark.trt
def test_a_plan_for_another_tensorrt_version_is_refused(engines: dict, tmp_path: Path) -> None:
    import json

    from fathombatch.backends import manifest_path, open_engine
    from fathombatch.backends.manifest import file_sha256
    from fathombatch.engine_export import BuildConfig, build_engine
    from fathombatch.errors import EngineError

    plan = build_engine(BuildConfig(onnx=engines["onnx"], out=tmp_path / "m.plan", precision="fp32", max_batch=4)).plan
    data = json.loads(manifest_path(plan).read_text())
    data["versions"]["tensorrt"] = "1.0.0"
    data["engine_sha256"] = file_sha256(plan)
    manifest_path(plan).write_text(json.dumps(data))
    with pytest.raises(EngineError, match="built with TensorRT 1.0.0 .* Rebuild it here"):
        open_engine(plan)


@pytest.mark.gpu
@pytest.mark.skipif(cuda_device_count() < 2, reason="sharding needs at least two GPUs; with one, --devices runs the "
                    "local path and this test would prove nothing")
def test_devices_shard_into_one_table(dive: Path, engines: dict, tmp_path: Path) -> None:
    import torch

    root = tmp_path / "dump"
    shutil.copytree(dive / "images", root)
    (root / "bad.jpg").write_bytes(b"")
    devices = list(range(cuda_device_count()))
    local = _score(root, engines["pt"], tmp_path / "one.parquet", decoder="pil", device="cuda")
    torch.cuda.reset_peak_memory_stats(devices[0])
    before = torch.cuda.memory_allocated(devices[0])
    sharded = _score(root, engines["pt"], tmp_path / "all.parquet", decoder="pil", devices=devices)
    # The parent never loaded the engine: nothing of its own was allocated on the first GPU while the workers ran.
    assert torch.cuda.max_memory_allocated(devices[0]) == before
    assert sharded.drop(NAMES).equals(local.drop(NAMES))
    np.testing.assert_allclose(sharded.select(NAMES).to_numpy(), local.select(NAMES).to_numpy(), atol=1e-4)


@pytest.mark.trt
def test_tensorrt_runs_a_batch_whose_slices_are_off_the_256_byte_grid(engines: dict, tmp_path: Path) -> None:
    """A batch larger than the plan's max batch, starting 16 bytes past an aligned address: each slice is copied to
    an aligned buffer, and the logits equal those of the same images laid out aligned."""
    import torch

    from fathombatch.backends import open_engine
    from fathombatch.engine_export import BuildConfig, build_engine

    plan = build_engine(BuildConfig(onnx=engines["onnx"], out=tmp_path / "m.plan", precision="fp32", max_batch=3)).plan
    n, sample = 7, 3 * 32 * 32
    buffer = torch.randn(n * sample + 4, device="cuda")
    shifted = buffer[4:].view(n, 3, 32, 32)  # 16 bytes past the allocation's start
    assert shifted.data_ptr() % 256 == 16
    with open_engine(plan) as engine:
        np.testing.assert_allclose(engine.infer(shifted), engine.infer(shifted.clone()), atol=1e-6)


@pytest.mark.gpu
def test_fp32_torch_cuda_computes_in_ieee_fp32_not_tf32(engines: dict, run_dir: Path) -> None:
    """With TF32 (cuDNN's default on Ampere and newer) each convolution rounds its inputs to 10-bit mantissas, and the
    logits drift from a float64 reference by far more than IEEE fp32 rounding does. The fp32 engine must give the
    IEEE ones, even when the caller left TF32 on."""
    import torch

    from fathombatch.backends import open_engine
    from fathombatch.models import create_model

    blob = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    model = create_model("resnet18", 290, img_size=32)
    model.load_state_dict(blob["model"])
    x = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        reference = model.double().eval()(torch.from_numpy(x).double()).numpy()
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        with open_engine(engines["pt"], device=0) as engine:
            logits = engine.infer(x)
        assert torch.backends.cudnn.allow_tf32  # the caller's setting is back
    finally:
        torch.backends.cudnn.allow_tf32 = saved
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)


# --- packaging: the GPU wheels agree with each other and with the docs --------------------------------------------


def _requirements() -> dict[str, Any]:
    from packaging.requirements import Requirement  # pytest's own dependency

    tomllib = pytest.importorskip("tomllib")

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["tensorrt"]]
    return {r.name: r for r in reqs}


def test_the_tensorrt_extra_admits_10_and_11_as_the_docs_promise() -> None:
    reqs = _requirements()
    trt = next(r for name, r in reqs.items() if name.startswith("tensorrt"))
    assert trt.specifier.contains("10.16.1.11") and trt.specifier.contains("11.4.0.106")
    assert not trt.specifier.contains("12.0.0")


def test_dali_and_tensorrt_wheels_are_for_the_cuda_major_of_the_installed_torch() -> None:
    """Two CUDA majors in one process (a cu13 torch beside a CUDA 12 DALI) mean two sets of CUDA libraries loaded
    side by side, and a driver new enough for both; the project's wheels follow the torch it installs."""
    import re

    import torch

    if torch.version.cuda is None:
        pytest.skip("this torch is a CPU build: no CUDA major to match")
    major = torch.version.cuda.split(".")[0]
    names = list(_requirements())
    dali = [re.fullmatch(r"nvidia-dali-cuda(\d+?)0", n) for n in names]
    trt = [re.fullmatch(r"tensorrt-cu(\d+)", n) for n in names]
    assert [m.group(1) for m in dali if m] == [major], names
    assert [m.group(1) for m in trt if m] == [major], names
