"""Issue 8: scoring on a local Ray instance equals the local run, and survives a worker dying mid-job."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import ray

from fathombatch.scale import KILL_ENV, RayOptions
from fathombatch.score import ScoreConfig, score_folder
from fathombatch.scores.metadata import read_metadata
from fathombatch.taxonomy import fathomnet2023

NAMES = list(fathomnet2023().names)


@pytest.fixture()
def dump(dive: Path, tmp_path: Path) -> Path:
    root = tmp_path / "dump"
    shutil.copytree(dive / "images", root / "dive1")
    shutil.copytree(dive / "images", root / "dive2")
    (root / "dive1" / "empty.jpg").write_bytes(b"")
    (root / "dive2" / "note.png").write_text("not an image")
    return root


@pytest.fixture()
def local_ray(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    kill_dir = getattr(request, "param", None)
    if kill_dir:
        os.environ[KILL_ENV] = str(tmp_path)  # inherited by the workers Ray starts
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        yield tmp_path
    finally:
        ray.shutdown()
        os.environ.pop(KILL_ENV, None)


def compare(a: Path, b: Path) -> None:
    ta, tb = pl.read_parquet(a), pl.read_parquet(b)
    assert ta.schema == tb.schema
    assert ta.drop(NAMES).equals(tb.drop(NAMES))
    np.testing.assert_allclose(ta.select(NAMES).to_numpy(), tb.select(NAMES).to_numpy(), atol=1e-6)
    ma, mb = read_metadata(a), read_metadata(b)
    assert ma["taxonomy"] == mb["taxonomy"] and ma["engine_manifest"] == mb["engine_manifest"]
    assert {k: v for k, v in ma["run"].items()} == {k: v for k, v in mb["run"].items()}


@pytest.mark.slow
def test_ray_run_equals_the_local_run(local_ray: Path, dump: Path, engines: dict, tmp_path: Path) -> None:
    local = score_folder(ScoreConfig(root=dump, engine=engines["onnx"], out=tmp_path / "local.parquet", decoder="pil",
                                     batch_size=8, submission=tmp_path / "local.csv"))
    remote = score_folder(ScoreConfig(root=dump, engine=engines["onnx"], out=tmp_path / "ray.parquet", decoder="pil",
                                      batch_size=8, ray=RayOptions(workers=2), submission=tmp_path / "ray.csv"))
    assert (remote.files, remote.ok, remote.errors) == (local.files, local.ok, local.errors) == (50, 48, 2)
    compare(tmp_path / "ray.parquet", tmp_path / "local.parquet")
    # The submission is written from the final table on every path: a line per file, error rows with the prior.
    local_rows = pl.read_csv(tmp_path / "local.csv", schema_overrides={"id": pl.String, "categories": pl.String})
    remote_rows = pl.read_csv(tmp_path / "ray.csv", schema_overrides={"id": pl.String, "categories": pl.String})
    assert remote_rows.height == 50 and remote_rows.drop("osd").equals(local_rows.drop("osd"))
    np.testing.assert_allclose(remote_rows["osd"].to_numpy(), local_rows["osd"].to_numpy(), atol=1e-6)
    assert (remote_rows["osd"] == 1.0).sum() == 2 and remote.error_prior_source == "engine"


@pytest.mark.slow
@pytest.mark.parametrize("local_ray", [True], indirect=True)
def test_a_worker_dying_mid_job_loses_and_duplicates_nothing(
    local_ray: Path, dump: Path, engines: dict, tmp_path: Path
) -> None:
    remote = score_folder(ScoreConfig(root=dump, engine=engines["onnx"], out=tmp_path / "ray.parquet", decoder="pil",
                                      batch_size=4, ray=RayOptions(workers=2)))
    assert (local_ray / "killed").exists(), "the test hook did not kill a worker"
    table = pl.read_parquet(tmp_path / "ray.parquet")
    assert table.height == remote.files == 50 and table["path"].n_unique() == 50
    score_folder(ScoreConfig(root=dump, engine=engines["onnx"], out=tmp_path / "local.parquet", decoder="pil",
                             batch_size=4))
    compare(tmp_path / "ray.parquet", tmp_path / "local.parquet")


def test_without_ray_installed_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from fathombatch.errors import MissingDependencyError
    from fathombatch.scale import _init

    real_import = builtins.__import__

    def no_ray(name: str, *args: object, **kwargs: object) -> object:
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    monkeypatch.delitem(__import__("sys").modules, "ray", raising=False)
    with pytest.raises(MissingDependencyError, match=r"pip install 'fathombatch\[ray\]'"):
        _init(RayOptions())
