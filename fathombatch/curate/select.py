"""Select rows of a scores table by category or supercategory probability, out-of-sample score, or status.

The rule, applied lazily so only the needed columns are read:

* the *match probability* of a row is the largest probability among the ``--category`` columns and the classes
  of every ``--supercategory`` (the probability that the image shows at least one of them is at least this);
* with any category or supercategory given, a row is kept when ``min_prob <= match <= max_prob``;
* ``min_osd``/``max_osd`` bound ``osd``; ``status`` keeps only ``ok`` or ``error`` rows;
* all given conditions must hold (AND). Rows are ordered by match probability (highest first), then path.

The output (``.parquet``, ``.csv`` or ``.txt`` = one path per line) has ``image_id, path, status, error, osd,
category, probability``: ``category`` is the class that gave the match probability, or the top-1 predicted class
when no category was asked for. Optionally the images are copied or symlinked into ``DIR/<category>/``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from fathombatch.curate.scoretable import class_columns, images_root, resolve_image, supercategory_columns
from fathombatch.errors import UsageError, param
from fathombatch.fsutil import atomic_path, fs_path
from fathombatch.pathargs import PathFields
from fathombatch.pathguard import same_entry
from fathombatch.progress import Progress
from fathombatch.scores.table import ScoresTable

OUTPUT_COLUMNS = ("image_id", "path", "status", "error", "osd", "category", "probability")
RowStatus = Literal["ok", "error"]


@dataclass(frozen=True)
class SelectConfig(PathFields):
    """Attributes:
    scores: the scores table.
    out: ``.parquet``, ``.csv`` or ``.txt`` (paths only).
    categories, supercategories: names; a row matches through any of them.
    min_prob, max_prob: bounds of the match probability, in [0, 1].
    min_osd, max_osd: bounds of the out-of-sample score.
    status: keep only rows with this status.
    limit: keep at most this many rows (the most probable first).
    copy_to: also place the selected images in ``copy_to/<category>/``.
    mode: ``copy`` files or make ``symlink`` s to them.
    images_root: folder the table's paths are relative to (default: the table's ``run.root``).
    """

    scores: Path
    out: Path
    categories: tuple[str, ...] = ()
    supercategories: tuple[str, ...] = ()
    min_prob: float = 0.5
    max_prob: float = 1.0
    min_osd: float | None = None
    max_osd: float | None = None
    status: RowStatus | None = None
    limit: int | None = None
    copy_to: Path | None = None
    mode: Literal["copy", "symlink"] = "copy"
    images_root: Path | None = None


@dataclass(frozen=True)
class SelectResult:
    rows: int
    out: Path
    placed: int
    copy_to: Path | None
    not_placed: tuple[tuple[str, str], ...] = ()


def _candidates(table: ScoresTable, cfg: SelectConfig) -> list[str]:
    cols = class_columns(table.taxonomy, cfg.categories)
    for members in supercategory_columns(table.taxonomy, cfg.supercategories).values():
        cols += [c for c in members if c not in cols]
    return cols


def selection(table: ScoresTable, cfg: SelectConfig) -> pl.LazyFrame:
    """The lazy frame of selected rows, with :data:`OUTPUT_COLUMNS` (see the module docstring for the rule)."""
    for name, value in ((param("min_prob"), cfg.min_prob), (param("max_prob"), cfg.max_prob)):
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"{name} must be between 0 and 1, got {value}")
    cols = _candidates(table, cfg)
    lazy = table.lazy
    names = table.taxonomy.names
    if cols:
        lookup = dict(enumerate(cols))
        lazy = lazy.with_columns(
            probability=pl.max_horizontal(cols),
            category=pl.concat_list(cols).list.arg_max().replace_strict(lookup, return_dtype=pl.String),
        ).filter(pl.col("probability").is_between(cfg.min_prob, cfg.max_prob))
    else:
        id_to_name = dict(zip(table.taxonomy.ids, names, strict=True))
        top1 = pl.col("top_categories").list.first()
        lazy = lazy.with_columns(
            category=top1.replace_strict(id_to_name, default=None, return_dtype=pl.String),
            probability=pl.max_horizontal(names),
        )
    if cfg.min_osd is not None:
        lazy = lazy.filter(pl.col("osd") >= cfg.min_osd)
    if cfg.max_osd is not None:
        lazy = lazy.filter(pl.col("osd") <= cfg.max_osd)
    if cfg.status is not None:
        lazy = lazy.filter(pl.col("status") == cfg.status)
    lazy = lazy.select(OUTPUT_COLUMNS).sort(["probability", "path"], descending=[True, False], nulls_last=True)
    return lazy.head(cfg.limit) if cfg.limit is not None else lazy


def _write(lazy: pl.LazyFrame, out: Path) -> int:
    suffix = out.suffix.lower()
    if suffix == ".txt":
        broken = lazy.filter(pl.col("path").str.contains("[\r\n]")).select("path").collect()
        if broken.height:
            raise UsageError(f"{param('out')} {out}: {broken.height} selected path(s) contain a line break (e.g. "
                             f"{broken['path'][0]!r}) and would read back as other paths one per line; write .parquet "
                             "or .csv instead")
    with atomic_path(out) as tmp:
        if suffix == ".parquet":
            lazy.sink_parquet(tmp)
        elif suffix == ".csv":
            lazy.sink_csv(tmp)
        else:
            lazy.select("path").sink_csv(tmp, include_header=False, quote_style="never")
    if suffix == ".parquet":
        return int(pl.scan_parquet(out).select(pl.len()).collect().item())
    if suffix == ".csv":
        return int(pl.scan_csv(out).select(pl.len()).collect().item())
    with out.open("rb") as fh:
        return sum(1 for _ in fh)


def _place_link(src: Path, target: Path) -> None:
    """Make ``target`` a symlink to ``src`` atomically (a temporary link renamed into place)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(src.resolve(), tmp)
    os.replace(tmp, target)


def placements(rows: pl.DataFrame, root: Path, dest: Path) -> list[tuple[str, Path, Path]]:
    """Where each image of ``rows`` (``path, category, status``) goes: (table path, source, destination) with the
    destination ``dest/<category>/<file name>``.

    Error rows go to ``_error/``. Two files with the same name in one category folder (same name, different source
    folders) get the first 8 hex digits of the SHA-1 of their path appended, so none overwrites another.

    Raises:
        LabelFileError: a table path escapes ``root``.
        UsageError: a destination is its own source (``dest`` is, or lies in, the image folder), so that a caller
            refuses before writing anything.
    """
    # category names may contain '/' (none of FathomNet's do, but a custom taxonomy might)
    folder = (
        pl.when(pl.col("status") != "ok").then(pl.lit("_error"))
        .when(pl.col("category").is_null()).then(pl.lit("_none"))
        .otherwise(pl.col("category").str.replace_all(r"[/\\]", "_").str.strip_chars_start("."))
    )
    frame = rows.with_columns(folder=folder, name=pl.col("path").str.split("/").list.last())
    clash = frame.select(pl.struct("folder", "name").is_duplicated()).to_series().to_list()
    found = []
    for (rel, sub, name), dup in zip(frame.select("path", "folder", "name").rows(), clash, strict=True):
        src = resolve_image(root, rel, f"scores table row {rel!r}")
        if dup:
            stem, dot, ext = name.rpartition(".")
            tag = hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest()[:8]
            name = f"{stem}__{tag}.{ext}" if dot else f"{name}__{tag}"
        target = dest / (sub or "_unnamed") / fs_path(name)  # the file's own name, not the table's spelling
        # Checked here, whatever a caller checked before: a link written over its own source points at itself and
        # the image is gone.
        if same_entry(target, src):
            raise UsageError(f"copy_to {dest}: placing {rel!r} would replace the image itself ({src}); images are "
                             "never replaced by a copy or link of themselves: choose a copy_to folder outside the "
                             "image folder")
        found.append((rel, src, target))
    return found


def place_images(
    planned: list[tuple[str, Path, Path]], mode: str, progress: Progress | None = None
) -> tuple[int, list[tuple[str, str]]]:
    """Copy or symlink each (table path, source, destination) of :func:`placements`.

    Copies are atomic; links point to the absolute source path.

    Returns:
        the number of files placed, and (path, reason) for the files that could not be (missing, unreadable).
    """
    progress = progress or Progress(enabled=False)
    placed, failed = 0, []
    with progress.task("Placing images", len(planned), unit="file") as task:
        for rel, src, target in planned:
            task.advance()
            if not src.is_file():
                failed.append((rel, "file not found"))
                continue
            try:
                if mode == "symlink":
                    _place_link(src, target)
                else:
                    with atomic_path(target) as tmp:
                        shutil.copyfile(src, tmp)
            except PermissionError as exc:
                failed.append((rel, exc.strerror or "permission denied"))
                continue
            placed += 1
    return placed, failed


def run_select(cfg: SelectConfig, progress: Progress | None = None) -> SelectResult:
    """Write the selected rows to ``cfg.out`` and, with ``copy_to``, place their images by category.

    Every image's destination is checked before anything is written (see :func:`placements`).
    """
    if cfg.out.suffix.lower() not in (".parquet", ".csv", ".txt"):
        raise UsageError(f"{param('out')} {cfg.out}: expected a .parquet, .csv or .txt file name")
    table = ScoresTable.open(cfg.scores)
    lazy = selection(table, cfg)
    planned = None
    if cfg.copy_to is not None:
        rows = lazy.select("path", "category", "status").collect()
        planned = placements(rows, images_root(table, cfg.images_root), cfg.copy_to)
    n = _write(lazy, cfg.out)
    placed, failed = place_images(planned, cfg.mode, progress) if planned is not None else (0, [])
    return SelectResult(rows=n, out=cfg.out, placed=placed, copy_to=cfg.copy_to, not_placed=tuple(failed))
