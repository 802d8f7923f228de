"""Darwin Core ``eventDate``: ISO 8601 only, normalised, and never a guessed day/month order.

OBIS and GBIF read ``eventDate`` as ISO 8601. A log's ``17/05/2023`` could be read, but ``05/06/2023`` is the 5th of
June or the 6th of May depending on who wrote it, and nothing in the value says which; so any value that is not
ISO 8601 is left empty (and counted in a warning) rather than guessed. Accepted, and written back in extended ISO form:

* dates: ``2023-05-17``, ``20230517``, week dates ``2023-W20-3`` (-> ``2023-05-17``); ``2023`` and ``2023-05`` as is;
* date-times with or without a zone: ``2023-05-17T10:00`` (-> ``2023-05-17T10:00:00``), ``2023-05-17T10:00Z``
  (-> ``...+00:00``), ``2023-05-17 10:00`` (a space for the ``T``, as RFC 3339 allows);
* EXIF's ``2023:05:17 10:00:00`` (year first, so unambiguous; -> ``2023-05-17T10:00:00``);
* intervals ``start/end`` of the above, the end possibly abbreviated (``2007-11-13/15`` -> ``2007-11-13/2007-11-15``).

A year before :data:`MIN_YEAR` or after next year is refused too: ``1015`` is valid ISO for the year 1015, but in an
ROV log it is 10:15.
"""

from __future__ import annotations

import re
from datetime import date, datetime

import polars as pl

#: Earliest year taken as a date: before it, a value such as ``1015`` is a clock time or a count, not a year.
MIN_YEAR = 1850
#: What eventDate values should look like, for warnings.
EXAMPLE = "2023-05-17T10:00"
_YEAR_MONTH = re.compile(r"^\d{4}(-(0[1-9]|1[0-2]))?$")
_EXIF = re.compile(r"^\d{4}:\d{2}:\d{2} \d{2}:\d{2}:\d{2}$")
# datetime.fromisoformat accepts any character between date and time; only 'T' and a space are ISO / RFC 3339.
_ISO_CHARS = re.compile(r"^[0-9W-]+([T ][0-9:.,]+(Z|[+-][0-9:]+)?)?$")


def iso_event_date(value: str) -> str | None:
    """``value`` as an ISO 8601 date, date-time or interval (see the module docstring), or None if it is not one."""
    text = value.strip()
    if "/" not in text:
        return _one(text)
    start, _, end = text.partition("/")
    first = _one(start)
    last = _one(end)
    if last is None and 0 < len(end) < len(start):  # an abbreviated end takes the start's leading part
        last = _one(start[: len(start) - len(end)] + end)
    return f"{first}/{last}" if first and last else None


def _one(text: str) -> str | None:
    iso = _parse(text)
    if iso is None or not MIN_YEAR <= int(iso[:4]) <= date.today().year + 1:
        return None  # a log's HHMM time (1015) reads as a year: no imagery is from then, so it is not a date
    return iso


def _parse(text: str) -> str | None:
    if _YEAR_MONTH.match(text):
        return text
    try:
        if _EXIF.match(text):
            return datetime.strptime(text, "%Y:%m:%d %H:%M:%S").isoformat()
        if not _ISO_CHARS.match(text):
            return None
        if "T" not in text and " " not in text:
            return date.fromisoformat(text).isoformat()
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        return None


def event_dates(raw: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(N,) values -> ((N,) ISO values or null, (N,) True where a non-blank value is not ISO 8601).

    Each distinct value is parsed once: an ROV log repeats one time per (image, category) occurrence.
    """
    text = raw.cast(pl.String).str.strip_chars()
    text = pl.select(pl.when(text == "").then(None).otherwise(text)).to_series()
    mapping = {v: iso_event_date(v) for v in text.drop_nulls().unique().to_list()}
    iso = text.replace_strict(mapping, default=None, return_dtype=pl.String) if mapping else text
    return iso.alias(raw.name), (text.is_not_null() & iso.is_null()).alias("bad")
