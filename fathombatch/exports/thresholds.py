"""Per-class presence thresholds, chosen on held-out data.

A probability is a score, not a decision; marine scientists need "present / absent". The seed study used 0.5 for
every class. fathombatch picks, per class, the threshold that maximises F1 on the held-out split at export time and
stores it in the engine manifest; ``export-table --threshold T`` overrides it with one global value.

Rules (:func:`fit_thresholds`):

* a class with at least :data:`MIN_SUPPORT` held-out positives gets its F1-maximising threshold, never below
  :data:`FLOOR` (so a class can never be declared present everywhere);
* a rarer class (1 to MIN_SUPPORT-1 positives) gets max(its F1-maximising threshold, :data:`RARE_FLOOR`): a handful of
  images cannot justify a low threshold;
* a class with no held-out positive keeps the seed study's :data:`DEFAULT`.

:func:`presence_thresholds` is the one place that decides which thresholds a scores table is read with (the
engine manifest's, one global value, or the default); every export and ``curate review`` use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fathombatch.errors import UsageError, param

DEFAULT = 0.5
FLOOR = 0.05
RARE_FLOOR = 0.5
MIN_SUPPORT = 5


@dataclass(frozen=True)
class PresenceThresholds:
    """The thresholds a scores table is read with.

    Attributes:
        values: (C,) float64 presence threshold per class, in taxonomy order.
        source: ``manifest`` (per-class, chosen on held-out data), ``global`` (one value for every class) or
            ``default`` (:data:`DEFAULT`: the engine records none).
        warning: why the default is used, or None.
    """

    values: np.ndarray
    source: str
    warning: str | None = None


def presence_thresholds(
    recorded: Sequence[float] | None, classes: int, threshold: float | None = None
) -> PresenceThresholds:
    """Choose the presence thresholds for a scores table.

    Args:
        recorded: the per-class thresholds the table's engine manifest records (``ScoresMetadata.engine.thresholds``),
            or None.
        classes: number of classes of the table's taxonomy.
        threshold: one threshold for every class, overriding the manifest's (None: use the manifest's).

    Raises:
        UsageError: ``threshold`` is not in (0, 1].
    """
    if threshold is not None:
        if not 0.0 < threshold <= 1.0:
            raise UsageError(f"{param('threshold')} must be in (0, 1], got {threshold}")
        return PresenceThresholds(np.full(classes, float(threshold)), "global")
    if recorded is not None and len(recorded) == classes:
        return PresenceThresholds(np.asarray(recorded, dtype=np.float64), "manifest")
    return PresenceThresholds(np.full(classes, DEFAULT), "default",
                              f"the engine manifest has no per-class thresholds; every class uses {DEFAULT} "
                              "(export the engine again, or pass a global threshold)")


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """The threshold maximising F1 for one class, and that F1.

    Args:
        y: (N,) 0/1 truth; p: (N,) probabilities.

    Returns:
        (threshold, f1): predicting ``p >= threshold`` as present. The threshold is the midpoint between the chosen
        probability and the next lower one, so small shifts of the scores do not flip the decision at the cut.
    """
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order].astype(np.int64)
    tp = np.cumsum(ys)
    fp = np.cumsum(1 - ys)
    positives = int(ys.sum())
    if positives == 0:
        return DEFAULT, 0.0
    # Only cut between distinct probabilities: the last index of each run of equal values.
    last = np.r_[ps[1:] != ps[:-1], True]
    precision = tp / (tp + fp)
    recall = tp / positives
    f1 = np.where(last, 2 * precision * recall / np.maximum(precision + recall, 1e-12), -1.0)
    i = int(np.argmax(f1))
    lower = ps[i + 1] if i + 1 < len(ps) else 0.0
    return float((ps[i] + lower) / 2), float(f1[i])


def fit_thresholds(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-class thresholds (see the module docstring).

    Args:
        y: (N, C) held-out multi-hot truth; probs: (N, C) held-out probabilities.

    Returns:
        (C,) float64 thresholds in [FLOOR, 1].
    """
    y = np.asarray(y) != 0
    out = np.full(y.shape[1], DEFAULT)
    for j in range(y.shape[1]):
        support = int(y[:, j].sum())
        if support == 0:
            continue
        t, _ = best_f1_threshold(y[:, j], probs[:, j])
        out[j] = max(t, RARE_FLOOR if support < MIN_SUPPORT else FLOOR)
    return np.clip(out, FLOOR, 1.0)


def precision_recall(y: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | float) -> dict[str, float]:
    """Micro precision/recall/F1 and macro F1 (over classes with positives) of presence decisions."""
    y = np.asarray(y) != 0
    pred = probs >= np.asarray(thresholds)
    tp = float((pred & y).sum())
    fp = float((pred & ~y).sum())
    fn = float((~pred & y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    per_class = []
    for j in np.flatnonzero(y.any(axis=0)):
        ctp = float((pred[:, j] & y[:, j]).sum())
        denom = float(pred[:, j].sum() + y[:, j].sum())
        per_class.append(2 * ctp / denom if denom else 0.0)
    return {"micro_precision": precision, "micro_recall": recall, "micro_f1": f1,
            "macro_f1": float(np.mean(per_class)) if per_class else 0.0}
