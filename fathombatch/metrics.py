"""Metrics of the FathomNet 2023 competition, vectorised.

MAP@k, exactly as the competition defines it (see docs/metrics.md)::

    AP@k(image) = sum over ranks r <= k where prediction r is a true label not already counted of precision@r
                  / min(number of true labels, k)
    precision@r = (number of distinct true labels counted in ranks 1..r) / r

A repeated prediction of an already-counted label scores nothing; an image with no true labels scores 0.
MAP@k is the mean over images. Out-of-sample: ``sAUC = 2 * AUC - 1``; competition score ``(sAUC + MAP@20) / 2``.

Everything here works on column indices (taxonomy order) and NumPy arrays; ``ranking_from_scores`` breaks ties
by the lower column index, so results never depend on sort instability.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: The competition's k.
K = 20


def ranking_from_scores(scores: np.ndarray, k: int = K) -> np.ndarray:
    """Top-k column indices per row, best first.

    Args:
        scores: (N, C) float array (probabilities or logits).
        k: how many to keep; clipped to C.

    Returns:
        (N, min(k, C)) int64 array. Ties go to the lower column index.
    """
    scores = np.asarray(scores)
    n, c = scores.shape
    k = min(k, c)
    if k == 0 or n == 0:
        return np.zeros((n, k), dtype=np.int64)
    if k == c:
        return np.argsort(-scores, axis=1, kind="stable").astype(np.int64)
    top = np.empty((n, k), dtype=np.int64)

    # Row chunks keep temporaries in cache (page-faulting N x C temporaries costs more than the selection itself)
    # and let NumPy, which releases the GIL here, use every core.
    def fill(start: int) -> None:
        top[start : start + _CHUNK_ROWS] = _top_k_rows(scores[start : start + _CHUNK_ROWS], k)

    starts = range(0, n, _CHUNK_ROWS)
    if len(starts) == 1:
        fill(0)
    else:
        with ThreadPoolExecutor(max_workers=min(len(starts), os.cpu_count() or 1)) as pool:
            list(pool.map(fill, starts))
    return top


_CHUNK_ROWS = 4096


def _top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    c = scores.shape[1]
    # argpartition is O(C) per row but picks arbitrarily among values tied with the k-th largest, so rows with
    # such a tie across the cut are redone with a full stable sort (rare with real probabilities).
    part = np.argpartition(scores, c - k, axis=1)[:, c - k :]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    tied = (scores >= vals.min(axis=1, keepdims=True)).sum(axis=1) > k
    if tied.any():
        top[tied] = np.argsort(-scores[tied], axis=1, kind="stable")[:, :k]
    return top


def average_precision_at_k(
    truth: np.ndarray, ranked: np.ndarray, k: int = K, *, distinct: bool = False
) -> np.ndarray:
    """Per-image AP@k with the competition's rules.

    Args:
        truth: (N, C) multi-hot array (any dtype; nonzero = true label).
        ranked: (N, L) int array of predicted column indices, best first; negative or >= C entries are padding
            or unknown ids and never count as hits. Only the first k columns are used.
        k: cut-off.
        distinct: promise that no row repeats an index (true of rankings from scores); skips the duplicate check.

    Returns:
        (N,) float64 array of AP@k values in [0, 1].
    """
    truth = np.asarray(truth) != 0
    ranked = np.asarray(ranked, dtype=np.int64)[:, :k]
    n, c = truth.shape
    if ranked.shape[0] != n:
        raise ValueError(f"truth has {n} rows but ranked has {ranked.shape[0]}")
    valid = (ranked >= 0) & (ranked < c)
    safe = np.where(valid, ranked, 0)
    hits = truth[np.arange(n)[:, None], safe] & valid
    # A label predicted twice counts only at its first position.
    if not distinct and ranked.shape[1] > 1:
        earlier_same = np.zeros_like(hits)
        for j in range(1, ranked.shape[1]):
            earlier_same[:, j] = (ranked[:, :j] == ranked[:, j : j + 1]).any(axis=1)
        hits &= ~earlier_same
    cum_hits = np.cumsum(hits, axis=1)
    ranks = np.arange(1, ranked.shape[1] + 1)
    precision_sum = (hits * (cum_hits / ranks)).sum(axis=1)
    n_true = truth.sum(axis=1)
    denom = np.minimum(n_true, k)
    return np.divide(precision_sum, denom, out=np.zeros(n, dtype=np.float64), where=denom > 0)


def map_at_k(truth: np.ndarray, ranked: np.ndarray, k: int = K, *, distinct: bool = False) -> float:
    """Mean AP@k over images (see :func:`average_precision_at_k`). An empty set of images scores 0."""
    ap = average_precision_at_k(truth, ranked, k, distinct=distinct)
    return float(ap.mean()) if ap.size else 0.0


def map_at_k_from_scores(truth: np.ndarray, scores: np.ndarray, k: int = K) -> float:
    """MAP@k of ranking each row of an (N, C) score matrix; ties go to the lower column index."""
    return map_at_k(truth, ranking_from_scores(scores, k), k, distinct=True)


def map_at_k_from_lists(
    truth: Sequence[Sequence[int]], predictions: Sequence[Sequence[int]], k: int = K
) -> float:
    """MAP@k from label-id lists, the way a submission file is scored.

    Args:
        truth: per image, the true category ids, treated as a set (a repeated true id counts once, also in the
            ``min(#true, k)`` denominator; the label readers never produce repeats).
        predictions: per image, predicted ids best first; duplicates and unknown ids allowed.
    """
    if len(truth) != len(predictions):
        raise ValueError(f"{len(truth)} truth rows but {len(predictions)} prediction rows")
    vocab = sorted({c for row in truth for c in row} | {c for row in predictions for c in row[:k]})
    col = {c: i for i, c in enumerate(vocab)}
    n = len(truth)
    truth_m = np.zeros((n, max(len(vocab), 1)), dtype=bool)
    ranked = np.full((n, k), -1, dtype=np.int64)
    for i, (t, p) in enumerate(zip(truth, predictions, strict=True)):
        truth_m[i, [col[c] for c in t]] = True
        p = list(p)[:k]
        ranked[i, : len(p)] = [col[c] for c in p]
    return map_at_k(truth_m, ranked, k)


def prior_ranking(train_counts: np.ndarray, k: int = K) -> np.ndarray:
    """The frequency-prior ranking: columns by training frequency, most frequent first, ties by column index.

    Args:
        train_counts: (C,) images per class in the training set.

    Returns:
        (min(k, C),) int64 column indices.
    """
    return ranking_from_scores(np.asarray(train_counts, dtype=np.float64)[None, :], k)[0]


def prior_floor(truth: np.ndarray, train_counts: np.ndarray, k: int = K) -> float:
    """MAP@k of giving every image the same ranking by training-set class frequency.

    This is the floor any image model must clear: on FathomNet 2023's own ``train.csv`` it is 0.497.
    """
    truth = np.asarray(truth)
    ranked = np.broadcast_to(prior_ranking(train_counts, k), (truth.shape[0], min(k, truth.shape[1])))
    return map_at_k(truth, ranked, k, distinct=True)


def sauc(is_out_of_sample: np.ndarray, osd_score: np.ndarray) -> float:
    """Rescaled ROC AUC of the out-of-sample score: ``2 * AUC - 1`` in [-1, 1].

    Args:
        is_out_of_sample: (N,) 0/1 truth (1 = the image is out of sample).
        osd_score: (N,) predicted out-of-sample score, higher = more likely out of sample.

    Raises:
        ValueError: when the truth has only one class (AUC is undefined).
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(is_out_of_sample).astype(int)
    if np.unique(y).size < 2:
        raise ValueError("sAUC needs both in-sample and out-of-sample images in the truth")
    return float(2.0 * roc_auc_score(y, np.asarray(osd_score, dtype=np.float64)) - 1.0)


def competition_score(sauc_value: float, map20: float) -> float:
    """The FathomNet 2023 leaderboard score: ``(sAUC + MAP@20) / 2``."""
    return (sauc_value + map20) / 2.0


def per_class_ap(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Average precision of each class over images (scikit-learn's definition).

    Args:
        truth: (N, C) multi-hot; scores: (N, C) probabilities.

    Returns:
        (C,) float64; NaN for classes with no positive image (AP is undefined there).
    """
    from sklearn.metrics import average_precision_score

    truth = np.asarray(truth) != 0
    scores = np.asarray(scores, dtype=np.float64)
    out = np.full(truth.shape[1], np.nan)
    for j in np.flatnonzero(truth.any(axis=0)):
        out[j] = average_precision_score(truth[:, j], scores[:, j])
    return out


def floor_warning(map_k: float, floor: float, k: int = K) -> str | None:
    """A sentence when MAP@k does not clear the frequency-prior floor (a tie does not clear it), else None.

    The one wording of this verdict, for ``train``'s summary (held-out MAP@20) and ``evaluate`` alike.
    """
    if map_k > floor:
        return None
    return (f"MAP@{k} {map_k:.4f} is at or below the frequency-prior floor {floor:.4f}: the model ranks categories "
            "no better than their training frequencies alone")
