"""Label files shipped with fathombatch, addressed by a short name that works from any folder.

``fathomnet2023:train.csv`` names ``fathombatch/data/fathomnet2023/train.csv`` inside the installed package, so a
documented command such as ``fathombatch curate stats fathomnet2023:train.csv --out stats/`` runs the same from the
repository root, another folder, or a non-editable install. A plain path is returned unchanged; a name that is not
shipped raises :class:`~fathombatch.errors.UsageError` listing what is.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fathombatch.errors import UsageError

#: The shipped data sets: short-name prefix -> folder under ``fathombatch/data``.
DATASETS: tuple[str, ...] = ("fathomnet2023",)


def shipped_files(dataset: str) -> list[str]:
    """Names of the data files shipped for ``dataset`` (README excluded), sorted."""
    folder = resources.files("fathombatch") / "data" / dataset
    return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.lower().startswith("readme"))


def resolve_data_path(value: str | Path) -> Path:
    """Return the file a label-file argument names: ``DATASET:NAME`` maps to the shipped file, anything else is a path.

    A ``Path`` object is never reinterpreted (only strings carry the short name), and a string whose prefix is not a
    shipped data set (``C:\\labels.csv``, ``s3:…``) stays a path, so ordinary paths with a colon keep working.
    """
    if isinstance(value, Path):
        return value
    dataset, sep, name = value.partition(":")
    if not sep or dataset not in DATASETS:
        return Path(value)
    files = shipped_files(dataset)
    if name not in files:
        raise UsageError(f"{value!r} is not a shipped file; {dataset}: has {', '.join(files)}")
    return Path(str(resources.files("fathombatch") / "data" / dataset / name))
