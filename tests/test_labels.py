"""fathombatch.labels: one Kaggle CSV parser, strict (the readers) or collecting (``curate validate``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fathombatch.errors import LabelFileError
from fathombatch.taxonomy import fathomnet2023


def test_collecting_reports_every_bad_line_and_strict_raises_on_the_first(tmp_path: Path) -> None:
    from fathombatch.labels.kaggle import parse_kaggle_csv

    bad = tmp_path / "bad.csv"
    bad.write_text("id,categories\na,[1.0]\nb,[999.0]\nc,[x]\nd,[2.0]\n")
    with pytest.raises(LabelFileError, match=r"bad\.csv, line 3: unknown category id 999 \(not in taxonomy"):
        parse_kaggle_csv(bad, fathomnet2023(), mode="strict")
    parsed = parse_kaggle_csv(bad, fathomnet2023(), mode="collect")
    assert [(p.kind, p.where) for p in parsed.problems] == [("unknown-category", "line 3"), ("bad-record", "line 4")]
    assert parsed.problems[1].message == "category id 'x' is not a number"
    assert [(r.line, r.image_id, r.categories) for r in parsed.rows] == [(2, "a", (1,)), (3, "b", ()), (4, "c", ()),
                                                                          (5, "d", (2,))]


@pytest.mark.parametrize(
    "text",
    [
        "id,categories\na,[1.5]\n",
        "id,categories\na,[x]\n",
        "id,categories\na,[999.0]\n",
        "id,categories\na,[1.0]\n,[2.0]\n",
        "id,categories\na,[1.0],extra\n",
        "id,labels\na,[1.0]\n",
        "id,categories\na,[1.0]\na,[2.0]\n",
        "id,categories\na,[1.0\n",
        "",
    ],
)
def test_validate_says_what_the_reader_says(tmp_path: Path, text: str) -> None:
    """Before: the validator's own wording ("already on line 2", "is not in taxonomy", "header [] must contain ...")
    differed from the reader's for the same line; now both come from one parser."""
    from fathombatch.curate.validate import ValidateConfig, validate
    from fathombatch.labels import read_labels

    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    with pytest.raises(LabelFileError) as raised:
        read_labels(bad)
    report = validate(ValidateConfig(labels=bad))
    kind, where, message = report.problems.row(0)
    prefix = f"{bad}, {where}: " if where.startswith("line") else f"{bad}: "
    assert str(raised.value) == prefix + message


def test_splits_and_readers_live_in_labels() -> None:
    from fathombatch import labels
    from fathombatch.labels import splits

    for name in ("Labels", "read_labels", "read_kaggle_csv", "read_coco", "load_coco_json", "write_kaggle_csv",
                 "category_id", "category_tokens", "safe_relative_path", "multi_hot"):
        assert hasattr(labels, name), name
    assert callable(splits.stratified_split) and callable(splits.repair_coverage)
