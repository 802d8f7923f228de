"""The command line reads its options' choices and defaults from the library's types: a ``Literal`` field's values
are the choices and the config dataclass's default is the shown default, so the two cannot drift apart."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterator
from typing import Any

import click
import pytest
from click.testing import CliRunner

from fathombatch.bench import BenchConfig
from fathombatch.cli import cli
from fathombatch.cli.kit import LibraryOption
from fathombatch.exports import ExportTableConfig, TableExt
from fathombatch.models.augment import RECIPES
from fathombatch.models.config import AugmentRecipe, TrainConfig

#: Options of a command that show a default or offer choices without being read from a config field, and why.
EXEMPT: dict[str, str] = {
    "synth --count": "SynthConfig.images has no default (a library caller always names a count); 200 makes a quick "
                     "dive on the command line",
    "synth --videos": "0 means 'no videos' (synthesize_videos is not called); VideoSynthConfig.videos has no default",
    "bench STAGE": "an argument: the stage list 'all' expands in the command, not a config field",
    "bench --batch-sizes": "BenchConfig holds a tuple, the option a comma-separated list: its default is the "
                           "library's joined (test_list_and_extension_defaults_are_the_librarys)",
    "bench --decoders": "as --batch-sizes",
    "export-table --tables": "ExportTableConfig.table_ext is the extension ('.csv'), the option the format word "
                             "('csv'): choices and default are the library's without the dot (test below)",
}


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        yield prefix + name, command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + name + " ")


#: Every command and subcommand: all read their options from the library (EXEMPT lists the exceptions).
COMMANDS = dict(_commands(cli))


def _library_options() -> list[tuple[str, LibraryOption]]:
    return [(f"{name} {option.opts[0]}", option) for name, command in COMMANDS.items() for option in command.params
            if isinstance(option, LibraryOption)]


def _literal(config: type, field: str) -> tuple[Any, ...] | None:
    hint = typing.get_type_hints(config)[field]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # Literal[...] | None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None


def _default(config: type, field: str) -> Any:
    return {f.name: f.default for f in dataclasses.fields(config)}[field]


def _name(command: str, param: click.Parameter) -> str:
    return f"{command} {param.opts[0] if isinstance(param, click.Option) else param.human_readable_name}"


def test_some_options_are_read_from_the_library() -> None:
    derived = {name for name, _ in _library_options()}
    assert {name.rsplit(" ", 1)[0] for name in derived} >= {"export", "score", "train", "curate review",
                                                           "curate split", "download", "export-table", "synth"}


@pytest.mark.parametrize(("name", "option"), _library_options(), ids=lambda x: x if isinstance(x, str) else "")
def test_choices_and_defaults_equal_the_library_types(name: str, option: LibraryOption) -> None:
    config, field = option.source
    values = _literal(config, field)
    if values is not None:
        assert isinstance(option.type, click.Choice) and tuple(option.type.choices) == values, name
    default = _default(config, field)
    if option.preset:  # None unless given (a train --preset fills it), the library's default shown in --help
        assert option.default is None, name
        if default not in (dataclasses.MISSING, None):
            ctx = click.Context(COMMANDS[name.rsplit(" ", 1)[0]])
            assert option.get_help_extra(ctx).get("default"), name
    elif default is not dataclasses.MISSING:
        assert option.show_default and option.default == default, name


@pytest.mark.parametrize("command", COMMANDS)
def test_every_choice_and_shown_default_of_a_command_comes_from_the_library(command: str) -> None:
    params = COMMANDS[command].params
    copied = [_name(command, p) for p in params if not (isinstance(p, click.Option) and p.is_flag)
              and (isinstance(p.type, click.Choice) or getattr(p, "show_default", False))
              and not isinstance(p, LibraryOption) and _name(command, p) not in EXEMPT]
    assert copied == []


@pytest.mark.parametrize("command", COMMANDS)
def test_no_option_spells_out_a_default_the_library_holds(command: str) -> None:
    # A default written into the help text, or an option that sets a field of a config the command reads without
    # reading its default from there, copies the library by hand.
    params = COMMANDS[command].params
    configs = {p.source[0] for p in params if isinstance(p, LibraryOption)}
    held = {f.name for c in configs for f in dataclasses.fields(c) if f.default not in (dataclasses.MISSING, None)}
    plain = [p for p in params if not isinstance(p, LibraryOption) and _name(command, p) not in EXEMPT
             and not (isinstance(p, click.Option) and p.is_flag and not p.secondary_opts)]  # --overwrite: off
    copied = [_name(command, p) for p in plain
              if p.name in held or re.search(r"default: -?[0-9.]+\b", getattr(p, "help", None) or "")]
    assert copied == []


def test_exemptions_name_real_options() -> None:
    names = {_name(command, p) for command, c in COMMANDS.items() for p in c.params}
    assert set(EXEMPT) <= names


def test_list_and_extension_defaults_are_the_librarys() -> None:
    bench = {p.name: p for p in COMMANDS["bench"].params}
    assert bench["batch_sizes"].default == ",".join(map(str, _default(BenchConfig, "batch_sizes")))
    assert bench["decoders"].default == ",".join(_default(BenchConfig, "decoders"))
    tables = next(p for p in COMMANDS["export-table"].params if p.name == "tables")
    assert isinstance(tables.type, click.Choice)
    assert ["." + c for c in tables.type.choices] == list(typing.get_args(TableExt))
    assert "." + str(tables.default) == _default(ExportTableConfig, "table_ext")


def test_the_augment_literal_names_every_recipe() -> None:
    assert set(typing.get_args(AugmentRecipe)) == set(RECIPES)


def test_train_options_stay_unset_so_a_preset_can_fill_them() -> None:
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    for shown in ("[default: adam]", "[default: constant]", "[default: 0.001", "[default: resnet18]",
                  "[default: no-pretrained]"):
        assert shown.replace(" ", "") in "".join(result.output.split()), shown  # help wraps at spaces and hyphens
    given = COMMANDS["train"].make_context("train", ["--epochs", "3"]).params
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert {k: v for k, v in given.items() if k in fields and v is not None} == {"epochs": 3}
    assert fields <= set(given)
