"""Several GPUs on one machine: ``score --devices 0,1,...`` shards the files, one worker process per GPU.

Each worker (a ``spawn``-ed process, so CUDA starts clean in it) opens the engine and a decoder on its own GPU and runs
the local pipeline (:mod:`~fathombatch.scoring.runners.local`) over its shard with the run's
:class:`~fathombatch.scoring.plan.ScorePlan`, pickled unchanged but for the device; its rows come back to the parent
through a queue, and the parent writes them to the same part files as a single-device run — one output, the same
table, the same resume rules. The parent itself only reads the engine's manifest (:func:`unopened_engine`): loading
the engine there too would put a second copy of it on the first GPU, beside that GPU's worker.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import queue
from collections.abc import Generator
from pathlib import Path
from typing import Any

import polars as pl

from fathombatch.backends import checked_manifest
from fathombatch.errors import EngineError, UsageError
from fathombatch.scoring.batch import batches
from fathombatch.scoring.plan import ScorePlan, UnopenedEngine


def unopened_engine(name: str | Path) -> UnopenedEngine:
    """The engine ``name`` as the parent of the GPU workers sees it: resolved, manifest read and checked against the
    file (SHA-256), nothing loaded and no CUDA touched.

    Raises:
        UsageError: the engine is missing, or runs only on the CPU (ONNX, OpenVINO).
        ManifestError: the manifest does not belong to the file.
    """
    path, manifest = checked_manifest(name)
    if manifest.runtime not in ("torch", "tensorrt"):
        raise UsageError(f"{path}: {manifest.runtime} engines run on the CPU in fathombatch; several GPUs need a "
                         "TensorRT plan (fathombatch build-engine) or the .pt export")
    return UnopenedEngine(path, manifest, opened_by="the GPU workers")


def _worker(plan: ScorePlan, shard: list[str], out: Any) -> None:
    """Score ``shard`` on GPU ``plan.device``; put ("rows", n, frame) items, then ("done",) or ("error", text)."""
    device = plan.device
    try:
        import torch

        torch.cuda.set_device(device)  # before anything touches CUDA: no stray context on GPU 0
        from fathombatch.backends import open_engine
        from fathombatch.scoring.runners.local import pipeline_frames

        engine = open_engine(plan.engine, threads=plan.threads, device=device, precision=plan.precision)
        for n, frame in pipeline_frames(plan, engine, shard):
            out.put(("rows", n, frame))
        out.put(("done",))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        out.put(("error", f"GPU {device}: {type(exc).__name__}: {exc}"))


class MultiGpuRunner:
    """One worker process per GPU; shards are interleaved batches of the pending files."""

    def __init__(self, devices: list[int]) -> None:
        self.devices = devices

    def frames(self, plan: ScorePlan, pending: list[str]) -> Generator[tuple[int, pl.DataFrame], None, None]:
        """Yield (files done, rows) from the workers as they come."""
        ctx = mp.get_context("spawn")
        out: Any = ctx.Queue(maxsize=4 * len(self.devices))
        chunks = list(batches(pending, plan.batch_size))
        shards = [[p for b in chunks[k :: len(self.devices)] for p in b] for k in range(len(self.devices))]
        workers = [
            ctx.Process(target=_worker, args=(dataclasses.replace(plan, device=device), shard, out), daemon=True)
            for device, shard in zip(self.devices, shards, strict=True)
            if shard
        ]
        for w in workers:
            w.start()
        try:
            yield from _collect(out, workers)
        finally:
            for w in workers:
                if w.is_alive():
                    w.terminate()
                w.join(timeout=10)


def _collect(out: Any, workers: list[Any]) -> Generator[tuple[int, pl.DataFrame], None, None]:
    """Yield the workers' rows until each reported done; raise the first error, or a worker's death."""
    running = len(workers)
    while running:
        try:
            item = out.get(timeout=5)
        except queue.Empty:
            dead = [w for w in workers if not w.is_alive() and w.exitcode not in (0, None)]
            if dead:
                raise EngineError(f"a GPU worker died (exit code {dead[0].exitcode}); re-run to resume") from None
            continue
        if item[0] == "rows":
            yield item[1], item[2]
        elif item[0] == "done":
            running -= 1
        else:
            raise EngineError(item[1])
