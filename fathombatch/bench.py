"""Benchmark runners: decode-only, engine-only, end-to-end and video sampling throughput, as flat records.

Each runner warms up, then times ``repeats`` passes and reports the median images/s together with the peak resident
memory seen while it ran (sampled from ``/proc/self/status`` every 5 ms; on systems without /proc it is None).
Records are plain dicts so that a list of them becomes a Polars frame, json, or a table.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from fathombatch.decode import create_decoder, discover
from fathombatch.errors import UsageError
from fathombatch.pathargs import PathFields
from fathombatch.preprocess import InputSpec

Record = dict[str, Any]


@dataclass(frozen=True)
class BenchConfig(PathFields):
    """What to measure.

    Attributes:
        root: image folder.
        engine: engine path (or name in the engine store).
        batch_sizes: batch sizes to sweep.
        decoders: decoders to measure (``dali``, ``pil``).
        repeats: timed passes per measurement (the median is reported).
        max_images: use at most this many images of the folder (None: all).
        threads: CPU threads for decoders and engines (None: every core).
        device: GPU for decoders and engines (None: the CPU).
    """

    root: Path
    engine: str | Path
    batch_sizes: tuple[int, ...] = (8, 16, 32, 64)
    decoders: tuple[str, ...] = ("dali", "pil")
    repeats: int = 3
    max_images: int | None = None
    threads: int | None = None
    device: int | None = None


def rss_mb() -> float | None:
    """Resident memory of this process in MiB (None where /proc is unavailable)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@contextmanager
def peak_memory() -> Iterator[dict[str, float | None]]:
    """Sample RSS every 5 ms while the block runs; the dict gets ``peak_rss_mb`` on exit."""
    result: dict[str, float | None] = {"peak_rss_mb": rss_mb()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            now = rss_mb()
            if now is not None and (result["peak_rss_mb"] is None or now > result["peak_rss_mb"]):
                result["peak_rss_mb"] = now

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()


def timed(fn: Callable[[], int], repeats: int) -> tuple[float, float, list[float]]:
    """Run ``fn`` (returns images processed) once to warm up, then ``repeats`` times.

    Returns:
        (median images/s, median seconds, all images/s).
    """
    fn()
    rates, seconds = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        n = fn()
        elapsed = time.perf_counter() - start
        seconds.append(elapsed)
        rates.append(n / elapsed if elapsed > 0 else 0.0)
    return statistics.median(rates), statistics.median(seconds), rates


def _files(cfg: BenchConfig) -> list[Path]:
    files = [cfg.root / f for f in discover(cfg.root)]
    if not files:
        raise UsageError(f"no images under {cfg.root}")
    return files[: cfg.max_images] if cfg.max_images else files


def bench_decode(cfg: BenchConfig, decoder: str, batch_size: int) -> Record:
    """Decode + resize + normalise only, in batches, for every image of the folder."""

    from fathombatch.backends import read_manifest, resolve_engine_path

    spec = read_manifest(resolve_engine_path(cfg.engine)).input
    files = _files(cfg)
    device = None if decoder == "pil" else cfg.device
    with create_decoder(decoder, spec, batch_size=batch_size, threads=cfg.threads, device=device) as dec:

        def once() -> int:
            return sum(len(dec.decode(files[i : i + batch_size]).ok) for i in range(0, len(files), batch_size))

        with peak_memory() as mem:
            rate, seconds, rates = timed(once, cfg.repeats)
    return {"stage": "decode", "decoder": decoder, "batch_size": batch_size, "threads": cfg.threads or os.cpu_count(),
            "images": len(files), "images_per_s": rate, "seconds": seconds, "runs": rates, **mem}


def bench_engine(cfg: BenchConfig, batch_size: int, n_images: int | None = None) -> Record:
    """The engine alone on preprocessed random tensors of the manifest's input size."""
    from fathombatch.backends import engine_device, open_engine

    device = cfg.device if cfg.device is not None else engine_device(cfg.engine, "auto")
    engine = open_engine(cfg.engine, threads=cfg.threads, device=device)
    spec = engine.manifest.input
    n = n_images or max(4 * batch_size, 64)
    batch = np.random.default_rng(0).standard_normal((batch_size, 3, spec.height, spec.width)).astype(np.float32)

    def once() -> int:
        done = 0
        while done < n:
            engine.run(batch)
            done += batch_size
        return done

    with peak_memory() as mem:
        rate, seconds, rates = timed(once, cfg.repeats)
    m = engine.manifest
    return {"stage": "engine", "engine": str(engine.path), "arch": m.arch, "runtime": m.runtime,
            "precision": m.precision, "inference_precision": engine.inference_precision,
            "input": f"{spec.height}x{spec.width}", "batch_size": batch_size,
            "threads": cfg.threads or os.cpu_count(), "images": n, "images_per_s": rate, "seconds": seconds,
            "runs": rates, **mem}


def bench_video(path: str | Path, *, interval_s: float = 1.0, spec: InputSpec | None = None, repeats: int = 3,
                batch_size: int = 32) -> Record:
    """Sample one video every ``interval_s`` seconds (:func:`fathombatch.decode.video.sample_frames`, which decodes
    every frame) and, with ``spec``, resize and normalise the sampled frames in batches as ``score`` will.

    The record's ``frames_per_s`` counts sampled frames per wall-clock second and ``realtime`` seconds of footage
    per second.
    """
    import av

    from fathombatch.decode.video import VideoFrame, frames_to_batch, sample_frames

    path = Path(path)

    def preprocess(frames: list[VideoFrame]) -> None:
        if spec is not None and frames:
            frames_to_batch(frames, spec)

    def once() -> int:
        sampled, pending = 0, []
        for frame in sample_frames(path, interval_s):
            if frame.error is not None:
                raise UsageError(f"{path}: {frame.error}")
            sampled += 1
            pending.append(frame)
            if len(pending) == batch_size:
                preprocess(pending)
                pending = []
        preprocess(pending)
        return sampled

    with peak_memory() as mem:
        rate, seconds, rates = timed(once, repeats)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        width, height, fps = stream.width, stream.height, float(stream.average_rate or 0)
        codec = stream.codec_context.name
        footage_s = float(container.duration or 0) / 1_000_000
    bitrate = path.stat().st_size * 8 / footage_s / 1e6 if footage_s else None
    return {"stage": "video", "video": path.name, "width": width, "height": height, "fps": fps,
            "codec": codec, "footage_s": footage_s, "bitrate_mbit_s": bitrate,
            "interval_s": interval_s,
            "input": f"{spec.height}x{spec.width}" if spec else None, "threads": os.cpu_count(),
            "frames_per_s": rate, "realtime": footage_s / seconds if seconds else None, "seconds": seconds,
            "runs": rates, **mem}


@contextmanager
def _dump(cfg: BenchConfig) -> Iterator[tuple[Path, Path, int]]:
    """(folder to score, scratch folder, number of images): ``cfg.root``, or a subset of it as symlinks."""
    files = _files(cfg)
    with tempfile.TemporaryDirectory(prefix="fb-bench-") as scratch:
        root = Path(scratch) / "dump"
        if cfg.max_images:
            root.mkdir()
            for f in files:  # symlinks keep the subset without copying pixels
                (root / f.name).symlink_to(f.resolve())
        else:
            root = cfg.root
        yield root, Path(scratch), len(files)


def _score_once(cfg: BenchConfig, root: Path, out: Path, decoder: str, batch_size: int,
                decode_threads: int | None = None) -> int:
    from fathombatch.scoring import ScoreConfig, score_folder

    summary = score_folder(ScoreConfig(root=root, engine=cfg.engine, out=out, batch_size=batch_size, decoder=decoder,
                                       threads=cfg.threads, decode_threads=decode_threads, overwrite=True,
                                       device="cpu" if cfg.device is None else "cuda"))
    return summary.files


def bench_e2e(cfg: BenchConfig, decoder: str, batch_size: int) -> Record:
    """The whole ``score`` path, Parquet writing and the final merge included, into a scratch folder."""
    with _dump(cfg) as (root, scratch, n), peak_memory() as mem:
        rate, seconds, rates = timed(lambda: _score_once(cfg, root, scratch / "scores.parquet", decoder, batch_size),
                                     cfg.repeats)
    return {"stage": "e2e", "decoder": decoder, "engine": str(cfg.engine), "batch_size": batch_size,
            "threads": cfg.threads or os.cpu_count(), "images": n, "images_per_s": rate, "seconds": seconds,
            "runs": rates, **mem}


@dataclass(frozen=True)
class Variant:
    """One ``score`` configuration for :func:`bench_e2e_variants`; None fields keep ``score``'s defaults."""

    name: str
    decoder: str = "auto"
    batch_size: int = 32
    decode_threads: int | None = None


def bench_e2e_variants(cfg: BenchConfig, variants: Sequence[Variant]) -> list[Record]:
    """End-to-end ``score`` in several configurations, alternated run by run (one warm-up round, then
    ``cfg.repeats`` rounds), so that drift of the machine spreads over all of them alike; median images/s each."""
    rates: dict[str, list[float]] = {v.name: [] for v in variants}
    with _dump(cfg) as (root, scratch, n):
        for round_ in range(cfg.repeats + 1):
            for v in variants:
                start = time.perf_counter()
                done = _score_once(cfg, root, scratch / "scores.parquet", v.decoder, v.batch_size, v.decode_threads)
                if round_:
                    rates[v.name].append(done / (time.perf_counter() - start))
    return [{"stage": "e2e", "variant": v.name, "decoder": v.decoder, "batch_size": v.batch_size,
             "decode_threads": v.decode_threads, "engine": str(cfg.engine), "images": n,
             "images_per_s": statistics.median(rates[v.name]), "runs": rates[v.name]} for v in variants]


def run_suite(
    cfg: BenchConfig,
    stages: Sequence[str],
    progress: Callable[[Record], None] | None = None,
    *,
    engines: Sequence[str | Path] = (),
) -> list[Record]:
    """Run the chosen stages (``decode``, ``engine``, ``e2e``) over the batch sizes and decoders; the engine and
    end-to-end stages for ``cfg.engine`` and each of ``engines`` (e.g. ONNX Runtime and OpenVINO side by side)."""
    unknown = set(stages) - {"decode", "engine", "e2e"}
    if unknown:
        raise UsageError(f"unknown benchmark stage(s) {sorted(unknown)}; choose decode, engine, e2e or all")
    configs = [cfg] + [replace(cfg, engine=e) for e in engines]
    records: list[Record] = []
    for batch_size in cfg.batch_sizes:
        jobs: list[Callable[[], Record]] = []
        if "decode" in stages:
            jobs += [partial(bench_decode, cfg, d, batch_size) for d in cfg.decoders]
        if "engine" in stages:
            jobs += [partial(bench_engine, c, batch_size) for c in configs]
        if "e2e" in stages:
            jobs += [partial(bench_e2e, c, d, batch_size) for c in configs for d in cfg.decoders]
        for job in jobs:
            records.append(job())
            if progress:
                progress(records[-1])
    return records
