"""The batch-scoring loop: discover -> decode -> engine -> probabilities -> Parquet, streaming and resumable.

Three stages overlap through bounded queues, so memory stays flat however large the dump:

* a decode thread turns batches of files into tensors (batch n+1 decodes while batch n runs);
* the calling thread runs the engine and builds rows;
* a writer thread writes rows to part files, each atomically (``OUT.parts/part-NNNNNN.parquet``).

An interrupted run (Ctrl-C, ``kill -9``, a full disk) leaves complete part files behind. Running the same command
again skips every file already scored ``ok`` and unchanged since, scores the rest (error rows are retried), and
merges all parts into ``OUT`` (sorted by path), then removes the parts (:mod:`fathombatch.parts`). A resume with a
different engine, decoder, top-k, osd method or folder is refused unless ``--overwrite``. A lock file
(``OUT.lock``) stops two runs from writing the same output.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import queue
import sys
import threading
import time
import types
from collections import Counter
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from fathombatch import __version__
from fathombatch.backends import Engine, engine_device, engine_files, manifest_path, open_engine, resolve_engine_path
from fathombatch.decode import check_decoder_device, create_decoder, discover, resolve_decoder_name
from fathombatch.decode.base import DecodedBatch
from fathombatch.decode.discover import describe_suffixes
from fathombatch.errors import OutputError, UsageError
from fathombatch.fsutil import FileLock, display_path
from fathombatch.gpu import require_gpu
from fathombatch.metrics import ranking_from_scores
from fathombatch.osd import create_osd
from fathombatch.parts import PartStore, file_signature
from fathombatch.pathargs import PathFields
from fathombatch.pathguard import entry_names
from fathombatch.probability import sigmoid
from fathombatch.progress import Progress
from fathombatch.submission import error_prior, shared_id_warning, write_submission
from fathombatch.table import build_frame, encode_metadata

if TYPE_CHECKING:
    from fathombatch.scale import RayOptions

log = logging.getLogger(__name__)


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
        part_rows: rows per part file (the most a hard kill can lose).
        ray: score on a Ray cluster (see :mod:`fathombatch.scale`) instead of in this process.
        device: ``auto`` (TensorRT plans and ``.pt`` engines on GPU 0 when there is one), ``cpu`` or ``cuda``.
        devices: GPUs to shard the files over, one worker process per GPU, one output (None: one device).
        torch_precision: ``.pt`` engines on a GPU: ``fp32``, or autocast to ``fp16``/``bf16``.
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
    part_rows: int = 2048
    ray: RayOptions | None = None
    device: str = "auto"
    devices: list[int] | None = None
    torch_precision: str = "fp32"


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


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def decode_threads(threads: int | None) -> int:
    """Decoder threads for a local run: ``threads`` when the user set it, else one per core plus one.

    The engine runs on every core (the runtime's default) and the decoder shares them: its threads sleep whenever the
    bounded queue is full, so they take core time only while the engine would otherwise wait. The one extra thread
    keeps a decode going while another waits on storage (dumps often live on network disks); on the 2-core
    benchmark it measured a few percent faster than one per core (benchmarks/RESULTS.md, "Defaults").
    """
    return threads if threads else (os.cpu_count() or 1) + 1


def _run_params(cfg: ScoreConfig, engine: Engine, decoder: str, osd: str) -> dict[str, Any]:
    """The parameters that determine the values of a row: a resume must match them exactly."""
    return {
        "engine_fingerprint": engine.manifest.fingerprint(),
        "engine": str(engine.path),
        "decoder": decoder,
        "top_k": cfg.top_k,
        "osd": osd,
        "root": str(cfg.root.resolve()),
        "torch_precision": cfg.torch_precision,
        "inference_precision": engine.inference_precision,
    }


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put unless asked to stop (a consumer that died must not leave this thread blocked forever)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def _decode_stage(
    cfg: ScoreConfig,
    decoder_name: str,
    engine: Engine,
    pending: list[str],
    out_q: queue.Queue[Any],
    stop: threading.Event,
    device: int | None,
) -> None:
    """Decode thread: put (paths, DecodedBatch) items on the queue, then None; an exception is forwarded."""
    try:
        decoder = create_decoder(decoder_name, engine.manifest.input, batch_size=cfg.batch_size,
                                 threads=cfg.decode_threads or decode_threads(cfg.threads), device=device)
        with decoder:
            for chunk in _batches(pending, cfg.batch_size):
                if not _put(out_q, (chunk, decoder.decode([cfg.root / p for p in chunk])), stop):
                    return
        _put(out_q, None, stop)
    except BaseException as exc:  # noqa: BLE001 - forwarded to the scoring thread
        _put(out_q, exc, stop)


def score_folder(cfg: ScoreConfig, *, progress: Progress | None = None, engine: Engine | None = None
                 ) -> ScoreSummary:
    """Score every image under ``cfg.root`` and write the scores table (and optionally the submission CSV).

    ``engine``: ``cfg.engine`` already opened (the Python API reuses one), on the device ``cfg.device`` names;
    None opens it here.

    Raises:
        UsageError: bad arguments, a missing folder, or a folder without images.
        OutputError: the output exists (without ``overwrite``), is locked by another run, or cannot be written.
        EngineError / ManifestError: the engine cannot be loaded or disagrees with its manifest.
    """
    started = time.perf_counter()
    progress = progress or Progress(enabled=False)
    if cfg.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    warnings: list[str] = []
    files = discover(cfg.root, on_error=warnings.append)
    if not files:
        raise UsageError(f"no {describe_suffixes()} images under {cfg.root}")
    check_outputs(cfg, files)
    if cfg.devices:
        require_gpu("--devices", cfg.devices)
        device: int | None = cfg.devices[0]
    else:
        device = engine_device(cfg.engine, cfg.device)
    decoder_name = resolve_decoder_name(cfg.decoder, device)
    check_decoder_device(decoder_name, device)
    if cfg.devices and len(cfg.devices) > 1:  # each worker opens the engine on its GPU; here: the manifest only
        from fathombatch.multigpu import unopened_engine

        engine = unopened_engine(cfg.engine)
    elif engine is None:
        engine = open_engine(cfg.engine, threads=cfg.threads, device=device, precision=cfg.torch_precision)
    taxonomy = engine.manifest.taxonomy
    if not 1 <= cfg.top_k <= len(taxonomy):
        raise UsageError(f"--top-k must be between 1 and {len(taxonomy)}, got {cfg.top_k}")
    osd_name = cfg.osd or str(engine.manifest.osd.get("method", "max-prob"))
    osd_fn = create_osd(osd_name, engine.manifest.osd.get("stats"))

    out = cfg.out
    parts_dir = out.with_name(out.name + ".parts")
    with FileLock(out.with_name(out.name + ".lock"), what=str(out)):
        resuming = parts_dir.exists()
        for path, flag in ((out, "--out"), (cfg.submission, "--submission")):
            if path is not None and path.exists() and not resuming and not cfg.overwrite:
                raise OutputError(f"{path} already exists; pass --overwrite to replace it, or choose another {flag}")
        for stale in out.parent.glob(f".{out.name}.*.tmp"):
            stale.unlink(missing_ok=True)  # a merge killed half-way; its parts are still there
        params = _run_params(cfg, engine, decoder_name, osd_name)
        store = PartStore(parts_dir, params, overwrite=cfg.overwrite)
        warnings += store.warnings
        shown = [display_path(f) for f in files]
        done: set[str] = set()
        if store.parts:
            done = store.scored({s: file_signature(cfg.root / f) for f, s in zip(files, shown, strict=True)})
        pending = [f for f, s in zip(files, shown, strict=True) if s not in done]
        resumed = len(files) - len(pending)
        if resumed:
            log.info("resuming: %d of %d files already scored", resumed, len(files))

        if pending:
            if cfg.ray is not None:
                from fathombatch.scale import ray_frames

                frames = ray_frames(engine=engine.path, root=cfg.root, decoder=decoder_name, batch_size=cfg.batch_size,
                                    top_k=cfg.top_k, osd=osd_name, pending=pending, options=cfg.ray)
            elif cfg.devices and len(cfg.devices) > 1:
                from fathombatch.multigpu import multi_gpu_frames

                frames = multi_gpu_frames(cfg, engine.path, decoder_name, osd_name, pending, cfg.devices)
            else:
                frames = local_frames(cfg, engine, decoder_name, osd_fn, pending, device)
            _score_pending(cfg, frames, store, progress, resumed, len(files))
        scored_seconds = time.perf_counter() - started
        prior = error_prior(engine.manifest, cfg.top_k)
        meta = {
            "version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "taxonomy": {"name": taxonomy.name, "classes": taxonomy.to_records()},
            "engine_manifest": engine.manifest.summary_json(),
            "run": {
                **params,
                "root": str(cfg.root.resolve()),
                "batch_size": cfg.batch_size,
                "files": len(files),
            },
            "error_prior": prior.to_json(),
        }
        store.merge(out, set(shown), encode_metadata(meta))
        final = pl.read_parquet(out, columns=["image_id", "path", "status", "error", "top_categories", "osd"])
        if cfg.submission is not None and (n_prior := write_submission(final, cfg.submission, prior=prior)):
            warnings.append(f"{n_prior} file(s) could not be scored; their submission rows carry the prior ranking "
                            f"({prior.description}) and osd 1.0")
        store.remove()

    counts = final.select(
        ok=(pl.col("status") == "ok").sum(),
        errors=(pl.col("status") == "error").sum(),
        collisions=pl.len() - pl.col("image_id").n_unique(),
    ).row(0, named=True)
    top_errors = Counter(final.filter(pl.col("status") == "error")["error"].to_list()).most_common(5)
    if counts["collisions"] and (shared := shared_id_warning(final)):
        warnings.append(shared)
    scored_now = len(pending)
    return ScoreSummary(
        out=out,
        submission=cfg.submission,
        files=len(files),
        ok=counts["ok"],
        errors=counts["errors"],
        scored_now=scored_now,
        resumed=resumed,
        seconds=time.perf_counter() - started,
        images_per_second=scored_now / scored_seconds if scored_seconds > 0 else 0.0,
        decoder=decoder_name,
        engine=str(engine.path),
        id_collisions=counts["collisions"],
        top_errors=top_errors,
        warnings=warnings,
        error_prior_source=prior.source if cfg.submission is not None else None,
    )


def check_outputs(cfg: ScoreConfig, files: list[str]) -> None:
    """Refuse outputs that are folders or inputs: the table and the submission must be two different files, and
    neither may be the engine (or a file of it), its manifest, or an image of the dump; ``overwrite`` never
    allows that.

    Args:
        files: the dump's images, relative to ``cfg.root`` (from :func:`~fathombatch.decode.discover`).
    """
    outputs = [(cfg.out, "--out")] + ([(cfg.submission, "--submission")] if cfg.submission is not None else [])
    for path, flag in outputs:
        if path.is_dir() or path.name in ("", ".", ".."):
            raise UsageError(f"{flag} {path} is a folder; name the file to write (a path inside it)")
    names = [(entry_names(path), path, flag) for path, flag in outputs]
    if len(names) == 2 and names[0][0] & names[1][0]:
        raise UsageError(f"--out and --submission name the same file ({cfg.out}); give the submission CSV its own name")
    engine = resolve_engine_path(cfg.engine)
    protected = set().union(*(entry_names(f) for f in (*engine_files(engine), manifest_path(engine))))
    roots = entry_names(cfg.root) | {cfg.root.resolve()}
    inputs = set(files)
    for spellings, path, flag in names:
        inside = any(s.is_relative_to(r) and s.relative_to(r).as_posix() in inputs for s in spellings for r in roots)
        if inside or spellings & protected:
            what = "an image of the dump being scored" if inside else "the engine or its manifest"
            raise UsageError(f"{flag} {path} is {what}; outputs never replace inputs, choose another {flag}")


def local_frames(
    cfg: ScoreConfig, engine: Engine, decoder_name: str, osd_fn: Any, pending: list[str], device: int | None = None
) -> Generator[tuple[int, pl.DataFrame], None, None]:
    """Yield (files done, rows) from the local pipeline: a decode thread feeding this thread's engine calls.

    Args:
        cfg: ``root``, ``batch_size``, ``top_k`` and the thread counts are read from it (nothing is written).
        engine: opened on ``device``.
        decoder_name: a resolved decoder name (not ``auto``).
        osd_fn: the out-of-sample scorer (:func:`~fathombatch.osd.create_osd`).
        pending: file paths relative to ``cfg.root`` (absolute paths are taken as they are).

    Rows are the table's columns plus the part files' ``_size`` and ``_mtime_ns``
    (:data:`~fathombatch.parts.PRIVATE_COLUMNS`), batch after batch in the order of ``pending``.
    """
    taxonomy = engine.manifest.taxonomy
    decoded_q: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()
    decoder_thread = threading.Thread(
        target=_decode_stage, args=(cfg, decoder_name, engine, pending, decoded_q, stop, device), name="fb-decode",
        daemon=True,
    )
    decoder_thread.start()
    try:
        while (item := decoded_q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            chunk, decoded = item
            yield len(chunk), _score_batch(engine, taxonomy, cfg.root, chunk, decoded, cfg.top_k, osd_fn)
    finally:
        # Stop the decoder and wait for it before anything propagates: while DALI runs it holds stderr
        # (see decode.dali), so an error message printed meanwhile would be lost.
        stop.set()
        decoder_thread.join()


def _score_pending(
    cfg: ScoreConfig,
    frames: Generator[tuple[int, pl.DataFrame], None, None],
    store: PartStore,
    progress: Progress,
    resumed: int,
    total: int,
) -> None:
    """Write the rows of the files not yet scored to part files, with progress."""
    writer = store.writer()
    buffer: list[pl.DataFrame] = []
    buffered = 0
    errors = 0
    try:
        with contextlib.closing(frames), progress.task("Scoring", total, show_errors=True) as task:
            task.advance(resumed)
            for n_files, frame in frames:
                errors += int((frame["status"] == "error").sum())
                buffer.append(frame)
                buffered += frame.height
                if buffered >= cfg.part_rows:
                    writer.put(pl.concat(buffer))
                    buffer, buffered = [], 0
                task.advance(n_files)
                task.update(errors=errors)
    finally:
        # Whatever happened (Ctrl-C, an engine error), rows already computed are written, not lost.
        try:
            if buffer:
                writer.put(pl.concat(buffer))
        finally:
            writer.close()


def _score_batch(
    engine: Engine,
    taxonomy: Any,
    root: Path,
    chunk: list[str],
    decoded: DecodedBatch,
    top_k: int,
    osd_fn: Any,
) -> pl.DataFrame:
    """Rows for one decoded batch; rows whose logits are not finite become errors."""
    ok, errors = list(decoded.ok), list(decoded.errors)
    if ok:
        outputs = engine.run(decoded.images)
        logits = outputs["logits"]
        finite = np.isfinite(logits).all(axis=1)
        if not finite.all():
            for pos in np.asarray(ok)[~finite]:
                errors[pos] = "the engine returned NaN or infinite logits for this image"
            ok = [pos for pos, f in zip(ok, finite, strict=True) if f]
            logits = logits[finite]
            outputs = {k: v[finite] for k, v in outputs.items()}
        probs = sigmoid(logits)
        # Rank by logits: float32 probabilities saturate at 1.0 for logits above ~17, which would make ties.
        top = ranking_from_scores(logits, top_k)
        osd = osd_fn(probs, outputs.get("features"))
    else:
        probs = np.empty((0, len(taxonomy)), dtype=np.float32)
        top = np.empty((0, top_k), dtype=np.int64)
        osd = np.empty(0, dtype=np.float32)
    frame = build_frame(
        taxonomy,
        paths=[display_path(p) for p in chunk],
        sizes=decoded.sizes,
        errors=errors,
        ok=ok,
        probs=probs,
        top_columns=top,
        osd=osd,
    )
    sizes, mtimes = zip(*(file_signature(root / p) for p in chunk), strict=True)
    return frame.with_columns(
        pl.Series("_size", sizes, dtype=pl.Int64), pl.Series("_mtime_ns", mtimes, dtype=pl.Int64)
    )



class _CallableModule(types.ModuleType):
    """This module, callable: ``fathombatch.score(...)`` runs :func:`fathombatch.api.score`.

    ``fb.score`` is the Python API's function, but a package attribute named like a submodule is rebound to the
    module whenever that is imported (by the command line, a test, a user), so which one ``fb.score`` is would
    depend on import order. Making the module callable gives one answer in every order; it goes when this module
    gives its name up to the API (the scoring core moving to ``fathombatch/scoring/``).
    """

    def __call__(self, *args: Any, **kwargs: Any) -> pl.DataFrame:
        from fathombatch.api import score

        return score(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        """The call's signature, for ``help``-like tools (``fb.score?`` in Jupyter, ``inspect.signature``)."""
        from fathombatch.api import score

        return inspect.signature(score)


sys.modules[__name__].__class__ = _CallableModule
