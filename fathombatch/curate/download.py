"""Download the images of a COCO file by ``coco_url``: concurrent, resumable, retried, verified.

Like the competition's own download script, each image goes to ``OUT/<file_name>``; unlike it:

* ``workers`` downloads run at once (threads; the work is network-bound);
* a file already in place whose header, end marker (JPEG EOI, PNG IEND) and width/height (when the record gives
  them) check out is skipped, so an interrupted run - even one of another, non-atomic downloader - resumes by
  running the same command again;
* every file is written to a temporary name and renamed into place only when complete, so a partial download
  never looks complete;
* connection errors, timeouts, truncated bodies (fewer bytes than ``Content-Length``), HTTP 408/429/5xx and
  undecodable bodies are retried ``retries`` times with exponential backoff and jitter; other HTTP errors
  (404, 403...) are final;
* failures are collected and reported at the end, never fatal to the other files.

Security: ``file_name`` values that are absolute or contain ``..`` are refused before anything is fetched, every
destination must resolve inside ``OUT`` (a symlinked folder cannot redirect writes), and only http(s) URLs are
fetched.
"""

from __future__ import annotations

import contextlib
import csv
import http.client
import io
import itertools
import os
import queue
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fathombatch import __version__
from fathombatch.csvsafe import safe_cell
from fathombatch.curate.scoretable import check_inside
from fathombatch.decode.base import MAX_FILE_BYTES, read_image_file
from fathombatch.decode.pil import decode_rgb
from fathombatch.errors import DecodeError, LabelFileError, UsageError, check_threads, param
from fathombatch.fsutil import atomic_path, write_text_atomic
from fathombatch.labels import load_coco_json, safe_relative_path
from fathombatch.pathargs import PathFields
from fathombatch.pathguard import inside
from fathombatch.progress import Progress

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CHUNK = 1 << 16
#: Slowest transfer tolerated once ``timeout`` seconds have passed (bytes/s, averaged over the attempt): a server that
#: trickles a byte every half second never goes silent long enough for the socket timeout, and would hold a worker
#: for days.
MIN_RATE = 1024


@dataclass(frozen=True)
class DownloadConfig(PathFields):
    """Attributes:
    annotations: COCO json whose images carry ``coco_url`` and ``file_name``.
    out: folder to download into (created).
    workers: concurrent downloads.
    retries: extra attempts after the first for a retryable failure.
    backoff: seconds before the first retry; doubled each time (with +-50 % jitter).
    timeout: seconds without data before a connection is abandoned; past it, a transfer averaging under
        :data:`MIN_RATE` bytes/s is abandoned too (and retried).
    verify: fully decode every downloaded file (headers, end markers and sizes are always checked).
    """

    annotations: Path
    out: Path
    workers: int = 16
    retries: int = 4
    backoff: float = 0.5
    timeout: float = 30.0
    verify: bool = True


@dataclass(frozen=True)
class Failure:
    file_name: str
    url: str
    reason: str


@dataclass(frozen=True)
class DownloadSummary:
    """Attributes: total images, downloaded now, skipped (already complete), failures (after all retries)."""

    total: int
    downloaded: int
    skipped: int
    failures: tuple[Failure, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class _Job:
    file_name: str
    url: str
    dest: Path
    size: tuple[int, int] | None


class _Retryable(Exception):
    """A failure worth another attempt."""


class _Final(Exception):
    """A failure another attempt will not fix."""


def plan(cfg: DownloadConfig) -> list[_Job]:
    """One job per distinct destination; unsafe file names refuse the whole file before anything is fetched."""
    data = load_coco_json(cfg.annotations, required=("images",))
    jobs: dict[Path, _Job] = {}
    for i, img in enumerate(data["images"]):
        where = f"{cfg.annotations}: images[{i}]"
        if not isinstance(img, dict) or "file_name" not in img or "coco_url" not in img:
            raise LabelFileError(f"{where}: needs 'file_name' and 'coco_url' to be downloaded")
        rel = safe_relative_path(img["file_name"], where)
        w, h = img.get("width"), img.get("height")
        size = (w, h) if isinstance(w, int) and isinstance(h, int) else None
        dest = cfg.out.joinpath(*rel.parts)
        jobs.setdefault(dest, _Job(str(rel), str(img["coco_url"]), dest, size))
    return list(jobs.values())


def _ends_complete(data: bytes, fmt: str) -> bool:
    """Whether the bytes end the way a complete file of that format does (JPEG EOI marker, PNG IEND chunk).

    A file cut off by a non-atomic downloader keeps a valid header; its missing end gives it away without a decode.
    """
    if fmt == "JPEG":
        return data.rstrip(b"\x00")[-2:] == b"\xff\xd9"
    if fmt == "PNG":
        return data[-12:-4] == b"\x00\x00\x00\x00IEND"
    return True


def _check_image(path: Path, size: tuple[int, int] | None, decode: bool) -> None:
    """Raise DecodeError unless ``path`` is a complete image of the expected size (fully decoded when ``decode``)."""
    image = read_image_file(path)
    if not _ends_complete(image.data, image.format):
        raise DecodeError(f"{image.format} file is cut off ({len(image.data)} bytes, no end marker)")
    if decode:
        decode_rgb(image)
    if size is not None and (image.width, image.height) != size:
        raise DecodeError(f"image is {image.width}x{image.height}, the record says {size[0]}x{size[1]}")


def _complete(job: _Job) -> bool:
    """A file already in place counts as complete when its header, end marker and size check out.

    No full decode here: files this module writes were verified before being renamed into place, and a resume
    over a million files must not decode every one again.
    """
    if not job.dest.is_file():
        return False
    try:
        _check_image(job.dest, job.size, decode=False)
    except DecodeError:
        return False
    return True


#: Temporary files being written right now, so that an interrupted run can remove those of blocked workers.
_INFLIGHT: set[Path] = set()
_INFLIGHT_LOCK = threading.Lock()


@contextlib.contextmanager
def _inflight(tmp: Path) -> Iterator[None]:
    with _INFLIGHT_LOCK:
        _INFLIGHT.add(tmp)
    try:
        yield
    finally:
        with _INFLIGHT_LOCK:
            _INFLIGHT.discard(tmp)


class _Stopped(Exception):
    """The run is being interrupted: abandon the transfer (its temporary file is removed on the way out)."""


def _fetch(job: _Job, cfg: DownloadConfig, stop: threading.Event | None = None) -> None:
    """One attempt: stream the body to a temporary file, check length and image, rename into place."""
    request = urllib.request.Request(job.url, headers={"User-Agent": f"fathombatch/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=cfg.timeout) as resp, atomic_path(job.dest) as tmp, \
                _inflight(tmp):
            expected = resp.headers.get("Content-Length")
            received, start = 0, time.monotonic()
            with tmp.open("wb") as fh:
                # read1 returns what has arrived: a trickle cannot keep one read() blocked past these checks
                while chunk := resp.read1(_CHUNK):
                    received += len(chunk)
                    if received > MAX_FILE_BYTES:
                        raise _Final(f"larger than the {MAX_FILE_BYTES} byte limit")
                    fh.write(chunk)
                    if stop is not None and stop.is_set():
                        raise _Stopped
                    elapsed = time.monotonic() - start
                    if elapsed > cfg.timeout and received / elapsed < MIN_RATE:
                        raise _Retryable(f"too slow: {received} bytes in {elapsed:.0f} s (under {MIN_RATE} bytes/s)")
            if expected is not None and expected.isdigit() and received != int(expected):
                raise _Retryable(f"truncated: received {received} of {expected} bytes")
            try:
                _check_image(tmp, job.size, decode=cfg.verify)
            except DecodeError as exc:
                if "record says" in str(exc):
                    raise _Final(str(exc)) from None
                raise _Retryable(f"not a valid image: {exc}") from None
    except urllib.error.HTTPError as exc:
        message = f"HTTP {exc.code} {exc.reason}"
        raise (_Retryable(message) if exc.code in _RETRY_STATUS else _Final(message)) from None
    except http.client.IncompleteRead as exc:
        raise _Retryable(f"truncated: received {len(exc.partial)} bytes, connection closed early") from None
    except (TimeoutError, urllib.error.URLError, http.client.HTTPException, ConnectionError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise _Retryable(f"connection failed: {reason}") from None


def download_one(job: _Job, cfg: DownloadConfig, sleep: Callable[[float], None] = time.sleep,
                 stop: threading.Event | None = None) -> str:
    """Fetch one image with retries. Returns ``"downloaded"``; raises _Final with the last reason on failure."""
    try:
        scheme = urlsplit(job.url).scheme
    except ValueError as exc:
        raise _Final(f"malformed URL {job.url!r}: {exc}") from None
    if scheme not in ("http", "https"):
        raise _Final(f"refused URL {job.url!r}: only http and https are fetched")
    check_inside(cfg.out, job.dest, job.file_name)
    last = ""
    for attempt in range(cfg.retries + 1):
        try:
            _fetch(job, cfg, stop)
            return "downloaded"
        except _Retryable as exc:
            last = str(exc)
        except OSError as exc:  # the local side: disk full, permission denied
            raise _Final(f"cannot write {job.dest}: {exc.strerror or exc}") from None
        if stop is not None and stop.is_set():
            raise _Stopped
        if attempt < cfg.retries:
            sleep(cfg.backoff * (2**attempt) * random.uniform(0.5, 1.5))
    raise _Final(f"{last} (after {cfg.retries + 1} attempts)")


class _DaemonPool:
    """``workers`` daemon threads running submitted calls: unlike a ThreadPoolExecutor, whose threads the interpreter
    joins at exit, a download blocked on a silent server can never hold up the exit after Ctrl-C."""

    def __init__(self, workers: int) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[Any], Any], Any] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"fb-dl-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._jobs.put((future, fn, arg))
        return future

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, fn, arg = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(arg))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
                future.set_exception(exc)

    def shutdown(self, wait_seconds: float | None = None) -> None:
        """Stop the workers after their current call; wait for them (at most ``wait_seconds``; None: as long as it
        takes)."""
        for _ in self._threads:
            self._jobs.put(None)
        deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


def download(cfg: DownloadConfig, progress: Progress | None = None) -> DownloadSummary:
    """Download every image of ``cfg.annotations`` into ``cfg.out``; see the module docstring."""
    if cfg.workers < 1 or cfg.retries < 0 or cfg.backoff < 0 or cfg.timeout <= 0:
        raise UsageError(f"{param('workers')} must be >= 1, {param('retries')} >= 0, {param('backoff')} >= 0 and "
                         f"{param('timeout')} > 0")
    check_threads(cfg.workers, param("workers"))
    jobs = plan(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    progress = progress or Progress(enabled=False)
    done: dict[str, int] = {"downloaded": 0, "skipped": 0}
    failures: list[Failure] = []

    stop = threading.Event()

    def run(job: _Job) -> str:
        if stop.is_set():
            raise _Stopped
        if _complete(job):
            return "skipped"
        return download_one(job, cfg, stop=stop)

    window = cfg.workers * 4  # bounded number of pending futures, however many images
    pool = _DaemonPool(cfg.workers)
    try:
        _run_window(pool, run, jobs, window, progress, done, failures)
    except BaseException:
        # Ctrl-C (or an error): workers stop at their next chunk and remove their temporary files; one blocked on a
        # silent server is given 2 s, then its temporary file is removed for it (its daemon thread dies with us).
        stop.set()
        pool.shutdown(wait_seconds=2.0)
        with _INFLIGHT_LOCK:
            for tmp in list(_INFLIGHT):
                tmp.unlink(missing_ok=True)
        raise
    pool.shutdown()
    failures.sort(key=lambda f: f.file_name)
    return DownloadSummary(total=len(jobs), downloaded=done["downloaded"], skipped=done["skipped"],
                           failures=tuple(failures))


def _run_window(pool: _DaemonPool, run: Callable[[_Job], str], jobs: list[_Job], window: int,
                progress: Progress, done: dict[str, int], failures: list[Failure]) -> None:
    pending_jobs = iter(jobs)
    with progress.task("Downloading", len(jobs), show_errors=True) as task:
        # A sliding window: a new job starts as soon as any finishes, so one slow file never idles the others.
        futures: dict[Any, _Job] = {pool.submit(run, job): job for job in itertools.islice(pending_jobs, window)}
        while futures:
            # A timeout, so the main thread wakes to run Python's Ctrl-C handler: the kernel may deliver SIGINT to a
            # worker thread, and an untimed wait would then sleep through it.
            finished, _ = wait(futures, timeout=0.25, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = futures.pop(fut)
                try:
                    done[fut.result()] += 1
                except (_Final, LabelFileError) as exc:
                    failures.append(Failure(job.file_name, job.url, str(exc)))
                    task.update(errors=len(failures))
                task.advance()
                nxt = next(pending_jobs, None)
                if nxt is not None:
                    futures[pool.submit(run, nxt)] = nxt


def check_failures_file(cfg: DownloadConfig, dest: Path) -> None:
    """Refuse, before any download, a failures CSV ``dest`` that would replace an input or land among the images.

    An existing failures file from an earlier attempt is fine (it is rewritten: re-running is how failures are
    retried); the annotations file, a folder, or a path under ``cfg.out`` (which holds the images only: the CSV could
    replace a downloaded image, or be taken for one) is not.

    Raises:
        UsageError: one of the above, naming both paths.
    """
    if dest.is_dir():
        raise UsageError(f"the failures file {dest} is a folder; name the CSV file to write")
    if dest.exists() and cfg.annotations.exists() and os.path.samefile(dest, cfg.annotations):
        raise UsageError(f"the failures file {dest} is the annotations file {cfg.annotations}, which it would "
                         "replace: choose another failures path")
    if inside(dest, cfg.out):
        raise UsageError(f"the failures file {dest} is inside the download folder {cfg.out}, which holds the images "
                         "only: choose a failures path outside it")


def write_failures(dest: Path, failures: tuple[Failure, ...]) -> Path:
    """Write ``file_name,url,reason`` rows (header only when nothing failed) atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file_name", "url", "reason"])
    writer.writerows((safe_cell(f.file_name), safe_cell(f.url), safe_cell(f.reason)) for f in failures)
    write_text_atomic(dest, buf.getvalue())
    return dest
