"""Dataset curation: what to look at, what to annotate, what to train on next.

One module per command, each exposing a frozen config dataclass and one function:

* :mod:`~fathombatch.curate.stats` - label statistics, tables and charts;
* :mod:`~fathombatch.curate.split` - stratified train/held-out splits and folds with a coverage report;
* :mod:`~fathombatch.curate.select` - rows of a scores table by category, supercategory, osd or status;
* :mod:`~fathombatch.curate.review` - review queues (CSV + HTML contact sheet) for an expert;
* :mod:`~fathombatch.curate.dedupe` - exact and near-duplicate images, with keep/drop suggestions;
* :mod:`~fathombatch.curate.convert` - COCO json <-> Kaggle multi-label CSV;
* :mod:`~fathombatch.curate.validate` - every problem of a label file, collected rather than raised;
* :mod:`~fathombatch.curate.subset` - a label file restricted to chosen images;
* :mod:`~fathombatch.curate.download` - concurrent, resumable image download by ``coco_url``.

Shared helpers: :mod:`~fathombatch.curate.labelfiles` (reading and writing label files) and
:mod:`~fathombatch.curate.scoretable` (opening scores tables and resolving image paths safely).
Nothing here imports click; the commands live in :mod:`fathombatch.cli.curate`.
"""
