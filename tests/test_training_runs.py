"""Issue 3: resuming interrupted runs, data-parallel training under torchrun, out-of-sample statistics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

from fathombatch.cli import cli
from fathombatch.errors import TrainingError, UsageError
from fathombatch.models.train import TrainConfig, resume, train


def tiny(dive: Path, out: Path, **kw: object) -> TrainConfig:
    values = {"images": dive / "images", "labels": dive / "train.csv", "out": out, "arch": "mlp", "epochs": 3,
              "img_size": 16, "batch_size": 8, "schedule": "cosine", "warmup_epochs": 0.5, "augment": "underwater",
              "threads": 1, **kw}
    return TrainConfig(**values)  # type: ignore[arg-type]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_resume_continues_exactly_where_it_stopped(dive: Path, tmp_path: Path) -> None:
    full = train(tiny(dive, tmp_path / "full"))

    def crash_after_first_epoch(m: object) -> None:
        if m.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny(dive, tmp_path / "cut"), on_epoch=crash_after_first_epoch)
    assert torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    resumed = resume(tmp_path / "cut")
    assert [m.epoch for m in resumed.history] == [1, 2, 3]
    for key, value in weights(tmp_path / "full").items():
        torch.testing.assert_close(weights(tmp_path / "cut")[key], value, rtol=0, atol=1e-6)
    assert [round(m.val_map20, 6) for m in resumed.history] == [round(m.val_map20, 6) for m in full.history]
    assert pl.read_parquet(tmp_path / "cut" / "metrics.parquet").height == 3


def test_resume_can_extend_and_refuses_incompatible_checkpoints(dive: Path, tmp_path: Path) -> None:
    run = tmp_path / "r"
    train(tiny(dive, run, epochs=1, schedule="constant", warmup_epochs=0))
    assert len(resume(run, epochs=2).history) == 2

    config = json.loads((run / "config.json").read_text())
    config["config"]["arch"] = "logreg"
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(TrainingError, match="incompatible with this run"):
        resume(run, epochs=3)

    with pytest.raises(UsageError, match="not a resumable training run"):
        resume(tmp_path)


def test_resume_refuses_changed_labels(dive: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text((dive / "train.csv").read_text())
    run = tmp_path / "r"
    train(tiny(dive, run, epochs=1, labels=labels))
    labels.write_text(labels.read_text().replace("[", "[1.0, ", 1))
    with pytest.raises(TrainingError, match="changed since run"):
        resume(run, epochs=2)


def test_cli_resume_accepts_only_epochs_and_threads(dive: Path, tmp_path: Path) -> None:
    run = tmp_path / "r"
    train(tiny(dive, run, epochs=1))
    result = CliRunner().invoke(cli, ["train", "--resume", str(run), "--lr", "0.1"])
    assert result.exit_code == 2 and result.stderr.strip() == (
        "Error: --lr cannot change when resuming; only --epochs and --threads can"
    )
    result = CliRunner().invoke(cli, ["train", "--resume", str(run), "--epochs", "2", "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert "epoch   2" in result.stdout


@pytest.mark.slow
def test_torchrun_two_cpu_processes_keep_replicas_equal(dive: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "fathombatch", "train", "--images", str(dive / "images"), "--labels", str(dive / "train.csv"),
           "--out", str(run), "--arch", "resnet18", "--img-size", "16", "--epochs", "2", "--batch-size", "4",
           "--threads", "1", "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    replicas = json.loads((run / "replicas.json").read_text())
    assert replicas["world_size"] == 2 and replicas["epoch"] == 2
    digests = replicas["parameter_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    assert pl.read_parquet(run / "metrics.parquet").height == 2
    assert proc.stdout.count("Best held-out MAP@20") == 1  # only rank 0 reports


def test_osd_statistics_are_fitted_exported_and_used(run_dir: Path, engines: dict, dive: Path, tmp_path: Path) -> None:
    from fathombatch.backends import read_manifest
    from fathombatch.osd import create_osd, decode_array
    from fathombatch.report import EvalConfig, evaluate
    from fathombatch.scoring import ScoreConfig, score_folder

    stats = json.loads((run_dir / "osd_stats.json").read_text())
    bank = decode_array(stats["knn_bank"], "knn_bank")
    assert bank.shape[1] == 512 and stats["n_train"] == bank.shape[0]
    manifest = read_manifest(engines["onnx"])
    assert manifest.osd["method"] == "max-prob" and "knn_bank" in manifest.osd["stats"]

    knn = create_osd("knn", manifest.osd["stats"])
    near = bank[:3] * 2.0  # training features themselves (any scale): nearest distance 0
    far = -bank[:3]  # opposite directions: as far as cosine distance goes
    probs = np.full((3, 290), 0.5, dtype=np.float32)
    assert (knn(probs, near) < 0.5).all() and (knn(probs, far) > 0.98).all()

    out = tmp_path / "s.parquet"
    score_folder(ScoreConfig(root=dive / "images", engine=engines["onnx"], out=out, osd="knn"))
    table = pl.read_parquet(out)
    assert table["osd"].min() >= 0 and table["osd"].max() <= 1 and table["osd"].n_unique() > 1
    result = evaluate(EvalConfig(scores=out, truth=dive / "train.csv", osd_truth=dive / "osd.csv"))
    assert result.sauc is not None and -1 <= result.sauc <= 1
    meta_stats = json.loads(pl.read_parquet_metadata(out)["fathombatch"])["engine_manifest"]["osd"]["stats"]
    assert set(meta_stats) == {"sha256", "n_train"}  # the bank itself is not copied into every table


def test_report_plots_and_html(engines: dict, dive: Path, tmp_path: Path) -> None:
    from fathombatch.report import EvalConfig, evaluate
    from fathombatch.scoring import ScoreConfig, score_folder

    out = tmp_path / "s.parquet"
    score_folder(ScoreConfig(root=dive / "images", engine=engines["onnx"], out=out))
    report = tmp_path / "report"
    evaluate(EvalConfig(scores=out, truth=dive / "train.csv", osd_truth=dive / "osd.csv", report=report))
    html = (report / "report.html").read_text()
    for name in ("headline.png", "training_curves.png", "per_class_ap.png", "supercategories.png"):
        png = report / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name
        assert f'src="{name}"' in html
