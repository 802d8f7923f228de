"""Kept for existing imports: the scoring core lives in :mod:`fathombatch.scoring` (import from there)."""

from __future__ import annotations

from fathombatch.scoring import (
    RayOptions,
    ScoreConfig,
    ScoreSummary,
    check_outputs,
    decode_threads,
    score_folder,
)

__all__ = ["RayOptions", "ScoreConfig", "ScoreSummary", "check_outputs", "decode_threads", "score_folder"]
