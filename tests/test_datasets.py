from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fathombatch.errors import LabelFileError, UsageError
from fathombatch.labels import read_coco, read_kaggle_csv, read_labels

from .conftest import data_file


def test_real_train_csv_reads_with_the_documented_statistics() -> None:
    labels = read_labels(data_file("train.csv"))
    assert len(labels) == 5950
    y = labels.multi_hot()
    assert y.shape == (5950, 290)
    assert y.sum(axis=1).mean() == pytest.approx(1.51, abs=0.005)
    assert int(y.sum(axis=1).max()) == 10
    assert int((y.sum(axis=0) > 0).sum()) == 133
    assert int(y[:, 159].sum()) == 2643  # category 160, Strongylocentrotus fragilis
    first = labels.frame.row(3, named=True)
    assert first["image_id"] == "3bddedf6-4ff8-4e81-876a-564d2b03b364"
    assert first["categories"] == [1, 9, 11, 88]


def test_kaggle_csv_and_coco_json_of_a_dive_agree(dive: Path) -> None:
    kaggle = read_labels(dive / "train.csv")
    coco = read_labels(dive / "annotations.json")
    assert kaggle.image_ids == coco.image_ids
    np.testing.assert_array_equal(kaggle.multi_hot(), coco.multi_hot())
    assert coco.frame["file_name"][0].endswith(".jpg")
    assert kaggle.frame["file_name"].null_count() == len(kaggle)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_kaggle_accepts_float_ids_space_separated_and_empty_lists(tmp_path: Path) -> None:
    path = write(tmp_path, "l.csv", 'id,categories\na,"[214.0, 1.0]"\nb,3 4\nc,[]\n')
    labels = read_kaggle_csv(path)
    assert labels.frame["categories"].to_list() == [[1, 214], [3, 4], []]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,categories\na,[1.0]\nb,[999.0]\n", r"l\.csv, line 3: unknown category id 999"),
        ("id,categories\na,[1.5]\n", r"line 2: category id 1\.5 is not a whole number"),
        ("id,categories\na,[x]\n", r"line 2: category id 'x' is not a number"),
        ("id,categories\na,[1.0]\n,[2.0]\n", r"line 3: missing id"),
        ("id,categories\na,[1.0],extra\n", r"line 2: expected 2 fields, found 3"),
        ("id,labels\na,[1.0]\n", r"line 1: header .* must contain 'id' and 'categories'"),
        ("id,categories\na,[1.0]\na,[2.0]\n", r"line 3: id 'a' already appeared on line 2"),
        ("id,categories\na,[1.0\n", r"line 2: unbalanced brackets"),
        ("", r"the file is empty"),
    ],
)
def test_kaggle_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "l.csv", text)
    with pytest.raises(LabelFileError, match=message):
        read_kaggle_csv(path)


def coco(images: list[dict], annotations: list[dict]) -> str:
    return json.dumps({"images": images, "annotations": annotations, "categories": []})


@pytest.mark.parametrize(
    ("images", "annotations", "message"),
    [
        ([{"id": 1, "file_name": "a.png"}], [{"image_id": 1, "category_id": 999.0}],
         r"annotations\[0\]: unknown category id 999"),
        ([{"id": 1, "file_name": "a.png"}], [{"image_id": 2, "category_id": 1}],
         r"annotations\[0\]: image_id 2 is not in 'images'"),
        ([{"id": 1, "file_name": "a.png"}], [{"image_id": 1}], r"annotations\[0\]: missing field\(s\) category_id"),
        ([{"id": 1}], [], r"images\[0\]: missing field\(s\) file_name"),
        ([{"id": 1, "file_name": "../../etc/passwd"}], [], r"images\[0\]: file_name .* outside the image folder"),
        ([{"id": 1, "file_name": "/etc/passwd"}], [], r"outside the image folder"),
        ([{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}], [],
         r"images\[1\]: image id 1 appears twice"),
        ([{"id": 1, "file_name": "x/a.png"}, {"id": 2, "file_name": "y/a.jpg"}], [], r"stem 'a'"),
    ],
)
def test_coco_errors_name_file_and_record(tmp_path: Path, images: list, annotations: list, message: str) -> None:
    path = write(tmp_path, "ann.json", coco(images, annotations))
    with pytest.raises(LabelFileError, match=message):
        read_coco(path)


def test_coco_reads_label_sets_and_images_without_annotations(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ann.json",
        coco(
            [{"id": 7, "file_name": "sub/a.png"}, {"id": 8, "file_name": "b.jpg"}],
            [{"image_id": 7, "category_id": 214.0}, {"image_id": 7, "category_id": 1},
             {"image_id": 7, "category_id": 1}],
        ),
    )
    labels = read_coco(path)
    assert labels.image_ids == ["a", "b"]
    assert labels.frame["categories"].to_list() == [[1, 214], []]
    assert labels.frame["file_name"].to_list() == ["sub/a.png", "b.jpg"]


def test_invalid_json_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path, "ann.json", '{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(LabelFileError, match=r"ann\.json, line 2"):
        read_coco(path)


def test_read_labels_checks_path_and_extension(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        read_labels(tmp_path / "nope.csv")
    path = write(tmp_path, "labels.txt", "x")
    with pytest.raises(UsageError, match="expected a Kaggle .csv or a COCO .json"):
        read_labels(path)


def test_shipped_labels_are_named_the_same_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fathombatch.packaged import resolve_data_path

    monkeypatch.chdir(tmp_path)
    labels = read_labels("fathomnet2023:train.csv")
    assert len(labels.frame) == 5950
    assert resolve_data_path(Path("fathomnet2023:train.csv")) == Path("fathomnet2023:train.csv")  # a Path is a path
    assert resolve_data_path("C:/labels.csv") == Path("C:/labels.csv")  # a drive letter is not a data set
    with pytest.raises(UsageError, match="category_key.csv, train.csv, train_boxes.csv"):
        resolve_data_path("fathomnet2023:sample_submission.csv")


def test_curate_stats_takes_a_shipped_label_file_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from fathombatch.cli import cli

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["curate", "stats", "fathomnet2023:train.csv", "--out", "stats"])
    assert result.exit_code == 0, result.output
    assert "5950 images" in result.output
    bad = CliRunner().invoke(cli, ["curate", "stats", "fathomnet2023:nope.csv", "--out", "stats2"])
    assert bad.exit_code == 2 and "not a shipped file" in bad.output
