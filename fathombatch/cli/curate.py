"""The ``fathombatch curate ...`` commands and ``fathombatch download``: thin click wrappers over
:mod:`fathombatch.curate`.

Each command parses its options, builds a frozen config, calls one library function and prints a summary. Errors
follow :mod:`fathombatch.cli`: one ``Error: ...`` line on stderr and the error's exit code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fathombatch.cli.kit import (
    CONTEXT,
    MAX_THREADS,
    Command,
    Group,
    LabelPath,
    field_option,
    guard_outputs,
    output_file,
    quiet_option,
    renamed_option,
)
from fathombatch.cli.kit import progress as _progress
from fathombatch.curate.convert import ConvertConfig
from fathombatch.curate.dedupe import DedupeConfig
from fathombatch.curate.download import DownloadConfig
from fathombatch.curate.review import ReviewConfig
from fathombatch.curate.select import SelectConfig
from fathombatch.curate.split import SplitConfig
from fathombatch.curate.stats import StatsConfig
from fathombatch.curate.subset import SubsetConfig
from fathombatch.curate.validate import ValidateConfig
from fathombatch.errors import LabelFileError, OutputError, UsageError

if TYPE_CHECKING:  # what each click.Choice hands over, as the library's configs name it
    from fathombatch.curate.review import Strategy
    from fathombatch.curate.select import RowStatus

_CONTEXT = CONTEXT
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_LABELS = LabelPath()
_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
_OUT = click.Path(path_type=Path)


def _images_root_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return renamed_option("--images", "--images-root", dest="images_root", type=_DIR,
                          help="Folder the table's paths are relative to [default: the table's run.root].")(f)


@click.group(cls=Group, context_settings=_CONTEXT)
def curate() -> None:
    """Curate data sets: statistics, splits, selections, review queues, duplicates, label files.

    \b
    Example (see docs/curation.md for the whole workflow):
      fathombatch curate review scores.parquet --n 200 --strategy uncertain --out review/
      fathombatch curate split dive/annotations.json --val-fraction 0.2 --seed 0 --out split/
    """


@curate.command(context_settings=_CONTEXT)
@guard_outputs(inputs=("labels",), folders=("out",))
@click.argument("labels", type=_LABELS)
@click.option("--out", type=_OUT, required=True, help="Folder for the tables (Parquet, Markdown) and PNG charts.")
@field_option("--top-pairs", config=StatsConfig, field="top_pairs", type=click.IntRange(min=1),
              help="Co-occurring pairs listed.")
@field_option("--top-categories", config=StatsConfig, field="top_categories", type=click.IntRange(min=1),
              help="Categories charted.")
def stats(labels: Path, out: Path, top_pairs: int, top_categories: int) -> None:
    """Images per category and supercategory, label cardinality and co-occurrence of LABELS (CSV or COCO).

    Writes categories/supercategories/cardinality/pairs.parquet, stats.md and supercategories.png,
    top_categories.png, cardinality.png.

    \b
    Example:
      fathombatch curate stats dive/annotations.json --out stats/
    """
    from fathombatch.curate.stats import run_stats

    r = run_stats(StatsConfig(labels=labels, out=out, top_pairs=top_pairs, top_categories=top_categories))
    present = r.stats.categories.filter(r.stats.categories["images"] > 0).height
    click.echo(f"{r.stats.images} images, {present} categories present, {r.stats.labelled} images labelled. "
               f"Wrote {len(r.files)} files to {out} (summary: {out / 'stats.md'})")


@curate.command(context_settings=_CONTEXT)
@guard_outputs(inputs=("labels",), folders=("out",))
@click.argument("labels", type=_LABELS)
@click.option("--out", type=_OUT, required=True, help="Folder for train/val files (input's format) and coverage.")
@field_option("--val-fraction", "--val", "val_fraction", config=SplitConfig, field="val_fraction",
              hidden_aliases=("--val",), type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Held-out share (ignored with --folds).")
@field_option("--seed", config=SplitConfig, field="seed", type=int)
@click.option("--folds", type=click.IntRange(min=2), help="Write K folds (OUT/fold-1 ... fold-K) instead of one split.")
def split(labels: Path, out: Path, val_fraction: float, seed: int, folds: int | None) -> None:
    """Split LABELS by iterative multi-label stratification so rare categories land on both sides.

    Writes OUT/train.<ext> and OUT/val.<ext> (or OUT/fold-K/...) in the input's format, and coverage.csv/.md:
    every category missing from a side, and why.

    \b
    Example:
      fathombatch curate split dive/annotations.json --val-fraction 0.2 --seed 0 --out split/
      fathombatch curate split dive/train.csv --folds 5 --out folds/
    """
    from fathombatch.curate.split import split_labels

    r = split_labels(SplitConfig(labels=labels, out=out, val_fraction=val_fraction, seed=seed, folds=folds))
    for k, (train, val) in enumerate(r.sides, start=1):
        name = f"fold {k}" if folds else "split"
        click.echo(f"{name}: {len(train)} train / {len(val)} val images")
    missing = r.missing
    both = r.coverage.height - missing.height
    what = "(fold, category) pairs" if folds else "categories present"
    click.echo(f"{both} of {r.coverage.height} {what} on both sides; {missing.height} missing from a side - "
               f"see {out / 'coverage.md'}")
    for name, images, status, reason in missing.select("name", "images", "status", "reason").head(10).iter_rows():
        click.echo(f"  {name} ({images} img): {status} - {reason}")


@curate.command(context_settings=_CONTEXT)
@guard_outputs(inputs=("scores", "images_root"), files=("out",), folders=("copy_to",), tables=("scores",))
@click.argument("scores", type=_FILE)
@click.option("--out", type=_OUT, required=True, help="Selected rows: .parquet, .csv, or .txt (one path per line).")
@field_option("--category", "categories", config=SelectConfig, field="categories", multiple=True,
              help="Class name (repeatable; a row matches through any).")
@field_option("--supercategory", "supercategories", config=SelectConfig, field="supercategories", multiple=True,
              help="Supercategory name (repeatable).")
@field_option("--min-prob", config=SelectConfig, field="min_prob", type=click.FloatRange(0, 1),
              help="Lowest match probability (with --category/--supercategory).")
@field_option("--max-prob", config=SelectConfig, field="max_prob", type=click.FloatRange(0, 1),
              help="Highest match probability.")
@click.option("--min-osd", type=float, help="Lowest out-of-sample score.")
@click.option("--max-osd", type=float, help="Highest out-of-sample score.")
@field_option("--status", config=SelectConfig, field="status", help="Keep only rows with this status.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many rows, most probable first.")
@click.option("--copy-to", type=_OUT, help="Also place the images in COPY_TO/<category>/.")
@click.option("--symlink", is_flag=True, help="With --copy-to: make symbolic links instead of copies.")
@_images_root_option
@quiet_option
def select(scores: Path, out: Path, categories: tuple[str, ...], supercategories: tuple[str, ...], min_prob: float,
           max_prob: float, min_osd: float | None, max_osd: float | None, status: RowStatus | None,
           limit: int | None,
           copy_to: Path | None, symlink: bool, images_root: Path | None, quiet: bool) -> None:
    """Select rows of a SCORES table by class probability, out-of-sample score or status.

    \b
    Example:
      fathombatch curate select scores.parquet --category "Sebastes" --min-prob 0.6 --out sebastes.csv
      fathombatch curate select scores.parquet --supercategory Fish --out fish.parquet --copy-to fish/
      fathombatch curate select scores.parquet --min-osd 0.9 --out novel.txt
    """
    from fathombatch.curate.select import run_select

    cfg = SelectConfig(scores=scores, out=out, categories=categories, supercategories=supercategories,
                       min_prob=min_prob, max_prob=max_prob, min_osd=min_osd, max_osd=max_osd,
                       status=status, limit=limit, copy_to=copy_to,
                       mode="symlink" if symlink else "copy", images_root=images_root)
    r = run_select(cfg, progress=_progress(quiet))
    click.echo(f"Selected {r.rows} rows: {r.out}")
    if r.copy_to is not None:
        click.echo(f"{'Linked' if symlink else 'Copied'} {r.placed} images into {r.copy_to}/<category>/")
        for path, reason in r.not_placed[:10]:
            click.echo(f"  not placed: {path}: {reason}")
        if len(r.not_placed) > 10:
            click.echo(f"  ... and {len(r.not_placed) - 10} more not placed")


@curate.command(context_settings=_CONTEXT)
@guard_outputs(inputs=("scores", "other", "images_root"), folders=("out",), tables=("scores", "other"))
@click.argument("scores", type=_FILE)
@click.option("--out", type=_OUT, required=True, help="Folder for queue.csv, index.html and thumbs/.")
@field_option("--n", config=ReviewConfig, field="n", type=click.IntRange(min=1), help="Images in the queue.")
@field_option("--strategy", config=ReviewConfig, field="strategy", help="How images are ranked (see docs/curation.md).")
@click.option("--other", type=_FILE, help="Second scores table of the same files, for --strategy disagree.")
@field_option("--top", config=ReviewConfig, field="top", type=click.IntRange(1, 20),
              help="Predictions shown per image.")
@field_option("--thumb-size", config=ReviewConfig, field="thumb_size", type=click.IntRange(16, 1024),
              help="Thumbnail pixels.")
@click.option("--threshold", type=float,
              help="uncertain: one presence threshold for every class (default: the engine's per-class ones, "
                   "as export-table uses).")
@_images_root_option
@quiet_option
def review(scores: Path, out: Path, n: int, strategy: Strategy, other: Path | None, top: int, thumb_size: int,
           threshold: float | None, images_root: Path | None, quiet: bool) -> None:
    """Build a review queue from SCORES: a CSV and an HTML contact sheet with thumbnails and top predictions.

    \b
    Example:
      fathombatch curate review scores.parquet --n 200 --strategy uncertain --out review/
      fathombatch curate review a.parquet --other b.parquet --strategy disagree --out disagree/
    """
    from fathombatch.curate.review import build_review

    if threshold is not None and strategy != "uncertain":  # said in flags here; the library names its parameter
        raise UsageError(f"--threshold applies only to --strategy uncertain, not to --strategy {strategy}")
    cfg = ReviewConfig(scores=scores, out=out, n=n, strategy=strategy, other=other,
                       images_root=images_root, top=top, thumb_size=thumb_size, threshold=threshold)
    r = build_review(cfg, progress=_progress(quiet))
    source = f", {r.threshold_source} thresholds" if r.threshold_source else ""
    click.echo(f"Queue of {r.queue.height} images ({strategy}{source}): {r.csv}   Contact sheet: {r.html}")
    if r.missing:
        click.echo(f"  {len(r.missing)} images without a thumbnail (reasons in the sheet)")
    for warning in r.warnings:
        click.echo(f"warning: {warning}", err=True)


@curate.command(context_settings=_CONTEXT)
@guard_outputs(inputs=("source", "labels", "images_root", "engine"), folders=("out",), tables=("source",))
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=_OUT, required=True,
              help="Folder for hashes.parquet, clusters.csv/.parquet, drop.txt, to_review.txt.")
@field_option("--max-distance", config=DedupeConfig, field="max_distance", type=click.IntRange(0, 8),
              help="Near-duplicate radius in pHash bits (the bucket index stays sub-quadratic up to 8).")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), help="Hashing threads (default: all cores).")
@click.option("--engine", help="Also compare by content: SimHashes of this engine's embeddings (file or name).")
@field_option("--embedding-distance", config=DedupeConfig, field="embedding_distance", type=click.IntRange(0, 8),
              help="With --engine: near-duplicate radius in embedding SimHash bits (64 bits in all).")
@click.option("--labels", type=_LABELS,
              help="Label file (CSV or COCO, matched by file stem): never suggest dropping an image labelled "
                   "otherwise than the one kept; confirms near duplicates labelled alike.")
@_images_root_option
@quiet_option
def dedupe(source: Path, out: Path, max_distance: int, threads: int | None, engine: str | None,
           embedding_distance: int, labels: Path | None, images_root: Path | None, quiet: bool) -> None:
    """Find exact and near-duplicate images in SOURCE (a folder, or a scores table's files).

    Only byte-identical copies are suggested to drop unless --labels or --engine confirms a near duplicate; the
    others are listed in to_review.txt.

    \b
    Example:
      fathombatch curate dedupe dive/images --out dupes/
      fathombatch curate dedupe scores.parquet --max-distance 6 --out dupes/
      fathombatch curate dedupe dive/images --engine demo-efficientnet_lite0.onnx --out dupes/
      fathombatch curate dedupe dive/images --labels dive/annotations.json --out dupes/
    """
    from fathombatch.curate.dedupe import run_dedupe

    r = run_dedupe(DedupeConfig(source=source, out=out, max_distance=max_distance, images_root=images_root,
                                threads=threads, engine=Path(engine) if engine else None,
                                embedding_distance=embedding_distance, labels=labels), progress=_progress(quiet))
    click.echo(f"{r.files} files ({r.errors} unreadable): {r.exact_clusters} exact, {r.near_clusters} near and "
               f"{r.mixed_clusters} mixed (exact and near) duplicate clusters; {r.drop} files suggested to drop "
               f"({out / 'drop.txt'}, details in {out / 'clusters.csv'})")
    if r.to_review:
        guards = " or ".join(flag for flag, given in (("--labels", labels), ("--engine", engine)) if given is None)
        click.echo(f"{r.to_review} near duplicates by pixels alone are not suggested to drop: look at them "
                   f"({out / 'to_review.txt'})" + (f", or confirm them with {guards}" if guards else ""))
    for warning in r.warnings:
        click.echo(f"warning: {warning}", err=True)


@curate.command(context_settings=_CONTEXT)
@guard_outputs(inputs=("labels", "images"), files=("out",))
@click.argument("labels", type=_LABELS)
@click.option("--out", type=_OUT, required=True, help="Output; .json = COCO, .csv = Kaggle multi-label CSV.")
@click.option("--images", type=_DIR, help="CSV -> COCO: take file names and sizes from this folder.")
@field_option("--ext", config=ConvertConfig, field="ext", help="CSV -> COCO: extension of ids not found in --images.")
def convert(labels: Path, out: Path, images: Path | None, ext: str) -> None:
    """Convert LABELS between COCO detection json and the Kaggle multi-label CSV (format from --out).

    \b
    Example:
      fathombatch curate convert dive/annotations.json --out labels.csv
      fathombatch curate convert dive/train.csv --images dive/images --out labels.json
    """
    from fathombatch.curate.convert import convert as run_convert

    r = run_convert(ConvertConfig(labels=labels, out=out, images=images, ext=ext))
    click.echo(f"Wrote {r.images} images, {r.annotations} labels to {r.out}")
    for warning in r.warnings:
        click.echo(f"warning: {warning}", err=True)


@curate.command(context_settings=_CONTEXT)
@guard_outputs(inputs=("labels", "images"), files=("out",))
@click.argument("labels", type=_LABELS)
@click.option("--images", type=_DIR, help="Image folder: report missing files and size mismatches.")
@click.option("--out", type=_OUT, help="Problem report: .csv or .json.")
def validate(labels: Path, images: Path | None, out: Path | None) -> None:
    """Check LABELS (COCO or CSV) and report every problem; exits 1 when there is any.

    \b
    Example:
      fathombatch curate validate dive/annotations.json --images dive/images --out problems.csv
    """
    from fathombatch.curate.validate import validate as run_validate

    r = run_validate(ValidateConfig(labels=labels, images=images, out=out))
    coco = "" if r.pycocotools_ok is None else f"; pycocotools {'loads it' if r.pycocotools_ok else 'fails'}"
    click.echo(f"{labels}: {r.images} images, {r.annotations} annotations{coco}")
    for kind, count in r.counts().items():
        click.echo(f"  {count:7d} {kind}")
    for _, where, message in r.problems.head(20).iter_rows():
        click.echo(f"  {where}: {message}")
    if not r.ok:
        report = f"; full list in {out}" if out else "; pass --out FILE for the full list"
        raise LabelFileError(f"{labels} has {r.problems.height} problem(s){report}")
    click.echo("No problems found.")


@curate.command(context_settings=_CONTEXT)
@guard_outputs(inputs=("labels", "ids", "from_select", "images"), files=("out",))
@click.argument("labels", type=_LABELS)
@click.option("--out", type=_OUT, required=True, help="New label file: .json (COCO) or .csv (Kaggle).")
@click.option("--ids", type=_FILE, help="Text file: one image_id, file name or path per line.")
@click.option("--from-select", type=_FILE, help="Output of `curate select` (.parquet, .csv or .txt).")
@click.option("--images", type=_DIR, help="Kaggle CSV to COCO: the image folder, to record real file names.")
@field_option("--ext", config=SubsetConfig, field="ext", help="Kaggle CSV to COCO: extension of ids not found.")
def subset(labels: Path, out: Path, ids: Path | None, from_select: Path | None, images: Path | None, ext: str) -> None:
    """Write the labels of a chosen set of images (their annotations and all categories) as a new file.

    \b
    Example:
      fathombatch curate subset split/train.json --from-select keep.csv --out train-reviewed.json
      fathombatch curate subset dive/annotations.json --ids ids.txt --out subset.json
    """
    from fathombatch.curate.subset import make_subset

    r = make_subset(SubsetConfig(labels=labels, out=out, ids=ids, from_select=from_select, images=images, ext=ext))
    click.echo(f"Wrote {r.images} images, {r.annotations} annotations to {r.out}")
    if r.not_found:
        click.echo(f"warning: {len(r.not_found)} of {r.requested} ids are not in {labels} "
                   f"(e.g. {r.not_found[0]!r})", err=True)


@click.command(cls=Command, context_settings=_CONTEXT)
@click.argument("annotations", type=_FILE)
@click.option("--out", type=_OUT, required=True, help="Folder to download into (file_name paths below it).")
@field_option("--workers", config=DownloadConfig, field="workers", type=click.IntRange(1, 256),
              help="Concurrent downloads (threads).")
@field_option("--retries", config=DownloadConfig, field="retries", type=click.IntRange(0, 20),
              help="Retries per file.")
@field_option("--backoff", config=DownloadConfig, field="backoff", type=click.FloatRange(min=0),
              help="Seconds before the first retry (doubles each time).")
@field_option("--timeout", config=DownloadConfig, field="timeout", type=click.FloatRange(min=0, min_open=True),
              help="Seconds without data before giving up on a connection.")
@click.option("--no-verify", is_flag=True,
              help="Skip the full decode of each download (header, end marker and size are still checked).")
@click.option("--failures", type=click.Path(), callback=output_file,
              help="Also write the failures as CSV (file_name,url,reason); one from an earlier run is rewritten. "
                   "Not ANNOTATIONS and not inside --out (checked before downloading).")
@quiet_option
def download(annotations: Path, out: Path, workers: int, retries: int, backoff: float, timeout: float,
             no_verify: bool, failures: Path | None, quiet: bool) -> None:
    """Download the images of a COCO file by coco_url: concurrent, resumable, retried and verified.

    Files already complete are skipped, so re-running the same command resumes. Exits 1 when any file failed.

    \b
    Example:
      fathombatch download annotations.json --out images/ --workers 16 --failures failed.csv
    """
    from fathombatch.curate.download import check_failures_file, write_failures
    from fathombatch.curate.download import download as run_download

    cfg = DownloadConfig(annotations=annotations, out=out, workers=workers, retries=retries, backoff=backoff,
                         timeout=timeout, verify=not no_verify)
    if failures is not None:
        check_failures_file(cfg, failures)
    s = run_download(cfg, progress=_progress(quiet))
    click.echo(f"{s.total} images: {s.downloaded} downloaded, {s.skipped} already complete, "
               f"{len(s.failures)} failed")
    for f in s.failures[:20]:
        click.echo(f"  {f.file_name}: {f.reason}")
    if failures is not None:
        write_failures(failures, s.failures)
    if s.failures:
        raise OutputError(f"{len(s.failures)} of {s.total} downloads failed; run the same command again to retry "
                          "them (complete files are skipped)")
