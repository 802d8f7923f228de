"""The evaluation report's pages: ``report.md`` and ``report.html``, rendered from an :class:`EvalResult`.

Every page says what was evaluated (engine name and fingerprint, the fathombatch versions that scored and evaluated,
and when), puts MAP@k next to the frequency-prior floor, and flags a model that does not clear it.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from fathombatch.evalresult import EvalConfig, EvalResult

#: How the per-supercategory figures average, said wherever they are shown.
SUPERCATEGORY_NOTE = (
    "mean AP is the unweighted mean of the AP of the supercategory's classes present in the truth (each class counts "
    "once); image-weighted AP weights each class's AP by its number of truth images"
)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def provenance_rows(p: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows naming the engine, its fingerprint, the versions and the dates (UTC)."""
    if p.get("engine"):
        engine = f"{p['engine']} ({p.get('engine_arch')}, {p.get('engine_runtime')} {p.get('engine_precision')})"
    elif p.get("evaluated") == "submission":
        engine = "not recorded: a submission CSV names no engine"
    else:
        engine = "not recorded in the scores table"
    return [
        ("engine", engine),
        ("engine fingerprint", p.get("engine_fingerprint") or "not recorded"),
        ("scored with",
         f"fathombatch {p.get('scored_with') or '(unknown version)'}, {p.get('scored_at') or 'date unknown'}"),
        ("evaluated with", f"fathombatch {p.get('evaluated_with')}, {p.get('evaluated_at')}"),
    ]


def verdict(result: EvalResult) -> str:
    """One sentence on MAP@k against the floor."""
    if result.at_or_below_floor:
        return (f"**At or below the floor:** MAP@{result.k} {_fmt(result.map_at_k)} does not clear the frequency-prior "
                f"floor {_fmt(result.prior_floor)}; the model ranks no better than ignoring the pixels.")
    return f"MAP@{result.k} clears the frequency-prior floor by {result.map_at_k - result.prior_floor:+.4f}."


def supercategory_table(per_class: pl.DataFrame) -> pl.DataFrame:
    """Per supercategory (classes present in the truth): classes, images, mean AP and image-weighted AP.

    ``images`` sums the classes' supports, so an image with two classes of one supercategory counts twice.
    """
    return (
        per_class.filter(pl.col("support") > 0)
        .group_by("supercategory")
        .agg(
            classes=pl.len(),
            support=pl.col("support").sum(),
            mean_ap=pl.col("ap").mean(),
            weighted_ap=(pl.col("ap") * pl.col("support")).sum()
            / pl.col("support").filter(pl.col("ap").is_not_null()).sum(),
        )
        .sort("support", descending=True)
    )


def render_html(result: EvalResult, cfg: EvalConfig, figures: list[str]) -> str:
    """One self-contained page (images by relative path) tying the plots and headline figures together."""
    rows = [
        *provenance_rows(result.provenance),
        (f"MAP@{result.k}", _fmt(result.map_at_k)),
        ("frequency-prior floor", _fmt(result.prior_floor)),
        ("margin over the floor", f"{result.map_at_k - result.prior_floor:+.4f}"
         + (" (at or below the floor)" if result.at_or_below_floor else "")),
        ("sAUC", _fmt(result.sauc)),
        ("competition score", _fmt(result.competition_score)),
        ("images in truth / scored / missing", f"{result.n_truth} / {result.n_scored} / {len(result.missing)}"),
    ]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in result.warnings)
    captions = {
        "headline.png": f"Headline metrics; the dashed line marks the frequency-prior floor over the MAP@{result.k} "
                        "bar only (sAUC and the competition score have no such floor).",
        "training_curves.png": f"Training run {result.run}: loss and held-out MAP@20 per epoch.",
        "per_class_ap.png": "Per-class average precision against the number of truth images.",
        "supercategories.png": "Unweighted mean AP of the classes of each supercategory.",
    }
    figs = "".join(
        f'<figure><img src="{f}" alt="{f}"><figcaption>{html.escape(captions.get(f, f))}</figcaption></figure>'
        for f in figures
    )
    flag = verdict(result).replace("**", "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fathombatch evaluation</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}th,td{{border:1px solid #ccc;padding:.3em .8em;text-align:left}}
figure{{margin:2em 0}}img{{max-width:100%}}.flag{{color:#b00020;font-weight:bold}}</style></head><body>
<h1>fathombatch evaluation</h1>
<p>Scores <code>{html.escape(str(cfg.scores))}</code> against <code>{html.escape(str(cfg.truth))}</code>.
The floor ranks categories by {html.escape(result.floor_source)};
it is 0.497 on FathomNet 2023's own training labels.</p>
<p{' class="flag"' if result.at_or_below_floor else ""}>{html.escape(flag)}</p>
<table>{table}</table>
{f"<ul>{warn}</ul>" if warn else ""}
{figs}
<p>Supercategories: {html.escape(SUPERCATEGORY_NOTE)}.</p>
<p>All per-class figures: <code>per_class.parquet</code>; all numbers: <code>metrics.json</code>;
text: <code>report.md</code>.</p>
</body></html>
"""


def render_markdown(result: EvalResult, cfg: EvalConfig) -> str:
    """A readable report: what was evaluated, headline metrics next to the floor, coverage, supercategories,
    best/worst classes."""
    k = result.k
    lines = [
        "# fathombatch evaluation",
        "",
        f"- scores: `{cfg.scores}`" + (" (a submission CSV)" if result.evaluated == "submission" else ""),
        f"- truth: `{cfg.truth}`" + (f"; out-of-sample truth: `{cfg.osd_truth}`" if cfg.osd_truth else ""),
        *(f"- {label}: {value}" for label, value in provenance_rows(result.provenance)),
        "",
        verdict(result),
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| MAP@{k} | {_fmt(result.map_at_k)} |",
        f"| frequency-prior floor (MAP@{k}) | {_fmt(result.prior_floor)} |",
        f"| margin over the floor | {result.map_at_k - result.prior_floor:+.4f} |",
        f"| sAUC (2·AUC − 1) | {_fmt(result.sauc)} |",
        f"| competition score ((sAUC + MAP@20) / 2) | {_fmt(result.competition_score)} |",
        "",
        (f"The floor ranks every image's categories by {result.floor_source}; a model has to clear it to have "
         "learnt anything from the pixels (it is 0.497 on FathomNet 2023's own training labels)."),
        "",
        "## Coverage",
        "",
        f"- images in the truth: {result.n_truth}",
        f"- scored (status ok): {result.n_scored}",
        f"- missing or errored, counted as AP 0: {len(result.missing)}"
        + (" (listed in `missing.csv`)" if result.missing else ""),
        f"- scored but not in the truth (ignored): {result.n_extra}",
        "- truth images the engine was trained on: "
        + ("unknown" if result.n_truth_in_training is None else str(result.n_truth_in_training)),
    ]
    lines += [f"- warning: {w}" for w in result.warnings]
    lines += ["", "## Per supercategory (classes present in the truth)", "", f"The {SUPERCATEGORY_NOTE}.", "",
              "| supercategory | classes | images (summed over its classes) | mean AP | image-weighted AP |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['supercategory']} | {r['classes']} | {r['support']} | {_fmt(r['mean_ap'])} | "
              f"{_fmt(r['weighted_ap'])} |" for r in supercategory_table(result.per_class).iter_rows(named=True)]
    pc = result.per_class.filter(pl.col("support") > 0)
    for title, frame in (
        ("Most frequent classes", pc.sort("support", descending=True).head(10)),
        ("Weakest classes with at least 5 images", pc.filter(pl.col("support") >= 5).sort("ap").head(10)),
    ):
        lines += ["", f"## {title}", "", "| id | name | supercategory | images | AP |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [
            f"| {r['category_id']} | {r['name']} | {r['supercategory']} | {r['support']} | {_fmt(r['ap'])} |"
            for r in frame.iter_rows(named=True)
        ]
    lines += ["", "Per-class AP for every class is in `per_class.parquet`; all figures in `metrics.json`.", ""]
    return "\n".join(lines)
