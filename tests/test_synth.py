from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from fathombatch.errors import UsageError
from fathombatch.labels import read_labels
from fathombatch.synth import REAL_SIZES, SynthConfig, appearance, synthesize

from .conftest import data_file


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_dive_different_seed_different_dive(tmp_path: Path) -> None:
    a = synthesize(SynthConfig(out=tmp_path / "a", images=6, seed=5, size=(96, 64)))
    b = synthesize(SynthConfig(out=tmp_path / "b", images=6, seed=5, size=(96, 64)))
    c = synthesize(SynthConfig(out=tmp_path / "c", images=6, seed=6, size=(96, 64)))
    assert digest(a.out) == digest(b.out)
    assert digest(a.out) != digest(c.out)


def test_outputs_and_formats(dive: Path) -> None:
    images = sorted((dive / "images").iterdir())
    assert len(images) == 24 and all(p.suffix == ".jpg" for p in images)
    with Image.open(images[0]) as im:
        assert im.format == "JPEG" and im.size == (160, 120)
    osd = pl.read_csv(dive / "osd.csv", schema_overrides={"id": pl.String})
    assert osd.columns == ["id", "osd"] and osd["osd"].sum() == 6  # 25 % of 24
    coco = json.loads((dive / "annotations.json").read_text())
    assert len(coco["categories"]) == 290 and {"supercategory", "name", "id"} <= set(coco["categories"][0])
    assert all(isinstance(a["category_id"], float) for a in coco["annotations"])  # like FathomNet's files
    assert all(len(a["bbox"]) == 4 for a in coco["annotations"])
    assert (dive / "train.csv").read_text().splitlines()[1].split(",", 1)[1].startswith(("[", '"['))


def test_label_sets_come_from_real_ones_and_deep_images_hold_unseen_categories(dive: Path) -> None:
    real = read_labels(data_file("train.csv"))
    real_sets = {tuple(c) for c in real.frame["categories"].to_list()}
    seen = {c for s in real_sets for c in s}
    labels = read_labels(dive / "train.csv").frame
    osd = dict(pl.read_csv(dive / "osd.csv", schema_overrides={"id": pl.String}).iter_rows())
    for image_id, cats in labels.select("image_id", "categories").iter_rows():
        if osd[image_id] == 0:
            assert tuple(cats) in real_sets
        else:
            assert set(cats) - seen, f"deep image {image_id} has only seen categories {cats}"


def test_real_size_mix_and_png(tmp_path: Path) -> None:
    out = synthesize(SynthConfig(out=tmp_path / "p", images=12, seed=1, format="png")).out
    sizes = set()
    for p in (out / "images").iterdir():
        with Image.open(p) as im:
            assert im.format == "PNG"
            sizes.add(im.size)
    assert sizes <= {(w, h) for w, h, _ in REAL_SIZES} and len(sizes) >= 2


def test_boxes_fit_inside_images(dive: Path) -> None:
    coco = json.loads((dive / "annotations.json").read_text())
    size = {i["id"]: (i["width"], i["height"]) for i in coco["images"]}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        width, height = size[ann["image_id"]]
        assert x >= 0 and y >= 0 and x + w <= width and y + h <= height


def test_appearance_depends_on_category_only() -> None:
    assert appearance(160) == appearance(160)
    looks = {appearance(c) for c in range(1, 291)}
    assert len(looks) == 290


def test_object_colours_show_in_the_pixels(tmp_path: Path) -> None:
    out = synthesize(SynthConfig(out=tmp_path / "s", images=4, seed=2, size=(320, 240), box_scale=3)).out
    coco = json.loads((out / "annotations.json").read_text())
    img = coco["images"][0]
    ann = next(a for a in coco["annotations"] if a["image_id"] == img["id"])
    pixels = np.asarray(Image.open(out / "images" / img["file_name"]), dtype=np.float32)
    x, y, w, h = (int(v) for v in ann["bbox"])
    inside = pixels[y + h // 2, x + w // 2]
    background = pixels[2, 2]
    assert np.abs(inside - background).sum() > 30  # the object is visible against the murky water


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"images": 0}, "^images must be at least 1, got 0$"),
     ({"deep_fraction": 1.5}, "^deep_fraction must be between 0 and 1, got 1.5$"),
     ({"size": (4, 4)}, "^size must be at least 8x8 pixels, got 4x4$")],
)
def test_bad_parameters(tmp_path: Path, kwargs: dict, message: str) -> None:
    cfg = {"out": tmp_path / "x", "images": 2, **kwargs}
    with pytest.raises(UsageError, match=message):
        synthesize(SynthConfig(**cfg))


def test_refuses_a_non_empty_output(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an empty folder"):
        synthesize(SynthConfig(out=tmp_path / "x", images=2))
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
