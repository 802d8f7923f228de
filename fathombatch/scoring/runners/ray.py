"""Scale-out scoring on Ray: the local decode -> engine pipeline, run by a pool of Ray actors.

``fathombatch score DIR --engine E --ray`` lists the files on the driver and cuts the list into calls of a few engine
batches. A pool of Ray actors (:class:`ScoreActor`, driven by Ray's own ``ray.util.ActorPool``) takes them one call
per actor at a time, the next call going to whichever actor is free. Each actor opens the engine and a decoder once,
with the plan's device, precision and threads, then runs the local runner's pipeline
(:func:`~fathombatch.scoring.runners.local.pipeline_frames`: a decode thread feeding the engine, so batch n+1 decodes
while batch n runs) over each call's files and returns the same rows the local run makes. The driver reads the
engine's manifest only, and streams the results into the same part files as a local run
(:mod:`fathombatch.scoring.parts`), so the final table, its metadata, resuming after an interruption and the
one-row-per-file guarantee are identical; rows are keyed by path, so a call that Ray retries after a worker dies is
written once.

Plain actors rather than Ray Data's ``map_batches``: the work is a list of paths whose order and count are known up
front, which needs none of Ray Data's planning or streaming executor; leaving it out takes its import and set-up
(1.4 s from ``ray.init`` returning to the first task starting, in a timed run on the 2-core benchmark machine) off
every command, where Ray's fixed cost is what it
loses to a local run on one node (docs/scaling.md).

Ray is an optional extra (``pip install 'fathombatch[ray]'``) and is imported only here, inside functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import socket
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from fathombatch.errors import EngineError, FathombatchError, UsageError, param, require
from fathombatch.scoring.config import RayOptions
from fathombatch.scoring.plan import ScorePlan
from fathombatch.scoring.runners.local import pipeline_frames

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

#: The most engine batches one actor call holds: more overlap of decode and inference per call (the pipeline fills
#: once per call), against coarser load balancing and more work repeated when a worker dies mid-call.
MAX_BATCHES_PER_CALL = 8

#: How many times a call is retried after the worker running it died (Ray restarts the worker each time).
MAX_RETRIES = 3
#: How many times one actor is restarted after its process died, over the whole run: enough for a long job on
#: preemptible nodes, finite so that an actor that dies while starting (a native crash opening the engine) ends the
#: run with an error instead of being restarted forever while the run waits.
MAX_RESTARTS = 16


def ray_device(engine: Path, device: str, gpus_per_worker: float) -> int | None:
    """Where a Ray actor runs ``engine``: 0 (the GPU Ray reserved for it, the only one it sees) or None (its CPU).

    Decided from the engine's kind, ``device`` (``auto``/``cpu``/``cuda``) and the GPUs reserved per actor, never
    from the driver's own hardware: the driver may be a laptop without a GPU.

    Raises:
        UsageError: a combination that cannot run (a TensorRT plan on the CPU or without a reserved GPU, ``cuda``
            without a reserved GPU, or for an engine that runs only on the CPU).
    """
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"device must be auto, cpu or cuda, got {device!r}")
    suffix = engine.suffix.lower()
    if suffix in (".onnx", ".xml"):
        if device == "cuda":
            raise UsageError(f"{engine}: ONNX and OpenVINO engines run on the CPU in fathombatch; for GPUs on Ray "
                             "build a TensorRT plan (fathombatch build-engine) or score the .pt export")
        return None
    if device == "cpu":
        if suffix == ".plan":
            raise UsageError(f"{engine} is a TensorRT plan, which runs only on an NVIDIA GPU, not device cpu")
        return None
    if gpus_per_worker > 0:
        return 0
    if device == "cuda" or suffix == ".plan":
        raise UsageError(f"{engine} runs on a GPU here, but no GPU is reserved per Ray worker; reserve one "
                         "(gpus_per_worker, e.g. 1)")
    return None


def actor_threads(plan: ScorePlan, options: RayOptions) -> tuple[int, int]:
    """(engine threads, decoder threads) of one actor: what the user asked for, else the CPUs reserved per actor.

    With the default of one actor per CPU this is cores / actors, so the actors together use each core once
    instead of each starting a thread per core of the node (which oversubscribes it actors-fold).
    """
    threads = plan.threads or max(1, int(options.cpus_per_worker))
    return threads, threads


class ScoreActor:
    """A Ray actor: opens the engine and decoder once, then scores calls of paths through the local pipeline."""

    def __init__(self, plan: ScorePlan) -> None:
        from fathombatch.backends import open_engine
        from fathombatch.decode import create_decoder

        self.plan = plan
        self.engine = open_engine(plan.engine, threads=plan.threads, device=plan.device, precision=plan.precision)
        self.decoder = create_decoder(plan.decoder, self.engine.manifest.input, batch_size=plan.batch_size,
                                      threads=plan.decode_threads, device=plan.device)

    def score(self, paths: list[str]) -> tuple[int, pa.Table]:
        """(files, rows) of ``paths``: every row the local pipeline makes for them, as one Arrow table."""
        frames = [frame for _, frame in pipeline_frames(self.plan, self.engine, paths, decoder=self.decoder)]
        return len(paths), pl.concat(frames, how="vertical").to_arrow()


def init_ray(options: RayOptions) -> tuple[Any, bool]:
    """The ``ray`` module, connected (a local instance, or the cluster at ``options.address``), and whether this
    call started it (then the caller shuts it down when done; an instance the user started is left running).

    Raises:
        MissingDependencyError: Ray is not installed.
        UsageError: the cluster cannot be reached.
    """
    ray = require("ray", "ray", f"scoring with {param('ray')}")
    if ray.is_initialized():
        return ray, False
    kwargs: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.WARNING}
    if options.address is None:
        kwargs["num_cpus"] = options.num_cpus
    else:
        check_reachable(options.address)
        kwargs["address"] = options.address
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise UsageError(f"cannot reach the Ray cluster at {options.address!r}: {exc}") from None
    return ray, True


#: Seconds to wait for a Ray cluster's port to accept a connection before giving up on it.
CONNECT_TIMEOUT_S = 10.0


def check_reachable(address: str) -> None:
    """Refuse a ``HOST:PORT`` or ``ray://HOST:PORT`` address whose port does not accept a TCP connection within
    :data:`CONNECT_TIMEOUT_S` (``auto`` and other forms are left to Ray).

    Why: ``ray.init`` retries an unreachable address for minutes before it fails, silently; a typo in the address
    should cost seconds and say so.

    Raises:
        UsageError: the port refused the connection, or nothing answered in time.
    """
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UsageError(f"cannot reach the Ray cluster at {address!r}: {exc.strerror or exc}") from None


def _workers(resources: dict[str, float], options: RayOptions) -> int:
    if options.workers is not None:
        return options.workers
    if options.gpus_per_worker > 0:
        return max(1, int(resources.get("GPU", 0) // options.gpus_per_worker))
    return max(1, int(resources.get("CPU", 1) // options.cpus_per_worker))


def files_per_call(pending: int, batch_size: int, workers: int) -> int:
    """Files per actor call: whole engine batches, about two calls per actor, at most :data:`MAX_BATCHES_PER_CALL`."""
    n_batches = math.ceil(pending / batch_size)
    return batch_size * max(1, min(MAX_BATCHES_PER_CALL, math.ceil(n_batches / (2 * workers))))


class RayRunner:
    """Scores on a pool of Ray actors (:class:`ScoreActor`); see the module docstring."""

    def __init__(self, options: RayOptions) -> None:
        self.options = options

    def frames(self, plan: ScorePlan, pending: list[str], done_frames: Mapping[str, frozenset[int]] | None = None,
               ) -> Generator[tuple[int, pl.DataFrame], None, None]:
        """Yield (files done, rows) for the pending files as the actors return them, a call at a time."""
        ray, started = init_ray(self.options)
        actors: list[Any] = []
        try:
            workers = _workers(ray.cluster_resources(), self.options)
            per_call = files_per_call(len(pending), plan.batch_size, workers)
            actors = self._start_actors(ray, plan, min(workers, math.ceil(len(pending) / per_call)))
            calls = [pending[i:i + per_call] for i in range(0, len(pending), per_call)]
            results = ray.util.ActorPool(actors).map_unordered(lambda actor, paths: actor.score.remote(paths), calls)
            while True:
                try:
                    files, table = next(results)
                except StopIteration:
                    break
                except ray.exceptions.RayError as exc:
                    raise _worker_error(exc) from exc
                frame = pl.from_arrow(table)
                assert isinstance(frame, pl.DataFrame)  # noqa: S101 - a pyarrow Table converts to a frame
                yield files, frame
        finally:
            try:
                for actor in actors:
                    with contextlib.suppress(Exception):  # a lost connection must not hide the run's own error
                        ray.kill(actor)
            finally:
                if started:
                    # Here rather than in Ray's own exit hook, which sleeps half a second first (for log lines).
                    ray.shutdown()

    def _start_actors(self, ray: Any, plan: ScorePlan, count: int) -> list[Any]:
        # Looked up here, at run time, so a test can put a subclass in its place.
        actor_class = ray.remote(ScoreActor).options(
            num_cpus=self.options.cpus_per_worker, num_gpus=self.options.gpus_per_worker,
            # A worker that dies (a lost node, a killed process) is restarted and its call retried, a few times: a
            # long job on preemptible nodes survives, while a file that crashes its worker every time, or an actor
            # that crashes while starting, stops the run with an error instead of looping (the rows written so far
            # stay; the same command resumes).
            max_restarts=MAX_RESTARTS, max_task_retries=MAX_RETRIES)
        # Absolute paths: the actors may run on other machines, in other working directories.
        remote_plan = dataclasses.replace(plan, root=plan.root.resolve(), engine=plan.engine.resolve())
        return [actor_class.remote(remote_plan) for _ in range(count)]


def _worker_error(exc: BaseException) -> FathombatchError:
    """What to raise for a Ray failure: a fathombatch error raised inside an actor as it is (its exit code and
    message intact), anything else as an EngineError with the last line of Ray's report (the exception's own
    message, after Ray's traceback)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, FathombatchError):
        return cause
    text = [line for line in str(cause or exc).strip().splitlines() if line.strip()]
    return EngineError(f"a Ray worker failed: {text[-1].strip() if text else type(cause or exc).__name__}")
