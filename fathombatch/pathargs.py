"""Path parameters of the config dataclasses: a plain ``str`` works wherever a ``Path`` is expected.

From a notebook ``ScoreConfig(root="cruise/dive01", ...)`` is the natural spelling; without this the ``str`` travelled
on and failed far away (``'str' object has no attribute 'resolve'``). Every public config dataclass inherits
:class:`PathFields`, which converts its path fields once, when the config is made.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from fathombatch.errors import UsageError

__all__ = ["PathFields", "coerce_paths", "path_members"]


def path_members(annotation: Any) -> set[str] | None:
    """The members of a field's annotation when it admits a ``Path``, else None.

    Annotations are strings under ``from __future__ import annotations`` (``"Path | None"``); a type object is
    spelt the same way first. Only direct members count: ``list[Path]`` is not a path field.
    """
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    members = {part.strip().rsplit(".", 1)[-1] for part in text.split("|")}
    return members if "Path" in members else None


def coerce_paths(obj: Any) -> None:
    """Turn the ``str`` (or other ``os.PathLike``) values of ``obj``'s path fields into ``Path``, in place.

    A field typed ``str | Path`` keeps a ``str`` (there it can mean a name, e.g. an engine in the engine store).

    Raises:
        UsageError: a path field holds something that is not a path (a number, bytes, a list), naming the field.
    """
    for f in dataclasses.fields(obj):
        members = path_members(f.type)
        if members is None:
            continue
        value = getattr(obj, f.name)
        if value is None and "None" in members or isinstance(value, Path):
            continue
        if isinstance(value, str) and "str" in members:
            continue
        if not isinstance(value, (str, os.PathLike)) or isinstance(os.fspath(value), bytes):
            raise UsageError(f"{type(obj).__name__}.{f.name} must be a path (str or pathlib.Path), "
                             f"got {type(value).__name__} {value!r}")
        # Frozen dataclasses: the one assignment, made while the object is being built.
        object.__setattr__(obj, f.name, Path(value))


class PathFields:
    """Mixin for config dataclasses: their ``Path`` fields accept ``str`` (see :func:`coerce_paths`)."""

    def __post_init__(self) -> None:
        coerce_paths(self)
