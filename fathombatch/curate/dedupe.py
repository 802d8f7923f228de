"""Exact and near-duplicate images of a folder or of a scores table, with a keep/drop suggestion.

* Exact duplicates share a SHA-256 of their bytes. A cluster's ``kind`` is ``exact`` when all its files are
  byte-identical, ``near`` when none are, and ``mixed`` when it holds both byte-identical copies and near duplicates.
* Near duplicates have perceptual hashes (pHash, 64 bits) within ``max_distance`` bits; found through a
  multi-index over hash chunks (:mod:`~fathombatch.curate.hashindex`), never by comparing all pairs.
* With an engine (``--engine``), near duplicates by content too: SimHashes of the engine's embeddings within
  ``embedding_distance`` bits (:mod:`~fathombatch.curate.embeddings`), found through the same index.
* Clusters are the connected components of these relations (so A~B and B~C put A, B, C together).
* In each cluster the image with the most pixels is kept (then the larger file, then the first path); the others
  are suggested for dropping, each with the reason and its pHash (or embedding) distance to the kept one, when
  something besides pixels vouches for it (below).

Looking alike is not showing the same thing: on murky, low-contrast frames a different animal over the same
background can land within a few pHash bits (benchmarks/dedupe_precision.py measures it). So a member is never
suggested for dropping when

* a label file is given and its label set differs from the kept image's (with labels, a labelled image is kept in
  preference to unlabelled look-alikes; a byte-identical copy the label file does not list is the same image, so it
  takes its listed copies' labels, when they agree, and is dropped for them), or
* an engine is given and, though its pHash is close, its embedding is not (pixels alike, contents differ).

A near duplicate that nothing but its pHash vouches for (no label file, or the image is not in it; no engine, or
no embedding) is not suggested for dropping at all: it is listed ``to_review`` (``to_review.txt``/``.json``), for a
person, a label file or an engine to confirm. The issue asked never to propose deleting a labelled image of another
species; pixels cannot tell, so the default drops only what cannot be wrong: byte-identical copies (of the kept
image, or of an image to review). The decision is per pair, not per run, so a label file that misses some images
(or matches none) leaves their look-alikes to review rather than dropping them on pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from fathombatch.csvsafe import safe_frame
from fathombatch.curate.dupelabels import LabelSet, describe, label_sets, twin_note, with_twin_labels
from fathombatch.curate.hashindex import near_pairs, popcount64
from fathombatch.curate.hashing import FileHash, hash_files
from fathombatch.curate.scoretable import images_root, resolve_image
from fathombatch.decode.discover import discover
from fathombatch.errors import UsageError
from fathombatch.fsutil import atomic_path, display_path, write_path_list
from fathombatch.pathargs import PathFields
from fathombatch.progress import Progress
from fathombatch.scores.table import ScoresTable

CLUSTER_SCHEMA = {"cluster": pl.Int64, "kind": pl.String, "path": pl.String, "keep": pl.Boolean,
                  "distance": pl.Int64, "reason": pl.String, "to_review": pl.Boolean}


@dataclass(frozen=True)
class DedupeConfig(PathFields):
    """Attributes:
    source: a folder of images (searched recursively) or a scores table (``.parquet``).
    out: folder for ``hashes.parquet``, ``clusters.csv``, ``clusters.parquet``, ``drop.txt``/``drop.json`` and
        ``to_review.txt``/``to_review.json``.
    max_distance: near-duplicate radius in pHash bits (0..8; 0 = identical hashes). Beyond 8 bits the bucket index
        (9 chunks of about 7 bits) would compare nearly every pair of a large collection.
    images_root: for a scores table, the folder its paths are relative to (default: its ``run.root``).
    threads: hashing threads (default: all cores).
    engine: an engine whose ``features`` embed each image (None: exact and pHash only).
    embedding_distance: near-duplicate radius in embedding SimHash bits (0..8; 64 bits, ~2.8 degrees a bit).
    labels: a label file (Kaggle CSV or COCO json); images are matched by file stem, and one labelled otherwise
        than the kept image of its cluster is never suggested for dropping (None: no label check).
    """

    source: Path
    out: Path
    max_distance: int = 4
    images_root: Path | None = None
    threads: int | None = None
    engine: Path | None = None
    embedding_distance: int = 3
    labels: Path | None = None


@dataclass(frozen=True)
class DedupeResult:
    """Attributes:
    files: listed; errors: files that could not be hashed (see ``hashes.parquet``);
    clusters: rows of :data:`CLUSTER_SCHEMA`, one per file in a cluster;
    exact_clusters, near_clusters, mixed_clusters: cluster counts by kind (see the module docstring);
    drop: files suggested for dropping;
    to_review: near duplicates by pixels alone, listed for review and not dropped.
    outputs: files written; warnings: what the summary should say besides the counts.
    """

    files: int
    errors: int
    clusters: pl.DataFrame
    exact_clusters: int
    near_clusters: int
    mixed_clusters: int
    drop: int
    to_review: int
    outputs: tuple[Path, ...]
    warnings: tuple[str, ...] = ()


def _listing(cfg: DedupeConfig) -> tuple[Path, list[str]]:
    if cfg.source.is_dir():  # paths spelled as scores tables spell them, so names that are not UTF-8 can be stored
        return cfg.source, [display_path(p) for p in discover(cfg.source)]
    if cfg.source.suffix.lower() == ".parquet":
        table = ScoresTable.open(cfg.source)
        root = images_root(table, cfg.images_root)
        return root, table.lazy.select("path").collect()["path"].to_list()
    raise UsageError(f"{cfg.source} is neither a folder of images nor a scores table (.parquet)")


def _pixels(h: FileHash) -> int:
    return (h.width or 0) * (h.height or 0)


def _groups(hashes: list[FileHash], max_distance: int, emb: np.ndarray, emb_ok: np.ndarray,
            embedding_distance: int) -> list[list[int]]:
    """Connected components (of two or more files) of the exact, pHash and embedding relations, as index lists."""
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components

    n = len(hashes)
    edges: list[np.ndarray] = []
    first_of: dict[str, int] = {}
    for i, h in enumerate(hashes):
        if h.sha256 is None:
            continue
        rep = first_of.setdefault(h.sha256, i)
        if rep != i:
            edges.append(np.array([[rep, i]]))
    reps = np.array([i for i in first_of.values() if hashes[i].phash is not None], dtype=np.int64)
    phash = np.array([hashes[i].phash or 0 for i in range(n)], dtype=np.uint64)
    if len(reps) > 1:
        pairs, _ = near_pairs(phash[reps], max_distance)
        edges.append(reps[pairs])
    emb_reps = np.array([i for i in first_of.values() if emb_ok[i]], dtype=np.int64)
    if len(emb_reps) > 1:
        pairs, _ = near_pairs(emb[emb_reps], embedding_distance)
        edges.append(emb_reps[pairs])
    links = np.concatenate(edges) if edges else np.empty((0, 2), dtype=np.int64)
    graph = sparse.coo_matrix((np.ones(len(links)), (links[:, 0], links[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    sizes = np.bincount(label, minlength=n)
    grouped: dict[int, list[int]] = {}
    for member in np.flatnonzero(sizes[label] > 1):
        grouped.setdefault(int(label[member]), []).append(int(member))
    return list(grouped.values())


def _bits(a: int, b: int) -> int:
    return int(popcount64(np.array([a ^ b], dtype=np.uint64))[0])


@dataclass(frozen=True)
class _Pair:
    """A cluster member next to the kept image: pHash and embedding distances (None where a hash is missing)."""

    kept: str
    same_bytes: bool
    distance: int | None
    emb_distance: int | None
    labelled: bool = False


#: (keep, to_review, reason) of one cluster member.
_Verdict = tuple[bool, bool, str]


def _verdict(pair: _Pair, max_distance: int, embedding_distance: int) -> _Verdict:
    """What to do with a cluster member next to the kept image of its label group."""
    d, e = pair.distance, pair.emb_distance
    if pair.same_bytes:
        return False, False, f"byte-identical copy of {pair.kept}"
    if d is not None and d <= max_distance:
        if e is not None and e > embedding_distance:
            # Alike in pixels but not in content: on murky frames, different animals on one background hash alike.
            return True, False, (f"kept: pHash distance {d} from {pair.kept}, but embedding distance {e} is over "
                                 f"{embedding_distance}: the contents differ")
        if e is None and not pair.labelled:
            return True, True, (f"to review: looks like {pair.kept} (pHash distance {d}), but only pixels say so "
                                "(no label set, no embedding); not suggested for dropping")
        return False, False, f"near duplicate of {pair.kept} (pHash distance {d})"
    if e is not None and e <= embedding_distance:
        return False, False, f"near duplicate of {pair.kept} by content (embedding distance {e})"
    # Clusters are transitive (a slow pan links frame 1 to frame 8 through the ones between); only images close to
    # the kept one itself are suggested for dropping.
    reason = (f"kept: linked to the cluster through other images, but pHash distance {d} from {pair.kept} is over "
              f"{max_distance}")
    return True, False, reason + (f" and embedding distance {e} over {embedding_distance}" if e is not None else "")


def _kept_reason(keeper: int, group: list[int], members: list[int], paths: list[str], hashes: list[FileHash],
                 tags: Sequence[LabelSet]) -> str:
    """Why the kept image of a label group is kept; says when the cluster holds images labelled otherwise."""
    k = hashes[keeper]
    if len(group) == len(members):
        return f"kept: most pixels ({k.width}x{k.height}, {k.bytes} bytes) of its cluster"
    if tags[keeper] is None:
        why = "not in the label file; such images are never dropped for a labelled one they only look like"
    else:
        why = f"labelled {describe(tags[keeper])}; an image is never dropped for one labelled otherwise"
    copies = [i for i in members if i not in group and k.sha256 is not None and hashes[i].sha256 == k.sha256]
    return (f"kept: most pixels ({k.width}x{k.height}, {k.bytes} bytes) of its cluster's images {why}"
            + twin_note(keeper, copies, paths, tags))


@dataclass(frozen=True)
class _Inputs:
    """What every cluster is decided from: per path its hashes, label set and embedding SimHash (valid or not)."""

    paths: list[str]
    hashes: list[FileHash]
    tags: Sequence[LabelSet]
    taken: Sequence[bool]
    emb: np.ndarray
    emb_ok: np.ndarray
    max_distance: int
    embedding_distance: int


def _decide_group(group: list[int], members: list[int], x: _Inputs) -> dict[int, tuple[bool, bool, int | None, str]]:
    """(keep, to_review, pHash distance to the kept image, reason) per member of one label group of a cluster."""
    hashes = x.hashes
    # Best first: most pixels, then the larger file, then one the label file lists (a copy that took its labels
    # is dropped, not its listed twin, whose name the label file knows), then the first path.
    ordered = sorted(group, key=lambda i: (-_pixels(hashes[i]), -(hashes[i].bytes or 0), x.taken[i], i))
    keeper, k = ordered[0], hashes[ordered[0]]
    decided: dict[int, tuple[bool, bool, int | None, str]] = {}
    reviewed: dict[str | None, int] = {}  # sha256 -> the image to review with those bytes
    for i in ordered:
        h = hashes[i]
        distance = _bits(h.phash, k.phash) if h.phash is not None and k.phash is not None else None
        if i == keeper:
            decided[i] = (True, False, distance, _kept_reason(keeper, group, members, x.paths, hashes, x.tags))
            continue
        both = x.emb_ok[i] and x.emb_ok[keeper]
        pair = _Pair(kept=x.paths[keeper], same_bytes=h.sha256 == k.sha256, distance=distance,
                     emb_distance=_bits(int(x.emb[i]), int(x.emb[keeper])) if both else None,
                     labelled=x.tags[i] is not None)
        keep, review, reason = _verdict(pair, x.max_distance, x.embedding_distance)
        if x.taken[i]:
            reason += f"; not in the label file, but its byte-identical copies are, labelled {describe(x.tags[i])}"
        if review and reviewed.setdefault(h.sha256, i) != i:  # copies of an image to review: one to look at is enough
            keep, review, reason = False, False, f"byte-identical copy of {x.paths[reviewed[h.sha256]]}"
        decided[i] = (keep, review, distance, reason)
    return decided


def find_clusters(
    paths: list[str],
    hashes: list[FileHash],
    max_distance: int,
    embeddings: tuple[np.ndarray, np.ndarray] | None = None,
    embedding_distance: int = 3,
    labels: Sequence[LabelSet] | None = None,
) -> pl.DataFrame:
    """Group duplicates; see the module docstring for the rules. Returns rows of :data:`CLUSTER_SCHEMA`.

    Args:
        embeddings: optional ``(hashes, valid)`` from :func:`~fathombatch.curate.embeddings.embedding_hashes`,
            (N,) uint64 and (N,) bool in ``paths`` order.
        labels: optional label set per path (:func:`~fathombatch.curate.dupelabels.label_sets`). A cluster is then
            split by label set (images not in the label file form one group; a byte-identical copy of listed images
            joins theirs, :func:`~fathombatch.curate.dupelabels.with_twin_labels`) and each group keeps its own
            image, so no image is ever suggested for dropping in favour of one labelled otherwise.

    Without labels or embeddings for a pair, a pHash near duplicate is ``to_review`` (kept), never dropped.
    """
    n = len(paths)
    emb, emb_ok = embeddings if embeddings is not None else (np.zeros(n, dtype=np.uint64), np.zeros(n, dtype=bool))
    tags, taken = with_twin_labels(hashes, labels) if labels is not None else ([None] * n, [False] * n)
    x = _Inputs(paths=paths, hashes=hashes, tags=tags, taken=taken, emb=emb, emb_ok=emb_ok,
                max_distance=max_distance, embedding_distance=embedding_distance)
    records = []
    groups = _groups(hashes, max_distance, emb, emb_ok, embedding_distance)
    for cluster_no, members in enumerate(sorted(groups, key=lambda m: paths[m[0]]), start=1):
        distinct = len({hashes[i].sha256 for i in members})
        kind = "exact" if distinct == 1 else "near" if distinct == len(members) else "mixed"
        by_tag: dict[LabelSet, list[int]] = {}
        for i in members:
            by_tag.setdefault(x.tags[i], []).append(i)
        decided = {i: v for group in by_tag.values() for i, v in _decide_group(group, members, x).items()}
        for i in members:
            keep, review, distance, reason = decided[i]
            records.append((cluster_no, kind, paths[i], keep, distance, reason, review))
    return pl.DataFrame(records, schema=CLUSTER_SCHEMA, orient="row")


def _hash_table(paths: list[str], hashes: list[FileHash], embeddings: tuple[np.ndarray, np.ndarray] | None
                ) -> pl.DataFrame:
    """``hashes.parquet``: one row per file (hex hashes; ``embedding_hash`` only with an engine)."""
    table = pl.DataFrame(
        {
            "path": paths,
            "bytes": [h.bytes for h in hashes],
            "width": [h.width for h in hashes],
            "height": [h.height for h in hashes],
            "sha256": [h.sha256 for h in hashes],
            "phash": [None if h.phash is None else f"{h.phash:016x}" for h in hashes],
            "error": [h.error for h in hashes],
        },
        schema={"path": pl.String, "bytes": pl.Int64, "width": pl.Int32, "height": pl.Int32, "sha256": pl.String,
                "phash": pl.String, "error": pl.String},
    )
    if embeddings is not None:
        emb, ok = embeddings
        table = table.with_columns(
            pl.Series("embedding_hash", [f"{int(e):016x}" if v else None for e, v in zip(emb, ok, strict=True)],
                      dtype=pl.String)
        )
    return table


def run_dedupe(cfg: DedupeConfig, progress: Progress | None = None) -> DedupeResult:
    """Hash every file, cluster duplicates, and write the results into ``cfg.out``."""
    if not 0 <= cfg.max_distance <= 8:
        raise UsageError(f"max_distance must be between 0 and 8 bits, got {cfg.max_distance}")
    if not 0 <= cfg.embedding_distance <= 8:
        raise UsageError(f"embedding_distance must be between 0 and 8 bits, got {cfg.embedding_distance}")
    if cfg.engine is not None:
        from fathombatch.backends import resolve_engine_path

        resolve_engine_path(cfg.engine)  # a wrong name fails now, not after hours of hashing
    root, paths = _listing(cfg)
    if not paths:
        raise UsageError(f"no images to compare in {cfg.source}")
    tags = label_sets(cfg.labels, paths) if cfg.labels is not None else None  # a bad label file fails before hashing
    files = [resolve_image(root, p, f"{cfg.source}: path {p!r}") for p in paths]
    hashes = hash_files(files, threads=cfg.threads, progress=progress)
    embeddings = None
    if cfg.engine is not None:
        from fathombatch.curate.embeddings import embedding_hashes

        embeddings = embedding_hashes(files, cfg.engine, threads=cfg.threads, progress=progress)
    clusters = find_clusters(paths, hashes, cfg.max_distance, embeddings, cfg.embedding_distance, tags)

    table = _hash_table(paths, hashes, embeddings)
    outputs = []
    for name, frame in (("hashes", table), ("clusters", clusters)):
        with atomic_path(cfg.out / f"{name}.parquet") as tmp:
            frame.write_parquet(tmp)
        outputs.append(cfg.out / f"{name}.parquet")
    with atomic_path(cfg.out / "clusters.csv") as tmp:
        safe_frame(clusters).write_csv(tmp)
    outputs.append(cfg.out / "clusters.csv")
    drop = clusters.filter(~pl.col("keep"))["path"].to_list()
    review = clusters.filter(pl.col("to_review"))["path"].to_list()
    warnings = []
    for name, listed in (("drop", drop), ("to_review", review)):
        unlisted = write_path_list(cfg.out / f"{name}.txt", listed)
        outputs += [cfg.out / f"{name}.txt", cfg.out / f"{name}.json"]
        if unlisted:
            warnings.append(f"{len(unlisted)} path(s) in {name}.txt contain a line break and are listed in {name}.json "
                            f"only (as one line each they would name other files), e.g. {unlisted[0]!r}")
    if tags is not None and all(t is None for t in tags):
        warnings.append(f"none of the {len(tags)} files is in {cfg.labels} (matched by file stem): no drop was "
                        "checked against labels")
    kinds = clusters.unique("cluster")["kind"]
    return DedupeResult(
        files=len(paths),
        errors=sum(h.error is not None for h in hashes),
        clusters=clusters,
        exact_clusters=int((kinds == "exact").sum()),
        near_clusters=int((kinds == "near").sum()),
        mixed_clusters=int((kinds == "mixed").sum()),
        drop=len(drop),
        to_review=len(review),
        outputs=tuple(outputs),
        warnings=tuple(warnings),
    )
