"""Checks that keep ``evaluate`` from printing a figure that looks right and is not.

* Truth ids are matched to the evaluated ids exactly, else after dropping an image extension (``abc.png`` ->
  ``abc``, the table's ids are file stems); a warning says how many were matched that way. When most truth ids
  still match nothing, a warning shows what the ids of both sides look like; when none match, evaluation is refused
  (every image would score 0, and MAP@20 0.0000 would say nothing about the model).
* Truth that is the evaluated predictions themselves (its label sets are the rows' ``top_categories``, or every
  label set is as long as a top-k list) is refused: it scores MAP@20 1.0 whatever the model.
* MAP@k at or below the frequency-prior floor is flagged (:func:`fathombatch.metrics.floor_warning`, the same
  verdict as ``train``'s): the model ranks no better than ignoring the pixels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from fathombatch.decode.discover import IMAGE_SUFFIXES
from fathombatch.errors import UsageError

#: Most ids shown from each side when they do not match.
_EXAMPLES = 3
#: A truth whose label sets all have exactly top-k labels is a ranking only from this length on: shorter equal-length
#: sets occur in real truth (71% of FathomNet 2023's train.csv images have one label, 97% fewer than five; none has
#: more than ten, measured on the packaged train.csv).
MIN_RANKING_LENGTH = 5


@dataclass(frozen=True)
class IdMatch:
    """Truth ids mapped onto the evaluated ids.

    Attributes:
        keys: per truth row (truth order), the id to look up among the evaluated rows.
        matched: how many truth rows have an evaluated row (ok or error).
        warnings: what the matching did or could not do, one sentence each.
    """

    keys: list[str]
    matched: int
    warnings: list[str] = field(default_factory=list)


def match_ids(truth_ids: Sequence[str], evaluated_ids: Collection[str], truth: Path, evaluated: Path) -> IdMatch:
    """Match truth ids to evaluated ids, exactly or after dropping an image extension (.jpg, .jpeg, .png).

    An id is stripped only when the stripped id is evaluated, is not itself a truth id and no other truth id strips
    to it (``a.png`` and ``a.jpg`` would otherwise share one prediction).

    Raises:
        UsageError: no truth id matches an evaluated id.
    """
    evaluated_set = set(evaluated_ids)
    truth_set = set(truth_ids)
    keys = list(truth_ids)
    stripped: dict[int, str] = {}
    for i, image_id in enumerate(truth_ids):
        stem, dot, ext = image_id.rpartition(".")
        if (image_id not in evaluated_set and dot and stem and f".{ext.lower()}" in IMAGE_SUFFIXES
                and stem in evaluated_set and stem not in truth_set):
            stripped[i] = stem
    clashes = {stem for stem, n in Counter(stripped.values()).items() if n > 1}
    for i, stem in stripped.items():
        if stem not in clashes:
            keys[i] = stem
    n_stripped = len(stripped) - sum(1 for stem in stripped.values() if stem in clashes)
    matched = sum(1 for key in keys if key in evaluated_set)
    warnings = []
    if n_stripped:
        warnings.append(f"{n_stripped} truth id(s) carry an image extension (e.g. {truth_ids[min(stripped)]!r}); "
                        "they were matched to the ids without it")
    if clashes:
        warnings.append(f"{len(clashes)} id(s) appear in {truth} with two image extensions (e.g. "
                        f"{min(clashes)!r}); those truth rows were not matched")
    if matched == 0 and keys:
        raise UsageError(f"none of the {len(keys)} ids in {truth} is in {evaluated}; "
                         + _looks_like(keys, evaluated_set, truth_set))
    if matched * 2 < len(keys):
        warnings.append(f"only {matched} of {len(keys)} truth ids are in {evaluated}; "
                        + _looks_like(keys, evaluated_set, truth_set))
    return IdMatch(keys=keys, matched=matched, warnings=warnings)


def _looks_like(keys: Sequence[str], evaluated: Collection[str], truth: Collection[str]) -> str:
    truth_side = [k for k in keys if k not in evaluated][:_EXAMPLES]
    other_side = sorted(e for e in evaluated if e not in truth)[:_EXAMPLES]
    return (f"truth ids look like {', '.join(map(repr, truth_side))} and the evaluated ids like "
            f"{', '.join(map(repr, other_side)) or '(none)'}")


def refuse_predictions_as_truth(
    truth_categories: pl.Series, scored_truth: pl.Series, scored_predicted: pl.Series, top_k: int, k: int, truth: Path
) -> None:
    """Refuse truth that is a ranking rather than labels: it would score the model as perfect.

    Args:
        truth_categories: list[int] per truth row, every row.
        scored_truth, scored_predicted: list[int] per truth row that has a prediction, aligned: the truth's
            categories and the prediction's ``top_categories``.
        top_k: the longest ``top_categories`` list evaluated; k: the MAP cut-off.

    Raises:
        UsageError: every scored truth row lists exactly its predicted categories (compared as sets), or every truth
            label set has ``top_k`` (or ``k``) labels and that is at least :data:`MIN_RANKING_LENGTH`.
    """
    n = scored_predicted.len()
    predicted_sets = scored_predicted.cast(pl.List(pl.Int64)).list.unique().list.sort()
    if n and bool((scored_truth.cast(pl.List(pl.Int64)).list.sort() == predicted_sets).all()):
        raise UsageError(f"{truth} is not truth: its category lists are the evaluated predictions' own "
                         f"top_categories for all {n} scored images (the submission CSV of this scoring run?); "
                         f"MAP@{k} against it is 1.0 whatever the model")
    lengths = truth_categories.list.len()
    length = int(lengths[0]) if lengths.len() else 0
    if length >= MIN_RANKING_LENGTH and length in (top_k, k) and bool((lengths == length).all()):
        raise UsageError(f"{truth} is not truth: every image in it has exactly {length} categories, the length of a "
                         "top-k ranking; it looks like a submission CSV (predictions), and MAP against it would be "
                         "meaningless")

