"""The architecture registry: build models by name, list them, refuse duplicate names.

:class:`Classifier`, :class:`ArchSpec` and :func:`register_model` live in :mod:`fathombatch.models.arch` and are
re-exported here, where callers have always found them.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from torch import nn

from fathombatch.errors import TrainingError, UsageError, param
from fathombatch.models.arch import REGISTRY, ArchSpec, Builder, Classifier, register_model
from fathombatch.safeload import load_torch_file

__all__ = ["ArchSpec", "Builder", "Classifier", "create_model", "get_arch", "list_models", "load_weights",
           "register_model"]


def _ensure_loaded() -> None:
    from fathombatch.models import zoo  # noqa: F401 - registers the built-in architectures (zoo imports arch only)


def list_models(pattern: str = "*") -> list[str]:
    """Registered architecture names matching a glob pattern, sorted."""
    _ensure_loaded()
    return sorted(n for n in REGISTRY if fnmatch.fnmatch(n, pattern))


def get_arch(name: str) -> ArchSpec:
    """The registered :class:`ArchSpec`; raises UsageError listing the choices for an unknown name."""
    _ensure_loaded()
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown architecture {name!r}; choose one of {', '.join(list_models())}") from None


def create_model(
    name: str,
    num_classes: int,
    *,
    img_size: int = 224,
    pretrained: bool = False,
    weights: str | Path | None = None,
) -> Classifier:
    """Build an architecture by name.

    Args:
        name: a registered architecture.
        num_classes: output width C.
        img_size: square input size in pixels (the linear baselines' width depends on it).
        pretrained: start from ImageNet weights (see :class:`ArchSpec.pretrained`).
        weights: a local state-dict file for the whole model or its backbone (loaded with ``weights_only=True``).
    """
    spec = get_arch(name)
    if pretrained and spec.pretrained is None:
        raise UsageError(f"architecture {name!r} has no pretrained weights; drop {param('pretrained')}")
    model = spec.builder(num_classes, img_size, pretrained)
    if weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model: Classifier, path: str | Path) -> None:
    """Load a local weights file into a model (whole-model keys, or backbone-only keys).

    Only tensors are loaded (``weights_only=True``): a file that would run code is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"weights file {path} does not exist")
    state = load_torch_file(path, "weights file")
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise TrainingError(f"{path} does not hold a state dict")
    target: nn.Module = model
    if not any(k.startswith(("backbone.", "head.")) for k in state):
        target = model.backbone
    result = target.load_state_dict(state, strict=False)
    matched = len(state) - len(result.unexpected_keys)
    if matched == 0:
        raise TrainingError(f"{path}: none of its {len(state)} tensors match architecture {type(target).__name__}")
