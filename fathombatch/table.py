"""Moved to :mod:`fathombatch.scores` (schema, metadata, table): re-exported here only until ``score.py`` and the
scoring runners, which are being moved into ``fathombatch/scoring/`` on another branch, import from there."""

from fathombatch.scores.metadata import METADATA_KEY, encode_metadata, read_metadata
from fathombatch.scores.schema import FIXED_COLUMNS, build_frame, schema

__all__ = ["FIXED_COLUMNS", "METADATA_KEY", "build_frame", "encode_metadata", "read_metadata", "schema"]
