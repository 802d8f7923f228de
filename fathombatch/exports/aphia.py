"""WoRMS AphiaIDs for the categories: a user-given CSV, validated row by row, turned into ``scientificNameID`` LSIDs.

OBIS matches every occurrence to the World Register of Marine Species; ``scientificNameID`` =
``urn:lsid:marinespecies.org:taxname:<AphiaID>`` makes that match explicit instead of leaving OBIS to guess from the
name. FathomNet's categories are of mixed rank and some names are not WoRMS names, so the mapping must come from the
user (a table they checked, e.g. with the WoRMS taxon match tool); fathombatch never looks names up on the network.

The CSV has a header with an ``aphia_id`` column and one key column: ``category_id`` (a category id), ``name`` (a
category name) or ``category`` (either). An empty ``aphia_id`` cell means "no AphiaID known" for that category.
"""

from __future__ import annotations

import csv
from pathlib import Path

from fathombatch.errors import LabelFileError, UsageError
from fathombatch.taxonomy import Taxonomy

LSID_PREFIX = "urn:lsid:marinespecies.org:taxname:"
KEY_COLUMNS = ("category_id", "name", "category")

#: WoRMS AphiaIDs are database keys (32-bit integers); a larger number is a typo, not an id.
MAX_APHIA_ID = 2**31 - 1


def lsid(aphia_id: int) -> str:
    """The WoRMS LSID of an AphiaID, as OBIS expects in ``scientificNameID``."""
    return f"{LSID_PREFIX}{aphia_id}"


def read_aphia_table(path: Path, taxonomy: Taxonomy) -> dict[int, int]:
    """Category id -> AphiaID from a CSV (see the module docstring).

    Raises:
        UsageError: the file does not exist.
        LabelFileError: the file is not UTF-8 CSV, lacks the columns, or a row names an unknown category, holds an
            AphiaID that is not a positive integer, or gives a category a second, different AphiaID. The message
            names the file and the line.
    """
    if not path.is_file():
        raise UsageError(f"AphiaID table {path} does not exist")
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError:
        raise LabelFileError(f"{path}: not UTF-8 text; expected a CSV with 'aphia_id' and a category column") from None
    except csv.Error as exc:
        raise LabelFileError(f"{path}: not a readable CSV ({exc})") from None
    header = [h.strip().lower() for h in rows[0]] if rows else []
    key = next((k for k in KEY_COLUMNS if k in header), None)
    if "aphia_id" not in header or key is None:
        raise LabelFileError(f"{path}, line 1: the AphiaID table needs an 'aphia_id' column and one of "
                             f"{', '.join(repr(k) for k in KEY_COLUMNS)}")
    key_at, aphia_at = header.index(key), header.index("aphia_id")
    by_name = dict(zip(taxonomy.names, taxonomy.ids, strict=True))
    known_ids = set(taxonomy.ids)
    out: dict[int, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}, line {line}"
        if len(row) != len(header):
            raise LabelFileError(f"{where}: {len(row)} fields, the header has {len(header)}")
        category = _category(row[key_at].strip(), key, by_name, known_ids, where)
        cell = row[aphia_at].strip()
        if not cell:
            continue
        if not _ascii_digits(cell) or not 0 < int(cell) <= MAX_APHIA_ID:
            raise LabelFileError(f"{where}: aphia_id {cell!r} is not a positive integer up to {MAX_APHIA_ID}")
        if out.get(category, int(cell)) != int(cell):
            raise LabelFileError(f"{where}: category {category} already has AphiaID {out[category]}, not {cell}")
        out[category] = int(cell)
    return out


def _ascii_digits(text: str) -> bool:
    """``str.isdigit`` also takes ``²`` and other digits ``int`` refuses: only 0-9 count."""
    return text.isascii() and text.isdigit()


def _category(value: str, key: str, by_name: dict[str, int], known_ids: set[int], where: str) -> int:
    """The category id a key cell names."""
    if key != "name" and _ascii_digits(value):
        if int(value) not in known_ids:
            raise LabelFileError(f"{where}: category id {value} is not in the scores table's taxonomy")
        return int(value)
    if key == "category_id":
        raise LabelFileError(f"{where}: category_id {value!r} is not an integer")
    if value not in by_name:
        raise LabelFileError(f"{where}: {value!r} is not a category name of the scores table's taxonomy")
    return by_name[value]
