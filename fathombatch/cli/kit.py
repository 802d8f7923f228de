"""What every fathombatch command line shares: the error convention, common options, progress bars.

Library errors (:class:`~fathombatch.errors.FathombatchError`) become one ``Error: ...`` line on stderr and the
error's exit code (1 runtime failure, 2 usage error, 130 interrupted); see docs/errors.md.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from fathombatch.cli.options import AliasedOption, LibraryOption, field_option, renamed_option
from fathombatch.errors import MAX_THREADS, FathombatchError, OutputError, UsageError
from fathombatch.pathguard import inside

# The option classes live in fathombatch.cli.options; every command module takes them from here with the rest.
__all__ = ["CONTEXT", "MAX_THREADS", "AliasedOption", "Command", "ErrorsToExit", "Group", "LibraryOption", "Output",
           "check_outputs", "field_option", "guard_outputs", "output_file", "progress", "quiet_option",
           "renamed_option", "scored_folders"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


class _SigintSeen:
    """A SIGINT handler that remembers it fired, then raises KeyboardInterrupt as Python's default one does.

    Native code (polars, pyarrow) that is running when Ctrl-C arrives may turn the KeyboardInterrupt into an error of
    its own; remembering the signal lets the command still exit 130, "interrupted", instead of 1 with a traceback.
    """

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.seen = True
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Install the handler for the duration of a command (main thread only) and restore the previous one."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self)
        self.seen = False
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


SIGINT = _SigintSeen()


def option_name(command: click.Command, param: str) -> str:
    """How a library parameter is spelt on ``command``'s line: its option (``max_drop`` -> ``--max-drop``), or for a
    parameter the command has no option for, the option fathombatch's naming convention gives it."""
    for option in command.params:
        if option.name == param and isinstance(option, click.Option):
            hidden = getattr(option, "hidden_aliases", ())
            return max((o for o in option.opts if o not in hidden), key=len)
        if option.name == param:
            return option.human_readable_name
    return "--" + param.replace("_", "-")


class ErrorsToExit(click.Command):
    """Mixin for click commands and groups: no traceback for a user's mistake, one ``Error:`` line instead."""

    def invoke(self, ctx: click.Context) -> Any:
        with SIGINT.watching():
            try:
                return super().invoke(ctx)
            except (click.exceptions.Exit, click.ClickException):
                raise  # a subcommand's own exit (its error already printed), or click's usage errors
            except FathombatchError as exc:
                if SIGINT.seen:
                    _exit_interrupted(ctx)
                click.echo(f"Error: {exc.render(functools.partial(option_name, ctx.command))}", err=True)
                ctx.exit(exc.exit_code)
            except KeyboardInterrupt:
                _exit_interrupted(ctx)
            except OSError as exc:
                if SIGINT.seen:
                    _exit_interrupted(ctx)
                where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
                click.echo(f"Error: {exc.strerror or exc}{where}", err=True)
                ctx.exit(1)
            except Exception:
                if SIGINT.seen:  # Ctrl-C surfaced as another library's error
                    _exit_interrupted(ctx)
                raise


def _exit_interrupted(ctx: click.Context) -> None:
    click.echo("Error: interrupted; finished work is saved - run the same command again to resume", err=True)
    ctx.exit(130)


class Command(ErrorsToExit, click.Command):
    """A command with the error convention, also when invoked outside its group."""


class Group(ErrorsToExit, click.Group):
    """A command group with the error convention.

    Its subcommands are :class:`Command` s, so a library error is spelt with the options of the subcommand that
    raised it (``curate review``'s ``images_root`` is ``--images``), not by convention from the group's.
    """

    command_class = Command


def progress(quiet: bool) -> Any:
    """Progress bars on a terminal, a status line every few seconds elsewhere; silent with ``--quiet``."""
    from fathombatch.progress import Progress

    return Progress(enabled=False if quiet else None)


def quiet_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", "-q", is_flag=True,
                        help="No progress bars or status lines; print only the summary.")(f)


@dataclass(frozen=True)
class Output:
    """One thing a command writes: a file, or a folder it writes its own files into.

    Attributes:
        path: the path as given.
        option: how the command line names it (``--out``, ``--report``), for the error line.
        folder: True when the command writes files into ``path`` rather than writing ``path`` itself.
    """

    path: Path
    option: str
    folder: bool = False


def check_outputs(outputs: Iterable[Output], inputs: Iterable[tuple[str, Path]], *, overwrite: bool) -> None:
    """Refuse outputs that would replace what a user already has (the guarantee in docs/reliability.md).

    Even with ``overwrite``: a file output that is one of ``inputs`` (the same file through any spelling, symlink or
    hard link), a folder output that is or holds an input (the command's files could land on the input's name), and
    any output inside an input folder (an image folder, a run folder: its next reader, e.g. the next ``score`` of
    that folder, would take the output for one of its own files).
    Without ``overwrite``: a file output that exists, or a folder output that exists and is not empty.

    Args:
        outputs: what the command writes.
        inputs: (how the command line names the input, e.g. ``SCORES`` or ``--truth``; its path).

    Raises:
        UsageError: an output is an input or inside an input folder, or a folder where a file is written or the
            reverse (exit 2).
        OutputError: an output exists and ``overwrite`` is False (exit 1, as ``score`` and ``export`` refuse).
    """
    outputs, inputs = list(outputs), list(inputs)
    for out in outputs:
        for name, path in inputs:
            if _replaces(out, path):
                verb = "holds" if out.folder and not os.path.samefile(out.path, path) else "is"
                raise UsageError(f"{out.option} {out.path} {verb} the input {name} ({path}); outputs never replace "
                                 f"inputs, even with --overwrite: choose another {out.option}")
            if path.is_dir() and inside(out.path, path):
                raise UsageError(f"{out.option} {out.path} is inside the input {name} ({path}); nothing is "
                                 f"written into an input folder, even with --overwrite: choose another {out.option}")
    for out in outputs:
        if out.folder and out.path.exists() and not out.path.is_dir():
            raise UsageError(f"{out.option} {out.path} is a file; name a folder to write into")
        if not out.folder and out.path.is_dir():
            raise UsageError(f"{out.option} {out.path} is a folder; name the file to write (a path inside it)")
        if overwrite:
            continue
        if out.folder and out.path.is_dir() and any(out.path.iterdir()):
            raise OutputError(f"{out.path} already exists and is not empty; pass --overwrite to replace the files "
                              f"this command writes in it, or choose another {out.option}")
        if not out.folder and os.path.lexists(out.path):
            raise OutputError(f"{out.path} already exists; pass --overwrite to replace it, or choose another "
                              f"{out.option}")


def _replaces(out: Output, path: Path) -> bool:
    """Whether writing ``out`` could replace the input ``path``."""
    if not out.path.exists() or not path.exists():
        return False  # a folder not made yet holds nothing; a missing input is the library's to report
    if not out.folder:
        return os.path.samefile(out.path, path)
    return inside(path, out.path)


def scored_folders(tables: Iterable[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """The folders the scores tables among ``tables`` were scored from (their recorded ``run.root``), as inputs.

    A table's scored folder is an input of every command that reads the table, whether or not this command opens an
    image: an output written there would be scored as part of the dive next time (or, with ``--copy-to``, replace
    the images themselves). Paths that are not readable scores tables (a submission CSV, a folder) add nothing.
    """
    from fathombatch.scores.table import recorded_root

    found = []
    for name, path in tables:
        root = recorded_root(path)
        if root is not None:
            found.append((f"image folder of {name}", root))
    return found


def guard_outputs(
    *, inputs: tuple[str, ...], files: tuple[str, ...] = (), folders: tuple[str, ...] = (),
    derived: Callable[[Mapping[str, Any]], Iterable[Output]] | None = None, tables: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command ``--overwrite`` and run :func:`check_outputs` before its body, so nothing is computed or
    half-written before a refusal.

    Args:
        inputs: names of the parameters that are input paths (a str is taken as a path, a tuple as several).
        files / folders: names of the parameters that are output files / output folders (None: not given).
        derived: more outputs computed from the parameters (e.g. a sidecar beside ``--out``).
        tables: names of the input parameters that may be scores tables: their scored folders are inputs too.
    """

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)  # also carries the click parameters declared below this decorator
        def guarded(*args: Any, overwrite: bool, **params: Any) -> Any:
            shown = {p.name: _shown(p) for p in click.get_current_context().command.params}
            outputs = [Output(Path(params[n]), shown[n], folder=n in folders) for n in files + folders
                       if params[n] is not None]
            outputs += derived(params) if derived is not None else []
            given = [(shown[n], Path(v)) for n in inputs
                     for v in (params[n] if isinstance(params[n], tuple) else (params[n],)) if v is not None]
            given += scored_folders((shown[n], Path(params[n])) for n in tables if params[n] is not None)
            check_outputs(outputs, given, overwrite=overwrite)
            return f(*args, **params)

        return click.option("--overwrite", is_flag=True,
                            help="Replace existing outputs (in an output folder: the files this command writes; "
                                 "others are left alone). An input is never replaced.")(guarded)

    return decorate


def _shown(param: click.Parameter) -> str:
    """How a user typed a parameter: its long option, or an argument's metavar (``SCORES``)."""
    if isinstance(param, click.Option):
        return next((o for o in param.opts if o.startswith("--")), param.opts[0])
    return param.human_readable_name


def output_file(_ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """Callback for options that name an output *file*: ``--out newdir/`` must not quietly write a file ``newdir``.

    Only the trailing separator is checked here, since ``Path`` drops it; folders (``.``, ``/``, an existing
    directory) are refused by the library (e.g. :func:`fathombatch.scoring.check_outputs`), for callers without a CLI.
    """
    if value is None:
        return None
    if value.endswith(("/", os.sep)):
        flag = "--" + (param.name or "out").replace("_", "-")
        raise UsageError(f"{flag} {value} is a folder; name the file to write (a path inside it)")
    return Path(value)


class LabelPath(click.Path):
    """An existing label file, or a shipped one by short name (``fathomnet2023:train.csv``,
    see :mod:`fathombatch.packaged`)."""

    def __init__(self) -> None:
        super().__init__(exists=True, dir_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from fathombatch.packaged import resolve_data_path

        if isinstance(value, str):
            try:
                value = str(resolve_data_path(value))
            except UsageError as exc:
                self.fail(str(exc), param, ctx)
        return super().convert(value, param, ctx)


class LogFormatter(logging.Formatter):
    """Log lines as the commands print their own warnings: ``warning: ...`` (``--verbose`` adds the logger's name).

    One format for every warning on stderr, whether a command prints it or the library logs it.
    """

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)  # the message, plus any traceback
        where = f" [{record.name}]" if self.verbose else ""
        return f"{record.levelname.lower()}{where}: {text}"


def configure_logging(verbose: bool) -> None:
    """Send library log records to stderr: warnings always, progress detail with ``verbose``."""
    handler = logging.StreamHandler()
    handler.setFormatter(LogFormatter(verbose))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])

