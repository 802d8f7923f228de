"""What an evaluation is asked (:class:`EvalConfig`) and what it finds (:class:`EvalResult`).

Apart from :mod:`fathombatch.report`, which computes them, so that the report's pages (:mod:`fathombatch.reportpages`)
read them without importing the module that renders with them (an import cycle before).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from fathombatch.metrics import K
from fathombatch.pathargs import PathFields


@dataclass(frozen=True)
class EvalConfig(PathFields):
    """What to evaluate.

    Attributes:
        scores: a scores table written by ``fathombatch score``, or a submission CSV (``id,categories,osd``).
        truth: Kaggle CSV or COCO json with the true labels.
        osd_truth: optional ``id,osd`` CSV (1 = out of sample) for sAUC and the competition score.
        report: optional folder for metrics.json, per_class.parquet, report.md, report.html, plots (and missing.csv).
        run: training run folder for the training curves (default: the run named in the engine's manifest).
        k: the MAP cut-off (the competition uses 20).
    """

    scores: Path
    truth: Path
    osd_truth: Path | None = None
    report: Path | None = None
    run: Path | None = None
    k: int = K


@dataclass(frozen=True)
class EvalResult:
    map_at_k: float
    prior_floor: float
    floor_source: str
    k: int
    n_truth: int
    n_scored: int
    missing: list[str]
    n_extra: int
    sauc: float | None = None
    competition_score: float | None = None
    n_osd: int | None = None
    per_class: pl.DataFrame = field(default_factory=pl.DataFrame)
    report: Path | None = None
    warnings: list[str] = field(default_factory=list)
    run: Path | None = None
    n_truth_in_training: int | None = None
    evaluated: str = "table"
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def at_or_below_floor(self) -> bool:
        """MAP@k does not clear the frequency-prior floor: nothing learnt from the pixels shows."""
        return self.map_at_k <= self.prior_floor

    def to_json(self) -> dict[str, Any]:
        return {
            f"map@{self.k}": self.map_at_k,
            "prior_floor": self.prior_floor,
            "floor_source": self.floor_source,
            "margin_over_floor": self.map_at_k - self.prior_floor,
            "at_or_below_floor": self.at_or_below_floor,
            "n_truth_in_training": self.n_truth_in_training,
            "sauc": self.sauc,
            "competition_score": self.competition_score,
            "n_truth_images": self.n_truth,
            "n_scored_images": self.n_scored,
            "n_missing_images": len(self.missing),
            "n_scored_not_in_truth": self.n_extra,
            "n_osd_images": self.n_osd,
            "k": self.k,
            "warnings": self.warnings,
            "provenance": self.provenance,
        }
