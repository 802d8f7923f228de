"""The competition's multi-label CSV: ``id,categories`` with values like ``"[1.0, 9.0, 11.0]"`` (ids may be floats);
extra columns are ignored.

:func:`parse_kaggle_csv` is the one parser: ``mode="strict"`` (the readers: raise on the first problem) or
``mode="collect"`` (``curate validate``: every problem, one :class:`~fathombatch.labels.base.Problem` each). Both
modes find the same problems with the same words, so the validator reports exactly what a reader would refuse.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from fathombatch.fsutil import write_text_atomic
from fathombatch.labels.base import Labels, Problem, labels_frame, parse_category, parse_tokens
from fathombatch.taxonomy import Taxonomy, fathomnet2023

ParseMode = Literal["strict", "collect"]


class _LineReader(Protocol):
    """A ``csv.reader``: rows, and the number of the physical line last read."""

    @property
    def line_num(self) -> int: ...

    def __iter__(self) -> Iterator[list[str]]: ...


@dataclass(frozen=True)
class KaggleRow:
    """One data line with the header's number of fields.

    Attributes:
        line: its line number in the file (1 is the header).
        image_id: the ``id`` cell, stripped ("" when missing).
        categories: the valid category ids of the line, ascending and unique.
        tokens: how many category tokens the cell holds (None: its brackets are unbalanced).
    """

    line: int
    image_id: str
    categories: tuple[int, ...]
    tokens: int | None


@dataclass(frozen=True)
class KaggleParse:
    """What :func:`parse_kaggle_csv` read: rows in file order, and (collecting mode) every problem in file order."""

    rows: tuple[KaggleRow, ...]
    problems: tuple[Problem, ...]


def parse_kaggle_csv(path: str | Path, taxonomy: Taxonomy | None = None, *, mode: ParseMode = "strict") -> KaggleParse:
    """Parse a Kaggle label CSV line by line.

    Args:
        mode: ``strict`` raises on the first problem; ``collect`` returns them all in :attr:`KaggleParse.problems`.

    Raises:
        LabelFileError: (strict mode only) the first problem, naming the file and line.
    """
    path = Path(path)
    taxonomy = taxonomy or fathomnet2023()
    rows: list[KaggleRow] = []
    problems: list[Problem] = []

    def note(problem: Problem) -> None:
        if mode == "strict":
            raise problem.error(path)
        problems.append(problem)

    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                note(Problem("structure", "file", "the file is empty; expected a header 'id,categories'"))
            elif not {"id", "categories"} <= {h.strip() for h in header}:
                note(Problem("structure", "line 1",
                             f"header {[h.strip() for h in header]} must contain 'id' and 'categories'"))
            else:
                rows.extend(_rows(reader, [h.strip() for h in header], taxonomy, note))
    except UnicodeDecodeError as exc:
        note(Problem("structure", "file", f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
    except csv.Error as exc:
        note(Problem("structure", "file", f"malformed CSV ({exc})"))
    return KaggleParse(rows=tuple(rows), problems=tuple(problems))


def _rows(reader: _LineReader, header: list[str], taxonomy: Taxonomy,
          note: Callable[[Problem], None]) -> Iterator[KaggleRow]:
    """The data lines of ``reader`` (a ``csv.reader``), calling ``note`` for each problem."""
    id_col, cat_col = header.index("id"), header.index("categories")
    first: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        where = f"line {line}"
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            note(Problem("bad-record", where, f"expected {len(header)} fields, found {len(row)}"))
            continue
        image_id = row[id_col].strip()
        if not image_id:
            note(Problem("bad-record", where, "missing id"))
        elif image_id in first:
            note(Problem("duplicate-id", where, f"id {image_id!r} already appeared on line {first[image_id]}"))
        else:
            first[image_id] = line
        tokens = parse_tokens(row[cat_col], where)
        if isinstance(tokens, Problem):
            note(tokens)
            yield KaggleRow(line=line, image_id=image_id, categories=(), tokens=None)
            continue
        ids: set[int] = set()
        for token in tokens:
            got = parse_category(token, taxonomy, where)
            if isinstance(got, Problem):
                note(got)
            else:
                ids.add(got)
        yield KaggleRow(line=line, image_id=image_id, categories=tuple(sorted(ids)), tokens=len(tokens))


def read_kaggle_csv(path: str | Path, taxonomy: Taxonomy | None = None) -> Labels:
    """Read the competition's multi-label CSV (``id,categories``) strictly; ``file_name`` is null (it names no files).

    Raises:
        LabelFileError: the first problem, naming the file and line.
    """
    path = Path(path)
    taxonomy = taxonomy or fathomnet2023()
    rows = parse_kaggle_csv(path, taxonomy, mode="strict").rows
    ids = [r.image_id for r in rows]
    return labels_frame(ids, [None] * len(ids), [list(r.categories) for r in rows], taxonomy, path)


def write_kaggle_csv(dest: Path, rows: Iterable[tuple[str, Sequence[int]]]) -> Path:
    """Write ``id,categories`` atomically with float ids in brackets, exactly like the competition's ``train.csv``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "categories"])
    for image_id, cats in rows:
        writer.writerow([image_id, "[" + ", ".join(f"{float(c)}" for c in cats) + "]"])
    write_text_atomic(dest, buf.getvalue())
    return dest
