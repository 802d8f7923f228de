"""Score a folder: discover -> plan -> runner -> part files -> one table (:func:`score_folder`).

Three stages overlap through bounded queues, so memory stays flat however large the dump: a decode thread turns
batches of files into tensors, the engine runs them (:mod:`~fathombatch.scoring.runners.local`, or several GPU
workers, or Ray actors), and a writer thread writes rows to part files, each atomically
(``OUT.parts/part-NNNNNN.parquet``).

An interrupted run (Ctrl-C, ``kill -9``, a full disk) leaves complete part files behind. Running the same command
again skips every file already scored ``ok`` and unchanged since, scores the rest (error rows are retried), and
merges all parts into ``OUT`` (sorted by path), then removes the parts (:mod:`fathombatch.scoring.parts`). A resume
with a different engine, decoder, top-k, osd method or folder is refused unless ``overwrite``. A lock file
(``OUT.lock``) stops two runs from writing the same output. An update (``update``) seeds the part store with the
unchanged rows of the finished table and then resumes (:mod:`fathombatch.scoring.update`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from pathlib import Path

import polars as pl

from fathombatch.backends import Engine, checked_manifest, engine_device, open_engine
from fathombatch.decode import check_decoder_device, resolve_decoder_name
from fathombatch.decode.discover import discover_scored
from fathombatch.decode.video import is_video
from fathombatch.errors import OutputError, UsageError, param
from fathombatch.fsutil import FileLock, display_path
from fathombatch.gpu import require_gpu
from fathombatch.progress import Progress
from fathombatch.scores.submission import shared_id_warning
from fathombatch.scoring.config import RayOptions, ScoreConfig, ScoreSummary, UpdateCounts
from fathombatch.scoring.outputs import check_outputs, finish_table
from fathombatch.scoring.parts import PartStore, file_signature
from fathombatch.scoring.pipeline import write_pending
from fathombatch.scoring.plan import ScorePlan, UnopenedEngine, build_plan
from fathombatch.scoring.runners import Runner
from fathombatch.scoring.runners.local import LocalRunner
from fathombatch.scoring.runners.multigpu import MultiGpuRunner, unopened_engine
from fathombatch.scoring.runners.ray import RayRunner, actor_threads, ray_device
from fathombatch.scoring.update import PreviousTable, plan_update, read_previous, seed_store, unsigned_warning

log = logging.getLogger(__name__)


def score_folder(cfg: ScoreConfig, *, progress: Progress | None = None, engine: Engine | None = None
                 ) -> ScoreSummary:
    """Score every image and video under ``cfg.root`` and write the scores table (and optionally the submission
    CSV). A video gives one row per frame sampled every ``cfg.frame_interval`` seconds (and one error row for what
    of it could not be read).

    ``engine``: ``cfg.engine`` already opened on the device ``cfg.device`` names (the Python API reuses one); None
    opens it here. Only for a run in this process (no ``devices`` list, no ``ray``).

    Raises:
        UsageError: bad arguments, a missing folder, a folder without images or videos, or videos for a run on
            Ray or several GPUs.
        OutputError: the output exists (without ``overwrite``), is locked by another run, or cannot be written.
        EngineError / ManifestError: the engine cannot be loaded or disagrees with its manifest.
    """
    started = time.perf_counter()
    progress = progress or Progress(enabled=False)
    if cfg.batch_size < 1:
        raise UsageError(f"{param('batch_size')} must be at least 1, got {cfg.batch_size}")
    if cfg.update and cfg.overwrite:
        raise UsageError(f"{param('update')} keeps the unchanged rows of the table and {param('overwrite')} discards "
                         "them; choose one")
    warnings: list[str] = []
    files = discover_scored(cfg.root, on_error=warnings.append)
    _refuse_videos_off_local(cfg, files)
    check_outputs(cfg, files)
    plan, engine, runner = prepare(cfg, engine, videos=any(is_video(f) for f in files))
    out = cfg.out
    with FileLock(out.with_name(out.name + ".lock"), what=str(out)):
        params = plan.run_params(engine.inference_precision)
        previous = read_previous(out, params) if cfg.update else None
        store = _open_store(cfg, params)
        warnings += store.warnings
        update = _seed(store, previous, cfg.root, files, warnings) if cfg.update else None
        shown, pending, done_frames = _pending(store, cfg.root, files)
        resumed = max(0, len(files) - len(pending) - (update.kept if update else 0))
        if resumed:
            log.info("resuming: %d of %d files already scored", resumed, len(files))
        if pending:
            write_pending(runner.frames(plan, pending, done_frames), store, progress, part_rows=cfg.part_rows,
                          resumed=len(files) - len(pending), total=len(files))
        scored_seconds = time.perf_counter() - started
        final, prior_source = finish_table(cfg, engine, store, params, shown, warnings)
    rate = len(pending) / scored_seconds if scored_seconds > 0 else 0.0
    stages = runner.times if isinstance(runner, LocalRunner) and pending else None
    if stages is not None:
        log.info("pipeline: %s", stages.describe())
    summary = _summary(cfg, final, plan, warnings, files=len(files), scored_now=len(pending), resumed=resumed,
                       seconds=time.perf_counter() - started, rate=rate, prior_source=prior_source, update=update)
    return dataclasses.replace(summary, stages=stages)


def prepare(cfg: ScoreConfig, opened: Engine | None = None, videos: bool = True,
            ) -> tuple[ScorePlan, Engine, Runner]:
    """The run's plan, its engine as this process holds it, and the runner that scores (``videos``: whether the
    run's files include any; see :func:`~fathombatch.scoring.plan.build_plan`).

    The engine is opened here only when this process scores (``opened``: already opened by the caller); for GPU
    workers and Ray actors this process reads and checks the manifest only
    (:class:`~fathombatch.scoring.plan.UnopenedEngine`) and each worker opens the file.
    """
    if cfg.ray is not None:
        return _prepare_ray(cfg, cfg.ray)  # videos are refused on Ray before this (_refuse_videos_off_local)
    if cfg.devices:
        require_gpu(param("devices"), cfg.devices)
        device: int | None = cfg.devices[0]
    else:
        device = engine_device(cfg.engine, cfg.device)
    decoder = resolve_decoder_name(cfg.decoder, device)
    check_decoder_device(decoder, device)
    runner: Runner
    if cfg.devices and len(cfg.devices) > 1:
        engine: Engine = unopened_engine(cfg.engine)
        runner = MultiGpuRunner(cfg.devices)
    else:
        engine = opened if opened is not None else open_engine(cfg.engine, threads=cfg.threads, device=device,
                                                               precision=cfg.torch_precision)
        runner = LocalRunner(engine)
    return build_plan(cfg, engine.path, engine.manifest, decoder, device, videos), engine, runner


def _prepare_ray(cfg: ScoreConfig, options: RayOptions) -> tuple[ScorePlan, Engine, Runner]:
    """:func:`prepare` for Ray: the manifest only, the actors' device, and threads per actor."""
    path, manifest = checked_manifest(cfg.engine)
    device = ray_device(path, cfg.device, options.gpus_per_worker)
    decoder = resolve_decoder_name(cfg.decoder, device)
    if device is None:  # a GPU decoder for CPU actors; a GPU one is checked where the GPU is, in the actor
        check_decoder_device(decoder, device)
    plan = build_plan(cfg, path, manifest, decoder, device, videos=False)
    threads, decoder_threads = actor_threads(plan, options)
    plan = dataclasses.replace(plan, threads=threads, decode_threads=cfg.decode_threads or decoder_threads)
    return plan, UnopenedEngine(path, manifest, opened_by="the Ray actors"), RayRunner(options)


def _open_store(cfg: ScoreConfig, params: dict[str, object]) -> PartStore:
    """The part store of ``cfg.out``; refuses existing outputs unless resuming or ``overwrite``."""
    out = cfg.out
    parts_dir = out.with_name(out.name + ".parts")
    resuming = parts_dir.exists()
    for path, flag in ((out, param("out")), (cfg.submission, param("submission"))):
        if path is not None and path.exists() and not resuming and not cfg.overwrite and not cfg.update:
            raise OutputError(f"{path} already exists; pass {param('overwrite')} to replace it, or choose another "
                              f"{flag}")
    for stale in out.parent.glob(f".{out.name}.*.tmp"):
        stale.unlink(missing_ok=True)  # a merge killed half-way; its parts are still there
    return PartStore(parts_dir, params, overwrite=cfg.overwrite)


def _refuse_videos_off_local(cfg: ScoreConfig, files: list[str]) -> None:
    """Videos are scored in this process only: refuse them for GPU workers and Ray actors before anything starts.

    Decided so because those runners split the work by file, and one video is many engine batches that a resume
    takes up frame by frame (:mod:`fathombatch.scoring.frames`); neither path has been run with videos, so a dump
    with videos is refused there rather than scored untested.
    """
    if cfg.ray is None and not (cfg.devices and len(cfg.devices) > 1):
        return
    videos = [f for f in files if is_video(f)]
    if videos:
        where = "on Ray" if cfg.ray is not None else "on several GPUs"
        raise UsageError(f"{cfg.root} holds {len(videos)} video file(s) (e.g. {display_path(videos[0])}), which are "
                         f"scored in a single process only, not {where}; score them separately on one device")


def _seed(store: PartStore, previous: PreviousTable | None, root: Path, files: list[str],
          warnings: list[str]) -> UpdateCounts:
    """An update's counts, after copying the old table's unchanged rows into ``store``."""
    signatures = {display_path(f): file_signature(root / f) for f in files}
    counts, kept = plan_update(previous, signatures)
    if previous is not None:
        seed_store(store, previous, kept)
    if unsigned := unsigned_warning(previous):
        warnings.append(unsigned)
    return counts


def _pending(store: PartStore, root: Path, files: list[str],
             ) -> tuple[list[str], list[str], dict[str, frozenset[int]]]:
    """(display paths of every file, files still to score, frames of those videos already scored): files an
    interrupted run scored ok, completely and unchanged are done."""
    shown = [display_path(f) for f in files]
    done: set[str] = set()
    frames: dict[str, frozenset[int]] = {}
    if store.parts:
        signatures = {s: file_signature(root / f) for f, s in zip(files, shown, strict=True)}
        done = store.scored(signatures)
        frames = store.done_frames(signatures)
    return shown, [f for f, s in zip(files, shown, strict=True) if s not in done], frames


def _summary(cfg: ScoreConfig, final: pl.DataFrame, plan: ScorePlan, warnings: list[str], *, files: int,
             scored_now: int, resumed: int, seconds: float, rate: float, prior_source: str,
             update: UpdateCounts | None) -> ScoreSummary:
    """The run's summary from the final table's fixed columns."""
    counts = final.select(
        ok=(pl.col("status") == "ok").sum(),
        errors=(pl.col("status") == "error").sum(),
        collisions=pl.len() - pl.col("image_id").n_unique(),
    ).row(0, named=True)
    top_errors = Counter(final.filter(pl.col("status") == "error")["error"].to_list()).most_common(5)
    if counts["collisions"] and (shared := shared_id_warning(final)):
        warnings.append(shared)
    return ScoreSummary(
        out=cfg.out,
        submission=cfg.submission,
        files=files,
        ok=counts["ok"],
        errors=counts["errors"],
        scored_now=scored_now,
        resumed=resumed,
        seconds=seconds,
        images_per_second=rate,
        decoder=plan.decoder,
        engine=str(plan.engine),
        id_collisions=counts["collisions"],
        top_errors=top_errors,
        warnings=warnings,
        error_prior_source=prior_source if cfg.submission is not None else None,
        update=update,
    )
