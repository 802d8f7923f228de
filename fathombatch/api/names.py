"""Errors from Python read as Python: a parameter a message refers to is spelt as a Python caller sets it.

Library messages name parameters (:func:`fathombatch.errors.param`), which ``str(error)`` spells by name
(``top_k``); the command line spells them as flags. From Python a few read better as the argument to pass
(``overwrite=True`` rather than ``overwrite``): :func:`python_names` re-raises such an error with that spelling; the
error's class, and so its exit code, stay the same. Text that is not a parameter (a runnable command a message
suggests, with its flags) is never touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from fathombatch.errors import FathombatchError

__all__ = ["python_names", "python_spelling"]

#: Parameters whose Python spelling is the argument to pass; any other parameter is spelt by its name.
_PHRASES = {"overwrite": "overwrite=True"}


def python_spelling(exc: FathombatchError) -> str:
    """``exc``'s message with each parameter it refers to spelt as a Python caller sets it."""
    return exc.render(lambda name: _PHRASES.get(name, name))


@contextlib.contextmanager
def python_names() -> Iterator[None]:
    """Re-raise a :class:`FathombatchError` raised in the block with its parameters spelt for Python."""
    try:
        yield
    except FathombatchError as exc:
        spelt = python_spelling(exc)
        if spelt == str(exc):
            raise
        raise type(exc)(spelt).with_traceback(exc.__traceback__) from None
