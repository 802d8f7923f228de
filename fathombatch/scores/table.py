"""Opening a scores table: the one routine curation, exports and evaluation share.

:meth:`ScoresTable.open` checks the file exists and is Parquet, types its metadata
(:class:`~fathombatch.scores.metadata.ScoresMetadata`), falls back to the FathomNet 2023 taxonomy when the table
records none, and checks it has every fixed column and one column per class. The table is scanned lazily
(``pl.scan_parquet``): a consumer reads only the columns and rows it needs, so a million-row, 290-column table never
has to fit in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from fathombatch.errors import UsageError
from fathombatch.scores.metadata import ScoresMetadata, read_metadata, run_info
from fathombatch.scores.schema import ADDED_COLUMNS, FIXED_COLUMN_NAMES, FIXED_COLUMNS
from fathombatch.taxonomy import Taxonomy, fathomnet2023

__all__ = ["ScoresMetadata", "ScoresTable", "read_metadata", "recorded_root"]


@dataclass(frozen=True)
class ScoresTable:
    """A scores table opened lazily.

    Attributes:
        path: the Parquet file.
        lazy: a lazy scan of it (nothing is read until collected).
        taxonomy: from the table's metadata, else FathomNet 2023.
        metadata: its typed ``fathombatch`` metadata (every field None when absent).
    """

    path: Path
    lazy: pl.LazyFrame
    taxonomy: Taxonomy
    metadata: ScoresMetadata

    @property
    def metadata_root(self) -> Path | None:
        """The absolute folder the table was scored from (``run.root``), if recorded."""
        return self.metadata.run.root

    @classmethod
    def open(cls, path: str | Path) -> ScoresTable:
        """Open a scores table; checks it has the fixed columns and one column per class of its taxonomy.

        Every consumer asks for all of them (before, evaluation checked four fixed columns and curation all eight):
        a table missing any was not written by ``fathombatch score``, whichever command reads it.

        Raises:
            UsageError: the file is missing, is not Parquet, has metadata that is not well-formed, or is not a scores
                table.
            TaxonomyError: the recorded taxonomy is not a valid class list.
        """
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"scores table {path} does not exist")
        metadata = ScoresMetadata.from_json(read_metadata(path), path)
        taxonomy = metadata.taxonomy or fathomnet2023()
        lazy = pl.scan_parquet(path)
        names = set(lazy.collect_schema().names())
        older = [c for c in ADDED_COLUMNS if c not in names]
        if older:  # written before these columns existed: null, as for stills
            lazy = lazy.with_columns(pl.lit(None, dtype=FIXED_COLUMNS[c]).alias(c) for c in older)
            names.update(older)
        absent = [c for c in (*FIXED_COLUMN_NAMES, *taxonomy.names) if c not in names]
        if absent:
            raise UsageError(
                f"{path} is not a fathombatch scores table (missing columns {absent[:5]}); "
                "make one with `fathombatch score`"
            )
        return cls(path=path, lazy=lazy, taxonomy=taxonomy, metadata=metadata)


def recorded_root(path: str | Path) -> Path | None:
    """The folder the scores table ``path`` was scored from (its metadata's ``run.root``); None when ``path`` is not
    a readable Parquet file, has malformed metadata or records none. Reads the file footer only; never raises for a
    bad table (opening it reports that)."""
    if not Path(path).is_file():
        return None
    try:
        return run_info(read_metadata(path), path).root
    except UsageError:
        return None
