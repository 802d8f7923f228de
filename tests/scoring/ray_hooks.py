"""Test-only Ray actors: the fault injection that used to live in the package, on the test side."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fathombatch.scoring.runners.ray import ScoreActor


def dying_actor(kill_dir: Path) -> type[ScoreActor]:
    """A :class:`ScoreActor` whose first instance to reach its second call exits abruptly, once per ``kill_dir``
    (a marker file there says it happened), as a lost node would: Ray must restart it and retry the call.

    Defined inside a function so that Ray pickles the class by value: the workers need not import ``tests``.
    """

    class DyingScoreActor(ScoreActor):
        calls = 0

        def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[Any]:
            self.calls += 1
            if self.calls == 2:
                try:
                    fd = os.open(kill_dir / "killed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass
                else:
                    os.close(fd)
                    os._exit(1)
            yield from super().__call__(batch)

    return DyingScoreActor
