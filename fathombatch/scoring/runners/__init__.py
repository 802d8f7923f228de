"""Runners: where a plan's pending files are scored. All behind one protocol, :class:`Runner`.

* :mod:`~fathombatch.scoring.runners.local`: a decode thread feeding this process's engine (the default);
* :mod:`~fathombatch.scoring.runners.multigpu`: one worker process per GPU (``devices``);
* :mod:`~fathombatch.scoring.runners.ray`: a pool of Ray actors, on this machine or a cluster.

Each yields ``(files done, rows)`` pairs; the caller (:func:`fathombatch.scoring.folder.score_folder`) writes the rows
to the same part files whichever runner made them, so resuming, merging and the final table are one code path.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Protocol

import polars as pl

from fathombatch.scoring.plan import ScorePlan


class Runner(Protocol):
    """Scores files of a plan."""

    def frames(self, plan: ScorePlan, pending: list[str], done_frames: Mapping[str, frozenset[int]] | None = None,
               ) -> Generator[tuple[int, pl.DataFrame], None, None]:
        """Yield (number of files done, their rows) until every file of ``pending`` (paths relative to
        ``plan.root``) has its rows; rows come in any order, each file's exactly once unless a batch is retried.
        ``done_frames``: frames of pending videos already scored, which need not run again (only the local runner
        scores videos; :func:`~fathombatch.scoring.folder.score_folder` refuses them for the others)."""
        ...
