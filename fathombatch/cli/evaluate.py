"""``fathombatch evaluate``: a scores table against the truth, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from fathombatch.cli.kit import CONTEXT, Command, LabelPath
from fathombatch.cli.kit import guard_outputs as _guard_outputs

if TYPE_CHECKING:  # what each click.Choice hands over, as the library's configs name it
    pass


@click.command(cls=Command, context_settings=CONTEXT)
@_guard_outputs(inputs=("scores", "truth", "osd_truth", "run"), folders=("report",), tables=("scores",))
@click.argument("scores", type=click.Path(path_type=Path))
@click.option("--truth", type=LabelPath(), required=True,
              help="Kaggle CSV or COCO json with the true labels (or a shipped one: fathomnet2023:train.csv).")
@click.option("--osd-truth", type=click.Path(path_type=Path), help="id,osd CSV (1 = out of sample) for sAUC.")
@click.option("--report", type=click.Path(file_okay=False, path_type=Path),
              help="Write metrics.json, per_class.parquet, report.md, report.html and plots here.")
@click.option("--run", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Training run folder for the training curves (default: the one named in the engine manifest).")
def evaluate(scores: Path, truth: Path, osd_truth: Path | None, report: Path | None, run: Path | None) -> None:
    """Print MAP@20 of SCORES (a scores table, or a submission CSV) next to the frequency-prior floor, and sAUC.

    Warnings (ids matched without their extension, truth the engine was trained on, a model at or below the
    floor) go to stderr; truth that is the predictions themselves is refused.

    \b
    Example:
      fathombatch evaluate scores.parquet --truth dive/train.csv --osd-truth dive/osd.csv --report report/
      fathombatch evaluate submission.csv --truth heldout.csv
    """
    from fathombatch.report import EvalConfig
    from fathombatch.report import evaluate as run_evaluation

    r = run_evaluation(EvalConfig(scores=scores, truth=truth, osd_truth=osd_truth, report=report, run=run))
    click.echo(f"MAP@{r.k}: {r.map_at_k:.4f}   prior floor: {r.prior_floor:.4f}   "
               f"margin: {r.map_at_k - r.prior_floor:+.4f}")
    if r.sauc is not None:
        click.echo(f"sAUC: {r.sauc:.4f}   competition score: {r.competition_score:.4f}")
    click.echo(f"Images: {r.n_truth} in truth, {r.n_scored} scored, {len(r.missing)} missing (counted as 0), "
               f"{r.n_extra} scored but not in truth")
    for warning in r.warnings:
        click.echo(f"warning: {warning}", err=True)
    if report is not None:
        click.echo(f"Report: {report / 'report.html'} (and report.md, metrics.json, per_class.parquet)")
