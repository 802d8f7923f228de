"""One error hierarchy for everything a user can act on.

Library code raises these; the CLI prints ``Error: <message>`` on one line and exits with
:attr:`FathombatchError.exit_code`. Exit codes (documented in docs/errors.md):

* 0 - success, including a scoring run in which some files could not be decoded (they get error rows);
* 1 - a runtime failure: bad data, a broken engine, a failed write, a missing optional dependency;
* 2 - a usage error: a path that does not exist, an empty folder, contradictory options.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import ModuleType

#: The most CPU threads any option may ask for: far above any machine's cores, far below what exhausts memory
#: (``--threads 100000`` once grew memory without a word).
MAX_THREADS = 1024


def check_threads(threads: int | None, name: str = "threads") -> None:
    """Raise :class:`UsageError` unless ``threads`` is None or 1..:data:`MAX_THREADS`."""
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise UsageError(f"{name} must be between 1 and {MAX_THREADS}, got {threads}")


#: Marks a parameter's name inside an error message (see :func:`param`); a control character no path or name holds.
_MARK = "\x1f"
_PARAM = re.compile(f"{_MARK}([A-Za-z_][A-Za-z0-9_]*){_MARK}")


def param(name: str) -> str:
    """Refer to the parameter ``name`` (a config dataclass field or a function argument) inside an error message.

    The library never names a command-line flag: a Python caller reads the parameter's name (``max_drop``) and the
    command line shows the option that sets it (``--max-drop``), see :meth:`FathombatchError.render`.
    """
    return f"{_MARK}{name}{_MARK}"


class FathombatchError(Exception):
    """Root of all fathombatch errors. The message is one sentence a user can act on.

    A message may refer to parameters through :func:`param`; ``str(error)`` spells them by name and
    :meth:`render` lets a front end spell them its own way.
    """

    exit_code: int = 1

    @property
    def params(self) -> tuple[str, ...]:
        """The parameters the message refers to, in order."""
        return tuple(_PARAM.findall(self._template()))

    def render(self, spell: Callable[[str], str]) -> str:
        """The message with each parameter written as ``spell(name)``."""
        return _PARAM.sub(lambda m: spell(m.group(1)), self._template())

    def _template(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()

    def __str__(self) -> str:
        return self.render(lambda name: name)


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
