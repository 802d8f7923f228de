"""Checks that keep ``evaluate`` from printing a figure that looks right and is not.

* Truth ids are matched to the evaluated ids exactly, else after dropping an image extension on either side
  (``abc.png`` -> ``abc``: the table's ids are file stems, other tools' are file names); a warning says how many
  were matched that way. When most truth ids
  still match nothing, a warning shows what the ids of both sides look like; when none match, evaluation is refused
  (every image would score 0, and MAP@20 0.0000 would say nothing about the model).
* Truth that is a ranking (the start of each row's ``top_categories`` in order, or label sets all of one length of
  five or more) is refused: it scores MAP@20 1.0 whatever the model, or means nothing.
* MAP@k at or below the frequency-prior floor is flagged (:func:`fathombatch.metrics.floor_warning`, the same
  verdict as ``train``'s): the model ranks no better than ignoring the pixels.
"""

from __future__ import annotations

import filecmp
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from fathombatch.decode.discover import strip_image_suffix
from fathombatch.errors import UsageError
from fathombatch.packaged import resolve_data_path

#: Most ids shown from each side when they do not match.
_EXAMPLES = 3
#: A truth whose label sets all have one length is a ranking only from this length on: shorter equal-length
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
    """Match truth ids to evaluated ids, exactly or when one side carries an image extension (``IMAGE_SUFFIXES``).

    Either side may carry it (``a.png`` in the truth against ``a`` evaluated, or ``a`` against ``a.png``), by the
    same rules both ways: an id is matched without its extension only when the other side has no exact match for it
    (the stripped id is not an id of its own side) and no other id of its side strips to the same id (``a.png`` and
    ``a.jpg`` would otherwise share one truth row or one prediction); such clashes are left unmatched and counted.

    Raises:
        UsageError: no truth id matches an evaluated id.
    """
    evaluated_set = set(evaluated_ids)
    truth_set = set(truth_ids)
    unmatched = [i for i, image_id in enumerate(truth_ids) if image_id not in evaluated_set]
    # Truth side: truth "a.png" -> evaluated "a".
    from_truth = {i: stem for i in unmatched
                  if (stem := strip_image_suffix(truth_ids[i])) is not None
                  and stem in evaluated_set and stem not in truth_set}
    truth_clashes = {stem for stem, n in Counter(from_truth.values()).items() if n > 1}
    from_truth = {i: stem for i, stem in from_truth.items() if stem not in truth_clashes}
    # Evaluated side: truth "a" -> evaluated "a.png".
    by_stem: dict[str, list[str]] = defaultdict(list)
    for image_id in evaluated_set - truth_set:
        if (stem := strip_image_suffix(image_id)) is not None and stem not in evaluated_set:
            by_stem[stem].append(image_id)
    candidates = {i: by_stem[truth_ids[i]] for i in unmatched if i not in from_truth and truth_ids[i] in by_stem}
    evaluated_clashes = {truth_ids[i] for i, found in candidates.items() if len(found) > 1}
    from_evaluated = {i: found[0] for i, found in candidates.items() if len(found) == 1}
    keys = [from_truth.get(i, from_evaluated.get(i, image_id)) for i, image_id in enumerate(truth_ids)]
    matched = sum(1 for key in keys if key in evaluated_set)
    warnings = []
    if from_truth:
        warnings.append(f"{len(from_truth)} truth id(s) carry an image extension (e.g. "
                        f"{truth_ids[min(from_truth)]!r}); they were matched to the ids without it")
    if from_evaluated:
        warnings.append(f"{len(from_evaluated)} evaluated id(s) carry an image extension the truth ids lack (e.g. "
                        f"{from_evaluated[min(from_evaluated)]!r}); they were matched to the truth ids without it")
    for clashes, where in ((truth_clashes, truth), (evaluated_clashes, evaluated)):
        if clashes:
            warnings.append(f"{len(clashes)} id(s) appear in {where} with two image extensions (e.g. "
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


def refuse_same_file(evaluated: Path, truth: Path) -> None:
    """Refuse to evaluate a file against itself (the same path, a link to it, or a byte-identical copy).

    Raises:
        UsageError: the two are one file or have the same bytes.
    """
    truth = resolve_data_path(truth)
    if not (evaluated.is_file() and truth.is_file()):
        return  # the readers say what is missing
    same = evaluated.resolve() == truth.resolve()
    if not same and evaluated.stat().st_size == truth.stat().st_size:
        same = filecmp.cmp(evaluated, truth, shallow=False)
    if same:
        raise UsageError(f"{evaluated} and the truth {truth} are the same file: evaluating predictions against "
                         "themselves scores 1.0 whatever the model")


def refuse_predictions_as_truth(
    truth_categories: pl.Series, scored_truth: Sequence[Sequence[int]], scored_predicted: Sequence[Sequence[int]],
    k: int, truth: Path,
) -> str | None:
    """Refuse truth that is a ranking rather than labels: it would score the model as perfect.

    Three signs, any one enough:

    * **the whole ranking as a set**: on every scored image the truth's label set is exactly the set of that image's
      ``top_categories`` and has at least 2 labels (this run's submission converted to COCO, or sorted). Real truth
      has 1.5 labels per image on average (FathomNet 2023); equal sets of 2 or more on every image is a copy. With
      a top-1 ranking the sign is ambiguous (a perfect model looks the same), so it is only warned about.

    * **the start of each ranking, in order**: on every scored image the truth lists at least 2 categories, and they
      are the first ones of that image's ``top_categories`` in the same order. That is what a submission (of this
      run, or cut to ``--top-k 5``) used as truth looks like. Real truth is a *set*: when a model ranks an image's
      m true labels first, the truth file lists them in its own order (FathomNet's in ascending id), which is the
      model's with chance 1/m! if the model's order is unrelated to the ids, so legitimate truth passes unless this
      happens on every one of the N scored images: at most 2^-N. Single labels carry no order, so single-label
      truth that a model gets right everywhere (a top-1 submission) is not refused: nothing shows it is a ranking.
    * **one length for all**: every truth image has the same number of categories, at least
      :data:`MIN_RANKING_LENGTH` (another run's submission, whatever its top-k and in whatever order).

    Args:
        truth_categories: list[int] per truth row, every row.
        scored_truth, scored_predicted: per truth row that has a prediction, aligned: the truth's categories in the
            order its file lists them, and the prediction's ``top_categories`` (best first).
        k: the MAP cut-off, for the message.

    Returns:
        a warning when truth equals a top-1 ranking on every scored image, else None.

    Raises:
        UsageError: a sign holds.
    """
    lists = [list(dict.fromkeys(t)) for t in scored_truth]  # a repeated id in the file adds no order
    pairs = list(zip(lists, scored_predicted, strict=True))
    if lists and all(len(t) >= 2 and list(p[: len(t)]) == t for t, p in pairs):
        raise UsageError(f"{truth} is not truth: its category lists are the evaluated predictions' own "
                         f"top_categories, in order, for all {len(lists)} scored images (each the start of the "
                         f"image's ranking: a submission CSV?); MAP@{k} against it is 1.0 whatever the model")
    whole_sets = bool(pairs) and all(set(t) == set(p) for t, p in pairs)
    if whole_sets and all(len(t) >= 2 for t, _ in pairs):
        raise UsageError(f"{truth} is not truth: on all {len(pairs)} scored images its label set is exactly the set of "
                         f"the evaluated predictions' own top_categories (this run's submission, converted or sorted?);"
                         f" MAP@{k} against it is 1.0 whatever the model")
    lengths = truth_categories.list.len()
    length = int(lengths[0]) if lengths.len() else 0
    if length >= MIN_RANKING_LENGTH and bool((lengths == length).all()):
        raise UsageError(f"{truth} is not truth: every image in it has exactly {length} categories, the length of a "
                         "top-k ranking; it looks like a submission CSV (predictions), and MAP against it would be "
                         "meaningless")
    if whole_sets:
        return (f"the truth {truth} equals the top-1 prediction on every one of the {len(pairs)} scored images: if it "
                f"was made from this run's predictions, MAP@{k} is meaningless (a perfect model also looks like this)")
    return None


def unlabelled_truth_warning(truth: pl.Series, source: Path) -> str | None:
    """A warning counting truth images with no label, which score AP 0 by the competition's definition.

    Args:
        truth: list[int] per truth row.

    Raises:
        UsageError: no truth image has a label (an evaluation set such as Kaggle's eval.json is not truth).
    """
    empty = int((truth.list.len() == 0).sum())
    if empty == 0:
        return None
    if empty == truth.len():
        raise UsageError(f"{source} has no labels for any of its {empty} images (an unlabelled file such as Kaggle's "
                         "eval.json is not truth): every image would score 0")
    return (f"{empty} of {truth.len()} truth images in {source} have no label; by the competition's definition each "
            "scores AP 0, which lowers MAP")
