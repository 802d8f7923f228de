"""fathombatch: batch-score ROV dive imagery with FathomNet-style multi-label classifiers.

Library first: :func:`fathombatch.scoring.score_folder`, :func:`fathombatch.models.train.train`,
:func:`fathombatch.backends.export.export_run`, :func:`fathombatch.report.evaluate`; the ``fathombatch``
command line is a thin layer on top.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fathombatch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
