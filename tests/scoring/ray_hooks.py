"""Test-only Ray actors: the fault injection that used to live in the package, on the test side."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fathombatch.scoring.runners.ray import ScoreActor


def dying_actor(kill_dir: Path) -> type[ScoreActor]:
    """A :class:`ScoreActor` whose first instance to reach its second call exits abruptly, once per ``kill_dir``
    (a marker file there says it happened), as a lost node would: Ray must restart it and retry the call.

    Defined inside a function so that Ray pickles the class by value: the workers need not import ``tests``.
    """

    class DyingScoreActor(ScoreActor):
        calls = 0

        def score(self, paths: list[str]) -> tuple[int, Any]:
            self.calls += 1
            if self.calls == 2:
                try:
                    fd = os.open(kill_dir / "killed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass
                else:
                    os.close(fd)
                    os._exit(1)
            return super().score(paths)

    return DyingScoreActor


def crashing_actor(poison: str) -> type[ScoreActor]:
    """A :class:`ScoreActor` whose worker process exits abruptly on every call that holds the file ``poison`` (as a
    decoder crashing on one file would), however often Ray restarts it."""

    class CrashingScoreActor(ScoreActor):
        def score(self, paths: list[str]) -> tuple[int, Any]:
            if any(Path(p).name == poison for p in paths):
                os._exit(1)
            return super().score(paths)

    return CrashingScoreActor


def crashing_at_start_actor() -> type[ScoreActor]:
    """A :class:`ScoreActor` whose worker process exits abruptly while the actor starts (a native crash opening the
    engine), every time Ray restarts it."""

    class CrashingAtStartActor(ScoreActor):
        def __init__(self, plan: Any) -> None:
            os._exit(1)

    return CrashingAtStartActor


def refusing_actor() -> type[ScoreActor]:
    """A :class:`ScoreActor` whose calls raise a fathombatch UsageError, as a worker missing an extra would."""

    class RefusingActor(ScoreActor):
        def score(self, paths: list[str]) -> tuple[int, Any]:
            from fathombatch.errors import UsageError

            raise UsageError("this worker cannot decode these files: install the 'dali' extra on every node")

    return RefusingActor
