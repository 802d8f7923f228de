"""curate select / review / dedupe on scores tables built over a synthetic dive."""

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
from fathombatch.curate.hashindex import near_pairs, popcount64
from fathombatch.curate.review import ReviewConfig, build_review
from fathombatch.curate.select import SelectConfig, run_select
from fathombatch.errors import LabelFileError, UsageError
from fathombatch.taxonomy import fathomnet2023
from tests.test_curate_common import make_scores

NAMES = list(fathomnet2023().names)
FISH = [n for n, s in zip(fathomnet2023().names, fathomnet2023().supercategories) if s == "Fish"]


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


def test_select_errors_name_the_fix(scores: Path, tmp_path: Path, dump: Path) -> None:
    with pytest.raises(UsageError, match="did you mean 'Sebastes'"):
        run_select(SelectConfig(scores=scores, out=tmp_path / "s.csv", categories=("Sebastez",)))
    with pytest.raises(UsageError, match="unknown supercategory 'Fishes'"):
        run_select(SelectConfig(scores=scores, out=tmp_path / "s.csv", supercategories=("Fishes",)))
    with pytest.raises(UsageError, match=r"\.parquet, \.csv or \.txt"):
        run_select(SelectConfig(scores=scores, out=tmp_path / "s.json"))
    no_root = make_scores(dump, tmp_path / "noroot.parquet", extra_root_meta=False)
    with pytest.raises(UsageError, match="--images-root"):
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
    with pytest.raises(UsageError, match="--other"):
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
    export_thresholds = dict(zip(NAMES, open_source(scores).thresholds))
    row = ok.filter(pl.col("path") == want[0])
    closest = NAMES[int(np.abs(row.select(NAMES).to_numpy()[0] - thresholds).argmin())]
    assert queue["closest_class"][0] == closest and queue["threshold"][0] == export_thresholds[closest]
    assert "per-class presence thresholds of the engine manifest" in (tmp_path / "r" / "index.html").read_text()

    single = build_review(ReviewConfig(scores=scores, out=tmp_path / "g", n=10, threshold=0.3))
    assert single.queue["path"].to_list() == expected_order(ok, 1 - 2 * np.abs(p - 0.3).min(axis=1))[:10]
    assert single.threshold_source == "global" and set(single.queue["threshold"]) == {0.3}

    plain = build_review(ReviewConfig(scores=make_scores(dump, tmp_path / "p.parquet"), out=tmp_path / "d", n=3))
    assert plain.threshold_source == "default" and "no per-class thresholds" in plain.warnings[0]
    with pytest.raises(UsageError, match="--threshold must be in"):
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


# ---------------------------------------------------------------- dedupe


def test_near_pairs_equals_brute_force() -> None:
    rng = np.random.default_rng(5)
    h = rng.integers(0, 2**63, size=1500, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    for i in range(40):  # plant neighbours at distances 0..6
        h[1000 + i] = h[i] ^ np.uint64(sum(1 << int(b) for b in rng.choice(64, size=i % 7, replace=False)))
    dist = popcount64(h[:, None] ^ h[None, :])
    for t in (0, 2, 4, 6):
        ii, jj = np.nonzero(np.triu(dist <= t, 1))
        pairs, d = near_pairs(h, t)
        assert pairs.tolist() == np.stack([ii, jj], axis=1).tolist()
        assert (d <= t).all()


@pytest.fixture(scope="module")
def planted(dive: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """10 distinct images plus an exact copy, a 2x PNG resize and a quality-60 re-encode of three of them."""
    root = tmp_path_factory.mktemp("dupes") / "images"
    (root / "sub").mkdir(parents=True)
    originals = sorted((dive / "images").iterdir())[:10]
    for f in originals:
        shutil.copy(f, root / f.name)
    shutil.copy(originals[0], root / "sub" / "copy.jpg")
    with Image.open(originals[1]) as im:
        im.resize((im.width * 2, im.height * 2)).save(root / "sub" / "bigger.png")
    with Image.open(originals[2]) as im:
        im.save(root / "sub" / "requal.jpg", quality=60)
    (root / "sub" / "empty.jpg").write_bytes(b"")
    return root, [f.name for f in originals]


def test_dedupe_finds_planted_duplicates_and_nothing_else(planted: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, names = planted
    result = run_dedupe(DedupeConfig(source=root, out=tmp_path / "d"))
    clusters = pl.read_csv(tmp_path / "d" / "clusters.csv")
    groups = {frozenset(g["path"].to_list()) for g in clusters.partition_by("cluster")}
    assert groups == {
        frozenset({names[0], "sub/copy.jpg"}),
        frozenset({names[1], "sub/bigger.png"}),
        frozenset({names[2], "sub/requal.jpg"}),
    }
    kinds = dict(clusters.select("path", "kind").iter_rows())
    assert kinds["sub/copy.jpg"] == "exact" and kinds["sub/bigger.png"] == "near"
    kept = set(clusters.filter(pl.col("keep"))["path"])
    assert kept == {names[0], "sub/bigger.png", names[2]}  # the copy ties and loses on path order; 2x wins on pixels
    drop = (tmp_path / "d" / "drop.txt").read_text().splitlines()
    assert sorted(drop) == sorted(["sub/copy.jpg", names[1], "sub/requal.jpg"])
    assert result.exact_clusters == 1 and result.near_clusters == 2 and result.errors == 1
    hashes = pl.read_parquet(tmp_path / "d" / "hashes.parquet")
    assert hashes.height == 14
    assert hashes.filter(pl.col("path") == "sub/empty.jpg")["error"].item() == "empty file (0 bytes)"

    strict = run_dedupe(DedupeConfig(source=root, out=tmp_path / "e", max_distance=0))
    assert strict.exact_clusters == 1 and strict.drop <= 3


def test_simhash_bits_track_the_angle_between_embeddings() -> None:
    from fathombatch.curate.embeddings import simhash

    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 128))
    near = base[:5] + 0.02 * rng.normal(size=(5, 128))  # a few degrees away
    hashes = simhash(np.vstack([base, near]))
    assert hashes.dtype == np.uint64 and np.array_equal(hashes, simhash(np.vstack([base, near])))
    close = popcount64(hashes[:5] ^ hashes[200:])
    far = popcount64(hashes[:100] ^ hashes[100:200])
    assert close.max() <= 4 and 24 <= np.median(far) <= 40  # unrelated vectors differ in about half the bits


def test_find_clusters_links_by_embedding_alone() -> None:
    from fathombatch.curate.dedupe import find_clusters
    from fathombatch.curate.hashing import FileHash

    paths = ["a.jpg", "b.jpg", "c.jpg"]
    hashes = [FileHash(100, 20, 10, "sha-a", 0), FileHash(100, 10, 10, "sha-b", 2**64 - 1),
              FileHash(100, 10, 10, "sha-c", 0x0F0F0F0F0F0F0F0F)]  # pHashes 32+ bits apart: no pHash link
    assert find_clusters(paths, hashes, 4).height == 0
    emb = (np.array([0b0, 0b1, 2**64 - 1], dtype=np.uint64), np.array([True, True, True]))
    clusters = find_clusters(paths, hashes, 4, emb, embedding_distance=1)
    assert clusters["path"].to_list() == ["a.jpg", "b.jpg"] and set(clusters["kind"]) == {"near"}
    rows = {r["path"]: r for r in clusters.iter_rows(named=True)}
    assert rows["a.jpg"]["keep"] and not rows["b.jpg"]["keep"]  # a has more pixels
    assert rows["b.jpg"]["reason"] == "near duplicate of a.jpg by content (embedding distance 1)"
    assert find_clusters(paths, hashes, 4, emb, embedding_distance=0).height == 0


def test_dedupe_with_an_engine_finds_the_same_duplicates_and_records_embeddings(
    planted: tuple[Path, list[str]], engines: dict, tmp_path: Path
) -> None:
    root, names = planted
    result = run_dedupe(DedupeConfig(source=root, out=tmp_path / "d", engine=engines["onnx"]))
    groups = {frozenset(g["path"].to_list()) for g in result.clusters.partition_by("cluster")}
    assert groups == {
        frozenset({names[0], "sub/copy.jpg"}),
        frozenset({names[1], "sub/bigger.png"}),
        frozenset({names[2], "sub/requal.jpg"}),
    }
    hashes = pl.read_parquet(tmp_path / "d" / "hashes.parquet")
    emb = dict(hashes.select("path", "embedding_hash").iter_rows())
    assert emb["sub/empty.jpg"] is None and sum(v is None for v in emb.values()) == 1
    assert emb["sub/copy.jpg"] == emb[names[0]]
    with pytest.raises(UsageError, match="--embedding-distance"):
        run_dedupe(DedupeConfig(source=root, out=tmp_path / "e", engine=engines["onnx"], embedding_distance=9))


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


def test_dedupe_reads_the_files_of_a_scores_table(planted: tuple[Path, list[str]], tmp_path: Path) -> None:
    root = tmp_path / "images"
    shutil.copytree(planted[0], root)
    table = make_scores(root, tmp_path / "s.parquet")
    shutil.copy(root / planted[1][3], root / "late.jpg")  # arrives after scoring: not in the table
    from_table = run_dedupe(DedupeConfig(source=table, out=tmp_path / "d"))
    assert from_table.files == 14 and from_table.drop == 3
    from_folder = run_dedupe(DedupeConfig(source=root, out=tmp_path / "f"))
    assert from_folder.files == 15 and from_folder.drop == 4
    with pytest.raises(UsageError, match="neither a folder"):
        run_dedupe(DedupeConfig(source=tmp_path / "d" / "drop.txt", out=tmp_path / "x"))


def test_dedupe_drops_only_images_close_to_the_one_kept(tmp_path: Path) -> None:
    from fathombatch.curate.dedupe import find_clusters
    from fathombatch.curate.hashing import FileHash

    # A slow pan: each frame 3 bits from the next, so frame 1 and frame 8 are 21 bits apart.
    hashes, value = [], 0
    for i in range(8):
        hashes.append(FileHash(sha256=f"s{i}", phash=value, width=64 + (i == 0), height=64, bytes=100))
        value ^= 0b111 << (3 * i)
    clusters = find_clusters([f"f{i}.jpg" for i in range(8)], hashes, max_distance=4)
    assert clusters["cluster"].n_unique() == 1  # linked transitively
    dropped = clusters.filter(~pl.col("keep"))
    assert dropped["path"].to_list() == ["f1.jpg"]  # the only frame within 4 bits of the kept f0
    assert (dropped["distance"] <= 4).all()


def test_a_line_break_in_a_name_never_adds_another_file_to_the_drop_list(dive: Path, tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    first, other = sorted((dive / "images").glob("*.jpg"))[:2]
    shutil.copy(first, root / "a.jpg")
    shutil.copy(first, root / "z\nunique.jpg")  # an exact duplicate of a.jpg whose name spells a second file
    shutil.copy(other, root / "unique.jpg")  # a different image: must never be proposed for deletion
    result = run_dedupe(DedupeConfig(source=root, out=tmp_path / "d"))
    assert result.drop == 1
    assert (tmp_path / "d" / "drop.txt").read_text() == ""
    import json

    assert json.loads((tmp_path / "d" / "drop.json").read_text()) == ["z\nunique.jpg"]
    assert len(result.warnings) == 1 and "listed in drop.json only" in result.warnings[0]

    table = make_scores(root, tmp_path / "s.parquet")
    with pytest.raises(UsageError, match=r"contain a line break .* write \.parquet or \.csv instead"):
        run_select(SelectConfig(scores=table, out=tmp_path / "sel.txt"))
    assert not (tmp_path / "sel.txt").exists()
    run_select(SelectConfig(scores=table, out=tmp_path / "sel.csv"))
    assert "z\nunique.jpg" in pl.read_csv(tmp_path / "sel.csv")["path"].to_list()


def test_dedupe_of_a_folder_with_a_name_that_is_not_utf8(dive: Path, tmp_path: Path) -> None:
    import os

    root = tmp_path / "images"
    root.mkdir()
    first = sorted((dive / "images").glob("*.jpg"))[0]
    shutil.copy(first, root / "a.jpg")
    shutil.copy(first, os.path.join(os.fsencode(root), b"latin1_\xe9.jpg"))
    result = run_dedupe(DedupeConfig(source=root, out=tmp_path / "d"))
    assert result.files == 2 and result.drop == 1
    assert (tmp_path / "d" / "drop.txt").read_text() == "latin1_\\xe9.jpg\n"  # the table spelling, one line


def two_species_one_background(root: Path) -> None:
    """An ROV on station: one background, category 37 in one frame and 160 in the next (pHashes 0 bits apart)."""
    from fathombatch.synth import render_scene

    root.mkdir(parents=True)
    for name, category in (("first", 37), ("second", 160)):
        pixels = render_scene(320, 240, [(category, 150, 110, 24, 18)], np.random.default_rng([4, 1]))
        Image.fromarray(pixels).save(root / f"{name}.jpg", quality=90)
    shutil.copy(root / "first.jpg", root / "first-copy.jpg")
    with Image.open(root / "first.jpg") as im:
        im.resize((640, 480)).save(root / "first-big.png")  # unlabelled, more pixels than the labelled original


def test_dedupe_never_drops_an_image_labelled_otherwise_than_the_kept_one(tmp_path: Path) -> None:
    from fathombatch.cli_curate import curate
    from tests.test_curate_common import invoke

    root = tmp_path / "images"
    two_species_one_background(root)
    blind = run_dedupe(DedupeConfig(source=root, out=tmp_path / "blind"))
    assert "second.jpg" in blind.clusters.filter(~pl.col("keep"))["path"].to_list()  # the reported incident
    assert any("rest on pixel similarity alone" in w for w in blind.warnings)

    labels = tmp_path / "labels.csv"
    labels.write_text('id,categories\nfirst,"[37]"\nsecond,"[160]"\nfirst-copy,"[37]"\n')
    result = run_dedupe(DedupeConfig(source=root, out=tmp_path / "d", labels=labels))
    rows = {r["path"]: r for r in result.clusters.iter_rows(named=True)}
    name160 = NAMES[fathomnet2023().column_of[160]]
    assert rows["second.jpg"]["keep"] and f"images labelled [{name160}]; an image is never dropped for one labelled " \
        "otherwise" in rows["second.jpg"]["reason"]
    assert rows["first-big.png"]["keep"]  # not in the label file: never dropped for a labelled image either
    assert (tmp_path / "d" / "drop.txt").read_text().splitlines() == ["first.jpg"]  # same labels, same bytes
    assert rows["first.jpg"]["reason"] == "byte-identical copy of first-copy.jpg"
    assert not result.warnings

    relabelled = tmp_path / "relabelled.csv"
    relabelled.write_text('id,categories\nfirst,"[37]"\nfirst-copy,"[160]"\n')  # identical bytes, labels disagree
    conflict = run_dedupe(DedupeConfig(source=root, out=tmp_path / "c", labels=relabelled))
    first = conflict.clusters.filter(pl.col("path") == "first.jpg").row(0, named=True)
    assert first["keep"]
    assert f"byte-identical to first-copy.jpg, labelled [{name160}]: the labels disagree" in first["reason"]

    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text('id,categories\nnot-here,"[37]"\n')
    code, _, err = invoke(curate, "dedupe", root, "--labels", elsewhere, "--out", tmp_path / "e", "-q")
    assert code == 0 and err.splitlines()[0].startswith("warning: none of the 4 files is in ")
    assert "rest on pixel similarity alone" in err.splitlines()[1]


def test_dedupe_keeps_a_pixel_match_whose_embedding_disagrees() -> None:
    from fathombatch.curate.dedupe import find_clusters
    from fathombatch.curate.hashing import FileHash

    paths = ["a.jpg", "b.jpg"]
    hashes = [FileHash(100, 20, 10, "sha-a", 0), FileHash(100, 10, 10, "sha-b", 1)]  # pHashes 1 bit apart
    agree = (np.array([0, 1], dtype=np.uint64), np.array([True, True]))
    rows = find_clusters(paths, hashes, 4, agree, embedding_distance=3)
    assert rows.filter(pl.col("path") == "b.jpg")["keep"].to_list() == [False]
    differ = (np.array([0, 2**64 - 1], dtype=np.uint64), np.array([True, True]))  # 64 bits apart
    rows = find_clusters(paths, hashes, 4, differ, embedding_distance=3)
    b = rows.filter(pl.col("path") == "b.jpg").row(0, named=True)
    assert b["keep"]
    assert b["reason"] == "kept: pHash distance 1 from a.jpg, but embedding distance 64 is over 3: the contents differ"
