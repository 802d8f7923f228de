"""Several GPUs on one machine: ``score --devices 0,1,...`` shards the files, one worker process per GPU.

Each worker (a ``spawn``-ed process, so CUDA starts clean in it) opens the engine and a decoder on its own GPU and runs
the local pipeline over its shard; its rows come back to the parent through a queue, and the parent writes them to the
same part files as a single-device run — one output, the same table, the same resume rules. The parent itself only
reads the engine's manifest (:func:`unopened_engine`): loading the engine there too would put a second copy of it on
the first GPU, beside that GPU's worker.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import queue
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fathombatch.backends import Engine, checked_manifest
from fathombatch.errors import EngineError, UsageError


class UnopenedEngine(Engine):
    """An engine's path and checked manifest, for the parent of the GPU workers; it runs nothing."""

    runtime = "unopened"

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        raise EngineError(f"{self.path} is opened by the GPU workers, not by the process that starts them")


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
    return UnopenedEngine(path, manifest)


def _worker(cfg_fields: dict[str, Any], engine: str, decoder: str, osd: str, shard: list[str], device: int,
            out: Any) -> None:
    """Score ``shard`` on GPU ``device``; put ("rows", n, frame) items, then ("done", device) or ("error", text)."""
    try:
        import torch

        torch.cuda.set_device(device)  # before anything touches CUDA: no stray context on GPU 0
        from fathombatch.backends import open_engine
        from fathombatch.osd import create_osd
        from fathombatch.score import ScoreConfig, local_frames

        cfg = ScoreConfig(**cfg_fields)
        eng = open_engine(engine, threads=cfg.threads, device=device, precision=cfg.torch_precision)
        osd_fn = create_osd(osd, eng.manifest.osd.get("stats"))
        for n, frame in local_frames(cfg, eng, decoder, osd_fn, shard, device):
            out.put(("rows", n, frame))
        out.put(("done", device))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        out.put(("error", f"GPU {device}: {type(exc).__name__}: {exc}"))


def multi_gpu_frames(cfg: Any, engine: Path, decoder: str, osd: str, pending: list[str], devices: list[int]
                     ) -> Generator[tuple[int, pl.DataFrame], None, None]:
    """Yield (files done, rows) from one worker process per GPU; shards are interleaved batches of ``pending``."""
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue(maxsize=4 * len(devices))
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    fields.update(devices=None, ray=None)
    batches = [pending[i : i + cfg.batch_size] for i in range(0, len(pending), cfg.batch_size)]
    shards = [[p for b in batches[k :: len(devices)] for p in b] for k in range(len(devices))]
    workers = [
        ctx.Process(target=_worker, args=(fields, str(engine), decoder, osd, shard, device, out), daemon=True)
        for device, shard in zip(devices, shards, strict=True)
        if shard
    ]
    for w in workers:
        w.start()
    running = len(workers)
    try:
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
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
            w.join(timeout=10)
