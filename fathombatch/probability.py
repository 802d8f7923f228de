"""Engine logits to class probabilities: the one sigmoid every part of fathombatch uses.

``1 / (1 + exp(-x))`` overflows (and warns) for logits below about -89 in float32; SciPy's ``expit`` does not, and
gives the same values elsewhere. Scoring, training's held-out MAP@20 and export's threshold fitting all call this, so
a probability in a scores table, in a run's metrics and in a manifest's thresholds is computed the same way.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """(N, C) logits (any float dtype) -> (N, C) float32 probabilities in [0, 1], without overflow."""
    return expit(logits).astype(np.float32, copy=False)
