"""The class list: category ids, names and supercategories, and their column order.

The default is FathomNet 2023 (FGVC10): 290 fine-grained categories in 20 supercategories, shipped unmodified as
package data (``fathombatch/data/fathomnet2023/category_key.csv``; annotations CC BY-ND 4.0 by MBARI / FathomNet,
Katija et al., Scientific Reports 12, 15914, 2022). Categories are ordered by id, so for FathomNet 2023 category id
``k`` is column ``k - 1`` of every probability matrix and table.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from fathombatch.errors import TaxonomyError
from fathombatch.scores.schema import FIXED_COLUMN_NAMES

#: Columns every scores table starts with; class names may not reuse them (defined once, with the table's schema).
RESERVED_COLUMNS = FIXED_COLUMN_NAMES


@dataclass(frozen=True)
class Category:
    """One class: a positive integer id, a unique display name, and its supercategory."""

    id: int
    name: str
    supercategory: str


@dataclass(frozen=True)
class Taxonomy:
    """An ordered, validated list of categories. Column ``i`` of every matrix is ``categories[i]``."""

    categories: tuple[Category, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        if not self.categories:
            raise TaxonomyError(f"taxonomy {self.name!r} has no categories")
        seen_ids: set[int] = set()
        seen_names: set[str] = set()
        for cat in self.categories:
            if not isinstance(cat.id, int) or isinstance(cat.id, bool) or cat.id < 0:
                raise TaxonomyError(f"taxonomy {self.name!r}: category id {cat.id!r} is not a non-negative integer")
            if cat.id in seen_ids:
                raise TaxonomyError(f"taxonomy {self.name!r}: category id {cat.id} appears twice")
            if not cat.name or cat.name != cat.name.strip():
                raise TaxonomyError(
                    f"taxonomy {self.name!r}: category {cat.id} has an empty or padded name {cat.name!r}"
                )
            if cat.name in seen_names:
                raise TaxonomyError(f"taxonomy {self.name!r}: category name {cat.name!r} appears twice")
            if cat.name in RESERVED_COLUMNS:
                raise TaxonomyError(
                    f"taxonomy {self.name!r}: category name {cat.name!r} clashes with a scores-table column"
                )
            seen_ids.add(cat.id)
            seen_names.add(cat.name)

    def __len__(self) -> int:
        return len(self.categories)

    @cached_property
    def ids(self) -> tuple[int, ...]:
        """Category ids in column order."""
        return tuple(c.id for c in self.categories)

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Category names in column order; these are the probability column names of a scores table."""
        return tuple(c.name for c in self.categories)

    @cached_property
    def supercategories(self) -> tuple[str, ...]:
        """Supercategory of each column."""
        return tuple(c.supercategory for c in self.categories)

    @cached_property
    def column_of(self) -> Mapping[int, int]:
        """Map category id -> column index."""
        return {c.id: i for i, c in enumerate(self.categories)}

    def columns(self, ids: Iterable[int]) -> list[int]:
        """Column indices of category ids; raises KeyError for an id not in the taxonomy."""
        lookup = self.column_of
        return [lookup[i] for i in ids]

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready list of ``{"id", "name", "supercategory"}`` in column order."""
        return [{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in self.categories]

    @classmethod
    def from_records(
        cls, records: Sequence[Mapping[str, Any]], *, name: str = "custom", sort: bool = False
    ) -> Taxonomy:
        """Build from ``[{"id", "name", "supercategory"}, ...]`` (as in a manifest or COCO ``categories``).

        The records' order is the column order (a manifest lists classes in output order); ``sort=True`` orders by id
        instead, for lists whose order means nothing (a category key file).
        """
        if not isinstance(records, Sequence) or isinstance(records, (str, bytes)):
            raise TaxonomyError(f"taxonomy {name!r}: expected a list of categories, got {type(records).__name__}")
        cats = []
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping) or "id" not in rec or "name" not in rec:
                raise TaxonomyError(f"taxonomy {name!r}: category #{i} needs at least 'id' and 'name': {rec!r}")
            raw_id = rec["id"]
            if isinstance(raw_id, float) and raw_id.is_integer():
                raw_id = int(raw_id)
            cats.append(Category(id=raw_id, name=str(rec["name"]), supercategory=str(rec.get("supercategory", ""))))
        if sort:
            cats.sort(key=lambda c: c.id if isinstance(c.id, int) else -1)
        return cls(categories=tuple(cats), name=name)

    @classmethod
    def from_csv(cls, path: str | Path, *, name: str | None = None) -> Taxonomy:
        """Read a ``category_id,name,supercategory`` CSV (the layout of FathomNet's ``category_key.csv``)."""
        path = Path(path)
        with path.open(newline="", encoding="utf-8") as fh:
            return cls._from_csv_rows(csv.DictReader(fh), source=str(path), name=name or path.stem)

    @classmethod
    def _from_csv_rows(cls, reader: csv.DictReader, *, source: str, name: str) -> Taxonomy:
        needed = {"category_id", "name"}
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            raise TaxonomyError(f"{source}: header must contain category_id,name[,supercategory]")
        records = []
        for row in reader:
            try:
                cid = int(float(row["category_id"]))
            except (TypeError, ValueError):
                raise TaxonomyError(
                    f"{source}, line {reader.line_num}: category_id {row['category_id']!r} is not a number"
                ) from None
            records.append({"id": cid, "name": row["name"], "supercategory": row.get("supercategory") or ""})
        return cls.from_records(records, name=name, sort=True)


@lru_cache(maxsize=1)
def fathomnet2023() -> Taxonomy:
    """The FathomNet 2023 taxonomy: 290 categories (ids 1..290, columns 0..289) in 20 supercategories."""
    ref = resources.files("fathombatch") / "data" / "fathomnet2023" / "category_key.csv"
    rows = csv.DictReader(io.StringIO(ref.read_text(encoding="utf-8"), newline=""))
    return Taxonomy._from_csv_rows(rows, source="category_key.csv", name="fathomnet2023")
