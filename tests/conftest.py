"""Shared fixtures: a tiny synthetic dive, a tiny trained run, and its ONNX and torch engines.

Everything is built once per session in a temporary folder; tests copy what they modify.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from fathombatch.synth import SynthConfig, synthesize


def _hardware_skip(marker: str) -> str | None:
    """Why a test with ``marker`` cannot run here, or None when it can (checked once per marker)."""
    import importlib.util

    from fathombatch.gpu import cuda_device_count

    gpu = cuda_device_count() > 0
    has = {name: importlib.util.find_spec(module) is not None
           for name, module in (("dali", "nvidia.dali"), ("trt", "tensorrt"))}
    reasons = {
        "gpu": None if gpu else "needs an NVIDIA GPU (none visible to PyTorch here)",
        "dali": None if has["dali"] else "needs NVIDIA DALI (the 'nvidia-dali-cuda130' wheel)",
        "dali_gpu": None if gpu and has["dali"] else "needs NVIDIA DALI and an NVIDIA GPU",
        "trt": None if gpu and has["trt"] else "needs an NVIDIA GPU and the 'tensorrt' extra",
    }
    return reasons[marker]


_SKIPS: dict[str, str | None] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """One marker per hardware need (``gpu``, ``dali``, ``dali_gpu``, ``trt``, see pyproject.toml) makes a test skip,
    with the reason, where the hardware or library is missing: no test carries a second skipif for it."""
    for item in items:
        for marker in ("gpu", "dali", "dali_gpu", "trt"):
            if item.get_closest_marker(marker) is None:
                continue
            if marker not in _SKIPS:
                _SKIPS[marker] = _hardware_skip(marker)
            if (reason := _SKIPS[marker]) is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
                break


def data_file(name: str) -> Path:
    """A real FathomNet 2023 label file shipped as package data (identical to ../shared/fathomnet2023/)."""
    return Path(__file__).resolve().parents[1] / "fathombatch" / "data" / "fathomnet2023" / name


@pytest.fixture(scope="session")
def dive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 small JPEGs with Kaggle, COCO and osd labels; a quarter are out-of-sample."""
    out = tmp_path_factory.mktemp("dive") / "dive"
    synthesize(SynthConfig(out=out, images=24, seed=3, size=(160, 120), deep_fraction=0.25, box_scale=0.5))
    return out


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory, dive: Path) -> Path:
    """A one-epoch resnet18 at 32 px trained on the tiny dive."""
    from fathombatch.models.train import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "r18"
    train(TrainConfig(images=dive / "images", labels=dive / "train.csv", out=out, arch="resnet18", epochs=1,
                      img_size=32, batch_size=8, seed=0))
    return out


class LazyEngines(Mapping[str, Path]):
    """``{"onnx": path, "pt": path}``, each exported on first use.

    Lazy so that a test needing only the torch engine runs where ONNX export cannot: the GPU image carries no
    ``onnx`` wheel (benchmarks/gpu-wheels.txt says why).
    """

    def __init__(self, run: Path, store: Path) -> None:
        self._run, self._store = run, store
        self._done: dict[str, Path] = {}

    def __getitem__(self, fmt: str) -> Path:
        if fmt not in ("onnx", "pt"):
            raise KeyError(fmt)
        if fmt not in self._done:
            from fathombatch.engine_export import ExportConfig, export_run

            out = self._store / f"tiny.{fmt}"
            self._done[fmt] = export_run(ExportConfig(run=self._run, format=fmt, out=out)).engine
        return self._done[fmt]

    def __iter__(self) -> Iterator[str]:
        return iter(("onnx", "pt"))

    def __len__(self) -> int:
        return 2


@pytest.fixture(scope="session")
def engines(tmp_path_factory: pytest.TempPathFactory, run_dir: Path) -> Mapping[str, Path]:
    """The tiny run exported as ONNX and as a torch engine (each on first use)."""
    return LazyEngines(run_dir, tmp_path_factory.mktemp("engines"))


@pytest.fixture(scope="session")
def ov_engines(tmp_path_factory: pytest.TempPathFactory, run_dir: Path) -> dict[str, Path]:
    """The tiny run as fp32 and int8 OpenVINO engines (int8 through NNCF with accuracy control)."""
    from fathombatch.engine_export import ExportConfig, export_run

    store = tmp_path_factory.mktemp("ov")
    fp32 = export_run(ExportConfig(run=run_dir, format="openvino", out=store / "tiny.xml")).engine
    int8 = export_run(ExportConfig(run=run_dir, format="openvino", precision="int8",
                                   out=store / "tiny-int8.xml")).engine
    return {"fp32": fp32, "int8": int8}


@pytest.fixture(scope="session")
def dump_scores(dive: Path, engines: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dive split into three dive folders (plus one file at the root) and scored (tests of the exports)."""
    import shutil

    from PIL import Image

    from fathombatch.scoring import ScoreConfig, score_folder

    root = tmp_path_factory.mktemp("exports") / "cruise"
    files = sorted((dive / "images").glob("*.jpg"))
    for i, f in enumerate(files):
        dest = root / (f"dive{i % 3}" if i else ".") / f.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)
    exif = Image.Exif()
    exif[0x8769] = {36867: "2023:05:17 10:42:03"}
    Image.open(files[1]).save(root / "dive1" / files[1].name, exif=exif)  # one image with a capture time
    out = root.parent / "scores.parquet"
    score_folder(ScoreConfig(root=root, engine=engines["onnx"], out=out))
    return out


@pytest.fixture(autouse=True)
def _no_engine_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FATHOMBATCH_ENGINES", raising=False)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0
