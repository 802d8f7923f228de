"""Held-out splits that keep rare categories on both sides: iterative multi-label stratification.

Uses the ``iterative-stratification`` package (Sechidis et al., 2011, "On the stratification of multi-label
data"), which assigns the rarest labels first so that a category with a handful of images still lands in both
the training and the held-out part whenever it has at least two images.
"""

from __future__ import annotations

import numpy as np

from fathombatch.errors import UsageError


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split rows of a multi-hot matrix into train and held-out indices.

    Args:
        y: (N, C) multi-hot labels.
        val_fraction: held-out share in (0, 1).
        seed: random state; the split is a deterministic function of (y, val_fraction, seed).

    Returns:
        (train_idx, val_idx): sorted int64 arrays that partition ``range(N)``.
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    n = y.shape[0]
    if not 0.0 < val_fraction < 1.0:
        raise UsageError(f"the held-out fraction must be between 0 and 1, got {val_fraction}")
    if n < 2:
        raise UsageError(f"a held-out split needs at least 2 images, got {n}")
    n_val = min(max(1, int(round(n * val_fraction))), n - 1)
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_val / n, random_state=seed)
    train_idx, val_idx = next(splitter.split(np.zeros(n), np.asarray(y, dtype=np.int64)))
    in_val = np.zeros(n, dtype=bool)
    in_val[val_idx] = True
    repair_coverage(np.asarray(y) != 0, in_val)
    return np.flatnonzero(~in_val).astype(np.int64), np.flatnonzero(in_val).astype(np.int64)


def repair_coverage(y: np.ndarray, in_val: np.ndarray, *, rounds: int = 2, allow_singletons: bool = False) -> None:
    """Move single images so that every class with 2+ images has one on each side, where that is possible.

    Stratification rounds a class of 2 images at a 20 % share to (2, 0); moving one image across fixes it. An image
    is only moved when that does not take the last example of another class away from its side, except, with
    ``allow_singletons``, for a class that has a single image in all (it is on one side only wherever it goes).

    Args:
        y: (n_images, n_classes) bool multi-hot matrix.
        in_val: (n_images,) bool side of each image, updated in place.
        rounds: passes over both sides; stops early once a pass moves nothing.
    """
    total = y.sum(axis=0)
    for _ in range(rounds):
        moved = False
        for side_val in (True, False):
            counts_to = y[in_val == side_val].sum(axis=0)
            counts_from = y[in_val != side_val].sum(axis=0)
            for j in np.flatnonzero((counts_to == 0) & (counts_from >= 2)):
                donors = np.flatnonzero(y[:, j] & (in_val != side_val))
                # prefer images with few labels: moving them disturbs other classes least
                for i in donors[np.argsort(y[donors].sum(axis=1), kind="stable")]:
                    others = np.flatnonzero(y[i])
                    keeps = counts_from[others] >= 2
                    if allow_singletons:
                        keeps |= total[others] == 1
                    if np.all(keeps):
                        in_val[i] = side_val
                        counts_from[others] -= 1
                        counts_to[others] += 1
                        moved = True
                        break
        if not moved:
            break
