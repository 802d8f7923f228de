"""One error hierarchy for everything a user can act on.

Library code raises these; the CLI prints ``Error: <message>`` on one line and exits with
:attr:`FathombatchError.exit_code`. Exit codes (documented in docs/errors.md):

* 0 - success, including a scoring run in which some files could not be decoded (they get error rows);
* 1 - a runtime failure: bad data, a broken engine, a failed write, a missing optional dependency;
* 2 - a usage error: a path that does not exist, an empty folder, contradictory options.
"""

from __future__ import annotations

from types import ModuleType

#: The most CPU threads any option may ask for: far above any machine's cores, far below what exhausts memory
#: (``--threads 100000`` once grew memory without a word).
MAX_THREADS = 1024


def check_threads(threads: int | None, name: str = "threads") -> None:
    """Raise :class:`UsageError` unless ``threads`` is None or 1..:data:`MAX_THREADS`."""
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise UsageError(f"{name} must be between 1 and {MAX_THREADS}, got {threads}")


class FathombatchError(Exception):
    """Root of all fathombatch errors. The message is one sentence a user can act on."""

    exit_code: int = 1


class UsageError(FathombatchError):
    """The command was asked for something impossible: a missing path, an empty folder, bad options."""

    exit_code = 2


class LabelFileError(FathombatchError):
    """A label file (Kaggle CSV or COCO json) is malformed; the message names the file and the line or record."""


class TaxonomyError(FathombatchError):
    """A class list is malformed (duplicate ids or names, names that clash with table columns)."""


class EngineError(FathombatchError):
    """An engine file cannot be loaded or run, or disagrees with its manifest."""


class ManifestError(EngineError):
    """An engine manifest is missing or invalid."""


class DecodeError(FathombatchError):
    """One image could not be decoded. Never fatal to a scoring run: it becomes an error row."""


class OutputError(FathombatchError):
    """An output cannot be written: the output is locked by another run, a write failed, or it would be overwritten."""


class TrainingError(FathombatchError):
    """Training cannot start or continue (labels and images do not match, an incompatible checkpoint)."""


class MissingDependencyError(FathombatchError):
    """An optional dependency is not installed; the message names the extra that provides it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional module or raise one helpful :class:`MissingDependencyError`.

    Args:
        module: importable module name, e.g. ``"tensorrt"``.
        extra: the fathombatch extra that installs it, e.g. ``"tensorrt"``.
        purpose: what the module is needed for, used in the message.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the Python package {module!r}, which is not installed ({exc}); "
            f"install it with: pip install 'fathombatch[{extra}]'"
        ) from exc
