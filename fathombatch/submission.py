"""Moved to :mod:`fathombatch.scores.submission`: re-exported here only until ``score.py``, which is being moved into
``fathombatch/scoring/`` on another branch, imports from there."""

from fathombatch.scores.submission import error_prior, shared_id_warning, write_submission

__all__ = ["error_prior", "shared_id_warning", "write_submission"]
