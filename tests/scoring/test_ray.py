"""The Ray runner (fathombatch.scoring.runners.ray): a run on a local Ray instance equals the local run, survives a
worker dying mid-job, and its actors open the engine with the plan's device and precision."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import ray

import fathombatch.scoring.runners.ray as ray_runner
from fathombatch.scores.metadata import read_metadata
from fathombatch.scoring import RayOptions, ScoreConfig, score_folder
from fathombatch.taxonomy import fathomnet2023
from tests.scoring.ray_hooks import crashing_actor, crashing_at_start_actor, dying_actor, refusing_actor

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
def local_ray(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    if getattr(request, "param", None):
        # The runner looks its actor class up at run time; Ray pickles this test-only subclass by value.
        monkeypatch.setattr(ray_runner, "ScoreActor", dying_actor(tmp_path))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        yield tmp_path
    finally:
        ray.shutdown()


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
    assert ray.is_initialized(), "the runner shut down a Ray instance it did not start"


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


@pytest.mark.slow
def test_a_file_that_crashes_its_worker_every_time_stops_the_run_with_an_error(
    local_ray: Path, dive: Path, engines: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retried MAX_RETRIES times, then one error, instead of restarting the worker forever; rows of the calls that
    finished stay in the part files for the same command to resume from."""
    from fathombatch.errors import EngineError

    names = sorted(p.name for p in (dive / "images").glob("*.jpg"))
    monkeypatch.setattr(ray_runner, "ScoreActor", crashing_actor(names[-1]))
    out = tmp_path / "ray.parquet"
    with pytest.raises(EngineError, match="a Ray worker failed"):
        score_folder(ScoreConfig(root=dive / "images", engine=engines["onnx"], out=out, decoder="pil",
                                 batch_size=4, ray=RayOptions(workers=2)))
    assert not out.exists()
    parts = list((tmp_path / "ray.parquet.parts").glob("*.parquet"))
    assert parts and 0 < sum(pl.read_parquet(p).height for p in parts) < len(names)


@pytest.mark.slow
def test_an_actor_that_crashes_while_starting_ends_the_run_with_an_error(
    local_ray: Path, dive: Path, engines: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not restarted forever while the run waits: after MAX_RESTARTS restarts the run gets one error."""
    from fathombatch.errors import EngineError

    monkeypatch.setattr(ray_runner, "ScoreActor", crashing_at_start_actor())
    monkeypatch.setattr(ray_runner, "MAX_RESTARTS", 1)
    with pytest.raises(EngineError, match="a Ray worker failed"):
        score_folder(ScoreConfig(root=dive / "images", engine=engines["onnx"], out=tmp_path / "ray.parquet",
                                 decoder="pil", batch_size=8, ray=RayOptions(workers=1)))


@pytest.mark.slow
def test_a_fathombatch_error_inside_an_actor_reaches_the_caller_as_it_was_raised(
    local_ray: Path, dive: Path, engines: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its class (so the command's exit code) and its message, not an EngineError around Ray's traceback."""
    from fathombatch.errors import UsageError

    monkeypatch.setattr(ray_runner, "ScoreActor", refusing_actor())
    with pytest.raises(UsageError) as caught:
        score_folder(ScoreConfig(root=dive / "images", engine=engines["onnx"], out=tmp_path / "ray.parquet",
                                 decoder="pil", batch_size=8, ray=RayOptions(workers=1)))
    assert str(caught.value) == "this worker cannot decode these files: install the 'dali' extra on every node"


@pytest.mark.slow
def test_a_ray_instance_the_run_started_is_shut_down_when_it_ends(dive: Path, engines: dict, tmp_path: Path) -> None:
    assert not ray.is_initialized()
    summary = score_folder(ScoreConfig(root=dive / "images", engine=engines["onnx"], out=tmp_path / "ray.parquet",
                                       decoder="pil", batch_size=8, ray=RayOptions(workers=2, num_cpus=2)))
    assert summary.files == summary.ok > 0
    assert not ray.is_initialized()


def test_without_ray_installed_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from fathombatch.errors import MissingDependencyError
    from fathombatch.scoring.runners.ray import init_ray

    real_import = builtins.__import__

    def no_ray(name: str, *args: object, **kwargs: object) -> object:
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    monkeypatch.delitem(__import__("sys").modules, "ray", raising=False)
    with pytest.raises(MissingDependencyError, match=r"pip install 'fathombatch\[ray\]'"):
        init_ray(RayOptions())


def test_an_unreachable_cluster_address_is_refused_in_seconds_not_retried_for_minutes() -> None:
    import socket

    from fathombatch.errors import UsageError
    from fathombatch.scoring.runners.ray import init_ray

    with socket.socket() as listener:  # a port that is certainly closed: bound here, never listened on
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
            with pytest.raises(UsageError, match=f"cannot reach the Ray cluster at '{address}'"):
                init_ray(RayOptions(address=address))
    assert not ray.is_initialized()


def never_open(*args: object, **kwargs: object) -> None:
    raise AssertionError("the driver opened the engine")


@pytest.mark.slow
def test_the_driver_reads_the_manifest_only(local_ray: Path, dive: Path, engines: dict, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The actors (other processes) open the engine; opening it in the driver too would fail this run."""
    import fathombatch.backends as backends
    import fathombatch.scoring.folder as folder

    monkeypatch.setattr(backends, "open_engine", never_open)
    monkeypatch.setattr(folder, "open_engine", never_open)
    summary = score_folder(ScoreConfig(root=dive / "images", engine=engines["onnx"], out=tmp_path / "ray.parquet",
                                       decoder="pil", batch_size=8, ray=RayOptions(workers=2)))
    assert summary.files == summary.ok == pl.read_parquet(tmp_path / "ray.parquet").height > 0


def test_a_ray_plan_carries_the_actors_device_precision_and_threads(engines: dict, dive: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    import fathombatch.scoring.folder as folder
    from fathombatch.scoring.folder import prepare
    from fathombatch.scoring.plan import UnopenedEngine

    monkeypatch.setattr(folder, "open_engine", never_open)
    cfg = ScoreConfig(root=dive / "images", engine=engines["pt"], out=tmp_path / "s.parquet", decoder="pil",
                      torch_precision="bf16", ray=RayOptions(gpus_per_worker=1, cpus_per_worker=3))
    plan, engine, runner = prepare(cfg)
    assert (plan.device, plan.precision, plan.threads, plan.decode_threads) == (0, "bf16", 3, 3)
    assert isinstance(engine, UnopenedEngine) and isinstance(runner, ray_runner.RayRunner)
    assert pickle.loads(pickle.dumps(plan)) == plan
    cpu_plan, _, _ = prepare(dataclasses.replace(cfg, ray=RayOptions(), threads=2))
    assert (cpu_plan.device, cpu_plan.threads) == (None, 2)


@pytest.mark.parametrize(
    ("suffix", "device", "gpus", "expected"),
    [(".pt", "auto", 1, 0), (".pt", "auto", 0, None), (".pt", "cpu", 1, None), (".plan", "auto", 0.5, 0),
     (".onnx", "auto", 1, None), (".xml", "auto", 0, None), (".pt", "cuda", 0, "no GPU is reserved"),
     (".plan", "auto", 0, "no GPU is reserved"), (".plan", "cpu", 1, "only on an NVIDIA GPU"),
     (".onnx", "cuda", 1, "run on the CPU")],
)
def test_ray_device_follows_the_gpu_reservation_not_the_driver(suffix: str, device: str, gpus: float,
                                                                expected: object) -> None:
    from fathombatch.errors import UsageError

    if isinstance(expected, str):
        with pytest.raises(UsageError, match=expected):
            ray_runner.ray_device(Path("e" + suffix), device, gpus)
    else:
        assert ray_runner.ray_device(Path("e" + suffix), device, gpus) == expected


def test_the_actor_opens_engine_and_decoder_with_the_plans_device_and_precision(
    dive: Path, engines: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a CPU can show of "a GPU reservation runs on that GPU": the actor hands the plan's device and precision to
    the engine and the decoder it opens (Ray makes the reserved GPU the actor's device 0)."""
    import fathombatch.backends as backends
    import fathombatch.decode as decode
    from fathombatch.scoring import build_plan

    real_open, real_decoder, seen = backends.open_engine, decode.create_decoder, {}

    def recording_open(path: Path, **kwargs: object):  # type: ignore[no-untyped-def]
        seen["engine"] = kwargs
        return real_open(path, threads=1)  # the CPU stands in for GPU 0

    def recording_decoder(name: str, spec: object, **kwargs: object):  # type: ignore[no-untyped-def]
        seen["decoder"] = {"name": name, **kwargs}
        return real_decoder(name, spec, batch_size=4, threads=1)  # type: ignore[arg-type]

    monkeypatch.setattr(backends, "open_engine", recording_open)
    monkeypatch.setattr(decode, "create_decoder", recording_decoder)
    manifest = backends.read_manifest(engines["onnx"])
    cfg = ScoreConfig(root=dive / "images", engine=engines["onnx"], batch_size=4, threads=1, torch_precision="fp16")
    plan = build_plan(cfg, engines["onnx"], manifest, "pil", 0)
    actor = ray_runner.ScoreActor(plan)
    assert seen["engine"] == {"threads": 1, "device": 0, "precision": "fp16"}
    assert seen["decoder"] == {"name": "pil", "batch_size": 4, "threads": plan.decode_threads, "device": 0}
    names = sorted(p.name for p in (dive / "images").glob("*.jpg"))[:6]
    files, table = actor.score(names)  # two engine batches (4 + 2), returned as one table per call
    assert files == table.num_rows == 6 and sorted(table.column("path").to_pylist()) == names


def test_calls_are_whole_batches_and_threads_split_the_reserved_cpus(dive: Path, engines: dict) -> None:
    from fathombatch.backends import read_manifest
    from fathombatch.scoring import build_plan

    assert ray_runner.files_per_call(384, 32, 2) == 96  # 12 batches: two calls of 3 per actor
    assert ray_runner.files_per_call(10_000, 32, 2) == 32 * ray_runner.MAX_BATCHES_PER_CALL
    assert ray_runner.files_per_call(5, 32, 4) == 32
    plan = build_plan(ScoreConfig(root=dive, engine=engines["onnx"]), engines["onnx"], read_manifest(engines["onnx"]),
                      "pil", None)
    assert ray_runner.actor_threads(plan, RayOptions(cpus_per_worker=2.5)) == (2, 2)
    assert ray_runner.actor_threads(dataclasses.replace(plan, threads=4), RayOptions()) == (4, 4)
