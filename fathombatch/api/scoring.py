"""``fathombatch.score(...)``: score a folder or a list of image files into a ``polars.DataFrame``.

In memory (no ``out``), rows come straight from the local runner's frames (a decode thread feeding the engine,
:class:`fathombatch.scoring.runners.local.LocalRunner`, under the same :class:`~fathombatch.scoring.ScorePlan` a
folder run builds) into one frame: no Parquet, no part files, no lock. With ``out``, the scores table is written
exactly as the command line writes it (:func:`fathombatch.scoring.score_folder`: refused when it exists unless
``overwrite=True``, resumed after an interruption) and read back.

Either way the frame has the scores table's columns and types (docs/output.md); a folder's rows are sorted by
``path`` (relative to the folder) as the table's are, a list's rows keep the order of the list (``path`` as given).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from fathombatch.api.engine import LoadedEngine, open_engine
from fathombatch.api.frames import remember, table_metadata
from fathombatch.api.names import python_names
from fathombatch.backends import Engine
from fathombatch.decode import check_decoder_device, resolve_decoder_name
from fathombatch.decode.discover import discover_scored
from fathombatch.decode.video import is_video
from fathombatch.errors import UsageError
from fathombatch.progress import Progress
from fathombatch.scores.metadata import read_metadata
from fathombatch.scores.submission import shared_id_warning
from fathombatch.scoring import ScoreConfig, build_plan, score_folder
from fathombatch.scoring.config import VideoDecoderName
from fathombatch.scoring.parts import table_rows
from fathombatch.scoring.runners.local import LocalRunner

__all__ = ["score"]

log = logging.getLogger(__name__)

Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def score(source: Source, *, engine: str | Path | LoadedEngine | Engine, out: str | Path | None = None,
          batch_size: int = 32, decoder: str = "auto", top_k: int = 20, osd: str | None = None,
          threads: int | None = None, device: str = "auto", overwrite: bool = False,
          submission: str | Path | None = None, frame_interval: float = 1.0, video_decoder: VideoDecoderName = "auto",
          progress: bool = True) -> pl.DataFrame:
    """Score images with an engine and return the scores table as a ``polars.DataFrame``.

    Args:
        source: a folder (every image and video under it, recursively), one file, or a list of files.
        engine: an engine path or a name in the engine store, or an engine already opened with
            :func:`fathombatch.open_engine` (used as it is, not reopened; ``device`` and ``threads`` then do not
            apply).
        out: also write the table here, as the command line does (a folder only); None keeps it in memory.
        batch_size: images per engine call.
        decoder: ``auto``, ``pil``, ``dali`` or ``nvjpeg``.
        top_k: length of ``top_categories``.
        osd: out-of-sample method (None: the engine manifest's).
        threads: CPU threads for the engine and the decoder (None: all cores).
        device: ``auto``, ``cpu`` or ``cuda``, for an engine opened here.
        overwrite: with ``out``: replace an existing table (or discard an interrupted run) instead of refusing.
        submission: with ``out``: also write the competition's submission CSV here.
        frame_interval: seconds between the frames sampled from each video (docs/video.md).
        video_decoder: ``auto`` (DALI's NVDEC when the engine runs on a GPU and DALI imports, else PyAV), ``pyav``
            or ``dali`` (docs/video.md).
        progress: report progress on stderr (a bar on a terminal, a status line every few seconds elsewhere).

    Returns:
        The scores table's columns (docs/output.md): one row per still, one per sampled video frame. A file that
        cannot be decoded is a row with status ``error``, not an exception.

    Raises:
        UsageError: a source that does not exist or holds no images, bad arguments.
        OutputError: ``out`` exists (without ``overwrite``) or is locked by another run.
        EngineError / ManifestError: the engine cannot be loaded or does not match its manifest.
    """
    with python_names():
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {batch_size}")
        root, files = source_files(source)
        _check_outputs(out, submission, listed=files is not None)
        report = Progress(enabled=None if progress else False)
        with contextlib.ExitStack() as stack:
            if isinstance(engine, LoadedEngine):
                loaded = engine
            elif isinstance(engine, Engine):
                loaded = LoadedEngine(engine)
            else:  # opened here, so closed here
                loaded = stack.enter_context(open_engine(engine, device=device, threads=threads))
            if out is None:
                return in_memory(root, files, loaded, report, batch_size=batch_size, decoder=decoder,
                                 top_k=top_k, osd=osd, threads=threads, frame_interval=frame_interval,
                                 video_decoder=video_decoder)
            cfg = ScoreConfig(root=root, engine=loaded.path, out=Path(out), batch_size=batch_size, decoder=decoder,
                              top_k=top_k, submission=Path(submission) if submission else None, osd=osd,
                              threads=threads, overwrite=overwrite, device="cpu" if loaded.device is None else "cuda",
                              frame_interval=frame_interval, video_decoder=video_decoder)
            return to_table(cfg, loaded, report)


def _check_outputs(out: str | Path | None, submission: str | Path | None, *, listed: bool) -> None:
    """Refuse a submission without a table, and a table of a list of files (``listed``)."""
    if out is None and submission is not None:
        raise UsageError("submission is written with the table: give out= as well")
    if out is not None and listed:
        raise UsageError("out= writes the scores table of a folder, as the command line does; score a list "
                         "of files without out= and save the frame (DataFrame.write_parquet)")


def to_table(cfg: ScoreConfig, loaded: LoadedEngine, report: Progress) -> pl.DataFrame:
    """Write the table of ``cfg`` with the engine already loaded, as the command line does, and read it back."""
    summary = score_folder(cfg, progress=report, engine=loaded.engine)
    for warning in summary.warnings:
        log.warning(warning)
    table = pl.read_parquet(summary.out)
    remember(table, read_metadata(summary.out))
    return table


def source_files(source: Source) -> tuple[Path, list[str] | None]:
    """(folder, None) for a folder; (``.``, the paths as given) for one file or a list of files.

    Raises:
        UsageError: a path that does not exist, a folder inside a list, an empty list, a value that is no path.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return path, None
        if not os.path.lexists(path):
            raise UsageError(f"source {path} does not exist")
        return Path("."), [os.fspath(source)]
    if not isinstance(source, Sequence) or isinstance(source, bytes):
        raise UsageError(f"source must be a folder, an image file or a list of image files, got "
                         f"{type(source).__name__}")
    if not source:
        raise UsageError("source is an empty list: no images to score")
    for i, item in enumerate(source):
        if not isinstance(item, (str, os.PathLike)):
            raise UsageError(f"source[{i}] is a {type(item).__name__}; give paths (str or pathlib.Path)")
    paths = [os.fspath(p) for p in source]
    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:
        raise UsageError(f"{len(missing)} of the {len(paths)} files in source do not exist, e.g. {missing[0]}")
    folders = [p for p in paths if os.path.isdir(p)]
    if folders:
        raise UsageError(f"source lists the folder {folders[0]}; give a folder alone, or a list of image files")
    return Path("."), [str(p) for p in paths]


def in_memory(root: Path, files: list[str] | None, loaded: LoadedEngine, report: Progress, *, batch_size: int,
              decoder: str, top_k: int, osd: str | None, threads: int | None, frame_interval: float,
              video_decoder: VideoDecoderName = "auto") -> pl.DataFrame:
    """Score ``files`` (None: every image and video under ``root``, as ``score`` finds them) through the local
    pipeline into one frame, in the table's row order."""
    warnings: list[str] = []
    folder = files is None
    if files is None:
        files = discover_scored(root, on_error=warnings.append)
    cfg = ScoreConfig(root=root, engine=loaded.path, batch_size=batch_size, decoder=decoder, top_k=top_k, osd=osd,
                      threads=threads, frame_interval=frame_interval, video_decoder=video_decoder)
    decoder_name = resolve_decoder_name(decoder, loaded.device)
    check_decoder_device(decoder_name, loaded.device)
    plan = build_plan(cfg, loaded.path, loaded.manifest, decoder_name, loaded.device,
                      videos=any(is_video(f) for f in files))
    table = collect(LocalRunner(loaded.engine).frames(plan, files), report, len(files))
    if folder:  # as the table's merge orders rows: by path, a video's frames in order
        table = table.sort("path", "frame_index", nulls_last=True, maintain_order=True)
    shared = shared_id_warning(table) if table["image_id"].n_unique() < table.height else None
    for warning in [*warnings, *([shared] if shared else [])]:
        log.warning(warning)
    remember(table, table_metadata(loaded.engine, root, len(files), decoder=plan.decoder, top_k=plan.top_k,
                                   osd=plan.osd, batch_size=plan.batch_size,
                                   frame_interval=plan.frame_interval, video_decoder=plan.video_decoder))
    return table


def collect(frames: Any, report: Progress, total: int) -> pl.DataFrame:
    """Concatenate the pipeline's (files done, rows) pairs, with progress, dropping the part-file columns."""
    parts: list[pl.DataFrame] = []
    errors = 0
    with contextlib.closing(frames), report.task("Scoring", total, show_errors=True) as task:
        for n_files, frame in frames:
            parts.append(frame)
            errors += int((frame["status"] == "error").sum())
            task.advance(n_files)
            task.update(errors=errors)
    return table_rows(pl.concat(parts))
