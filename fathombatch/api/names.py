"""Errors from Python name parameters, not command-line flags.

Some library messages shared with the command line still spell an option as its flag (``--top-k``, ``pass
--overwrite``). Calls from Python go through :func:`python_names`, which re-raises such an error with each flag
written as the parameter a Python caller sets (``top_k``, ``overwrite=True``); the error's class, and so its exit
code, stay the same. Messages that already name parameters (:func:`fathombatch.errors.param`) pass unchanged.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from fathombatch.errors import FathombatchError

__all__ = ["python_names", "python_spelling"]

#: Flags whose value (or presence) reads better as a Python argument; any other ``--flag-name`` is ``flag_name``.
_PHRASES = {
    "--overwrite": "overwrite=True",
    "--device cpu": "device='cpu'",
    "--device cuda": "device='cuda'",
    "--osd max-prob": "osd='max-prob'",
}
#: A flag: two dashes not preceded by a word character, a dash or a path separator (``a--b``, ``/--x`` are names).
_FLAG = re.compile(r"(?<![\w/\\-])--([a-z][a-z0-9-]*)")


def python_spelling(message: str) -> str:
    """``message`` with each command-line flag written as the Python parameter it stands for."""
    for phrase, spelt in _PHRASES.items():
        message = re.sub(rf"(?<![\w/\\-]){re.escape(phrase)}(?![\w-])", spelt, message)
    return _FLAG.sub(lambda m: m.group(1).replace("-", "_"), message)


@contextlib.contextmanager
def python_names() -> Iterator[None]:
    """Re-raise a :class:`FathombatchError` raised in the block with its flags spelt as parameters."""
    try:
        yield
    except FathombatchError as exc:
        text = str(exc)
        spelt = python_spelling(text)
        if spelt == text:
            raise
        raise type(exc)(spelt).with_traceback(exc.__traceback__) from None
