"""The part-file store behind a resumable scoring run: ``OUT.parts/``.

* ``run.json`` records what determines the values of a row (engine fingerprint, decoder, top-k, osd method, the
  scored root); a resume with any of them changed is refused.
* ``part-NNNNNN.parquet`` files hold scored rows, each written atomically by a background thread, plus private
  columns: ``_size`` and ``_mtime_ns``, the file's size and modification time when it was scored, and ``_end``,
  true on the last row a pass over a file wrote (always for a still; for a video the row after which no frame of
  it is left: a video whose newest row lacks it was interrupted mid-way).
* :meth:`PartStore.scored` tells a resume which files need no work: files whose kept rows (:func:`current_rows`)
  are all ``ok``, end with ``_end`` and whose file has not changed since. Error rows are retried (the cause may
  have been passing: a file still being copied, a network file system hiccup). :meth:`PartStore.done_frames` names
  the frames of the other videos that need no engine run again.
* :meth:`PartStore.merge` writes the final table in path order (a video's frames in frame order, its error row
  last), keeping the rows :func:`current_rows` keeps, while holding only a few parts in memory at a time, so
  memory stays flat however large the dump.
"""

from __future__ import annotations

import itertools
import json
import operator
import os
import queue
import shutil
import threading
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl

from fathombatch.errors import OutputError, param
from fathombatch.fsutil import atomic_path, write_json_atomic
from fathombatch.scores.schema import SIGNATURE_COLUMNS
from fathombatch.scoring.plan import NO_VIDEOS

PART_GLOB = "part-*.parquet"
PRIVATE_COLUMNS = ("_size", "_mtime_ns", "_end")
#: Columns :meth:`PartStore.index` reads, with the value a part written without one holds (parts from before videos
#: were scored: every row a still, its id unique within its path, and the end of its file).
_INDEX_DEFAULTS: dict[str, pl.Expr] = {
    "image_id": pl.col("path"),
    "frame_index": pl.lit(None, pl.Int64),
    "_end": pl.lit(True),
}
#: The signature columns' names in the final table (public there: an update reads them back); ``_end`` is dropped.
PUBLIC_NAMES = dict(zip(("_size", "_mtime_ns"), SIGNATURE_COLUMNS, strict=True))
#: How a refusal names the run parameters that differ.
_PARAM_WORDS = {"engine_fingerprint": "engine (manifest hash)", "root": "folder"}
#: What a run recorded before it recorded a parameter: every video was decoded with PyAV before ``video_decoder``
#: existed, so such a run matches a ``pyav`` one (and a run of today's default on a machine without a GPU).
_PARAM_DEFAULTS = {"video_decoder": "pyav"}
#: Rows per row group of the merged table.
MERGE_ROWS = 4096


def file_signature(path: Path) -> tuple[int | None, int | None]:
    """(size in bytes, mtime in ns) of a file, following symlinks; (None, None) when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns


def changed_params(previous: dict[str, Any], params: dict[str, Any]) -> str:
    """The run parameters of ``params`` that ``previous`` records differently, in words (``""`` when none).

    The engine's path is left out: a moved or renamed engine with the same fingerprint computes the same rows; a
    run without videos matches any video decoder (:data:`~fathombatch.scoring.plan.NO_VIDEOS`).
    """
    changed = [k for k in params if k != "engine" and previous.get(k, _PARAM_DEFAULTS.get(k)) != params[k]
               and not (k == "video_decoder" and NO_VIDEOS in (previous.get(k), params[k]))]
    return ", ".join(_PARAM_WORDS.get(k, k) for k in changed)


def _read_run_file(path: Path) -> dict[str, Any] | None:
    """The settings of an interrupted run; ``{}`` when its folder holds no parts yet (nothing to match); None when
    parts exist but ``run.json`` is missing, damaged or empty, so nothing says what produced them."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {} if not any(path.parent.glob(PART_GLOB)) else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data else None


def _readable_part(path: Path) -> bool:
    """True when ``path`` is a Parquet file with the columns every part has."""
    try:
        names = set(pl.read_parquet_schema(path))
    except Exception:  # noqa: BLE001 - polars raises several kinds for truncated or foreign files
        return False
    return {"path", "status", *PRIVATE_COLUMNS} - set(_INDEX_DEFAULTS) <= names


def _free_name(path: Path) -> Path:
    """``path``, or ``path`` with ``-2``, ``-3``... appended when it exists (nothing set aside is ever replaced)."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


class PartStore:
    """Part files of one output; see the module docstring."""

    def __init__(self, directory: Path, params: dict[str, Any], *, overwrite: bool) -> None:
        self.dir = directory
        #: What a resume had to set aside; the caller shows these in its summary.
        self.warnings: list[str] = []
        run_file = directory / "run.json"
        if directory.exists() and overwrite:
            shutil.rmtree(directory)
        previous = _read_run_file(run_file) if directory.exists() else {}
        if previous is None:
            # Nothing says which engine or settings produced these parts: keep them, but apart, and start afresh.
            aside = _free_name(directory.with_name(directory.name + ".unverified"))
            directory.rename(aside)
            self.warnings.append(f"the interrupted run's {run_file.name} was missing or unreadable, so its parts "
                                 f"cannot be matched to these settings; they were moved to {aside} and every file is "
                                 "scored again")
        elif previous and (what := changed_params(previous, params)):
            raise OutputError(
                f"an interrupted run in {directory} used a different {what}; re-run with the same settings to "
                f"resume it, or pass {param('overwrite')} to start over"
            )
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(".*.tmp"):
            stale.unlink(missing_ok=True)  # half-written parts of a killed run
        self._quarantine_broken_parts()
        write_json_atomic(run_file, params)

    def _quarantine_broken_parts(self) -> None:
        """Move parts that are not readable part files to ``OUT.parts.quarantine/`` (outside the parts folder, which
        a finished run removes): their rows are scored again and the rest of the interrupted run is kept (a damaged
        part used to need ``--overwrite``, which threw away the good ones too)."""
        broken = [part for part in self.parts if not _readable_part(part)]
        if not broken:
            return
        folder = self.dir.with_name(self.dir.name + ".quarantine")
        folder.mkdir(exist_ok=True)
        for part in broken:
            part.rename(_free_name(folder / part.name))
        self.warnings.append(f"{len(broken)} damaged part file(s) of the interrupted run were moved to {folder}; "
                             "their files are scored again")

    @property
    def parts(self) -> list[Path]:
        return sorted(self.dir.glob(PART_GLOB))

    def index(self) -> pl.DataFrame:
        """One row per stored row: path, status, image_id, frame_index, _size, _mtime_ns, _end, part (file index),
        row (within the part)."""
        schema: dict[str, pl.DataType] = {
            "path": pl.String(), "status": pl.String(), "image_id": pl.String(), "frame_index": pl.Int64(),
            "_size": pl.Int64(), "_mtime_ns": pl.Int64(), "_end": pl.Boolean()}
        frames = []
        for i, p in enumerate(self.parts):
            lazy = pl.scan_parquet(p)
            names = set(lazy.collect_schema().names())
            frames.append(lazy.select(
                *(pl.col(c) if c in names else _INDEX_DEFAULTS[c].alias(c) for c in schema),
                part=pl.lit(i, pl.Int32), row=pl.int_range(pl.len(), dtype=pl.Int64),
            ).collect().cast(pl.Schema(schema)))
        if not frames:
            return pl.DataFrame(schema={**schema, "part": pl.Int32(), "row": pl.Int64()})
        return pl.concat(frames)

    def scored(self, signatures: dict[str, tuple[int | None, int | None]]) -> set[str]:
        """Paths whose kept rows (:func:`current_rows`) are all ``ok``, the newest ending the file's pass
        (``_end``), and whose file still has the size and mtime it had then."""
        per_path = current_rows(self.index()).group_by("path").agg(
            ok=(pl.col("status") == "ok").all(),
            end=pl.col("_end").sort_by("_seq").last(),
            size=pl.col("_size").sort_by("_seq").last(),
            mtime=pl.col("_mtime_ns").sort_by("_seq").last(),
        )
        return {path for path, ok, end, size, mtime in per_path.iter_rows()
                if ok and end and path in signatures and signatures[path] == (size, mtime)}

    def done_frames(self, signatures: dict[str, tuple[int | None, int | None]]) -> dict[str, frozenset[int]]:
        """Per video path, the frame indices of its ``ok`` rows scored from the file as it is now: a resumed pass
        over the video still decodes them (frame indices are only exact when counted from the start) but does not
        run the engine on them again."""
        rows = current_rows(self.index()).filter(pl.col("frame_index").is_not_null() & (pl.col("status") == "ok"))
        done: dict[str, set[int]] = {}
        for path, index, size, mtime in rows.select("path", "frame_index", "_size", "_mtime_ns").iter_rows():
            if path in signatures and signatures[path] == (size, mtime):
                done.setdefault(path, set()).add(index)
        return {path: frozenset(indices) for path, indices in done.items()}

    def writer(self) -> PartWriter:
        return PartWriter(self.dir, first=len(self.parts))

    def seed(self, rows: pl.LazyFrame) -> None:
        """Write ``rows`` (part columns, private ones included) as the next part, atomically, streaming."""
        existing = [int(p.stem.split("-")[1]) for p in self.parts]
        dest = self.dir / f"part-{max(existing, default=-1) + 1:06d}.parquet"
        try:
            with atomic_path(dest) as tmp:
                rows.sink_parquet(tmp, compression="zstd", statistics=False)
        except OSError as exc:
            raise OutputError(f"cannot write part files in {self.dir}: {exc.strerror or exc}") from None

    def merge(self, out: Path, keep: set[str], metadata: dict[str, str]) -> None:
        """Write ``out`` atomically: the newest row of every path in ``keep``, sorted by path, the private columns
        under their public names (:data:`PUBLIC_NAMES`)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = self.parts
        index = current_rows(self.index().filter(pl.col("path").is_in(list(keep)))).sort(
            "path", "frame_index", nulls_last=True
        )

        # The table's columns in the newest part's order: an update's seed part comes from the old table, with the
        # same columns but not necessarily in that order.
        newest = pq.read_schema(parts[-1]).names if parts else []
        order = [PUBLIC_NAMES.get(name, name) for name in newest if name != "_end"]

        @lru_cache(maxsize=4)
        def load(i: int) -> pa.Table:
            table = pq.read_table(parts[i])
            table = table.drop_columns([c for c in ("_end",) if c in table.column_names])
            return table.rename_columns([PUBLIC_NAMES.get(name, name) for name in table.column_names]).select(order)

        try:
            with atomic_path(out) as tmp:
                schema = load(len(parts) - 1).schema.with_metadata(metadata) if parts else None
                with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
                    pending: list[pa.Table] = []
                    n_pending = 0
                    for part, rows in _segments(index):
                        pending.append(load(part).take(pa.array(rows)).replace_schema_metadata(metadata))
                        n_pending += len(rows)
                        if n_pending >= MERGE_ROWS:
                            writer.write_table(pa.concat_tables(pending), row_group_size=MERGE_ROWS)
                            pending, n_pending = [], 0
                    if pending:
                        writer.write_table(pa.concat_tables(pending), row_group_size=MERGE_ROWS)
        except OSError as exc:
            raise OutputError(
                f"cannot write {out}: {exc.strerror or exc}; the part files in {self.dir} are kept and the same "
                "command finishes the merge once the problem is fixed"
            ) from None

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def table_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows as the part files hold them -> as the final table holds them: ``_end`` dropped, the file signature under
    its public names (:data:`PUBLIC_NAMES`), as :meth:`PartStore.merge` writes them."""
    return rows.drop([c for c in ("_end",) if c in rows.columns]).rename(
        {k: v for k, v in PUBLIC_NAMES.items() if k in rows.columns})


def current_rows(index: pl.DataFrame) -> pl.DataFrame:
    """The stored rows a table keeps, from :meth:`PartStore.index` (plus ``_seq``, the order they were written in).

    Per path: only rows scored from the file's newest version (the size and mtime of its newest row: frames of a
    video since replaced are dropped), the newest row of each ``image_id`` (a retried still or frame replaces its
    earlier row), and a row without a frame index (a still, or a video's error row) only if it is the path's
    newest row: a video's error row from an earlier pass is superseded by the pass that followed it.
    """
    ordered = index.sort("part", "row").with_columns(_seq=pl.int_range(pl.len()))
    newest = ordered.group_by("path").agg(
        _newest=pl.col("_seq").max(),
        _nsize=pl.col("_size").sort_by("_seq").last(),
        _nmtime=pl.col("_mtime_ns").sort_by("_seq").last(),
    )
    return (
        ordered.join(newest, on="path")
        .filter(pl.col("_size").eq_missing(pl.col("_nsize")) & pl.col("_mtime_ns").eq_missing(pl.col("_nmtime")))
        .sort("_seq")
        .unique(subset=["path", "image_id"], keep="last", maintain_order=True)
        .filter(pl.col("frame_index").is_not_null() | (pl.col("_seq") == pl.col("_newest")))
        .drop("_newest", "_nsize", "_nmtime")
    )


def _segments(index: pl.DataFrame) -> Iterator[tuple[int, list[int]]]:
    """Consecutive index rows that come from the same part: (part, row numbers)."""
    for part, group in itertools.groupby(index.select("part", "row").iter_rows(), key=operator.itemgetter(0)):
        yield part, [row for _, row in group]


class PartWriter:
    """Writes row batches to numbered part files on a background thread, atomically, in order."""

    def __init__(self, directory: Path, first: int) -> None:
        self.dir = directory
        existing = [int(p.stem.split("-")[1]) for p in directory.glob(PART_GLOB)]
        self._next = max(existing, default=first - 1) + 1
        self._queue: queue.Queue[pl.DataFrame | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="fb-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (frame := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep draining so that put() never blocks after a failure
            try:
                dest = self.dir / f"part-{self._next:06d}.parquet"
                with atomic_path(dest) as tmp:
                    frame.write_parquet(tmp, compression="zstd", statistics=False)
                self._next += 1
            except BaseException as exc:  # noqa: BLE001 - re-raised in the scoring thread
                self._error = exc

    def put(self, frame: pl.DataFrame) -> None:
        """Queue rows for writing; raises the writer's error if an earlier write failed."""
        self.raise_error()
        self._queue.put(frame)

    def close(self) -> None:
        """Write what is queued, stop the thread, and raise the writer's error if a write failed."""
        self._queue.put(None)
        self._thread.join()
        self.raise_error()

    def raise_error(self) -> None:
        if self._error is None:
            return
        exc = self._error
        if isinstance(exc, OSError):
            raise OutputError(
                f"cannot write part files in {self.dir}: {exc.strerror or exc}; parts written so far are kept and "
                "the same command resumes once the problem is fixed"
            ) from None
        raise exc
