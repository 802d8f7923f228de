"""The command line reads its options' choices and defaults from the library's types: a ``Literal`` field's values
are the choices and the config dataclass's default is the shown default, so the two cannot drift apart."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator

import click
import pytest

from fathombatch.cli import cli
from fathombatch.cli.kit import LibraryOption

#: Commands whose options all come from a library config (the others still spell theirs out; see docs/architecture.md).
DERIVED = ("export", "build-engine", "score")


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        yield prefix + name, command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + name + " ")


def _library_options() -> list[tuple[str, LibraryOption]]:
    return [(f"{name} {option.opts[0]}", option) for name, command in _commands(cli) for option in command.params
            if isinstance(option, LibraryOption)]


def test_some_options_are_read_from_the_library() -> None:
    assert {name.split()[0] for name, _ in _library_options()} >= set(DERIVED)


@pytest.mark.parametrize(("name", "option"), _library_options(), ids=lambda x: x if isinstance(x, str) else "")
def test_choices_and_defaults_equal_the_library_types(name: str, option: LibraryOption) -> None:
    config, field = option.source
    hint = typing.get_type_hints(config)[field]
    if typing.get_origin(hint) is typing.Literal:
        assert isinstance(option.type, click.Choice) and tuple(option.type.choices) == typing.get_args(hint), name
    default = {f.name: f.default for f in dataclasses.fields(config)}[field]
    if default is not dataclasses.MISSING:
        assert option.show_default and option.default == default, name


@pytest.mark.parametrize("command", DERIVED)
def test_every_choice_and_shown_default_of_a_derived_command_comes_from_the_library(command: str) -> None:
    params = cli.commands[command].params
    copied = [p.opts[0] for p in params if isinstance(p, click.Option) and not p.is_flag
              and (isinstance(p.type, click.Choice) or p.show_default) and not isinstance(p, LibraryOption)]
    assert copied == []
