"""curate select / review on scores tables built over a synthetic dive (dedupe: test_curate_dedupe.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fathombatch.curate.dedupe import DedupeConfig, run_dedupe
from fathombatch.curate.review import ReviewConfig, build_review
from fathombatch.curate.select import SelectConfig, run_select
from fathombatch.errors import LabelFileError, UsageError
from fathombatch.taxonomy import fathomnet2023
from tests.test_curate_common import make_scores

NAMES = list(fathomnet2023().names)
FISH = [n for n, s in zip(fathomnet2023().names, fathomnet2023().supercategories, strict=True) if s == "Fish"]


@pytest.fixture(scope="module")
def dump(dive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny dive's images plus one broken JPEG (scored ok, so review must cope with it)."""
    root = tmp_path_factory.mktemp("dump") / "images"
    shutil.copytree(dive / "images", root)
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


@pytest.fixture(scope="module")
def scores(dump: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scores(dump, tmp_path_factory.mktemp("scores") / "scores.parquet", seed=0,
                       error_paths=("gone/zero.jpg",))


@pytest.fixture(scope="module")
def scores_other(dump: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scores(dump, tmp_path_factory.mktemp("scores2") / "scores.parquet", seed=1)


# ---------------------------------------------------------------- select


def test_select_returns_exactly_the_rows_of_a_direct_polars_filter(scores: Path, tmp_path: Path) -> None:
    table = pl.read_parquet(scores)
    cats = ["Sebastes", "Actiniaria"]
    threshold = float(np.quantile(table.select(pl.max_horizontal(cats)).drop_nulls().to_series().to_numpy(), 0.6))
    result = run_select(SelectConfig(scores=scores, out=tmp_path / "s.parquet", categories=tuple(cats),
                                     min_prob=threshold))
    got = pl.read_parquet(tmp_path / "s.parquet")
    want = table.filter(pl.max_horizontal(cats) >= threshold).with_columns(p=pl.max_horizontal(cats))
    assert set(got["path"]) == set(want["path"]) and result.rows == want.height > 0
    assert got["probability"].to_list() == sorted(want["p"].to_list(), reverse=True)
    for path, cat, p in got.select("path", "category", "probability").iter_rows():
        row = table.filter(pl.col("path") == path)
        assert row[cat].item() == p == max(row[c].item() for c in cats)


def test_select_by_supercategory_osd_and_status(scores: Path, tmp_path: Path) -> None:
    table = pl.read_parquet(scores)
    run_select(SelectConfig(scores=scores, out=tmp_path / "fish.csv", supercategories=("Fish",), min_prob=0.4,
                            max_prob=0.9))
    fish = pl.read_csv(tmp_path / "fish.csv")
    want = table.filter(pl.max_horizontal(FISH).is_between(0.4, 0.9))
    assert set(fish["path"]) == set(want["path"]) and fish["category"].is_in(FISH).all()

    cut = float(table["osd"].drop_nulls().median())
    run_select(SelectConfig(scores=scores, out=tmp_path / "novel.txt", min_osd=cut))
    lines = (tmp_path / "novel.txt").read_text().splitlines()
    assert set(lines) == set(table.filter(pl.col("osd") >= cut)["path"])

    run_select(SelectConfig(scores=scores, out=tmp_path / "err.csv", status="error"))
    assert pl.read_csv(tmp_path / "err.csv")["path"].to_list() == ["gone/zero.jpg"]


def test_select_copies_and_links_images_into_category_folders(scores: Path, dump: Path, tmp_path: Path) -> None:
    result = run_select(SelectConfig(scores=scores, out=tmp_path / "s.csv", supercategories=("Fish",), min_prob=0.3,
                                     copy_to=tmp_path / "tree"))
    rows = pl.read_csv(tmp_path / "s.csv")
    assert result.placed == rows.height > 0
    for path, cat in rows.select("path", "category").iter_rows():
        copied = tmp_path / "tree" / cat / Path(path).name
        assert copied.read_bytes() == (dump / path).read_bytes() and not copied.is_symlink()

    run_select(SelectConfig(scores=scores, out=tmp_path / "l.csv", categories=("Sebastes",), min_prob=0.0,
                            limit=3, copy_to=tmp_path / "links", mode="symlink", images_root=dump))
    links = sorted((tmp_path / "links" / "Sebastes").iterdir())
    assert len(links) == 3 and all(p.is_symlink() and p.resolve().parent == dump.resolve() for p in links)

    missing = run_select(SelectConfig(scores=scores, out=tmp_path / "e.csv", status="error", copy_to=tmp_path / "e"))
    assert missing.placed == 0 and missing.not_placed == (("gone/zero.jpg", "file not found"),)


@pytest.mark.parametrize("mode", ["symlink", "copy"])
def test_select_never_places_an_image_onto_itself(dive: Path, tmp_path: Path, mode: str) -> None:
    """A copy_to that is the image folder (or reaches it through a symlink) once turned `cat/Synallactes/a.jpg` into
    a link to itself: the library refuses before writing anything, whatever the command line checked."""
    cat = tmp_path / "cat"
    for image, name in zip(sorted((dive / "images").glob("*.jpg"))[:2], ("a.jpg", "b.jpg"), strict=True):
        (cat / "Synallactes").mkdir(parents=True, exist_ok=True)
        shutil.copy(image, cat / "Synallactes" / name)
    table = make_scores(cat, tmp_path / "cat.parquet")
    before = {p: p.read_bytes() for p in (cat / "Synallactes").iterdir()}
    (tmp_path / "alias").symlink_to(cat)
    for copy_to in (cat, tmp_path / "alias"):
        cfg = SelectConfig(scores=table, out=tmp_path / "c.csv", categories=("Synallactes",), min_prob=0.0,
                           copy_to=copy_to, mode=mode)
        with pytest.raises(UsageError, match=r"^copy_to .*: placing 'Synallactes/a.jpg' would replace the image "
                                             r"itself .*choose a copy_to folder outside the image folder$"):
            run_select(cfg)
        assert {p: p.read_bytes() for p in (cat / "Synallactes").iterdir()} == before
        assert not any(p.is_symlink() for p in cat.rglob("*")) and not (tmp_path / "c.csv").exists()

    # Images that are links into a folder of real files: placing into that folder would link a file to itself.
    links = tmp_path / "links"
    (links / "Synallactes").mkdir(parents=True)
    for name in before:
        (links / "Synallactes" / name.name).symlink_to(name)
    linked = make_scores(links, tmp_path / "links.parquet")
    with pytest.raises(UsageError, match="would replace the image itself"):
        run_select(SelectConfig(scores=linked, out=tmp_path / "l.csv", categories=("Synallactes",), min_prob=0.0,
                                copy_to=cat, mode=mode))
    assert {p: p.read_bytes() for p in (cat / "Synallactes").iterdir()} == before

    # A destination that is a link to its source (an earlier --symlink run) is not the source: replacing it is fine.
    for _ in range(2):
        again = run_select(SelectConfig(scores=table, out=tmp_path / "d.csv", categories=("Synallactes",),
                                        min_prob=0.0, copy_to=tmp_path / "dump", mode="symlink"))
        assert again.placed == 2 and (tmp_path / "dump" / "Synallactes" / "a.jpg").resolve() == (
            cat / "Synallactes" / "a.jpg").resolve()


def test_select_errors_name_the_fix(scores: Path, tmp_path: Path, dump: Path) -> None:
    with pytest.raises(UsageError, match="did you mean 'Sebastes'"):
        run_select(SelectConfig(scores=scores, out=tmp_path / "s.csv", categories=("Sebastez",)))
    with pytest.raises(UsageError, match="unknown supercategory 'Fishes'"):
        run_select(SelectConfig(scores=scores, out=tmp_path / "s.csv", supercategories=("Fishes",)))
    with pytest.raises(UsageError, match=r"\.parquet, \.csv or \.txt"):
        run_select(SelectConfig(scores=scores, out=tmp_path / "s.json"))
    no_root = make_scores(dump, tmp_path / "noroot.parquet", extra_root_meta=False)
    with pytest.raises(UsageError, match="images_root"):
        run_select(SelectConfig(scores=no_root, out=tmp_path / "s.csv", copy_to=tmp_path / "t"))


def test_select_refuses_table_paths_that_escape_the_root(scores: Path, tmp_path: Path, dump: Path) -> None:
    hostile = tmp_path / "hostile.parquet"
    make_scores(dump, hostile, error_paths=("../../etc/passwd",))
    with pytest.raises(LabelFileError, match="outside the image folder"):
        run_select(SelectConfig(scores=hostile, out=tmp_path / "s.csv", status="error", copy_to=tmp_path / "t"))
    assert not any((tmp_path / "t").rglob("passwd"))


# ---------------------------------------------------------------- review


def expected_order(table: pl.DataFrame, priority: np.ndarray, tiebreak: np.ndarray | None = None) -> list[str]:
    paths = table["path"].to_numpy()
    keys = (paths, -(tiebreak if tiebreak is not None else np.zeros(len(paths))), -priority)
    return paths[np.lexsort(keys)].tolist()


@pytest.mark.parametrize("strategy", ["uncertain", "out-of-sample", "rare"])
def test_review_queue_follows_the_strategy_rule(scores: Path, tmp_path: Path, strategy: str) -> None:
    ok = pl.read_parquet(scores).filter(pl.col("status") == "ok")
    p = ok.select(NAMES).to_numpy().astype(np.float64)
    if strategy == "uncertain":
        want = expected_order(ok, 1 - 2 * np.abs(p - 0.5).min(axis=1))
    elif strategy == "out-of-sample":
        want = expected_order(ok, ok["osd"].to_numpy().astype(np.float64))
    else:
        top1 = np.array([t[0] for t in ok["top_categories"].to_list()])
        n_top1 = np.array([(top1 == t).sum() for t in top1])
        want = expected_order(ok, 1.0 / n_top1, p.max(axis=1))
    result = build_review(ReviewConfig(scores=scores, out=tmp_path / "r", n=10, strategy=strategy))
    queue = pl.read_csv(tmp_path / "r" / "queue.csv")
    assert queue.height == 10 and queue["rank"].to_list() == list(range(1, 11))
    assert queue["path"].to_list() == want[:10]
    assert result.queue["path"].to_list() == want[:10]


def test_review_contact_sheet_has_thumbnails_and_predictions(scores: Path, dump: Path, tmp_path: Path) -> None:
    result = build_review(ReviewConfig(scores=scores, out=tmp_path / "r", n=500, strategy="out-of-sample",
                                       thumb_size=64))
    queue = pl.read_csv(tmp_path / "r" / "queue.csv")
    assert queue.height == 25  # every ok row (24 images + broken.jpg), never the error row
    assert "gone/zero.jpg" not in queue["path"].to_list()
    html = (tmp_path / "r" / "index.html").read_text()
    assert html.count("class=card") == 25 and html.count("<img ") == 24
    assert "no thumbnail: a JPEG file whose header is corrupt" in html
    assert result.missing == {"broken.jpg": "a JPEG file whose header is corrupt or cut off (20 bytes)"}
    for thumb in queue["thumbnail"].drop_nulls():
        with Image.open(tmp_path / "r" / thumb) as im:
            assert im.format == "JPEG" and max(im.size) <= 64
    first = pl.read_parquet(scores).filter(pl.col("path") == queue["path"][0])
    best = NAMES[fathomnet2023().column_of[first["top_categories"][0][0]]]
    assert queue["top_predictions"][0].startswith(f"{best}: {first[best].item():.3f}")
    assert best in html


def test_review_disagree_ranks_by_the_largest_probability_gap(scores: Path, scores_other: Path,
                                                              tmp_path: Path) -> None:
    a = pl.read_parquet(scores).filter(pl.col("status") == "ok").sort("path")
    b = pl.read_parquet(scores_other).sort("path")
    gap = np.abs(a.select(NAMES).to_numpy() - b.select(NAMES).to_numpy()).max(axis=1).astype(np.float64)
    want = expected_order(a, gap)
    build_review(ReviewConfig(scores=scores, other=scores_other, out=tmp_path / "d", n=7, strategy="disagree"))
    queue = pl.read_csv(tmp_path / "d" / "queue.csv")
    assert queue["path"].to_list() == want[:7]
    assert "other_top_predictions" in queue.columns
    assert "other table" in (tmp_path / "d" / "index.html").read_text()
    with pytest.raises(UsageError, match="^strategy disagree compares two tables; pass other SCORES2.parquet$"):
        build_review(ReviewConfig(scores=scores, out=tmp_path / "x", strategy="disagree"))


def test_review_uncertain_ranks_by_distance_from_the_thresholds_the_exports_use(dump: Path, tmp_path: Path) -> None:
    from fathombatch.exports.source import open_source

    thresholds = np.random.default_rng(7).uniform(0.05, 0.9, len(NAMES)).round(3)
    scores = make_scores(dump, tmp_path / "s.parquet", thresholds=thresholds.tolist())
    ok = pl.read_parquet(scores).filter(pl.col("status") == "ok")
    p = ok.select(NAMES).to_numpy().astype(np.float64)
    want = expected_order(ok, 1 - 2 * np.abs(p - thresholds).min(axis=1))
    assert want[:10] != expected_order(ok, 1 - 2 * np.abs(p - 0.5).min(axis=1))[:10]  # the thresholds matter here

    result = build_review(ReviewConfig(scores=scores, out=tmp_path / "r", n=10))
    queue = pl.read_csv(tmp_path / "r" / "queue.csv")
    assert queue["path"].to_list() == want[:10]
    assert result.threshold_source == "manifest" and not result.warnings
    assert set(queue["threshold_source"]) == {"manifest"}
    export_thresholds = dict(zip(NAMES, open_source(scores).thresholds, strict=True))
    row = ok.filter(pl.col("path") == want[0])
    closest = NAMES[int(np.abs(row.select(NAMES).to_numpy()[0] - thresholds).argmin())]
    assert queue["closest_class"][0] == closest and queue["threshold"][0] == export_thresholds[closest]
    assert "per-class presence thresholds of the engine manifest" in (tmp_path / "r" / "index.html").read_text()

    single = build_review(ReviewConfig(scores=scores, out=tmp_path / "g", n=10, threshold=0.3))
    assert single.queue["path"].to_list() == expected_order(ok, 1 - 2 * np.abs(p - 0.3).min(axis=1))[:10]
    assert single.threshold_source == "global" and set(single.queue["threshold"]) == {0.3}

    plain = build_review(ReviewConfig(scores=make_scores(dump, tmp_path / "p.parquet"), out=tmp_path / "d", n=3))
    assert plain.threshold_source == "default" and "no per-class thresholds" in plain.warnings[0]
    with pytest.raises(UsageError, match=r"^threshold must be in \(0, 1\], got 1.5$"):
        build_review(ReviewConfig(scores=scores, out=tmp_path / "x", threshold=1.5))
    with pytest.raises(UsageError) as refused:
        build_review(ReviewConfig(scores=scores, out=tmp_path / "x", strategy="rare", threshold=0.3))
    assert str(refused.value) == "threshold applies only to the 'uncertain' strategy, not to 'rare'"  # no CLI flag


def test_contact_sheet_links_originals_relative_to_the_page(dive: Path, tmp_path: Path) -> None:
    import re
    from urllib.parse import unquote

    images = tmp_path / "hand-on" / "my dive"
    images.mkdir(parents=True)
    first, second = sorted((dive / "images").glob("*.jpg"))[:2]
    shutil.copy(first, images / "a b#1%2?.jpg")
    shutil.copy(second, images / "plain.jpg")
    scores = make_scores(images, tmp_path / "s.parquet")
    out = tmp_path / "hand-on" / "review"
    result = build_review(ReviewConfig(scores=scores, out=out, n=5, strategy="out-of-sample"))
    hrefs = re.findall(r"<a href='([^']*)'>", (out / "index.html").read_text())
    assert sorted(hrefs) == ["../my%20dive/a%20b%231%252%3F.jpg", "../my%20dive/plain.jpg"]
    assert not result.warnings
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "hand-on", moved)  # the folder handed on: links still reach the originals
    for href in hrefs:
        assert (moved / "review" / unquote(href)).is_file()


def test_contact_sheet_links_survive_a_symlinked_project_folder(dive: Path, tmp_path: Path) -> None:
    """Images and review in one project folder reached through a symlink (``linkproj -> realproj``): the links must
    not name the real folder, or they break once the project is handed on. A symlink below the images root is
    linked through, as the table spells the path."""
    import re
    from urllib.parse import unquote

    real, link, shared = tmp_path / "realproj", tmp_path / "linkproj", tmp_path / "shared"
    (real / "imgs").mkdir(parents=True)
    shared.mkdir()
    first, second = sorted((dive / "images").glob("*.jpg"))[:2]
    shutil.copy(first, real / "imgs" / "a.jpg")
    shutil.copy(second, shared / "b.jpg")
    (real / "imgs" / "sub").symlink_to(shared, target_is_directory=True)
    link.symlink_to(real, target_is_directory=True)
    scores = make_scores(link / "imgs", tmp_path / "s.parquet")  # run.root recorded resolved, as `score` does
    for images_root, out in ((None, link / "rev2"), (link / "imgs", link / "rev3"), (link / "imgs", real / "rev4")):
        build_review(ReviewConfig(scores=scores, out=out, n=5, strategy="out-of-sample", images_root=images_root))
        hrefs = re.findall(r"<a href='([^']*)'>", (out / "index.html").read_text())
        assert sorted(hrefs) == ["../imgs/a.jpg", "../imgs/sub/b.jpg"], (images_root, out)
    moved = tmp_path / "handed-on"
    shutil.move(real, moved)
    for href in hrefs:
        assert (moved / "rev4" / unquote(href)).is_file()


def test_relative_href_has_no_answer_across_drives() -> None:
    from pathlib import PureWindowsPath

    from fathombatch.curate.contact_sheet import relative_href

    same_drive = relative_href(PureWindowsPath("C:/dives/d 1/x#.jpg"), PureWindowsPath("C:/review"))
    assert same_drive == "../dives/d%201/x%23.jpg"
    assert relative_href(PureWindowsPath("D:/dives/x.jpg"), PureWindowsPath("C:/review")) is None


def test_review_and_dedupe_refuse_table_paths_that_escape_the_root(dump: Path, tmp_path: Path) -> None:
    hostile = make_scores(dump, tmp_path / "hostile.parquet", error_paths=("../../etc/passwd",))
    with pytest.raises(LabelFileError, match="outside the image folder"):
        run_dedupe(DedupeConfig(source=hostile, out=tmp_path / "d"))
    assert not (tmp_path / "d").exists()
    # an ok row with a hostile path, metadata kept
    table = pq.read_table(hostile)
    paths = table.column("path").to_pylist()
    paths[table.column("status").to_pylist().index("ok")] = "/etc/passwd"
    pq.write_table(table.set_column(table.schema.get_field_index("path"), "path", pa.array(paths)), hostile)
    with pytest.raises(LabelFileError, match="outside the image folder"):
        build_review(ReviewConfig(scores=hostile, out=tmp_path / "r", n=100))
    assert not (tmp_path / "r" / "index.html").exists()
