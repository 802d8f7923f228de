"""Train/held-out splits and K folds by iterative multi-label stratification, with a coverage report.

The single split reuses :func:`fathombatch.labels.splits.stratified_split` (which also repairs categories of 2+ images
that rounding left on one side); folds use ``iterstrat``'s ``MultilabelStratifiedKFold``, left unrepaired so
that every image is held out exactly once. Outputs keep the input's format: COCO in, COCO out (with boxes);
Kaggle CSV in, Kaggle CSV out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from fathombatch.curate.labelfiles import (
    coco_subset,
    label_format,
    suffix_of,
    write_coco,
)
from fathombatch.errors import UsageError, param
from fathombatch.fsutil import write_text_atomic
from fathombatch.labels import Labels, load_coco_json, read_labels, write_kaggle_csv
from fathombatch.labels.splits import repair_coverage, stratified_split
from fathombatch.pathargs import PathFields


@dataclass(frozen=True)
class SplitConfig(PathFields):
    """Attributes:
    labels: Kaggle CSV or COCO json.
    out: folder; gets ``train.<ext>``, ``val.<ext>`` (or ``fold-K/`` folders), ``coverage.csv``, ``coverage.md``.
    val_fraction: held-out share in (0, 1) for the single split.
    seed: the split is a deterministic function of the labels and the seed.
    folds: K >= 2 for K folds instead of one split.
    """

    labels: Path
    out: Path
    val_fraction: float = 0.2
    seed: int = 0
    folds: int | None = None


@dataclass(frozen=True)
class SplitResult:
    """Attributes:
    sides: per fold (one for a single split), (train image_ids, val image_ids).
    coverage: one row per (fold, category present in the labels): ``fold, category_id, name, supercategory,
        images, train, val, status`` (``both``, ``train only``, ``val only``) and ``reason`` (null when both).
    files: every file written.
    """

    sides: tuple[tuple[list[str], list[str]], ...]
    coverage: pl.DataFrame
    files: tuple[Path, ...]

    @property
    def missing(self) -> pl.DataFrame:
        """Coverage rows of categories absent from one side."""
        return self.coverage.filter(pl.col("status") != "both")


def _fold_indices(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    if folds < 2:
        raise UsageError(f"{param('folds')} must be at least 2, got {folds}")
    if y.shape[0] < folds:
        raise UsageError(f"{folds} folds need at least {folds} images, got {y.shape[0]}")
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(va)) for tr, va in splitter.split(np.zeros(y.shape[0]), y.astype(np.int64))]


def complete_coverage(y: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move single images so that every category with 2+ images is on both sides where possible.

    Extends the repair inside :func:`~fathombatch.labels.splits.stratified_split`, which never moves an image holding
    the only example of another category: here such an image may move when that other category has a single image
    in all (it is on one side only wherever it goes). An image is never moved when that would empty a side of a
    category with 2+ images.

    Returns:
        (train_idx, val_idx), sorted int64 arrays partitioning the rows.
    """
    y = np.asarray(y) != 0
    in_val = np.zeros(y.shape[0], dtype=bool)
    in_val[val_idx] = True
    repair_coverage(y, in_val, rounds=3, allow_singletons=True)
    return np.flatnonzero(~in_val).astype(np.int64), np.flatnonzero(in_val).astype(np.int64)


def _reason(total: int, train: int, val: int, folds: int | None) -> str | None:
    if train and val:
        return None
    if total == 1:
        return "only 1 image: it can be on one side only"
    if folds and total < folds and not val:
        return f"only {total} images for {folds} folds: some folds cannot hold one out"
    if folds:
        return "the stratified folds put all its images on one side of this fold"
    return "could not be placed on both sides without taking the last image of another category"


def coverage_frame(labels: Labels, y: np.ndarray, sides: list[tuple[np.ndarray, np.ndarray]],
                   folds: int | None) -> pl.DataFrame:
    """Per fold and category present: images on each side, and why a side is empty."""
    tax = labels.taxonomy
    total = y.sum(axis=0, dtype=np.int64)
    present = np.flatnonzero(total)
    records = []
    for k, (tr, va) in enumerate(sides, start=1):
        n_tr, n_va = y[tr].sum(axis=0, dtype=np.int64), y[va].sum(axis=0, dtype=np.int64)
        for j in present:
            status = "both" if n_tr[j] and n_va[j] else ("train only" if n_tr[j] else "val only")
            records.append((k, tax.ids[j], tax.names[j], tax.supercategories[j], int(total[j]), int(n_tr[j]),
                            int(n_va[j]), status, _reason(int(total[j]), int(n_tr[j]), int(n_va[j]), folds)))
    return pl.DataFrame(
        records,
        schema={"fold": pl.Int64, "category_id": pl.Int64, "name": pl.String, "supercategory": pl.String,
                "images": pl.Int64, "train": pl.Int64, "val": pl.Int64, "status": pl.String, "reason": pl.String},
        orient="row",
    )


def _coverage_markdown(cov: pl.DataFrame, sides: list[tuple[np.ndarray, np.ndarray]], source: Path) -> str:
    lines = [f"# Split coverage of {source.name}\n"]
    for k, (tr, va) in enumerate(sides, start=1):
        part = cov.filter(pl.col("fold") == k)
        missing = part.filter(pl.col("status") != "both")
        lines.append(f"## {'Fold ' + str(k) if len(sides) > 1 else 'Split'}: {len(tr)} train / {len(va)} val images\n")
        lines.append(f"{part.height - missing.height} of {part.height} categories present are on both sides.\n")
        for cid, name, images, status, reason in missing.select("category_id", "name", "images", "status",
                                                                 "reason").iter_rows():
            lines.append(f"- {name} (id {cid}, {images} image{'' if images == 1 else 's'}): {status} - {reason}")
        lines.append("")
    return "\n".join(lines) + "\n"


def _write_side(labels: Labels, coco: dict | None, idx: np.ndarray, dest: Path) -> Path:
    """Write rows ``idx`` as COCO (when the raw COCO records are given) or as a Kaggle CSV."""
    part = labels.frame[idx]
    if coco is not None:
        return write_coco(dest, coco_subset(coco, set(part["image_id"].to_list()), labels.source))
    return write_kaggle_csv(dest, zip(part["image_id"].to_list(), part["categories"].to_list(), strict=True))


def split_labels(cfg: SplitConfig) -> SplitResult:
    """Split (or fold) the labels and write both sides in the input's format plus the coverage report."""
    fmt = label_format(cfg.labels)
    if cfg.folds is None and not 0.0 < cfg.val_fraction < 1.0:
        raise UsageError(f"{param('val_fraction')} must be between 0 and 1, got {cfg.val_fraction}")
    labels = read_labels(cfg.labels)
    if len(labels) < 2:
        raise UsageError(f"{cfg.labels} has {len(labels)} image(s); a split needs at least 2")
    y = labels.multi_hot()
    coco = load_coco_json(cfg.labels) if fmt == "coco" else None
    if cfg.folds is None:
        sides = [complete_coverage(y, *stratified_split(y, cfg.val_fraction, cfg.seed))]
        dirs = [cfg.out]
    else:
        sides = _fold_indices(y, cfg.folds, cfg.seed)
        dirs = [cfg.out / f"fold-{k}" for k in range(1, len(sides) + 1)]
    ext = suffix_of(fmt)
    files: list[Path] = []
    for (tr, va), folder in zip(sides, dirs, strict=True):
        files.append(_write_side(labels, coco, tr, folder / f"train{ext}"))
        files.append(_write_side(labels, coco, va, folder / f"val{ext}"))
    cov = coverage_frame(labels, y, sides, cfg.folds)
    buf = cov.write_csv()
    write_text_atomic(cfg.out / "coverage.csv", buf)
    write_text_atomic(cfg.out / "coverage.md", _coverage_markdown(cov, sides, cfg.labels))
    files += [cfg.out / "coverage.csv", cfg.out / "coverage.md"]
    ids = labels.frame["image_id"]
    out_sides = tuple((ids[tr].to_list(), ids[va].to_list()) for tr, va in sides)
    return SplitResult(sides=out_sides, coverage=cov, files=tuple(files))
