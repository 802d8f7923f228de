"""Architectures behind a registry, and the training loop (:mod:`fathombatch.models.train`).

Names load on first use (PEP 562), so reading :mod:`fathombatch.models.config` (as the command line does when it
starts) does not import PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fathombatch.models.registry import ArchSpec, Classifier, create_model, get_arch, list_models, register_model

__all__ = ["ArchSpec", "Classifier", "create_model", "get_arch", "list_models", "register_model"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module("fathombatch.models.registry"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
