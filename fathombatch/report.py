"""Evaluate a scores table against truth labels and write a report.

MAP@20 is computed the competition's way (see :mod:`fathombatch.metrics`) over *every image in the truth*: an
image the table lacks, or has only as an error row, scores 0 and is listed, never silently dropped. The
frequency-prior floor is printed beside it: ranking categories by the engine's training-set frequency (from its
manifest), or by the truth's own frequency when the engine records none.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fathombatch.datasets import Labels, read_labels
from fathombatch.errors import LabelFileError, UsageError
from fathombatch.fsutil import atomic_path, write_json_atomic, write_text_atomic
from fathombatch.metrics import (
    K,
    average_precision_at_k,
    competition_score,
    per_class_ap,
    prior_floor,
    ranking_from_scores,
    sauc,
)
from fathombatch.table import read_metadata, taxonomy_from_metadata
from fathombatch.taxonomy import Taxonomy, fathomnet2023


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate.

    Attributes:
        scores: a scores table written by ``fathombatch score``.
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

    def to_json(self) -> dict[str, Any]:
        return {
            f"map@{self.k}": self.map_at_k,
            "prior_floor": self.prior_floor,
            "floor_source": self.floor_source,
            "margin_over_floor": self.map_at_k - self.prior_floor,
            "sauc": self.sauc,
            "competition_score": self.competition_score,
            "n_truth_images": self.n_truth,
            "n_scored_images": self.n_scored,
            "n_missing_images": len(self.missing),
            "n_scored_not_in_truth": self.n_extra,
            "n_osd_images": self.n_osd,
            "k": self.k,
            "warnings": self.warnings,
        }


def _read_osd_truth(path: Path) -> dict[str, int]:
    if not path.is_file():
        raise UsageError(f"osd truth file {path} does not exist")
    try:
        frame = pl.read_csv(path, schema_overrides={"id": pl.String})
    except Exception as exc:  # noqa: BLE001 - polars raises several types for malformed CSV
        raise LabelFileError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    if "id" not in frame.columns or "osd" not in frame.columns:
        raise LabelFileError(f"{path}, line 1: header must contain 'id' and 'osd'")
    values: dict[str, int] = {}
    for line, (image_id, osd) in enumerate(frame.select("id", "osd").iter_rows(), start=2):
        if image_id is None or osd is None or str(osd).strip() not in ("0", "1", "0.0", "1.0"):
            raise LabelFileError(f"{path}, line {line}: expected an id and osd 0 or 1, got {image_id!r}, {osd!r}")
        values[str(image_id)] = int(float(osd))
    return values


def _scores_matrix(
    scores: Path, taxonomy: Taxonomy, truth_ids: list[str], k: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray, int, list[str]]:
    """Align the table's ok rows with the truth order.

    Returns:
        probs (N, C) float32 (zeros where missing); ranked (N, k) column indices from ``top_categories`` (-1 where
        missing), or None when the table kept fewer than k; present (N,) bool; osd (N,) float32 (NaN where
        missing); the number of scored images not in the truth; warnings.
    """
    lazy = pl.scan_parquet(scores)
    names = lazy.collect_schema().names()
    absent = [c for c in ("image_id", "status", "osd", "top_categories", *taxonomy.names) if c not in names]
    if absent:
        raise UsageError(f"{scores} is not a fathombatch scores table for this taxonomy (missing columns {absent[:5]})")
    ok = lazy.filter(pl.col("status") == "ok").select("image_id", "osd", "top_categories", *taxonomy.names).collect()
    warnings = []
    dupes = ok.height - ok["image_id"].n_unique()
    if dupes:
        warnings.append(f"{dupes} duplicate image_id(s) in {scores}; the first row (by path) of each is used")
        ok = ok.unique(subset="image_id", keep="first", maintain_order=True)
    truth_frame = pl.DataFrame({"image_id": truth_ids, "_row": np.arange(len(truth_ids))})
    joined = truth_frame.join(ok, on="image_id", how="inner")
    rows = joined["_row"].to_numpy()
    probs = np.zeros((len(truth_ids), len(taxonomy)), dtype=np.float32)
    probs[rows] = joined.select(taxonomy.names).to_numpy().astype(np.float32)
    present = np.zeros(len(truth_ids), dtype=bool)
    present[rows] = True
    osd = np.full(len(truth_ids), np.nan, dtype=np.float32)
    osd[rows] = joined["osd"].to_numpy()
    ranked: np.ndarray | None = None
    lengths = joined["top_categories"].list.len()
    if joined.height == 0 or int(lengths.min()) >= min(k, len(taxonomy)):
        # The table's own ranking (made from logits, so saturated probabilities cannot tie) is what a submission holds.
        ranked = np.full((len(truth_ids), k), -1, dtype=np.int64)
        column = taxonomy.column_of
        for r, top in zip(rows, joined["top_categories"].to_list(), strict=True):
            cols = [column.get(c, -1) for c in top[:k]]
            ranked[r, : len(cols)] = cols
    else:
        warnings.append(f"the table keeps fewer than {k} top categories; MAP@{k} ranks the probability columns instead")
    extra = ok.height - joined.height
    return probs, ranked, present, osd, extra, warnings


def evaluate(cfg: EvalConfig) -> EvalResult:
    """Compute MAP@k, the prior floor, per-class AP and (with osd truth) sAUC and the competition score."""
    if not cfg.scores.is_file():
        raise UsageError(f"scores table {cfg.scores} does not exist")
    meta = read_metadata(cfg.scores)
    taxonomy = taxonomy_from_metadata(meta) or fathomnet2023()
    truth: Labels = read_labels(cfg.truth, taxonomy)
    if len(truth) == 0:
        raise UsageError(f"{cfg.truth} contains no images")
    y = truth.multi_hot()
    ids = truth.image_ids
    probs, ranked, present, osd, extra, warnings = _scores_matrix(cfg.scores, taxonomy, ids, cfg.k)
    if ranked is None:
        ranked = ranking_from_scores(probs, cfg.k)
    ranked[~present] = -1  # no prediction at all: AP 0
    ap = average_precision_at_k(y, ranked, cfg.k)
    map_k = float(ap.mean())

    counts = (meta.get("engine_manifest") or {}).get("class_counts")
    if counts is not None and len(counts) == len(taxonomy):
        train_counts, floor_source = np.asarray(counts), "engine training-set frequencies"
    else:
        train_counts, floor_source = y.sum(axis=0), "frequencies of the truth labels themselves"
    floor = prior_floor(y, train_counts, cfg.k)

    sauc_value = comp = None
    n_osd = None
    if cfg.osd_truth is not None:
        osd_truth = _read_osd_truth(cfg.osd_truth)
        have = [i for i, image_id in enumerate(ids) if present[i] and image_id in osd_truth]
        n_osd = len(have)
        if n_osd < len(ids):
            warnings.append(f"sAUC uses {n_osd} of {len(ids)} truth images (the others lack a score or an osd label)")
        labels_osd = np.array([osd_truth[ids[i]] for i in have])
        try:
            sauc_value = sauc(labels_osd, osd[have])
            comp = competition_score(sauc_value, map_k)
        except ValueError as exc:
            warnings.append(f"sAUC not computed: {exc}")

    support = y.sum(axis=0)
    class_ap = per_class_ap(y, probs)
    per_class = pl.DataFrame(
        {
            "category_id": list(taxonomy.ids),
            "name": list(taxonomy.names),
            "supercategory": list(taxonomy.supercategories),
            "support": support.astype(np.int64),
            "ap": pl.Series(class_ap, dtype=pl.Float64).fill_nan(None),
        }
    )
    missing = [ids[i] for i in np.flatnonzero(~present)]
    run = cfg.run
    if run is None and (meta.get("engine_manifest") or {}).get("provenance", {}).get("run"):
        run = Path(meta["engine_manifest"]["provenance"]["run"])
    if run is not None and not (run / "metrics.parquet").is_file():
        warnings.append(f"no training curves: {run / 'metrics.parquet'} not found")
        run = None
    result = EvalResult(
        map_at_k=map_k,
        prior_floor=floor,
        floor_source=floor_source,
        k=cfg.k,
        n_truth=len(ids),
        n_scored=int(present.sum()),
        missing=missing,
        n_extra=extra,
        sauc=sauc_value,
        competition_score=comp,
        n_osd=n_osd,
        per_class=per_class,
        report=cfg.report,
        warnings=warnings,
        run=run,
    )
    if cfg.report is not None:
        write_report(result, cfg, cfg.report)
    return result


def write_report(result: EvalResult, cfg: EvalConfig, out: Path) -> None:
    """Write metrics.json, per_class.parquet, report.md, plots, report.html and (if any) missing.csv into ``out``."""
    from fathombatch import plots

    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "headline.png": plots.headline(out / "headline.png", result.map_at_k, result.prior_floor, result.k,
                                       result.sauc, result.competition_score),
        "per_class_ap.png": plots.per_class(out / "per_class_ap.png", result.per_class),
        "supercategories.png": plots.supercategories(out / "supercategories.png", result.per_class),
    }
    if result.run is not None:
        history = pl.read_parquet(result.run / "metrics.parquet")
        figures["training_curves.png"] = plots.training_curves(out / "training_curves.png", history)
    write_text_atomic(out / "report.html", render_html(result, cfg, list(figures)))
    write_json_atomic(out / "metrics.json", {**result.to_json(), "scores": str(cfg.scores), "truth": str(cfg.truth)})
    with atomic_path(out / "per_class.parquet") as tmp:
        result.per_class.write_parquet(tmp)
    if result.missing:
        write_text_atomic(out / "missing.csv", "image_id\n" + "".join(f"{m}\n" for m in result.missing))
    write_text_atomic(out / "report.md", render_markdown(result, cfg))


def render_html(result: EvalResult, cfg: EvalConfig, figures: list[str]) -> str:
    """One self-contained page (images by relative path) tying the plots and headline figures together."""
    rows = [
        (f"MAP@{result.k}", _fmt(result.map_at_k)),
        ("frequency-prior floor", _fmt(result.prior_floor)),
        ("margin over the floor", f"{result.map_at_k - result.prior_floor:+.4f}"),
        ("sAUC", _fmt(result.sauc)),
        ("competition score", _fmt(result.competition_score)),
        ("images in truth / scored / missing", f"{result.n_truth} / {result.n_scored} / {len(result.missing)}"),
    ]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in result.warnings)
    captions = {
        "headline.png": "Headline metrics; the dashed line is the floor a pixel-blind frequency ranking reaches.",
        "training_curves.png": f"Training run {result.run}: loss and held-out MAP@20 per epoch.",
        "per_class_ap.png": "Per-class average precision against the number of truth images.",
        "supercategories.png": "Mean AP of the classes of each supercategory.",
    }
    figs = "".join(
        f'<figure><img src="{f}" alt="{f}"><figcaption>{html.escape(captions.get(f, f))}</figcaption></figure>'
        for f in figures
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fathombatch evaluation</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}th,td{{border:1px solid #ccc;padding:.3em .8em;text-align:left}}
figure{{margin:2em 0}}img{{max-width:100%}}</style></head><body>
<h1>fathombatch evaluation</h1>
<p>Scores <code>{html.escape(str(cfg.scores))}</code> against <code>{html.escape(str(cfg.truth))}</code>.
The floor ranks categories by {html.escape(result.floor_source)}; it is 0.497 on FathomNet 2023's own training labels.</p>
<table>{table}</table>
{f"<ul>{warn}</ul>" if warn else ""}
{figs}
<p>All per-class figures: <code>per_class.parquet</code>; all numbers: <code>metrics.json</code>; text: <code>report.md</code>.</p>
</body></html>
"""


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def render_markdown(result: EvalResult, cfg: EvalConfig) -> str:
    """A readable report: headline metrics next to the floor, coverage, supercategories, best/worst classes."""
    k = result.k
    lines = [
        "# fathombatch evaluation",
        "",
        f"- scores: `{cfg.scores}`",
        f"- truth: `{cfg.truth}`" + (f"; out-of-sample truth: `{cfg.osd_truth}`" if cfg.osd_truth else ""),
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| MAP@{k} | {_fmt(result.map_at_k)} |",
        f"| frequency-prior floor (MAP@{k}) | {_fmt(result.prior_floor)} |",
        f"| margin over the floor | {result.map_at_k - result.prior_floor:+.4f} |",
        f"| sAUC (2·AUC − 1) | {_fmt(result.sauc)} |",
        f"| competition score ((sAUC + MAP@20) / 2) | {_fmt(result.competition_score)} |",
        "",
        f"The floor ranks every image's categories by {result.floor_source}; a model has to clear it to have "
        "learnt anything from the pixels (it is 0.497 on FathomNet 2023's own training labels).",
        "",
        "## Coverage",
        "",
        f"- images in the truth: {result.n_truth}",
        f"- scored (status ok): {result.n_scored}",
        f"- missing or errored, counted as AP 0: {len(result.missing)}"
        + (" (listed in `missing.csv`)" if result.missing else ""),
        f"- scored but not in the truth (ignored): {result.n_extra}",
    ]
    lines += [f"- warning: {w}" for w in result.warnings]
    pc = result.per_class.filter(pl.col("support") > 0)
    sup = (
        pc.group_by("supercategory")
        .agg(classes=pl.len(), support=pl.col("support").sum(), mean_ap=pl.col("ap").mean())
        .sort("support", descending=True)
    )
    lines += ["", "## Per supercategory (classes present in the truth)", "", "| supercategory | classes | images | mean AP |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['supercategory']} | {r['classes']} | {r['support']} | {_fmt(r['mean_ap'])} |" for r in sup.iter_rows(named=True)]
    for title, frame in (
        ("Most frequent classes", pc.sort("support", descending=True).head(10)),
        ("Weakest classes with at least 5 images", pc.filter(pl.col("support") >= 5).sort("ap").head(10)),
    ):
        lines += ["", f"## {title}", "", "| id | name | supercategory | images | AP |", "| --- | --- | --- | --- | --- |"]
        lines += [
            f"| {r['category_id']} | {r['name']} | {r['supercategory']} | {r['support']} | {_fmt(r['ap'])} |"
            for r in frame.iter_rows(named=True)
        ]
    lines += ["", "Per-class AP for every class is in `per_class.parquet`; all figures in `metrics.json`.", ""]
    return "\n".join(lines)
