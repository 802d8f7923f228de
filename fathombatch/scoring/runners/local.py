"""The local runner: a decode thread feeding this thread's engine calls through a bounded queue.

Batch n+1 decodes while batch n runs, and the queue holds at most two decoded batches, so memory stays flat however
large the dump. The GPU workers and the Ray actors run this same pipeline over their share of the files.

Stills are decoded first, in batches exactly as before videos were scored; then the videos, streamed into batches of
sampled frames (:mod:`fathombatch.scoring.frames`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Generator, Iterator, Mapping
from typing import Any

import polars as pl

from fathombatch.backends import Engine
from fathombatch.decode import create_decoder
from fathombatch.decode.base import Decoder
from fathombatch.decode.video import is_video
from fathombatch.osd import create_osd
from fathombatch.scoring import batch as batch_module
from fathombatch.scoring.frames import frame_batches
from fathombatch.scoring.plan import ScorePlan
from fathombatch.scoring.stages import StageTimes


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event, times: StageTimes | None = None) -> bool:
    """Put unless asked to stop (a consumer that died must not leave this thread blocked forever); the time spent
    waiting for room counts as the decode side blocked."""
    if times is not None:
        start = time.perf_counter()
        try:
            return _put(q, item, stop)
        finally:
            times.decode_blocked_s += time.perf_counter() - start
    while not stop.is_set():
        try:
            q.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def _timed(items: Iterator[Any], times: StageTimes) -> Iterator[Any]:
    """``items``, with the time spent making each one counted as decoding."""
    while True:
        start = time.perf_counter()
        item = next(items, None)
        times.decode_s += time.perf_counter() - start
        if item is None:
            return
        yield item


def _decode_stage(plan: ScorePlan, engine: Engine, decoder: Decoder | None, pending: list[str],
                  out_q: queue.Queue[Any], stop: threading.Event, times: StageTimes,
                  done_frames: Mapping[str, frozenset[int]] | None = None) -> None:
    """Decode thread: put (paths, DecodedBatch) items for stills, then lists of :class:`FrameItem` for videos, on
    the queue, then None; an exception is forwarded.

    ``decoder`` None: open the plan's decoder here and close it at the end; else use (and leave open) the one given.
    """
    try:
        stills = [p for p in pending if not is_video(p)]
        videos = [p for p in pending if is_video(p)]
        opened = decoder or create_decoder(plan.decoder, engine.manifest.input, batch_size=plan.batch_size,
                                           threads=plan.decode_threads, device=plan.device)
        with contextlib.nullcontext(opened) if decoder else opened:
            decoded = ((chunk, opened.decode([plan.root / p for p in chunk]))
                       for chunk in batch_module.batches(stills, plan.batch_size))
            for item in _timed(decoded, times):
                if not _put(out_q, item, stop, times):
                    return
        frames = frame_batches(plan.root, videos, engine.manifest.input, plan.frame_interval, plan.batch_size,
                               done_frames, video_decoder=plan.video_decoder, threads=plan.decode_threads,
                               device=plan.device)
        for items in _timed(frames, times):
            if not _put(out_q, items, stop, times):
                return
        _put(out_q, None, stop, times)
    except BaseException as exc:  # noqa: BLE001 - forwarded to the scoring thread
        _put(out_q, exc, stop)


def pipeline_frames(plan: ScorePlan, engine: Engine, pending: list[str], decoder: Decoder | None = None,
                    done_frames: Mapping[str, frozenset[int]] | None = None, times: StageTimes | None = None,
                    ) -> Generator[tuple[int, pl.DataFrame], None, None]:
    """Yield (files done, rows) for ``pending`` from a decode thread feeding ``engine`` in this thread.

    Args:
        decoder: an open decoder to reuse (a Ray actor keeps one across calls); None opens the plan's for this call.
        done_frames: display path of a video -> indices of its frames already scored (a resume); not run again.
        times: where to add up each side's busy and waiting seconds (:class:`StageTimes`); None: not kept.
    """
    times = times if times is not None else StageTimes()
    osd = create_osd(plan.osd, engine.manifest.osd.get("stats"))
    decoded_q: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()
    decoder_thread = threading.Thread(target=_decode_stage,
                                      args=(plan, engine, decoder, pending, decoded_q, stop, times, done_frames),
                                      name="fb-decode", daemon=True)
    decoder_thread.start()
    try:
        while True:
            waited = time.perf_counter()
            item = decoded_q.get()
            started = time.perf_counter()
            times.score_starved_s += started - waited
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, list):  # video frames; a video is done with its last item
                files, rows = sum(i.last for i in item), batch_module.score_frames(engine, item, plan.top_k, osd)
            else:
                chunk, decoded = item
                # Looked up on the module at each call, so a test can stand in for it (an interrupted batch).
                files, rows = len(chunk), batch_module.score_batch(engine, plan.root, chunk, decoded, plan.top_k, osd)
            handed = time.perf_counter()
            times.score_s += handed - started
            times.batches += 1
            yield files, rows
            times.write_s += time.perf_counter() - handed
    finally:
        # Stop the decoder and wait for it before anything propagates: while DALI runs it holds stderr
        # (see decode.dali), so an error message printed meanwhile would be lost.
        stop.set()
        decoder_thread.join()


class LocalRunner:
    """Scores in this process with an engine already opened with the plan's device, precision and threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: Each side of the pipeline's busy and waiting seconds, summed over this runner's runs.
        self.times = StageTimes()

    def frames(self, plan: ScorePlan, pending: list[str], done_frames: Mapping[str, frozenset[int]] | None = None,
               ) -> Generator[tuple[int, pl.DataFrame], None, None]:
        return pipeline_frames(plan, self.engine, pending, done_frames=done_frames, times=self.times)
