from __future__ import annotations

import json
import logging
import shlex
import subprocess
from pathlib import Path

import polars as pl
import pytest
import torch
from click.testing import CliRunner

from fathombatch import metrics as fb_metrics
from fathombatch.cli import cli
from fathombatch.errors import TrainingError, UsageError
from fathombatch.labels import read_labels
from fathombatch.models import create_model, list_models
from fathombatch.models.checks import floor_warning, labelled_image_files
from fathombatch.models.train import TrainConfig, train


def test_run_folder_holds_config_metrics_and_checkpoints(run_dir: Path) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["arch"] == "resnet18" and config["n_train"] + config["n_val"] == 24
    metrics = pl.read_parquet(run_dir / "metrics.parquet")
    assert metrics.columns[:5] == ["epoch", "train_loss", "val_loss", "val_map20", "val_prior_floor"]
    assert metrics.height == 1 and 0.0 <= metrics["val_map20"][0] <= 1.0
    blob = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert blob["epoch"] == 1 and blob["arch"] == "resnet18" and len(blob["class_counts"]) == 290
    assert "optimizer" in blob and (run_dir / "checkpoints" / "best.pt").is_file()
    split = json.loads((run_dir / "split.json").read_text())
    assert len(split["val_image_ids"]) == config["n_val"]


def test_training_reduces_the_loss(dive: Path, tmp_path: Path) -> None:
    result = train(TrainConfig(images=dive / "images", labels=dive / "annotations.json", out=tmp_path / "r",
                               arch="mlp", epochs=3, img_size=16, batch_size=8, lr=1e-3))
    losses = [m.train_loss for m in result.history]
    assert losses[-1] < losses[0]
    assert result.n_train + result.n_val == 24


def test_missing_images_are_listed_with_the_command_that_drops_them(
    dive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text((dive / "train.csv").read_text() + "ghost-1,[1.0]\nghost-2,[2.0]\n")
    with pytest.raises(TrainingError, match=r"2 of 26 labelled images .* no file .*ghost-1, ghost-2; to train on the "
                       r"24 that are present, .* `find .* fathombatch curate subset .*`") as failure:
        train(TrainConfig(images=dive / "images", labels=labels, out=tmp_path / "r", arch="mlp", epochs=1, img_size=16))
    # The suggested command works as written: run it, then train on the file it wrote.
    command = str(failure.value).split("`")[1]
    listing, subset = command.split(" && ")
    monkeypatch.chdir(tmp_path)
    subprocess.run(listing, shell=True, check=True)
    argv = shlex.split(subset)
    assert argv[:3] == ["fathombatch", "curate", "subset"]
    done = CliRunner().invoke(cli, argv[1:])
    assert done.exit_code == 0, done.stderr
    present = Path(argv[argv.index("--out") + 1])
    assert present == tmp_path / "labels-present.csv"
    result = train(TrainConfig(images=dive / "images", labels=present, out=tmp_path / "r", arch="mlp", epochs=1,
                               img_size=16))
    assert result.n_train + result.n_val == 24


def test_label_ids_with_an_image_extension_train_and_the_suggested_subset_command_works(
    dive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Kaggle CSVs written by other tools name images 'abc.jpg'; evaluate matches them, and so must train."""
    rows = (dive / "train.csv").read_text().splitlines()
    labels = tmp_path / "ext.csv"
    body = [f"{image_id}.jpg,{rest}" for image_id, rest in (r.split(",", 1) for r in rows[1:])]
    labels.write_text("\n".join([rows[0], *body, "ghost-1.jpg,[1.0]"]) + "\n")
    with pytest.raises(TrainingError, match=r"1 of 25 labelled images .*: ghost-1\.jpg; to train on the 24 that are "
                       r"present") as failure:
        train(TrainConfig(images=dive / "images", labels=labels, out=tmp_path / "r", arch="mlp", epochs=1, img_size=16))
    listing, subset = str(failure.value).split("`")[1].split(" && ")
    monkeypatch.chdir(tmp_path)
    subprocess.run(listing, shell=True, check=True)
    done = CliRunner().invoke(cli, shlex.split(subset)[1:])
    assert done.exit_code == 0, done.stderr
    present = tmp_path / "ext-present.csv"
    assert pl.read_csv(present)["id"].to_list() == [b.split(",")[0] for b in body]  # ids kept as the file wrote them
    with caplog.at_level(logging.WARNING):
        result = train(TrainConfig(images=dive / "images", labels=present, out=tmp_path / "r", arch="mlp", epochs=1,
                                   img_size=16, batch_size=4))
    assert result.n_train + result.n_val == 24
    first = body[0].split(",")[0]
    expected = (f"24 image id(s) in {present} carry an image extension (e.g. {first!r}); they were matched to the "
                "image files whose stem is the id without it")
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [expected]


def test_images_without_a_label_row_are_counted_in_a_warning(
    dive: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    labels = tmp_path / "half.csv"
    rows = (dive / "train.csv").read_text().splitlines()
    labels.write_text("\n".join(rows[:13]) + "\n")  # header + 12 of the 24 images
    with caplog.at_level(logging.WARNING):
        result = train(TrainConfig(images=dive / "images", labels=labels, out=tmp_path / "r", arch="mlp", epochs=1,
                                   img_size=16, batch_size=4))
    assert result.n_train + result.n_val == 12
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    expected = f"12 of the 24 images under {dive / 'images'} have no label row in {labels} and are left out of training"
    assert warnings == [expected]


def test_labelled_image_files_gives_each_label_rows_file_and_counts_the_rest(
    dive: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    labels = tmp_path / "half.csv"
    rows = (dive / "train.csv").read_text().splitlines()
    labels.write_text("\n".join([rows[0], *reversed(rows[1:9])]) + "\n")  # 8 of the 24, in another order
    parsed = read_labels(labels)
    with caplog.at_level(logging.WARNING):
        paths = labelled_image_files(parsed, dive / "images")
    assert [p.stem for p in paths] == parsed.image_ids and all(p.is_file() for p in paths)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"16 of the 24 images under {dive / 'images'} have no label row in {labels} and are left out of training"]


def test_images_whose_label_set_is_empty_are_counted_in_a_warning_not_refused(
    dive: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    coco = json.loads((dive / "annotations.json").read_text())
    lost = {img["id"] for img in coco["images"][::2]}  # half the images lost their annotations
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] not in lost]
    labels = tmp_path / "half-empty.json"
    labels.write_text(json.dumps(coco))
    with caplog.at_level(logging.WARNING):
        result = train(TrainConfig(images=dive / "images", labels=labels, out=tmp_path / "r", arch="mlp", epochs=1,
                                   img_size=16, batch_size=4))
    assert result.n_train + result.n_val == 24  # an empty frame can be legitimate background: trained on, not refused
    expected = (f"{len(lost)} of 24 labelled images in {labels} have an empty category list; they train as "
                "'nothing present' and score AP 0 when held out")
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [expected]


def test_fully_labelled_folder_trains_without_a_warning(dive: Path, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        train(TrainConfig(images=dive / "images", labels=dive / "annotations.json", out=tmp_path / "r", arch="mlp",
                          epochs=1, img_size=16, batch_size=4))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_model_at_or_below_the_prior_floor_is_flagged_in_the_summary_and_the_run(dive: Path, tmp_path: Path) -> None:
    # Every image has the same one category: ranking by frequency is perfect (floor 1.0), so no model can beat it.
    labels = tmp_path / "one.csv"
    ids = [row.split(",")[0] for row in (dive / "train.csv").read_text().splitlines()[1:]]
    labels.write_text("id,categories\n" + "".join(f"{i},[7.0]\n" for i in ids))
    run = tmp_path / "r"
    result = CliRunner().invoke(cli, ["train", "--images", str(dive / "images"), "--labels", str(labels), "--out",
                                      str(run), "--arch", "mlp", "--epochs", "1", "--img-size", "16", "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("Best held-out MAP@20 ")
    summary = result.stderr.splitlines()
    assert summary[-1].startswith("warning: MAP@20 ") and summary[-1].endswith(
        " is at or below the frequency-prior floor 1.0000: the model ranks categories no better than their training "
        "frequencies alone")
    outcome = json.loads((run / "config.json").read_text())["outcome"]
    assert outcome["at_or_below_prior_floor"] is True and outcome["val_prior_floor"] == 1.0
    assert outcome["best_epoch"] == 1 and outcome["best_val_map20"] <= 1.0


def test_floor_verdict_is_strict_above_and_inclusive_at_the_floor(run_dir: Path) -> None:
    assert floor_warning(0.5001, 0.5) is None
    assert floor_warning(0.5, 0.5) is not None and floor_warning(0.2, 0.5) is not None
    # One wording for train and evaluate: both use the same function.
    assert floor_warning is fb_metrics.floor_warning
    assert floor_warning(0.25, 0.5, 10) == (
        "MAP@10 0.2500 is at or below the frequency-prior floor 0.5000: the model ranks categories no better than "
        "their training frequencies alone")
    config = json.loads((run_dir / "config.json").read_text())
    metrics = pl.read_parquet(run_dir / "metrics.parquet")
    assert config["outcome"] == {
        "best_epoch": 1,
        "best_val_map20": metrics["val_map20"][0],
        "val_prior_floor": metrics["val_prior_floor"][0],
        "at_or_below_prior_floor": metrics["val_map20"][0] <= metrics["val_prior_floor"][0],
    }


def test_unknown_architecture_and_existing_run(dive: Path, run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown architecture 'vgg99'; choose one of"):
        train(TrainConfig(images=dive / "images", labels=dive / "train.csv", out=tmp_path / "r", arch="vgg99"))
    with pytest.raises(UsageError, match="already exists"):
        train(TrainConfig(images=dive / "images", labels=dive / "train.csv", out=run_dir))


@pytest.mark.parametrize("name", list_models())
def test_every_architecture_builds_with_features(name: str) -> None:
    model = create_model(name, 7, img_size=32).eval()
    with torch.inference_mode():
        logits, features = model.forward_with_features(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 7) and features.shape == (2, model.feature_dim)


def test_offline_pretrained_efficientnet_lite0_differs_from_random() -> None:
    a = create_model("efficientnet_lite0", 3, pretrained=True)
    b = create_model("efficientnet_lite0", 3, pretrained=False)
    wa = next(a.backbone.parameters())
    wb = next(b.backbone.parameters())
    assert not torch.equal(wa, wb)


def test_runs_that_cannot_train_say_why_and_leave_no_half_made_folder(dive: Path, tmp_path: Path) -> None:

    base = {"images": dive / "images", "arch": "resnet18", "epochs": 1, "img_size": 32, "seed": 0}
    with pytest.raises(UsageError, match="batch_size must be at least 2, got 1: batch normalisation"):
        train(TrainConfig(labels=dive / "train.csv", out=tmp_path / "a", batch_size=1, **base))
    assert not (tmp_path / "a").exists()

    rows = (dive / "train.csv").read_text().splitlines()
    two = tmp_path / "two.csv"
    two.write_text("\n".join(rows[:3]) + "\n")  # header + 2 images: one goes to the held-out split
    with pytest.raises(TrainingError, match="1 of its 2 images are left for training after the held-out split"):
        train(TrainConfig(labels=two, out=tmp_path / "b", batch_size=8, **base))
    assert not (tmp_path / "b").exists()  # nothing blocks the next attempt

    empty = tmp_path / "empty.csv"
    empty.write_text("id,categories\n" + "".join(f"{r.split(',')[0]},[]\n" for r in rows[1:]))
    with pytest.raises(TrainingError, match="every image has an empty category list"):
        train(TrainConfig(labels=empty, out=tmp_path / "c", batch_size=8, **base))

    # Ctrl-C in the first epoch, after the run files were written but before any checkpoint: nothing is left behind.
    import fathombatch.models.train as train_module

    def interrupted(path: Path, payload: dict) -> None:
        assert (tmp_path / "d" / "config.json").is_file()  # the folder was made
        raise KeyboardInterrupt

    real = train_module.save_checkpoint
    train_module.save_checkpoint = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            train(TrainConfig(labels=dive / "train.csv", out=tmp_path / "d", batch_size=8, **base))
    finally:
        train_module.save_checkpoint = real
    assert not (tmp_path / "d").exists()
    train(TrainConfig(labels=dive / "train.csv", out=tmp_path / "d", batch_size=8, **base))  # the same command works
    assert (tmp_path / "d" / "checkpoints" / "last.pt").is_file()


def test_a_run_trained_with_relative_paths_is_exported_from_elsewhere_with_its_training_images(
    dive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    (work / "dive").symlink_to(dive)
    monkeypatch.chdir(work)
    result = CliRunner().invoke(cli, ["train", "--images", "dive/images", "--labels", "dive/train.csv", "--out", "run",
                                      "--arch", "mlp", "--epochs", "1", "--img-size", "16", "--quiet"])
    assert result.exit_code == 0, result.output
    saved = json.loads((work / "run" / "config.json").read_text())["config"]
    assert Path(saved["labels"]).is_absolute() and Path(saved["images"]).is_absolute()

    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(cli, ["export", str(work / "run"), "--format", "pt", "--out", "e.pt", "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads((elsewhere / "e.pt.json").read_text())["provenance"]["training_images"]
    held = set(record["heldout_image_ids"])
    assert record["train_image_ids"] and held and not held & set(record["train_image_ids"])


def test_the_subset_command_for_a_shipped_label_file_writes_outside_the_package(dive: Path, tmp_path: Path) -> None:
    from fathombatch.packaged import resolve_data_path

    with pytest.raises(TrainingError, match="curate subset") as failure:
        train(TrainConfig(images=dive / "images", labels=resolve_data_path("fathomnet2023:train.csv"),
                          out=tmp_path / "r", arch="mlp", epochs=1, img_size=16))
    argv = shlex.split(str(failure.value).split("`")[1].split(" && ")[1])
    assert argv[argv.index("--out") + 1] == "train-present.csv"
