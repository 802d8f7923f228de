"""The ``fathombatch`` command line: thin click wrappers over the library, one module per command group.

Each command parses its options, builds a frozen config, calls one library function and prints the result.
Library errors (:class:`~fathombatch.errors.FathombatchError`) become one ``Error: ...`` line on stderr and the
error's exit code (1 runtime failure, 2 usage error); see docs/errors.md.
"""

from __future__ import annotations

import sys

import click

from fathombatch import __version__
from fathombatch.cli.curate import curate, download
from fathombatch.cli.evaluate import evaluate
from fathombatch.cli.exports import export_table_cmd
from fathombatch.cli.kit import CONTEXT, Group, configure_logging
from fathombatch.cli.score import score
from fathombatch.cli.tools import bench, synth
from fathombatch.cli.train import build_engine_cmd, export, models, train

__all__ = ["cli", "main"]


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="fathombatch")
@click.option("--verbose", "-v", is_flag=True, help="Log what is happening (to stderr).")
def cli(verbose: bool) -> None:
    """Score, train and evaluate FathomNet-style multi-label classifiers on ROV dive imagery.

    \b
    Example (the whole path on synthetic data):
      fathombatch synth dive --count 300
      fathombatch train --images dive/images --labels dive/train.csv --arch resnet18 --out runs/r18
      fathombatch export runs/r18 --format onnx --out engines/r18.onnx
      fathombatch score dive/images --engine r18.onnx --out scores.parquet
      fathombatch evaluate scores.parquet --truth dive/train.csv
    """
    configure_logging(verbose)


for command in (synth, train, export, score, evaluate, bench, build_engine_cmd, models, curate, export_table_cmd,
                download):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="fathombatch")
