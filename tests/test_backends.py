from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fathombatch.backends import manifest_path, open_engine, read_manifest, resolve_engine_path
from fathombatch.backends.export import ExportConfig, export_run
from fathombatch.backends.manifest import Manifest, file_sha256
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
    class Evil:
        def __reduce__(self):
            return (print, ("this would have run",))

    dest = copy_engine(engines["pt"], tmp_path)
    torch.save({"format": "fathombatch-torch-engine", "payload": Evil()}, dest)
    data = json.loads(manifest_path(dest).read_text())
    data["engine_sha256"] = file_sha256(dest)
    manifest_path(dest).write_text(json.dumps(data))
    with pytest.raises(EngineError, match=r"could run code \(Unsupported global: GLOBAL (builtins\.)?print\)") as info:
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
