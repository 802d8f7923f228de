"""The scoring core: one :class:`~fathombatch.scoring.plan.ScorePlan` per run, scored by pluggable runners.

============================  ==========================================================================
module                        owns
============================  ==========================================================================
``config``                    what a caller asks (:class:`ScoreConfig`, :class:`RayOptions`) and gets back
``plan``                      :class:`ScorePlan`: the run's settings resolved once from config + manifest
``batch``                     :func:`score_batch`: one decoded batch -> rows (shared by every runner)
``runners/``                  local (decode thread + engine), multigpu (a process per GPU), ray (actors),
                              behind one protocol: ``frames(plan, pending)``
``pipeline``                  rows -> part files, with progress
``parts``                     the part-file store behind resuming (``OUT.parts/``)
``outputs``                   refusing outputs that are inputs; the final table and submission
``folder``                    :func:`score_folder`, which strings them together
============================  ==========================================================================
"""

from __future__ import annotations

from fathombatch.scoring.batch import score_batch
from fathombatch.scoring.config import RayOptions, ScoreConfig, ScoreSummary, decode_threads
from fathombatch.scoring.folder import score_folder
from fathombatch.scoring.outputs import check_outputs
from fathombatch.scoring.plan import ScorePlan, build_plan

__all__ = [
    "RayOptions",
    "ScoreConfig",
    "ScorePlan",
    "ScoreSummary",
    "build_plan",
    "check_outputs",
    "decode_threads",
    "score_batch",
    "score_folder",
]
