"""Option classes the commands share: old spellings kept hidden, and options read from a library config's field.

:func:`field_option` is how issue 15's "choices and defaults derived from the library's types" is done: a ``Literal``
field gives the choices and the dataclass's default the shown default, so the command line cannot drift from the
library; ``tests/test_cli_options.py`` holds every command to it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

import click

__all__ = ["AliasedOption", "LibraryOption", "field_option", "renamed_option"]


class AliasedOption(click.Option):
    """An option whose older spellings still parse but are left out of ``--help``.

    Issue 17 gave each option name one meaning across commands (``--images`` is always a folder of images); the
    spellings renamed for that keep working, hidden, so scripts written before do not break. The new name comes first,
    so messages and :func:`option_name` use it.
    """

    def __init__(self, *args: Any, hidden_aliases: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hidden_aliases = hidden_aliases

    def get_error_hint(self, ctx: click.Context | None) -> str:
        """Click's "Invalid value for '--count'" names the option without its hidden spellings."""
        return " / ".join(f"'{o}'" for o in self.opts if o not in self.hidden_aliases)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown = self.opts
        self.opts = [o for o in shown if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def renamed_option(new: str, *old: str, dest: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """``click.option(new, ...)`` that also accepts the ``old`` spellings, hidden from ``--help``."""
    return click.option(new, *old, dest, cls=AliasedOption, hidden_aliases=old, **kwargs)


class LibraryOption(AliasedOption):
    """An option set from a library config's field: it remembers which (``source``), so a test can hold its choices
    and default to the library's.

    ``preset`` options pass None when not given, so that something between the command line and the config (a
    ``train --preset``) can still fill the value; ``--help`` shows the library's default all the same, as click would
    show a real default (``[default: adam]``, ``[default: no-pretrained]``).
    """

    def __init__(self, *args: Any, source: tuple[type, str], preset: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.source = source
        self.preset = preset

    def get_help_extra(self, ctx: click.Context) -> Any:
        default = library_default(*self.source)
        if not self.preset or default is dataclasses.MISSING:
            return super().get_help_extra(ctx)
        value, shown = self.default, self.show_default
        self.default, self.show_default = default, True
        try:
            return super().get_help_extra(ctx)
        finally:
            self.default, self.show_default = value, shown


def library_default(config: type, field: str) -> Any:
    """The default of dataclass ``config``'s ``field``, or ``dataclasses.MISSING`` when it has none."""
    spec = {f.name: f for f in dataclasses.fields(config)}[field]
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return spec.default


def literal_values(config: type, field: str) -> tuple[Any, ...] | None:
    """The values of a ``Literal`` (or ``Literal | None``) field of dataclass ``config``; None for another type."""
    hint = typing.get_type_hints(config)[field]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
        hint = next(a for a in args if a is not type(None))
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None


def field_option(*decls: str, config: type, field: str, preset: bool = False,
                 **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """``click.option`` for ``config.field`` (a dataclass): a ``Literal`` field's values become the choices and the
    field's default the shown default, read from the library instead of copied into the command line.

    With ``preset``, the value is None unless the option is given (the default is only shown); see
    :class:`LibraryOption`.
    """
    values = literal_values(config, field)
    if values is not None:
        kwargs.setdefault("type", click.Choice(values))
    default = library_default(config, field)
    if preset:
        kwargs["default"] = None
    elif default is not dataclasses.MISSING:
        kwargs.setdefault("default", default)
        kwargs.setdefault("show_default", True)
    return click.option(*decls, cls=LibraryOption, source=(config, field), preset=preset, **kwargs)
