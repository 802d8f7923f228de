"""Architectures behind a registry, and the training loop (:mod:`fathombatch.models.train`)."""

from fathombatch.models.registry import ArchSpec, Classifier, create_model, get_arch, list_models, register_model

__all__ = ["ArchSpec", "Classifier", "create_model", "get_arch", "list_models", "register_model"]
