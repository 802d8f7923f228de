"""What a caller asks of a scoring run (:class:`ScoreConfig`, :class:`RayOptions`) and what it gets back
(:class:`ScoreSummary`). Plain frozen dataclasses importing nothing of the package but :mod:`fathombatch.pathargs`
(str paths; it imports only the errors), so every module of :mod:`fathombatch.scoring` can use them without an import
cycle."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fathombatch.pathargs import PathFields
from fathombatch.scoring.stages import StageTimes

#: Where an engine runs (``auto``: TensorRT plans and ``.pt`` engines on GPU 0 when there is one).
Device = Literal["auto", "cpu", "cuda"]
#: ``.pt`` engines on a GPU: fp32, or autocast to fp16/bf16.
TorchPrecision = Literal["fp32", "fp16", "bf16"]
#: What decodes videos: PyAV on the CPU, or DALI (NVDEC on a GPU, else its CPU backend); ``auto``: DALI's NVDEC when
#: the engine runs on a GPU and DALI imports, else PyAV (:mod:`fathombatch.decode.video_dali`).
VideoDecoderName = Literal["auto", "pyav", "dali"]


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run on Ray (:mod:`fathombatch.scoring.runners.ray`).

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


@dataclass(frozen=True)
class ScoreConfig(PathFields):
    """One scoring run.

    Attributes:
        root: the dump folder (searched recursively).
        engine: engine path, or a file name in the engine store.
        out: the scores table to write.
        batch_size: images per engine call.
        decoder: ``auto`` | ``dali`` | ``nvjpeg`` | ``pil`` (:func:`~fathombatch.decode.list_decoders`).
        top_k: length of ``top_categories``.
        submission: also write the competition's CSV here.
        osd: out-of-sample method (None: the manifest's).
        threads: CPU threads for decoding and for the engine (None: the split of :func:`decode_threads` and the
            runtime's default, one per physical core).
        decode_threads: decoder threads, overriding the split (None: :func:`decode_threads`).
        overwrite: discard an existing output or interrupted run instead of refusing/resuming.
        update: bring an existing ``out`` up to date with the folder: score only new and changed files (and its
            error rows), drop rows of files that are gone, keep the rest (:mod:`fathombatch.scoring.update`).
        part_rows: rows per part file (the most a hard kill can lose).
        ray: score on a Ray cluster (see :mod:`fathombatch.scoring.runners.ray`) instead of in this process.
        device: ``auto`` (TensorRT plans and ``.pt`` engines on GPU 0 when there is one), ``cpu`` or ``cuda``.
        devices: GPUs to shard the files over, one worker process per GPU, one output (None: one device).
        torch_precision: ``.pt`` engines on a GPU: ``fp32``, or autocast to ``fp16``/``bf16``.
        frame_interval: seconds between the frames sampled from each video (:mod:`fathombatch.decode.video`).
        video_decoder: ``auto``, ``pyav`` or ``dali`` (:data:`VideoDecoderName`).
    """

    root: Path
    engine: str | Path
    out: Path = Path("scores.parquet")
    batch_size: int = 32
    decoder: str = "auto"
    top_k: int = 20
    submission: Path | None = None
    osd: str | None = None
    threads: int | None = None
    decode_threads: int | None = None
    overwrite: bool = False
    update: bool = False
    part_rows: int = 2048
    ray: RayOptions | None = None
    device: Device = "auto"
    devices: list[int] | None = None
    torch_precision: TorchPrecision = "fp32"
    frame_interval: float = 1.0
    video_decoder: VideoDecoderName = "auto"


@dataclass(frozen=True)
class UpdateCounts:
    """What an update did to the table's rows (files, one row each).

    Attributes:
        added: files the table had no row for.
        rescored: files the table had a row for that were scored again: changed since (size or modification time),
            error rows, or every row of a table written before tables recorded file signatures.
        removed: rows of files no longer in the folder, dropped.
        kept: rows of unchanged files, copied from the table.
        fresh: there was no table yet, so every file was scored as new (``added``).
    """

    added: int
    rescored: int
    removed: int
    kept: int
    fresh: bool = False


@dataclass(frozen=True)
class ScoreSummary:
    """What a run did. ``images_per_second`` counts files scored in this run over its wall time."""

    out: Path
    submission: Path | None
    files: int
    ok: int
    errors: int
    scored_now: int
    resumed: int
    seconds: float
    images_per_second: float
    decoder: str
    engine: str
    id_collisions: int
    top_errors: list[tuple[str, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error_prior_source: str | None = None  # where the submission's error rows got their ranking; None: no submission
    update: UpdateCounts | None = None  # None: not an update
    #: Each side of the local pipeline, busy and waiting (None: scored by Ray or several GPUs, or nothing to score).
    stages: StageTimes | None = None


def decode_threads(threads: int | None) -> int:
    """Decoder threads for a local run: ``threads`` when the user set it, else one per core plus one.

    The engine runs on every core (the runtime's default) and the decoder shares them: its threads sleep whenever the
    bounded queue is full, so they take core time only while the engine would otherwise wait. The one extra thread
    keeps a decode going while another waits on storage (dumps often live on network disks); on the 2-core
    benchmark it measured a few percent faster than one per core (benchmarks/RESULTS.md, "Defaults").
    """
    return threads if threads else (os.cpu_count() or 1) + 1
