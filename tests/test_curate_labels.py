"""curate stats / split / convert / validate / subset on synthetic dives."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from pycocotools.coco import COCO

from fathombatch.curate.convert import ConvertConfig, convert
from fathombatch.curate.split import SplitConfig, complete_coverage, split_labels
from fathombatch.curate.stats import StatsConfig, run_stats
from fathombatch.curate.subset import SubsetConfig, make_subset
from fathombatch.curate.validate import ValidateConfig, validate
from fathombatch.errors import LabelFileError, UsageError
from fathombatch.labels import read_labels
from fathombatch.synth import SynthConfig, synthesize
from fathombatch.taxonomy import fathomnet2023


def load_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def label_sets(path: Path) -> dict[str, list[int]]:
    labels = read_labels(path)
    return dict(zip(labels.image_ids, labels.frame["categories"].to_list(), strict=True))


@pytest.fixture(scope="module")
def dive60(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 tiny images: enough categories with 2+ images to make coverage meaningful."""
    out = tmp_path_factory.mktemp("dive60") / "dive"
    synthesize(SynthConfig(out=out, images=60, seed=1, size=(32, 32), deep_fraction=0.25, box_scale=0.1))
    return out


# ---------------------------------------------------------------- stats


@pytest.mark.parametrize("source", ["train.csv", "annotations.json"])
def test_stats_counts_match_the_labels(dive: Path, tmp_path: Path, source: str) -> None:
    result = run_stats(StatsConfig(labels=dive / source, out=tmp_path / "stats", top_pairs=10))
    labels = read_labels(dive / "train.csv")
    y = labels.multi_hot().astype(np.int64)
    tax = fathomnet2023()

    cats = pl.read_parquet(tmp_path / "stats" / "categories.parquet")
    got = dict(zip(cats["category_id"].to_list(), cats["images"].to_list(), strict=True))
    assert got == {cid: int(n) for cid, n in zip(tax.ids, y.sum(axis=0), strict=True)}
    assert cats["images"].to_list() == sorted(cats["images"].to_list(), reverse=True)

    sups = pl.read_parquet(tmp_path / "stats" / "supercategories.parquet")
    sup_of = np.array(tax.supercategories)
    for name, images in sups.select("supercategory", "images").iter_rows():
        assert images == int((y[:, sup_of == name].sum(axis=1) > 0).sum()), name

    card = pl.read_parquet(tmp_path / "stats" / "cardinality.parquet")
    assert dict(card.iter_rows()) == dict(zip(*np.unique(y.sum(axis=1), return_counts=True), strict=True))

    co = y.T @ y
    np.fill_diagonal(co, 0)
    pairs = pl.read_parquet(tmp_path / "stats" / "pairs.parquet")
    assert pairs["images"][0] == co.max()
    for a, b, n in pairs.select("a", "b", "images").iter_rows():
        assert co[tax.column_of[a], tax.column_of[b]] == n and a < b

    for png in ("supercategories.png", "top_categories.png", "cardinality.png"):
        with Image.open(tmp_path / "stats" / png) as im:
            assert im.format == "PNG" and im.size[0] > 300
    md = (tmp_path / "stats" / "stats.md").read_text()
    assert f"{len(labels)} images" in md and "## Most common pairs" in md
    assert result.stats.images == len(labels)


# ---------------------------------------------------------------- split


def test_split_coco_keeps_every_category_with_two_images_on_both_sides(dive60: Path, tmp_path: Path) -> None:
    out = tmp_path / "split"
    result = split_labels(SplitConfig(labels=dive60 / "annotations.json", out=out, val_fraction=0.2, seed=0))
    train, val = load_coco(out / "train.json"), load_coco(out / "val.json")
    full = json.loads((dive60 / "annotations.json").read_text())

    train_files = {img["file_name"] for img in train.dataset["images"]}
    val_files = {img["file_name"] for img in val.dataset["images"]}
    assert not train_files & val_files
    assert train_files | val_files == {img["file_name"] for img in full["images"]}
    assert len(train.dataset["annotations"]) + len(val.dataset["annotations"]) == len(full["annotations"])
    assert len(train.dataset["categories"]) == 290
    # boxes travel with their images
    by_id = {a["id"]: a["bbox"] for a in full["annotations"]}
    assert all(by_id[a["id"]] == a["bbox"] for a in val.dataset["annotations"])

    counts = read_labels(dive60 / "annotations.json").class_counts()
    y_tr = read_labels(out / "train.json").class_counts()
    y_va = read_labels(out / "val.json").class_counts()
    assert np.all((y_tr > 0)[counts >= 2]) and np.all((y_va > 0)[counts >= 2])

    cov = pl.read_csv(out / "coverage.csv")
    missing = cov.filter(pl.col("status") != "both")
    singles = {fathomnet2023().ids[j] for j in np.flatnonzero(counts == 1)}
    assert set(missing["category_id"].to_list()) == singles
    assert set(missing["reason"].to_list()) == {"only 1 image: it can be on one side only"}
    assert result.missing.height == missing.height and "on both sides" in (out / "coverage.md").read_text()
    assert 0.1 < len(val_files) / len(full["images"]) < 0.35


def test_split_csv_is_deterministic_and_in_the_input_format(dive60: Path, tmp_path: Path) -> None:
    a = split_labels(SplitConfig(labels=dive60 / "train.csv", out=tmp_path / "a", seed=7))
    b = split_labels(SplitConfig(labels=dive60 / "train.csv", out=tmp_path / "b", seed=7))
    c = split_labels(SplitConfig(labels=dive60 / "train.csv", out=tmp_path / "c", seed=8))
    assert a.sides == b.sides and a.sides != c.sides
    assert (tmp_path / "a" / "train.csv").read_text() == (tmp_path / "b" / "train.csv").read_text()
    truth = label_sets(dive60 / "train.csv")
    sides = {**label_sets(tmp_path / "a" / "train.csv"), **label_sets(tmp_path / "a" / "val.csv")}
    assert sides == truth
    assert (tmp_path / "a" / "train.csv").read_text().startswith("id,categories\n")


def test_split_folds_hold_out_every_image_exactly_once(dive60: Path, tmp_path: Path) -> None:
    result = split_labels(SplitConfig(labels=dive60 / "train.csv", out=tmp_path / "f", folds=3, seed=0))
    all_ids = set(read_labels(dive60 / "train.csv").image_ids)
    held: list[str] = []
    for k in (1, 2, 3):
        tr = set(label_sets(tmp_path / "f" / f"fold-{k}" / "train.csv"))
        va = set(label_sets(tmp_path / "f" / f"fold-{k}" / "val.csv"))
        assert tr | va == all_ids and not tr & va
        held += va
    assert sorted(held) == sorted(all_ids)
    cov = pl.read_csv(tmp_path / "f" / "coverage.csv")
    assert sorted(cov["fold"].unique().to_list()) == [1, 2, 3]
    two = cov.filter((pl.col("images") == 2) & (pl.col("val") == 0))
    assert two.height == 0 or two["reason"].str.contains("for 3 folds").all()
    assert len(result.sides) == 3


def test_complete_coverage_moves_an_image_whose_other_label_is_a_singleton() -> None:
    # class 0 has 2 images, both in train; image 1 also holds class 1, which has a single image in all
    y = np.array([[1, 0], [1, 1], [0, 0], [0, 0]], dtype=np.uint8)
    tr, va = complete_coverage(y, np.array([0, 1, 2]), np.array([3]))
    assert y[tr, 0].sum() == 1 and y[va, 0].sum() == 1
    assert sorted([*tr, *va]) == [0, 1, 2, 3]


def test_split_refuses_a_bad_fraction_and_tiny_files(dive: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="val_fraction must be between 0 and 1"):
        split_labels(SplitConfig(labels=dive / "train.csv", out=tmp_path, val_fraction=1.5))
    one = tmp_path / "one.csv"
    one.write_text("id,categories\na,[1.0]\n")
    with pytest.raises(UsageError, match="at least 2"):
        split_labels(SplitConfig(labels=one, out=tmp_path / "o"))


# ---------------------------------------------------------------- convert


def test_convert_round_trips_through_pycocotools(dive: Path, tmp_path: Path) -> None:
    csv_out = tmp_path / "labels.csv"
    r1 = convert(ConvertConfig(labels=dive / "annotations.json", out=csv_out))
    assert label_sets(csv_out) == label_sets(dive / "train.csv")
    assert r1.images == 24

    coco_out = tmp_path / "labels.json"
    r2 = convert(ConvertConfig(labels=csv_out, out=coco_out, images=dive / "images"))
    coco = load_coco(coco_out)
    assert len(coco.imgs) == 24 and not r2.warnings
    on_disk = {p.name for p in (dive / "images").iterdir()}
    for img in coco.imgs.values():
        assert img["file_name"] in on_disk
        with Image.open(dive / "images" / img["file_name"]) as im:
            assert (img["width"], img["height"]) == im.size
    labels_back = {Path(coco.imgs[i]["file_name"]).stem: sorted({a["category_id"] for a in coco.imgToAnns[i]})
                   for i in coco.imgs}
    assert labels_back == label_sets(dive / "train.csv")
    assert len(coco.cats) == 290

    again = tmp_path / "again.csv"
    convert(ConvertConfig(labels=coco_out, out=again))
    assert again.read_text() == csv_out.read_text()


def test_convert_without_images_names_files_by_ext_and_refuses_same_format(dive: Path, tmp_path: Path) -> None:
    convert(ConvertConfig(labels=dive / "train.csv", out=tmp_path / "x.json", ext="jpg"))
    data = json.loads((tmp_path / "x.json").read_text())
    assert all(img["file_name"].endswith(".jpg") and "width" not in img for img in data["images"])
    with pytest.raises(UsageError, match="both Kaggle CSV"):
        convert(ConvertConfig(labels=dive / "train.csv", out=tmp_path / "y.csv"))
    with pytest.raises(UsageError, match=r"expected a \.json"):
        convert(ConvertConfig(labels=dive / "train.csv", out=tmp_path / "y.txt"))


# ---------------------------------------------------------------- validate


def broken_coco(dive: Path, dest: Path) -> Path:
    data = json.loads((dive / "annotations.json").read_text())
    data["images"][0]["file_name"] = "../../etc/passwd"
    data["images"][1]["id"] = data["images"][2]["id"]
    data["images"].append({"id": 999, "file_name": "nothere.jpg", "width": 10, "height": 10})
    data["images"][3]["width"] = 999
    anns = data["annotations"]
    anns[0]["bbox"] = [0, 0, -5, 3]
    anns[1]["bbox"] = [0, 0, 5000, 3]
    anns[2]["category_id"] = 9999
    anns[3]["image_id"] = 12345
    anns[4]["id"] = anns[5]["id"]
    del anns[6]["image_id"]
    dest.write_text(json.dumps(data))
    return dest


def test_validate_reports_every_problem_not_just_the_first(dive: Path, tmp_path: Path) -> None:
    bad = broken_coco(dive, tmp_path / "bad.json")
    with pytest.raises(LabelFileError):  # the strict reader stops at the first problem
        read_labels(bad)
    report = validate(ValidateConfig(labels=bad, images=dive / "images", out=tmp_path / "report.csv"))
    rows = set(report.problems.select("kind", "where").iter_rows())
    assert {
        ("unsafe-path", "images[0]"),
        ("duplicate-id", "images[2]"),
        ("missing-file", "images[24]"),
        ("no-annotations", "images[24]"),
        ("size-mismatch", "images[3]"),
        ("bad-box", "annotations[0]"),
        ("bad-box", "annotations[1]"),
        ("unknown-category", "annotations[2]"),
        ("orphan-annotation", "annotations[3]"),
        ("duplicate-id", "annotations[5]"),
        ("bad-record", "annotations[6]"),
        ("pycocotools", "file"),
    } <= rows
    assert report.pycocotools_ok is False and not report.ok
    written = pl.read_csv(tmp_path / "report.csv")
    assert written.height == report.problems.height and written.columns == ["kind", "where", "message"]


def test_validate_clean_files_and_csv_problems(dive: Path, tmp_path: Path) -> None:
    clean = validate(ValidateConfig(labels=dive / "annotations.json", images=dive / "images"))
    assert clean.ok and clean.pycocotools_ok and clean.images == 24
    assert validate(ValidateConfig(labels=dive / "train.csv", images=dive / "images")).ok

    bad = tmp_path / "bad.csv"
    first = (dive / "train.csv").read_text().splitlines()[1].split(",")[0]
    bad.write_text(f"id,categories\n{first},[1.0]\n{first},[2.0]\nghost,[999.0]\nempty,[]\nx,[1.5]\n")
    report = validate(ValidateConfig(labels=bad, images=dive / "images", out=tmp_path / "r.json"))
    kinds = {(k, w) for k, w in report.problems.select("kind", "where").iter_rows()}
    assert {("duplicate-id", "line 3"), ("unknown-category", "line 4"), ("missing-file", "line 4"),
            ("no-annotations", "line 5"), ("bad-record", "line 6")} <= kinds
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["counts"]["missing-file"] == 3 and len(saved["problems"]) == report.problems.height


# ---------------------------------------------------------------- subset


def test_subset_from_ids_keeps_images_annotations_and_categories(dive: Path, tmp_path: Path) -> None:
    full = json.loads((dive / "annotations.json").read_text())
    chosen = full["images"][:5]
    ids = tmp_path / "ids.txt"
    ids.write_text("# chosen by hand\n"
                   f"{Path(chosen[0]['file_name']).stem}\n"
                   f"{chosen[1]['file_name']}\n"
                   f"some/folder/{chosen[2]['file_name']}\n"
                   f"{Path(chosen[3]['file_name']).stem}\n\n"
                   f"{Path(chosen[4]['file_name']).stem}\nnot-an-image\n")
    result = make_subset(SubsetConfig(labels=dive / "annotations.json", out=tmp_path / "sub.json", ids=ids))
    coco = load_coco(tmp_path / "sub.json")
    assert {img["file_name"] for img in coco.dataset["images"]} == {img["file_name"] for img in chosen}
    want = [a for a in full["annotations"] if a["image_id"] in {img["id"] for img in chosen}]
    assert coco.dataset["annotations"] == want
    assert len(coco.cats) == 290
    assert result.not_found == ("not-an-image",) and result.images == 5


def test_subset_from_select_output_and_to_csv(dive: Path, tmp_path: Path) -> None:
    full = read_labels(dive / "train.csv")
    picked = full.image_ids[3:9]
    sel = tmp_path / "sel.csv"
    pl.DataFrame({"image_id": picked, "path": [f"{i}.jpg" for i in picked]}).write_csv(sel)
    make_subset(SubsetConfig(labels=dive / "train.csv", out=tmp_path / "s.csv", from_select=sel))
    assert label_sets(tmp_path / "s.csv") == {i: label_sets(dive / "train.csv")[i] for i in picked}
    make_subset(SubsetConfig(labels=dive / "train.csv", out=tmp_path / "s.json", from_select=sel))
    assert len(load_coco(tmp_path / "s.json").imgs) == 6
    with pytest.raises(UsageError, match="exactly one"):
        make_subset(SubsetConfig(labels=dive / "train.csv", out=tmp_path / "t.csv"))


def test_subset_refuses_file_names_outside_the_image_root(dive: Path, tmp_path: Path) -> None:
    data = json.loads((dive / "annotations.json").read_text())
    data["images"][0]["file_name"] = "/etc/passwd"
    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps(data))
    ids = tmp_path / "ids.txt"
    ids.write_text("passwd\n")
    with pytest.raises(LabelFileError, match="outside the image folder"):
        make_subset(SubsetConfig(labels=hostile, out=tmp_path / "s.json", ids=ids))
    assert not (tmp_path / "s.json").exists()


def test_subset_from_a_kaggle_csv_records_real_file_names(dive: Path, tmp_path: Path) -> None:
    import json

    from fathombatch.curate.subset import SubsetConfig, make_subset

    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(p.stem for p in sorted((dive / "images").glob("*.jpg"))[:3]))
    make_subset(SubsetConfig(labels=dive / "train.csv", out=tmp_path / "sub.json", ids=ids, images=dive / "images"))
    names = [i["file_name"] for i in json.loads((tmp_path / "sub.json").read_text())["images"]]
    assert len(names) == 3 and all((dive / "images" / n).is_file() for n in names)
