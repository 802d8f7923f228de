"""The thing ``evaluate`` scores: a scores table (Parquet) or a competition submission CSV.

Both become one lazy frame with the scores-table columns ``image_id``, ``status``, ``osd`` and ``top_categories``
(category ids, best first); a scores table adds one probability column per class. A submission CSV
(``id,categories,osd``, categories space-separated and best first, as ``score``'s submission option writes it, or
as any other tool writes the Kaggle format) has no probabilities and no metadata: every row counts as a prediction,
also the rows a scoring run wrote for files it could not decode (the prior ranking with osd 1.0): the competition
scores them so, and telling them apart is a guess (:func:`error_like_rows`), good enough for a warning that counts
them but not for changing the figure. The file's name decides the format (``.csv``: submission, anything else:
Parquet scores table).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import polars as pl

from fathombatch.errors import LabelFileError, UsageError
from fathombatch.labels import MAX_LABEL_FILE_BYTES, Labels, category_id, category_tokens
from fathombatch.scores.metadata import ScoresMetadata
from fathombatch.scores.submission import ERROR_OSD
from fathombatch.scores.table import ScoresTable
from fathombatch.taxonomy import Taxonomy, fathomnet2023

SUBMISSION_SUFFIX = ".csv"


@dataclass(frozen=True)
class Predictions:
    """What is being evaluated.

    Attributes:
        rows: lazy frame with ``image_id`` (str), ``status`` ('ok' | 'error'), ``osd`` (f32 | null),
            ``top_categories`` (list[i32], best first) and, when ``has_probabilities``, one f32 column per class.
        taxonomy: the class list the category ids and probability columns belong to.
        kind: ``table`` or ``submission``.
        metadata: the scores table's typed ``fathombatch`` metadata (all None for a submission).
    """

    rows: pl.LazyFrame
    taxonomy: Taxonomy
    kind: Literal["table", "submission"]
    metadata: ScoresMetadata = field(default_factory=ScoresMetadata)

    @property
    def has_probabilities(self) -> bool:
        return self.kind == "table"


def open_predictions(path: Path) -> Predictions:
    """Open a scores table or a submission CSV (chosen by the ``.csv`` suffix).

    Raises:
        UsageError: the file does not exist, or is not a scores table (:meth:`ScoresTable.open` decides, as it does
            for curation and exports).
        LabelFileError: a submission CSV is malformed (the message names the line).
    """
    if not path.is_file():
        raise UsageError(f"scores table {path} does not exist")
    if path.suffix.lower() == SUBMISSION_SUFFIX:
        taxonomy = fathomnet2023()
        return Predictions(rows=read_submission(path, taxonomy).lazy(), taxonomy=taxonomy, kind="submission")
    table = ScoresTable.open(path)
    return Predictions(rows=table.lazy, taxonomy=table.taxonomy, kind="table", metadata=table.metadata)


def frame_predictions(frame: pl.DataFrame, meta: dict[str, Any], name: str) -> Predictions:
    """A scores table held in memory (what :func:`fathombatch.score` returns) as predictions.

    Args:
        meta: the table's metadata as ``score`` records it (taxonomy, engine manifest, run); empty when unknown,
            then the FathomNet 2023 taxonomy is assumed.
        name: how messages name the frame.

    Raises:
        UsageError: the frame lacks columns of a scores table for that taxonomy.
    """
    metadata = ScoresMetadata.from_json(meta, name)
    taxonomy = metadata.taxonomy or fathomnet2023()
    absent = [c for c in ("image_id", "status", "osd", "top_categories", *taxonomy.names) if c not in frame.columns]
    if absent:
        raise UsageError(f"{name} is not a fathombatch scores table for this taxonomy (missing columns {absent[:5]})")
    return Predictions(rows=frame.lazy(), taxonomy=taxonomy, kind="table", metadata=metadata)


def read_submission(path: Path, taxonomy: Taxonomy, *, require_osd: bool = True) -> pl.DataFrame:
    """Read ``id,categories,osd`` keeping each row's category order (the ranking is what MAP@k scores).

    ``require_osd=False`` also reads a label file's ``id,categories`` in file order (osd then null).

    Returns:
        columns ``image_id`` (str), ``status`` ('ok'), ``osd`` (f32, null where a value is empty) and
        ``top_categories`` (list[i32]).

    Raises:
        UsageError: no ``osd`` column: a label file, not predictions.
        LabelFileError: naming the line of a missing id, an unknown category id or a bad osd value.

    A repeated id is kept (``score`` writes one when files in two folders share a name); :func:`align` uses the first
    row of each, as it does for a scores table's rows.
    """
    if path.stat().st_size > MAX_LABEL_FILE_BYTES:
        raise LabelFileError(f"{path}: larger than the {MAX_LABEL_FILE_BYTES} byte limit for CSV files")
    ids: list[str] = []
    tops: list[list[int]] = []
    osds: list[float | None] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            if "id" not in header or "categories" not in header:
                raise LabelFileError(f"{path}, line 1: a submission's header must contain 'id', 'categories' "
                                     f"and 'osd', got {header}")
            if "osd" not in header and require_osd:
                # The competition's format has osd; a CSV of id,categories is a label file (Kaggle's train.csv),
                # and scoring truth against itself prints MAP@20 1.0.
                raise UsageError(f"{path} is not a submission CSV: it has no 'osd' column (a label file such as "
                                 "Kaggle's train.csv? label files are the truth, not the predictions)")
            id_col, cat_col = header.index("id"), header.index("categories")
            osd_col = header.index("osd") if "osd" in header else None
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue
                where = f"{path}, line {reader.line_num}"
                if len(row) != len(header):
                    raise LabelFileError(f"{where}: expected {len(header)} fields, found {len(row)}")
                image_id = row[id_col].strip()
                if not image_id:
                    raise LabelFileError(f"{where}: missing id")
                ids.append(image_id)
                tops.append(_ranked_ids(row[cat_col], taxonomy, where))
                osds.append(None if osd_col is None else _osd_value(row[osd_col], where))
    except UnicodeDecodeError as exc:
        raise LabelFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise LabelFileError(f"{path}: malformed CSV ({exc})") from None
    return pl.DataFrame(
        {"image_id": ids, "status": ["ok"] * len(ids), "osd": osds, "top_categories": tops},
        schema={"image_id": pl.String, "status": pl.String, "osd": pl.Float32, "top_categories": pl.List(pl.Int32)},
    )


def _ranked_ids(text: str, taxonomy: Taxonomy, where: str) -> list[int]:
    """``"160 3 90"`` -> [160, 3, 90], in order; an id outside the taxonomy means another class list: refused."""
    return [category_id(token, taxonomy, where) for token in category_tokens(text, where)]


def _osd_value(text: str, where: str) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise LabelFileError(f"{where}: osd {text!r} is not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise LabelFileError(f"{where}: osd {text!r} is not a score in [0, 1]")
    return value


@dataclass(frozen=True)
class Aligned:
    """The evaluated rows with status ok, in truth order.

    Attributes:
        probs: (N, C) float32 probabilities, zeros where missing; for a submission, scores made from the ranking
            (``(L - rank) / L`` for a list of length L, 0 for unlisted classes), so per-class AP ranks images by
            where each class stands in their lists.
        ranked: (N, k) int64 column indices from ``top_categories`` (-1 padding and where missing), or None when a
            table kept fewer than k categories (then rank the probabilities).
        present: (N,) bool, the truth row has an ok prediction.
        osd: (N,) float32 out-of-sample scores, NaN where missing.
        predicted: list[i32] ``top_categories`` of the present rows, in truth order.
        n_extra: ok rows whose id is not in the truth.
        warnings: one sentence each.
    """

    probs: np.ndarray
    ranked: np.ndarray | None
    present: np.ndarray
    osd: np.ndarray
    predicted: pl.Series
    n_extra: int
    warnings: list[str]


def align(preds: Predictions, keys: list[str], k: int, source: Path) -> Aligned:
    """Align the ok rows of ``preds`` with truth rows looked up by ``keys`` (truth order); see :class:`Aligned`."""
    taxonomy = preds.taxonomy
    columns = taxonomy.names if preds.has_probabilities else ()
    ok = preds.rows.filter(pl.col("status") == "ok").select("image_id", "osd", "top_categories", *columns).collect()
    warnings = []
    dupes = ok.height - ok["image_id"].n_unique()
    if dupes:
        order = "by path" if preds.kind == "table" else "in file order"
        warnings.append(f"{dupes} duplicate image_id(s) in {source}; the first row ({order}) of each is used")
        ok = ok.unique(subset="image_id", keep="first", maintain_order=True)
    if preds.kind == "submission" and (n_prior := int(ok.filter(error_like_rows(ok))["image_id"]
                                                     .is_in(keys).sum())):
        warnings.append(f"{n_prior} rows look like score's error rows (osd {ERROR_OSD}, what score writes with the "
                        "prior ranking for files it could not decode): if so, they count here as predictions of the "
                        "prior, as the competition would score them, while the scores table counts them as missing")
    truth_frame = pl.DataFrame({"image_id": keys, "_row": np.arange(len(keys))})
    joined = truth_frame.join(ok, on="image_id", how="inner").sort("_row")
    rows = joined["_row"].to_numpy()
    n, c = len(keys), len(taxonomy)
    present = np.zeros(n, dtype=bool)
    present[rows] = True
    osd = np.full(n, np.nan, dtype=np.float32)
    osd[rows] = joined["osd"].cast(pl.Float32).fill_null(float("nan")).to_numpy()
    tops = joined["top_categories"].fill_null([])
    top_lists = tops.to_list()
    column = taxonomy.column_of
    probs = np.zeros((n, c), dtype=np.float32)
    if preds.has_probabilities:
        probs[rows] = joined.select(columns).to_numpy().astype(np.float32)
    else:
        for r, top in zip(rows, top_lists, strict=True):
            for j, cid in reversed(list(enumerate(top))):  # reversed: a repeated id keeps its best rank
                probs[r, column[cid]] = (len(top) - j) / len(top)
    ranked: np.ndarray | None = None
    if preds.kind == "submission" or joined.height == 0 or cast(int, tops.list.len().min()) >= min(k, c):
        # The table's own ranking (made from logits, so saturated probabilities cannot tie) is what a submission holds.
        ranked = np.full((n, k), -1, dtype=np.int64)
        for r, top in zip(rows, top_lists, strict=True):
            cols = [column.get(cid, -1) for cid in top[:k]]
            ranked[r, : len(cols)] = cols
    else:
        warnings.append(f"the table keeps fewer than {k} top categories; MAP@{k} ranks the probability columns instead")
    return Aligned(probs=probs, ranked=ranked, present=present, osd=osd, predicted=tops,
                   n_extra=ok.height - joined.height, warnings=warnings)


def error_like_rows(rows: pl.DataFrame) -> pl.Series:
    """Which rows of a submission look like those ``score`` writes for files it could not decode: osd exactly 1.0.

    Those rows carry the engine's frequency prior, which a submission does not record, so their ranking cannot be
    recognised when there is only one of them (the common case: one bad file in a dump); their osd of exactly
    :data:`~fathombatch.scores.submission.ERROR_OSD` can. A decoded image's osd reaches 1.0 (at the CSV's 6 decimals)
    only when it is extremely far out of sample, so the warning this feeds says "look like", and it never changes a
    figure.

    Args:
        rows: ``osd`` (f32 | null), one row per image id.

    Returns:
        (N,) bool, aligned with ``rows``.
    """
    return (rows["osd"] == ERROR_OSD).fill_null(False).alias("error_like")


def categories_in_file_order(labels: Labels) -> pl.Series:
    """list[i64] per truth row (truth order): the categories as the label file lists them.

    :func:`~fathombatch.labels.read_labels` sorts each set; whether truth is a ranking shows only in the order of a
    Kaggle CSV's lists. A COCO file's annotations, or a CSV the ordered reader cannot take, give the sorted sets.
    """
    if labels.source.suffix.lower() == SUBMISSION_SUFFIX:
        try:
            submission = read_submission(labels.source, labels.taxonomy, require_osd=False)
            ordered = submission.unique("image_id", keep="first")
        except LabelFileError:
            ordered = None
        if ordered is not None:
            frame = labels.frame.select("image_id").join(ordered, on="image_id", how="left", maintain_order="left")
            if frame["top_categories"].null_count() == 0:
                return frame["top_categories"].cast(pl.List(pl.Int64))
    return labels.frame["categories"]
