"""Issue 17 item 4: hand-off to review tools — a FiftyOne dataset folder and COCO results."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from PIL import Image

from fathombatch.cli import cli
from fathombatch.errors import OutputError, UsageError
from fathombatch.exports import ExportTableConfig, export_table
from fathombatch.exports.writers import read_provenance
from fathombatch.taxonomy import fathomnet2023

TAX = fathomnet2023()


@pytest.fixture(scope="module")
def review_scores(dive: Path, engines: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven images in two dives (one a TIFF, two sharing a stem in one folder) and one unreadable file, scored."""
    from fathombatch.scoring import ScoreConfig, score_folder

    root = tmp_path_factory.mktemp("review") / "cruise"
    files = sorted((dive / "images").glob("*.jpg"))[:5]
    for i, f in enumerate(files):
        (root / f"d{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root / f"d{i % 2}" / f.name)
    Image.open(files[0]).save(root / "d0" / f"{files[0].stem}.png")  # same stem as d0's JPEG
    Image.open(files[1]).save(root / "d1" / "still.tif")
    (root / "d1" / "broken.jpg").write_bytes(b"not an image")
    out = root.parent / "scores.parquet"
    score_folder(ScoreConfig(root=root, engine=engines["onnx"], out=out))
    return out


def ok_rows(scores: Path) -> pl.DataFrame:
    return pl.read_parquet(scores).filter(pl.col("status") == "ok")


# ---------------------------------------------------------------- fiftyone


def test_fiftyone_dataset_follows_the_documented_format(review_scores: Path, tmp_path: Path) -> None:
    out = tmp_path / "review"
    result = export_table(ExportTableConfig(scores=review_scores, out=out, format="fiftyone", threshold=0.5))
    labels = json.loads((out / "labels.json").read_text())
    assert labels["classes"] == list(TAX.names) and labels["fathombatch"]["export"] == "fiftyone dataset"
    table = ok_rows(review_scores)
    # FiftyOne's importer keys each file of data/ by its path there without the extension: every key one file.
    media = {}
    for folder, _, names in os.walk(out / "data"):
        for name in names:
            rel = Path(folder, name).relative_to(out / "data").as_posix()
            media.setdefault(os.path.splitext(rel)[0], []).append(Path(folder, name))
    assert set(media) == set(labels["labels"]) and all(len(v) == 1 for v in media.values())
    assert result.rows == table.height == len(labels["labels"]) == 7
    root = review_scores.parent / "cruise"
    for path in table["path"]:
        key = os.path.splitext(path)[0] if path != "d0/" + Path(path).stem + ".png" else path
        assert media[key][0].is_symlink() and media[key][0].samefile(root / path)
    assert "d1/broken" not in labels["labels"]
    assert any("1 file(s) could not be read" in w for w in result.warnings)
    # The labels: the classes at or above the threshold, most probable first, with their probabilities.
    for row in table.iter_rows(named=True):
        key = os.path.splitext(row["path"])[0] if not row["path"].endswith(".png") else row["path"]
        got = labels["labels"][key]
        want = sorted(((row[n], i) for i, n in zip(TAX.ids, TAX.names, strict=True) if row[n] >= 0.5),
                      key=lambda t: (-t[0], t[1]))
        assert [(c["confidence"], c["attributes"]["category_id"]) for c in got] == want
        assert all(set(c) == {"label", "confidence", "attributes"} and c["attributes"]["threshold"] == 0.5
                   and c["label"] == TAX.names[TAX.ids.index(c["attributes"]["category_id"])] for c in got)


def test_fiftyone_reexport_replaces_its_links_and_keeps_foreign_files(review_scores: Path, tmp_path: Path) -> None:
    out = tmp_path / "review"
    export_table(ExportTableConfig(scores=review_scores, out=out, format="fiftyone", threshold=0.5))
    os.symlink("/nowhere", out / "data" / "stale.jpg")
    export_table(ExportTableConfig(scores=review_scores, out=out, format="fiftyone", threshold=0.5))
    assert not os.path.lexists(out / "data" / "stale.jpg") and (out / "data" / "d0").is_dir()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging folder left behind
    (out / "data" / "mine.txt").write_text("notes")
    with pytest.raises(OutputError, match="not a link"):
        export_table(ExportTableConfig(scores=review_scores, out=out, format="fiftyone"))
    assert (out / "data" / "mine.txt").read_text() == "notes"


def test_fiftyone_refuses_a_dataset_inside_the_scored_folder(review_scores: Path, tmp_path: Path) -> None:
    root = review_scores.parent / "cruise"
    with pytest.raises(UsageError, match="inside the scored folder"):
        export_table(ExportTableConfig(scores=review_scores, out=root / "review", format="fiftyone"))
    assert not (root / "review").exists()
    with pytest.raises(UsageError, match="is not there"):
        export_table(ExportTableConfig(scores=review_scores, out=tmp_path / "r", format="fiftyone",
                                       images_root=tmp_path / "moved"))


def test_fiftyone_imports_the_dataset(review_scores: Path, tmp_path: Path) -> None:
    """FiftyOne's own importer reads the folder (without its database, which needs a MongoDB server)."""
    importers = pytest.importorskip(
        "fiftyone.utils.data.importers",
        reason="fiftyone is not installed: not a project dependency (it needs MongoDB; docs/exports.md)")
    out = tmp_path / "review"
    export_table(ExportTableConfig(scores=review_scores, out=out, format="fiftyone", threshold=0.02))
    importer = importers.FiftyOneImageClassificationDatasetImporter(dataset_dir=str(out))
    with importer:
        samples = list(importer)
    assert len(samples) == 7
    for image_path, _, label in samples:
        assert Path(image_path).is_symlink() and all(c.confidence >= 0.02 for c in label.classifications)


# ---------------------------------------------------------------- coco-results


def coco_truth(scores: Path, dest: Path) -> dict:
    """COCO ground truth naming the scored images as other tools do: some by path, some by file name with another
    extension (``x.png`` for the scored ``x.jpg``), one scored image left out, one unscored image added."""
    table = ok_rows(scores).sort("path")
    images, annotations = [], []
    for i, (path, image_id) in enumerate(zip(table["path"], table["image_id"], strict=True)):
        if i == 0:
            continue  # a scored image the ground truth lacks
        shared = (table["image_id"] == image_id).sum() > 1
        name = path if shared or i % 2 else f"{image_id}.png"
        images.append({"id": 100 + i, "file_name": name, "width": 160, "height": 120})
        annotations.append({"id": i, "image_id": 100 + i, "category_id": 160, "bbox": [1, 1, 20, 20],
                            "area": 400, "iscrowd": 0})
    images.append({"id": 999, "file_name": "never_scored.png", "width": 160, "height": 120})
    data = {"images": images, "annotations": annotations, "categories": TAX.to_records()}
    dest.write_text(json.dumps(data))
    return data


def test_coco_results_line_up_with_the_coco_file_and_pycocotools(review_scores: Path, tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data = coco_truth(review_scores, tmp_path / "truth.json")
    out = tmp_path / "preds.json"
    result = export_table(ExportTableConfig(scores=review_scores, out=out, format="coco-results",
                                            coco=tmp_path / "truth.json"))
    preds = json.loads(out.read_text())
    table = ok_rows(review_scores).sort("path")
    by_name = {img["file_name"]: img["id"] for img in data["images"]}
    want = []
    for i, row in enumerate(table.iter_rows(named=True)):
        if i == 0:
            continue
        coco_id = by_name.get(row["path"], by_name.get(f"{row['image_id']}.png"))
        for cid in row["top_categories"]:
            want.append((coco_id, cid, round(row[TAX.names[TAX.ids.index(cid)]], 6),
                         [0, 0, row["width"], row["height"]]))
    got = [(p["image_id"], p["category_id"], p["score"], p["bbox"]) for p in preds]
    assert got == want and result.rows == len(preds) == 6 * 20
    assert result.warnings == ["1 scored image(s) are not in " + str(tmp_path / "truth.json")
                               + " (by path or file stem); they are left out of the results, since pycocotools "
                               "refuses results for images its ground truth lacks"]
    assert read_provenance(out)["export"] == "coco results"
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(tmp_path / "truth.json"))
        loaded = truth.loadRes(str(out))
        evaluation = COCOeval(truth, loaded, "bbox")
        evaluation.evaluate()
    assert len(loaded.anns) == len(preds) and set(loaded.getImgIds()) >= {p["image_id"] for p in preds}


def test_coco_results_without_a_coco_file_use_the_table_ids(review_scores: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.json"
    result = export_table(ExportTableConfig(scores=review_scores, out=out, format="coco-results", threshold=0.3))
    preds = json.loads(out.read_text())
    table = ok_rows(review_scores)
    assert {p["image_id"] for p in preds} <= set(table["image_id"]) and "broken" not in {p["image_id"] for p in preds}
    expected = sum(int((np.round(np.array([row[TAX.names[TAX.ids.index(c)]] for c in row["top_categories"]]), 6)
                        >= 0.3).sum()) for row in table.iter_rows(named=True))
    assert len(preds) == result.rows == expected and all(p["score"] >= 0.3 for p in preds)
    assert result.threshold_source == "global"


def test_coco_results_cli_refuses_a_coco_file_naming_no_scored_image(review_scores: Path, tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "elsewhere.jpg"}]}))
    result = CliRunner().invoke(cli, ["export-table", str(review_scores), "--format", "coco-results", "--out",
                                      str(tmp_path / "p.json"), "--coco", str(tmp_path / "other.json")])
    assert result.exit_code != 0 and result.stderr.startswith("Error: none of the 1 ids")
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "p.json").exists()
    result = CliRunner().invoke(cli, ["export-table", str(review_scores), "--format", "coco-results", "--out",
                                      str(tmp_path / "p.csv")])
    assert result.exit_code != 0 and "must be one of .json" in result.stderr
