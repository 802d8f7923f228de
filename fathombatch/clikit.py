"""What every fathombatch command line shares: the error convention, common options, progress bars.

Library errors (:class:`~fathombatch.errors.FathombatchError`) become one ``Error: ...`` line on stderr and the
error's exit code (1 runtime failure, 2 usage error, 130 interrupted); see docs/errors.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from fathombatch.errors import MAX_THREADS, FathombatchError, UsageError

__all__ = ["CONTEXT", "MAX_THREADS", "Command", "ErrorsToExit", "Group", "output_file", "progress", "quiet_option"]

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


class ErrorsToExit:
    """Mixin for click commands and groups: no traceback for a user's mistake, one ``Error:`` line instead."""

    def invoke(self, ctx: click.Context) -> Any:
        with SIGINT.watching():
            try:
                return super().invoke(ctx)  # type: ignore[misc]
            except (click.exceptions.Exit, click.ClickException):
                raise  # a subcommand's own exit (its error already printed), or click's usage errors
            except FathombatchError as exc:
                if SIGINT.seen:
                    _exit_interrupted(ctx)
                click.echo(f"Error: {exc}", err=True)
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


class Group(ErrorsToExit, click.Group):
    """A command group with the error convention."""


class Command(ErrorsToExit, click.Command):
    """A command with the error convention, also when invoked outside its group."""


def progress(quiet: bool) -> Any:
    """Progress bars on a terminal, a status line every few seconds elsewhere; silent with ``--quiet``."""
    from fathombatch.progress import Progress

    return Progress(enabled=False if quiet else None)


def quiet_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or status lines; print only the summary.")(f)


def output_file(_ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """Callback for options that name an output *file*: ``--out newdir/`` must not quietly write a file ``newdir``.

    Only the trailing separator is checked here, since ``Path`` drops it; folders (``.``, ``/``, an existing
    directory) are refused by the library (e.g. :func:`fathombatch.score.check_outputs`), for callers without a CLI.
    """
    if value is None:
        return None
    if value.endswith(("/", os.sep)):
        flag = "--" + (param.name or "out").replace("_", "-")
        raise UsageError(f"{flag} {value} is a folder; name the file to write (a path inside it)")
    return Path(value)


class LabelPath(click.Path):
    """An existing label file, or a shipped one by short name (``fathomnet2023:train.csv``, see :mod:`fathombatch.packaged`)."""

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

