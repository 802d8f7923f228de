"""curate dedupe: exact and near duplicates of a folder or a scores table, and the guards against dropping an image
that only looks like another."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from fathombatch.curate.dedupe import DedupeConfig, run_dedupe
from fathombatch.curate.hashindex import near_pairs, popcount64
from fathombatch.curate.select import SelectConfig, run_select
from fathombatch.errors import UsageError
from fathombatch.taxonomy import fathomnet2023
from tests.test_curate_common import make_scores

NAMES = list(fathomnet2023().names)


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
    kept = set(clusters.filter(pl.col("keep") & ~pl.col("to_review"))["path"])
    assert kept == {names[0], "sub/bigger.png", names[2]}  # the copy ties and loses on path order; 2x wins on pixels
    drop = (tmp_path / "d" / "drop.txt").read_text().splitlines()
    assert drop == ["sub/copy.jpg"]  # no label file, no engine: only byte-identical copies are dropped
    review = (tmp_path / "d" / "to_review.txt").read_text().splitlines()
    assert sorted(review) == sorted([names[1], "sub/requal.jpg"]) and result.to_review == 2
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
    assert result.to_review == 0  # each pixel match is confirmed or refused by the embeddings: none left to pixels
    with pytest.raises(UsageError, match="embedding_distance must be between 0 and 8 bits"):
        run_dedupe(DedupeConfig(source=root, out=tmp_path / "e", engine=engines["onnx"], embedding_distance=9))


def test_dedupe_reads_the_files_of_a_scores_table(planted: tuple[Path, list[str]], tmp_path: Path) -> None:
    root = tmp_path / "images"
    shutil.copytree(planted[0], root)
    table = make_scores(root, tmp_path / "s.parquet")
    shutil.copy(root / planted[1][3], root / "late.jpg")  # arrives after scoring: not in the table
    from_table = run_dedupe(DedupeConfig(source=table, out=tmp_path / "d"))
    assert from_table.files == 14 and (from_table.drop, from_table.to_review) == (1, 2)
    from_folder = run_dedupe(DedupeConfig(source=root, out=tmp_path / "f"))
    assert from_folder.files == 15 and (from_folder.drop, from_folder.to_review) == (2, 2)
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
    assert clusters.filter(~pl.col("keep")).height == 0  # pixels alone drop nothing that is not byte-identical
    assert clusters.filter(pl.col("to_review"))["path"].to_list() == ["f1.jpg"]
    labelled = find_clusters([f"f{i}.jpg" for i in range(8)], hashes, max_distance=4, labels=[("Sebastes",)] * 8)
    dropped = labelled.filter(~pl.col("keep"))
    assert dropped["path"].to_list() == ["f1.jpg"]  # the only frame within 4 bits of the kept f0
    assert (dropped["distance"] <= 4).all() and not labelled["to_review"].any()


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
    from fathombatch.cli.curate import curate
    from tests.test_curate_common import invoke

    root = tmp_path / "images"
    two_species_one_background(root)
    blind = run_dedupe(DedupeConfig(source=root, out=tmp_path / "blind"))
    assert "second.jpg" not in blind.clusters.filter(~pl.col("keep"))["path"].to_list()  # the reported incident
    assert "second.jpg" in blind.clusters.filter(pl.col("to_review"))["path"].to_list() and not blind.warnings

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
    code, out, err = invoke(curate, "dedupe", root, "--labels", elsewhere, "--out", tmp_path / "e", "-q")
    assert code == 0 and err.splitlines()[0].startswith("warning: none of the 4 files is in ")
    assert len(err.splitlines()) == 1 and "2 near duplicates by pixels alone are not suggested to drop" in out
    assert (tmp_path / "e" / "drop.txt").read_text().splitlines() == ["first.jpg"]  # labels guard nothing here


def test_dedupe_keeps_a_pixel_match_whose_embedding_disagrees() -> None:
    from fathombatch.curate.dedupe import find_clusters
    from fathombatch.curate.hashing import FileHash

    paths = ["a.jpg", "b.jpg"]
    hashes = [FileHash(100, 20, 10, "sha-a", 0), FileHash(100, 10, 10, "sha-b", 1)]  # pHashes 1 bit apart
    agree = (np.array([0, 1], dtype=np.uint64), np.array([True, True]))
    rows = find_clusters(paths, hashes, 4, agree, embedding_distance=3)
    assert rows.filter(pl.col("path") == "b.jpg")["keep"].to_list() == [False]
    assert find_clusters(paths, hashes, 4).filter(pl.col("path") == "b.jpg")["to_review"].to_list() == [True]
    differ = (np.array([0, 2**64 - 1], dtype=np.uint64), np.array([True, True]))  # 64 bits apart
    rows = find_clusters(paths, hashes, 4, differ, embedding_distance=3)
    b = rows.filter(pl.col("path") == "b.jpg").row(0, named=True)
    assert b["keep"]
    assert b["reason"] == "kept: pHash distance 1 from a.jpg, but embedding distance 64 is over 3: the contents differ"


def test_without_labels_or_an_engine_only_byte_identical_copies_are_dropped(tmp_path: Path) -> None:
    """The issue's incident, default options: two species on one background must not be proposed for deletion."""
    import json

    from fathombatch.cli.curate import curate
    from tests.test_curate_common import invoke

    root = tmp_path / "images"
    two_species_one_background(root)
    out = tmp_path / "dupes"
    code, stdout, err = invoke(curate, "dedupe", root, "--out", out, "-q")
    assert code == 0 and err == ""
    assert (out / "drop.txt").read_text().splitlines() == ["first.jpg"]  # a copy of an image to review
    assert json.loads((out / "drop.json").read_text()) == ["first.jpg"]
    assert (out / "to_review.txt").read_text().splitlines() == ["first-copy.jpg", "second.jpg"]
    assert json.loads((out / "to_review.json").read_text()) == ["first-copy.jpg", "second.jpg"]
    rows = {r["path"]: r for r in pl.read_csv(out / "clusters.csv").iter_rows(named=True)}
    assert rows["second.jpg"]["keep"] and rows["second.jpg"]["to_review"]
    assert rows["second.jpg"]["reason"].startswith("to review: looks like first-big.png (pHash distance ")
    assert rows["first.jpg"]["reason"] == "byte-identical copy of first-copy.jpg"
    assert "1 files suggested to drop" in stdout
    assert ("2 near duplicates by pixels alone are not suggested to drop: look at them "
            f"({out / 'to_review.txt'}), or confirm them with --labels or --engine") in stdout

    partly = tmp_path / "partly.csv"  # second.jpg and first-big.png are not in it: nothing vouches for that pair
    partly.write_text('id,categories\nfirst,"[37]"\nfirst-copy,"[37]"\n')
    result = run_dedupe(DedupeConfig(source=root, out=tmp_path / "p", labels=partly))
    assert result.clusters.filter(pl.col("to_review"))["path"].to_list() == ["second.jpg"]
    assert (tmp_path / "p" / "drop.txt").read_text().splitlines() == ["first.jpg"]  # same labels, same bytes


def test_an_unlisted_byte_identical_copy_is_dropped_for_its_labelled_twin_and_the_summary_says_what_is_true(
    tmp_path: Path,
) -> None:
    """cp A.jpg copy_A.jpg next to a resized A: the label file names A only; the copy is still the same image."""
    from fathombatch.cli.curate import curate
    from tests.test_curate_common import invoke

    root = tmp_path / "images"
    two_species_one_background(root)  # first.jpg, its byte-identical first-copy.jpg, first-big.png, second.jpg
    labels = tmp_path / "labels.csv"
    labels.write_text('id,categories\nfirst,"[37]"\nsecond,"[160]"\n')  # first-copy and first-big are not in it
    code, stdout, err = invoke(curate, "dedupe", root, "--labels", labels, "--out", tmp_path / "d", "-q")
    assert code == 0 and err == ""
    assert (tmp_path / "d" / "drop.txt").read_text().splitlines() == ["first-copy.jpg"]
    rows = {r["path"]: r for r in pl.read_csv(tmp_path / "d" / "clusters.csv").iter_rows(named=True)}
    name37 = NAMES[fathomnet2023().column_of[37]]
    assert rows["first-copy.jpg"]["reason"] == (f"byte-identical copy of first.jpg; not in the label file, but its "
                                                f"byte-identical copies are, labelled [{name37}]")
    assert rows["first.jpg"]["keep"] and rows["first.jpg"]["reason"].endswith(
        f"of its cluster's images labelled [{name37}]; an image is never dropped for one labelled otherwise")
    assert rows["first-big.png"]["keep"] and "not in the label file" in rows["first-big.png"]["reason"]
    assert not any("unlabelled" in r["reason"] or "disagree" in r["reason"] for r in rows.values())
    assert {r["kind"] for r in rows.values()} == {"mixed"}  # one cluster: a byte-identical copy and near duplicates
    assert "0 exact, 0 near and 1 mixed (exact and near) duplicate clusters; 1 files suggested to drop" in stdout

    # The advice names only the guard not already given.
    partly = tmp_path / "partly.csv"  # second.jpg and first-big.png are not in it: that pair is left to review
    partly.write_text('id,categories\nfirst,"[37]"\n')
    code, stdout, _ = invoke(curate, "dedupe", root, "--labels", partly, "--out", tmp_path / "p", "-q")
    assert code == 0 and (tmp_path / "p" / "to_review.txt").read_text().splitlines() == ["second.jpg"]
    assert stdout.splitlines()[-1] == ("1 near duplicates by pixels alone are not suggested to drop: look at them "
                                       f"({tmp_path / 'p' / 'to_review.txt'}), or confirm them with --engine")
    assert (tmp_path / "p" / "drop.txt").read_text().splitlines() == ["first-copy.jpg"]

    # Listed copies that disagree decide nothing for an unlisted third copy: it is kept, and says why.
    (root / "first-big.png").unlink()
    shutil.copy(root / "first.jpg", root / "third-copy.jpg")
    (tmp_path / "conflict.csv").write_text('id,categories\nfirst,"[37]"\nfirst-copy,"[160]"\nsecond,"[160]"\n')
    result = run_dedupe(DedupeConfig(source=root, out=tmp_path / "c", labels=tmp_path / "conflict.csv"))
    third = result.clusters.filter(pl.col("path") == "third-copy.jpg").row(0, named=True)
    assert third["keep"] and not third["to_review"]
    assert third["reason"].endswith(f"; byte-identical to images labelled differently (first-copy.jpg "
                                    f"[{NAMES[fathomnet2023().column_of[160]]}], first.jpg [{name37}]), so which "
                                    "labels it has is unknown")
