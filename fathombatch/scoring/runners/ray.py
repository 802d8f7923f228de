"""Scale-out scoring on Ray: the same decode -> engine -> rows path, as Ray Data stages.

``fathombatch score DIR --engine E --ray`` lists the files on the driver, turns the list into a Ray Dataset, and maps
it with an actor pool (:class:`ScoreActor`): each actor loads the engine and a decoder once, then decodes and scores
batches of files and returns the same rows the local loop makes. The driver streams the results into the same part
files as a local run (:mod:`fathombatch.parts`), so the final table, its metadata, resuming after an interruption and
the one-row-per-file guarantee are identical; rows are keyed by path, so a batch that Ray retries after a worker dies
is written once.

Ray is an optional extra (``pip install 'fathombatch[ray]'``) and is imported only here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fathombatch.errors import UsageError, require

log = logging.getLogger(__name__)

#: Test hook: when set to a folder, the first actor to reach its second batch exits abruptly (once per folder),
#: so tests can check that Ray's retries leave no row lost or duplicated. Never set it in production.
KILL_ENV = "FATHOMBATCH_RAY_TEST_KILL_DIR"


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run.

    Attributes:
        address: ``None`` to start a local Ray instance, ``auto`` to join the cluster this machine belongs to, or
            ``ray://host:port`` for a remote cluster through Ray Client.
        workers: scoring actors (None: one per CPU, or per GPU with ``gpus_per_worker``).
        cpus_per_worker: CPUs reserved per actor (also its decoder/engine thread count).
        gpus_per_worker: GPUs reserved per actor (0 on CPU-only clusters).
        num_cpus: CPUs of a *local* instance (None: all); ignored when joining a cluster.
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    num_cpus: int | None = None


class ScoreActor:
    """A Ray Data actor: loads the engine and decoder once, then scores batches of paths."""

    def __init__(self, engine: str, root: str, decoder: str, batch_size: int, top_k: int, osd: str,
                 threads: int) -> None:
        from fathombatch.backends import open_engine
        from fathombatch.decode import create_decoder
        from fathombatch.osd import create_osd

        self.root = Path(root)
        self.top_k = top_k
        self.engine = open_engine(engine, threads=threads)
        self.decoder = create_decoder(decoder, self.engine.manifest.input, batch_size=batch_size, threads=threads)
        self.osd = create_osd(osd, self.engine.manifest.osd.get("stats"))
        self.batches = 0

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        from fathombatch.score import _score_batch

        self._maybe_die()
        paths = [os.fsdecode(bytes(p)) for p in batch["path"]]
        decoded = self.decoder.decode([self.root / p for p in paths])
        frame = _score_batch(self.engine, self.engine.manifest.taxonomy, self.root, paths, decoded, self.top_k,
                             self.osd)
        return frame.to_arrow()

    def _maybe_die(self) -> None:
        self.batches += 1
        folder = os.environ.get(KILL_ENV)
        if folder and self.batches == 2:
            marker = Path(folder) / "killed"
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.close(fd)
            os._exit(1)  # a worker dying mid-job, as a lost node would


def _init(options: RayOptions) -> Any:
    ray = require("ray", "ray", "scoring with --ray")
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False, "log_to_driver": False,
                                  "logging_level": logging.WARNING}
        if options.address is None:
            kwargs["num_cpus"] = options.num_cpus
        else:
            kwargs["address"] = options.address
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise UsageError(f"cannot reach the Ray cluster at {options.address!r}: {exc}") from None
    return ray


def ray_frames(
    *, engine: Path, root: Path, decoder: str, batch_size: int, top_k: int, osd: str, pending: list[str],
    options: RayOptions,
) -> Generator[tuple[int, pl.DataFrame], None, None]:
    """Yield (files done, rows) for the pending files, scored by a Ray Data actor pool."""
    ray = _init(options)
    from ray.data import ActorPoolStrategy

    resources = ray.cluster_resources()
    if options.workers is not None:
        workers = options.workers
    elif options.gpus_per_worker > 0:
        workers = max(1, int(resources.get("GPU", 0) // options.gpus_per_worker))
    else:
        workers = max(1, int(resources.get("CPU", 1) // options.cpus_per_worker))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ds = ray.data.from_items([{"path": os.fsencode(p)} for p in pending],
                             override_num_blocks=max(1, min(len(pending) // batch_size, 4 * workers)))
    ds = ds.map_batches(
        ScoreActor,
        fn_constructor_kwargs={"engine": str(engine.resolve()), "root": str(root.resolve()), "decoder": decoder,
                               "batch_size": batch_size, "top_k": top_k, "osd": osd,
                               "threads": max(1, int(options.cpus_per_worker))},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=workers),
        num_cpus=options.cpus_per_worker,
        num_gpus=options.gpus_per_worker or None,
        # Ray Data restarts dead actors and retries their tasks without limit by default (max_restarts and
        # max_task_retries of -1): exactly what a long job on preemptible nodes needs.
    )
    for arrow_batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        frame = pl.from_arrow(arrow_batch)
        assert isinstance(frame, pl.DataFrame)  # noqa: S101 - a pyarrow Table converts to a frame
        yield frame.height, frame
