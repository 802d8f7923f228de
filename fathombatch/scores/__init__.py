"""The scores table, fathombatch's main output: its schema, its metadata, opening one, and the submission CSV.

* :mod:`fathombatch.scores.schema`: the fixed columns (their one definition) and :func:`~.schema.build_frame`.
* :mod:`fathombatch.scores.metadata`: the ``fathombatch`` key-value metadata, read into typed, frozen dataclasses.
* :mod:`fathombatch.scores.table`: :meth:`ScoresTable.open <fathombatch.scores.table.ScoresTable.open>`, the one
  "open a table, read its metadata, fall back to the FathomNet taxonomy, check its columns" routine that curation,
  exports and evaluation share.
* :mod:`fathombatch.scores.submission`: the competition's ``id,categories,osd`` CSV.

This ``__init__`` imports none of them on purpose: :mod:`fathombatch.taxonomy` reads the fixed column names from
:mod:`~fathombatch.scores.schema`, and the other modules import the taxonomy, so importing them here would make
``import fathombatch.taxonomy`` circular.
"""
