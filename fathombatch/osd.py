"""Out-of-sample ("osd") scores: how likely an image comes from outside the training distribution.

Methods are registered by name; ``score --osd METHOD`` picks one, and the engine manifest names the default.

* ``max-prob`` (default): ``1 - max_c p_c``. An image in which the model is confident about at least one known
  category scores low; an image where nothing known is recognised scores high. It needs no training statistics,
  so it works with every engine.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fathombatch.errors import UsageError

#: method(probabilities (N, C), features (N, D) | None) -> (N,) float32 in [0, 1]
OsdMethod = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]


def _max_prob(probs: np.ndarray, features: np.ndarray | None) -> np.ndarray:
    if probs.shape[1] == 0:
        return np.ones(probs.shape[0], dtype=np.float32)
    return (1.0 - probs.max(axis=1)).astype(np.float32)


_METHODS: dict[str, OsdMethod] = {"max-prob": _max_prob}


def list_osd_methods() -> list[str]:
    return sorted(_METHODS)


def get_osd_method(name: str) -> OsdMethod:
    """The osd function registered as ``name``; UsageError lists the choices otherwise."""
    try:
        return _METHODS[name]
    except KeyError:
        raise UsageError(f"unknown out-of-sample method {name!r}; choose one of {', '.join(list_osd_methods())}") from None
