"""Issue 17: one meaning per option name across commands; renamed spellings still parse, hidden from --help."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fathombatch.cli import cli
from fathombatch.cli.kit import AliasedOption, option_name, output_file

RENAMED = [  # (command path, new spelling, old spelling)
    (("synth",), "--count", "--images"),
    (("curate", "split"), "--val-fraction", "--val"),
    (("score",), "--ray-workers", "--workers"),
    (("curate", "select"), "--images", "--images-root"),
    (("curate", "review"), "--images", "--images-root"),
    (("curate", "dedupe"), "--images", "--images-root"),
    (("export-table",), "--images", "--images-root"),
    (("build-engine",), "--gpu", "--device"),
]


def _commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], click.Command]:
    found: dict[tuple[str, ...], click.Command] = {}
    for name, command in group.commands.items():
        found[(*prefix, name)] = command
        if isinstance(command, click.Group):
            found.update(_commands(command, (*prefix, name)))
    return found


def _kind(option: click.Option) -> str:
    if option.is_flag:
        return "flag"
    if option.callback is output_file:  # a path checked and made a Path by the callback
        return "path"
    t = option.type
    if isinstance(t, click.Path) or "path" in type(t).__name__.lower():
        return "path"
    if isinstance(t, click.Choice):
        return "choice"
    return {"integer": "int", "float": "float"}.get(t.name, t.name)


def test_every_option_name_means_one_kind_of_value_across_commands() -> None:
    kinds: dict[str, set[str]] = defaultdict(set)
    where: dict[str, list[str]] = defaultdict(list)
    for path, command in _commands().items():
        for option in command.params:
            if not isinstance(option, click.Option):
                continue
            hidden = getattr(option, "hidden_aliases", ())
            for spelling in option.opts:
                if spelling not in hidden:
                    kinds[spelling].add(_kind(option))
                    where[spelling].append(" ".join(path))
    mixed = {name: (sorted(k), where[name]) for name, k in kinds.items() if len(k) > 1}
    assert not mixed
    assert kinds["--images"] == {"path"} and where["--workers"] == ["download"]
    assert kinds["--device"] == {"choice"} and kinds["--gpu"] == {"integer range"}


@pytest.mark.parametrize(("path", "new", "old"), RENAMED, ids=[" ".join(r[0]) + " " + r[1] for r in RENAMED])
def test_a_renamed_option_parses_both_spellings_and_shows_only_the_new(path: tuple[str, ...], new: str,
                                                                         old: str) -> None:
    command = _commands()[path]
    option = next(p for p in command.params if isinstance(p, click.Option) and new in p.opts)
    assert isinstance(option, AliasedOption) and old in option.opts and option.hidden_aliases == (old,)
    help_text = CliRunner().invoke(cli, [*path, "--help"], terminal_width=200).output
    assert new in help_text
    assert f"{old} " not in help_text.replace(new, "") and f"{old}," not in help_text.replace(new, "")
    assert option_name(command, option.name or "") == new  # what an Error: line calls it
    assert option.get_error_hint(click.Context(command)) == f"'{new}'"  # click's "Invalid value for ..." too


def test_synth_count_and_its_old_spelling_write_the_same_dive(tmp_path: Path) -> None:
    runner = CliRunner()
    for spelling, name in (("--count", "a"), ("--images", "b")):
        result = runner.invoke(cli, ["synth", str(tmp_path / name), spelling, "3", "--size", "64x48", "--quiet"])
        assert result.exit_code == 0, result.output
    a = sorted(p.name for p in (tmp_path / "a" / "images").iterdir())
    b = sorted(p.name for p in (tmp_path / "b" / "images").iterdir())
    assert a == b and len(a) == 3
    assert (tmp_path / "a" / "train.csv").read_text() == (tmp_path / "b" / "train.csv").read_text()


def test_curate_split_val_fraction_and_val_give_the_same_split(tmp_path: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(cli, ["synth", str(tmp_path / "d"), "--count", "40", "--size", "64x48", "--quiet"])
    assert made.exit_code == 0, made.output
    labels = tmp_path / "d" / "train.csv"
    for spelling, out in (("--val-fraction", "s1"), ("--val", "s2")):
        result = runner.invoke(cli, ["curate", "split", str(labels), spelling, "0.25", "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "s1").iterdir()) == sorted(p.name for p in (tmp_path / "s2").iterdir())
    for f in (tmp_path / "s1").iterdir():
        if f.suffix == ".csv":
            assert f.read_text() == (tmp_path / "s2" / f.name).read_text()
