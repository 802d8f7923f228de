from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fathombatch.backends import manifest_path, open_engine, read_manifest, resolve_engine_path
from fathombatch.backends.manifest import Manifest, file_sha256
from fathombatch.engine_export import ExportConfig, export_run
from fathombatch.errors import EngineError, ManifestError, OutputError, UsageError
from fathombatch.models import create_model


def test_manifest_records_what_scoring_needs(engines: dict[str, Path], run_dir: Path) -> None:
    m = read_manifest(engines["onnx"])
    assert m.runtime == "onnxruntime" and m.arch == "resnet18" and m.precision == "fp32"
    assert (m.input.height, m.input.width) == (32, 32)
    assert m.num_classes == 290 and m.taxonomy.names[159] == "Strongylocentrotus fragilis"
    assert m.outputs == ("logits", "features") and m.feature_dim == 512
    assert m.class_counts is not None and sum(m.class_counts) > 0
    assert {"val_map20", "val_prior_floor", "n_train", "n_val"} <= set(m.metrics)
    assert m.provenance["run"] == str(run_dir) and m.provenance["train_config"]["arch"] == "resnet18"
    assert {"fathombatch", "torch", "onnxruntime"} <= set(m.versions)
    assert Manifest.from_json(m.to_json()) == m


def test_onnx_matches_torch_to_1e_4(engines: dict[str, Path], run_dir: Path) -> None:
    blob = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    model = create_model("resnet18", 290, img_size=32)
    model.load_state_dict(blob["model"])
    model.eval()
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    for kind in ("onnx", "pt"):
        with open_engine(engines[kind]) as engine:
            out = engine.run(x)
        np.testing.assert_allclose(out["logits"], expected, atol=1e-4)
        assert out["features"].shape == (5, 512)


def test_engine_store_lookup(engines: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FATHOMBATCH_ENGINES", str(engines["onnx"].parent))
    assert resolve_engine_path("tiny.onnx") == engines["onnx"]
    with pytest.raises(UsageError, match="not found"):
        resolve_engine_path("other.onnx")
    with pytest.raises(UsageError, match="unknown engine type"):
        resolve_engine_path("model.h5")


def message(name: str | Path) -> str:
    with pytest.raises(UsageError) as info:
        resolve_engine_path(name)
    return str(info.value)


def test_engine_not_found_names_the_store_its_contents_and_close_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "engines"
    store.mkdir()
    for name in ("densenet121-int8.xml", "densenet121-int8.bin", "densenet121-int8.xml.json", "a.onnx", "b.onnx",
                 "c.pt", "d.plan", "e.onnx", "notes.txt"):
        (store / name).write_bytes(b"")
    (store / "f.onnx").mkdir()  # a folder is not an engine
    assert message("densenet121.onnx") == (
        "engine 'densenet121.onnx' not found (looked in the current folder and in the engine store engines/ (set "
        "FATHOMBATCH_ENGINES to change it)); did you mean 'densenet121-int8.xml'? The store has: a.onnx, b.onnx, "
        "c.pt, d.plan, densenet121-int8.xml (+1 more)"
    )
    assert message("zzz.onnx").endswith("; the store has: a.onnx, b.onnx, c.pt, d.plan, densenet121-int8.xml (+1 more)")
    assert "did you mean 'densenet121-int8.xml'?" in message("DenseNet121")  # no suffix: unknown type, same help
    assert message("models/B.pt").startswith(
        "engine 'models/B.pt' not found (looked at models/B.pt, then for B.pt in the engine store engines/ (set "
        "FATHOMBATCH_ENGINES to change it)); did you mean 'b.onnx'?"
    )

    monkeypatch.setenv("FATHOMBATCH_ENGINES", str(tmp_path / "elsewhere"))
    assert message("a.onnx") == (
        f"engine 'a.onnx' not found (looked in the current folder and in the engine store {tmp_path}/elsewhere/ "
        f"(from FATHOMBATCH_ENGINES)); the store {tmp_path / 'elsewhere'} does not exist"
    )
    (tmp_path / "elsewhere").mkdir()
    assert message("a.onnx").endswith(f"; the store {tmp_path / 'elsewhere'} has no engine files")


def copy_engine(src: Path, dest_dir: Path) -> Path:
    dest = dest_dir / src.name
    shutil.copy(src, dest)
    shutil.copy(manifest_path(src), manifest_path(dest))
    return dest


def test_missing_manifest(engines: dict[str, Path], tmp_path: Path) -> None:
    dest = tmp_path / "x.onnx"
    shutil.copy(engines["onnx"], dest)
    with pytest.raises(ManifestError, match="has no manifest"):
        open_engine(dest)


def test_manifest_class_count_must_match_the_engine(engines: dict[str, Path], tmp_path: Path) -> None:
    for kind in ("onnx", "pt"):
        dest = copy_engine(engines[kind], tmp_path)
        data = json.loads(manifest_path(dest).read_text())
        data["classes"] = data["classes"][:10]
        data["num_classes"] = 10
        data["class_counts"] = None
        data["thresholds"] = None
        manifest_path(dest).write_text(json.dumps(data))
        with pytest.raises(EngineError, match="lists 10 classes"):
            open_engine(dest)


def test_replaced_engine_file_is_detected(engines: dict[str, Path], tmp_path: Path) -> None:
    dest = copy_engine(engines["onnx"], tmp_path)
    with open(dest, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ManifestError, match="SHA-256 differs"):
        open_engine(dest)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("input"), "missing field 'input'"),
        (lambda d: d.update(runtime="tflite"), "runtime 'tflite'"),
        (lambda d: d.update(format_version=99), "format_version 99"),
        (lambda d: d.update(class_counts=[1, 2]), "class_counts"),
        (lambda d: d["input"].update(height=-3), "input size"),
        # Values that used to be coerced or accepted and then gave silently wrong or all-error tables.
        (lambda d: d.update(engine_sha256=None), "engine_sha256 must be the engine's SHA-256"),
        (lambda d: d.update(engine_sha256="abc"), "engine_sha256 must be the engine's SHA-256"),
        (lambda d: d["input"].update(height=32.9), r"input.height' must be a whole number of pixels, got 32.9"),
        (lambda d: d["input"].update(width="32"), r"input.width' must be a whole number of pixels, got '32'"),
        (lambda d: d["input"].update(mean=[float("nan"), 0.5, 0.5]), r"input.mean' must be three finite numbers"),
        (lambda d: d["input"].update(std=[1.0, float("inf"), 1.0]), r"input.std' must be three finite numbers"),
        (lambda d: d["input"].update(std=[True, 1.0, 1.0]), r"input.std' must be three finite numbers"),
        (lambda d: d.update(class_counts=[True] * 290), "class_counts must list 290 non-negative integers"),
        (lambda d: d.update(feature_dim="abc"), "feature_dim must be a positive whole number"),
        (lambda d: d.update(osd={"method": "knn", "stats": [1, 2]}), r"'osd.stats', if present, an object"),
        (lambda d: d.update(osd="knn"), r"'osd' must be an object"),
    ],
)
def test_invalid_manifests(engines: dict[str, Path], tmp_path: Path, edit, message: str) -> None:
    dest = copy_engine(engines["onnx"], tmp_path)
    data = json.loads(manifest_path(dest).read_text())
    edit(data)
    manifest_path(dest).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message):
        open_engine(dest)


def test_tensorrt_plan_says_what_it_needs(engines: dict[str, Path], tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the message under test is the no-GPU one")
    dest = tmp_path / "m.plan"
    dest.write_bytes(b"plan")
    data = json.loads(manifest_path(engines["onnx"]).read_text())
    data.update(runtime="tensorrt", engine_sha256=file_sha256(dest))
    manifest_path(dest).write_text(json.dumps(data))
    with pytest.raises(UsageError, match="is a TensorRT plan, which needs an NVIDIA GPU"):
        open_engine(dest)


def test_export_refuses_overwrite_and_wrong_suffix(engines: dict[str, Path], run_dir: Path) -> None:
    with pytest.raises(OutputError, match="already exists"):
        export_run(ExportConfig(run=run_dir, format="onnx", out=engines["onnx"]))
    with pytest.raises(UsageError, match="must end in .pt"):
        export_run(ExportConfig(run=run_dir, format="pt", out=engines["onnx"].with_suffix(".bin")))


def test_pt_engine_loads_without_running_code(tmp_path: Path, engines: dict[str, Path]) -> None:
    class Evil:  # eval rather than print: a Ray run earlier in the session replaces builtins.print with its own
        def __reduce__(self):
            return (eval, ("'this would have run'",))

    dest = copy_engine(engines["pt"], tmp_path)
    torch.save({"format": "fathombatch-torch-engine", "payload": Evil()}, dest)
    data = json.loads(manifest_path(dest).read_text())
    data["engine_sha256"] = file_sha256(dest)
    manifest_path(dest).write_text(json.dumps(data))
    with pytest.raises(EngineError, match=r"could run code \(Unsupported global: GLOBAL (builtins\.)?eval\)") as info:
        open_engine(dest)
    # The refusal must not talk the user into the unsafe way of loading it.
    assert "weights_only" not in str(info.value) and "trust" not in str(info.value) and "\x1b" not in str(info.value)


def test_manifest_thresholds_are_validated(engines: dict[str, Path], tmp_path: Path) -> None:
    dest = copy_engine(engines["onnx"], tmp_path)
    data = json.loads(manifest_path(dest).read_text())
    data["thresholds"] = [0.5] * 289 + [1.5]
    manifest_path(dest).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"thresholds must list 290 numbers in \(0, 1\]"):
        open_engine(dest)


# --- issue 14: TensorRT addressing, one TensorRT logger, TF32 off in fp32 (the logic a CPU can show) ---------------


@pytest.mark.parametrize("side", [260, 299, 300, 380])
def test_chunks_tensorrt_cannot_address_are_copied(side: int) -> None:
    """A batch of float32 side×side images cut for a plan of max batch 3: every slice after the first starts off
    TensorRT's 256-byte grid (H·W is not a multiple of 64), so each is copied; the slices still cover the batch."""
    from fathombatch.backends.trt_support import TRT_ALIGNMENT, chunk_plan

    plan = chunk_plan(10, 3, 3 * side * side * 4, base_address=0)
    assert [(a, b) for a, b, _ in plan] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert [copy for *_, copy in plan] == [False, True, True, True]
    # A batch that itself starts off the grid (a view into a larger buffer): the first slice is copied too.
    assert all(copy for *_, copy in chunk_plan(10, 3, 3 * side * side * 4, base_address=TRT_ALIGNMENT + 16))


@pytest.mark.parametrize("side", [224, 256, 384])
def test_chunks_on_the_grid_are_used_in_place(side: int) -> None:
    from fathombatch.backends.trt_support import chunk_plan

    assert not any(copy for *_, copy in chunk_plan(10, 3, 3 * side * side * 4, base_address=0))
    assert chunk_plan(0, 4, 3 * side * side * 4, base_address=0) == []
    with pytest.raises(EngineError, match="largest batch"):
        chunk_plan(10, 0, 3 * side * side * 4, base_address=0)


class _Context:
    """A stand-in for a TensorRT execution context: ``set_tensor_address`` answers as told and records its calls."""

    def __init__(self, accept: bool) -> None:
        self.accept, self.calls = accept, []

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.calls.append((name, address))
        return self.accept


def _fake_tensorrt() -> object:
    import types

    trt = types.ModuleType("fake_tensorrt")

    class ILogger:
        class Severity:
            ERROR, WARNING, INFO = 1, 2, 3

        def __init__(self) -> None:
            pass

    class BuilderFlag:
        TF32 = "TF32"

    trt.__dict__.update(ILogger=ILogger, BuilderFlag=BuilderFlag)
    return trt


def test_a_refused_tensor_address_is_an_error() -> None:
    from fathombatch.backends.trt_support import bind_address, tensorrt_logger

    bind_address(ok := _Context(True), "input", 0x1000, "m.plan")
    assert ok.calls == [("input", 0x1000)]
    logger = tensorrt_logger(_fake_tensorrt())
    mark = logger.mark()
    logger.impl.log(1, "address misaligned")
    with pytest.raises(EngineError, match=r"refused the address of tensor 'input' of m.plan .*16 bytes past a "
                                          r"256-byte boundary\): address misaligned"):
        bind_address(_Context(False), "input", 0x1010, "m.plan", logger, mark)


def test_one_tensorrt_logger_for_build_and_runtime() -> None:
    """TensorRT keeps the first logger of a process: build and runtime must share one, which keeps what was said."""
    from fathombatch.backends import tensorrt, trt_support
    from fathombatch.engine_export import tensorrt as trt_build

    trt = _fake_tensorrt()
    first = trt_build.tensorrt_logger(trt)
    assert tensorrt.tensorrt_logger(trt) is first and trt_support.tensorrt_logger(trt) is first
    mark = first.mark()
    assert first.since(mark) == ""
    first.impl.log(1, "cannot deserialize")
    first.impl.log(3, "info is not kept")
    assert first.since(mark) == "cannot deserialize"
    assert first.since(first.mark()) == ""  # an operation after it does not quote it


class _BuilderConfig:
    def __init__(self) -> None:
        self.cleared: list[str] = []

    def clear_flag(self, flag: str) -> None:
        self.cleared.append(flag)


@pytest.mark.parametrize(("precision", "cleared"), [("fp32", ["TF32"]), ("fp16", []), ("int8", [])])
def test_fp32_plans_are_built_without_tf32(precision: str, cleared: list[str]) -> None:
    from fathombatch.engine_export.tensorrt import configure_precision

    config = _BuilderConfig()
    configure_precision(config, _fake_tensorrt(), precision)
    assert config.cleared == cleared


def test_fp32_torch_runs_switch_tf32_off_and_restore_it() -> None:
    from fathombatch.backends.torch_engine import ieee_fp32

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        with ieee_fp32(torch):
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        with pytest.raises(RuntimeError), ieee_fp32(torch):
            raise RuntimeError("the forward pass failed")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
