"""``fathombatch export-table``: a thin click wrapper over :func:`fathombatch.exports.export_table`.

Errors follow :mod:`fathombatch.cli`: one ``Error: ...`` line on stderr and the error's exit code. Warnings (the
export is written, but something in it deserves a look) go to stderr too, one ``warning: ...`` line each, so stdout
holds only what was written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, get_args

import click

from fathombatch.cli.kit import CONTEXT, Command, Output, field_option, guard_outputs, renamed_option
from fathombatch.cli.options import library_default
from fathombatch.exports import ExportTableConfig, TableExt

if TYPE_CHECKING:  # what the --format click.Choice hands over, as the library's config names it
    from fathombatch.exports import TableFormat

_PATH = click.Path(path_type=Path)


def _outputs(params: Mapping[str, Any]) -> list[Output]:
    from fathombatch.exports import output_files

    folder = params["fmt"] in ("dives", "fiftyone")
    return [Output(p, "--out", folder=folder) for p in output_files(params["out"], params["fmt"])]


@click.command("export-table", cls=Command, context_settings=CONTEXT)
@guard_outputs(inputs=("scores", "metadata", "aphia_ids", "images_root", "coco"), derived=_outputs, tables=("scores",))
@click.argument("scores", type=_PATH)
@click.option("--out", type=_PATH, required=True,
              help="long, dwc: .parquet/.csv file; coco-results: .json file; dives, fiftyone: a folder.")
@field_option("--format", "fmt", config=ExportTableConfig, field="format")
@click.option("--threshold", type=float,
              help="One presence threshold for every class (default: the engine's per-class ones).")
@click.option("--metadata", type=_PATH, help="Per-image CSV joined on image_id (depth, lat/lon, time...).")
@click.option("--dive-regex", help="Regular expression on path giving the dive (its first group).")
@click.option("--dive-column", help="A --metadata column giving the dive.")
@field_option("--exif", config=ExportTableConfig, field="exif", is_flag=True,
              help="Add EXIF timestamps (reads every image; needs the scored folder).")
@renamed_option("--images", "--images-root", dest="images_root", type=_PATH,
                help="The scored folder (default: the one recorded in the table).")
@click.option("--media-prefix", help="URL prefix for Darwin Core associatedMedia (never part of an ID).")
@click.option("--dataset-id",
              help="dwc: datasetID, and what identifies the images in IDs [default: each image's SHA-256].")
@click.option("--aphia-ids", type=_PATH, help="dwc: CSV of category_id or name -> aphia_id, for scientificNameID.")
@field_option("--geodetic-datum", config=ExportTableConfig, field="geodetic_datum",
              help="dwc: geodeticDatum of the coordinates.")
# The library names the extension (table_ext=".csv", as Python callers pass it), the command line the format word.
@click.option("--tables", type=click.Choice([e.removeprefix(".") for e in get_args(TableExt)]),
              default=library_default(ExportTableConfig, "table_ext").removeprefix("."), show_default=True,
              help="Table format of the dives folder.")
@click.option("--coco", type=_PATH, help="coco-results: COCO json whose image ids the results use.")
def export_table_cmd(scores: Path, out: Path, fmt: TableFormat, threshold: float | None, metadata: Path | None,
                     dive_regex: str | None, dive_column: str | None, exif: bool, images_root: Path | None,
                     media_prefix: str | None, dataset_id: str | None, aphia_ids: Path | None, geodetic_datum: str,
                     tables: str, coco: Path | None) -> None:
    """Turn a scores table into presence tables, dive summaries, Darwin Core, a FiftyOne dataset or COCO results.

    \b
    Example:
      fathombatch export-table scores.parquet --out present.parquet
      fathombatch export-table scores.parquet --format dives --out dives/ --metadata rov_log.csv
      fathombatch export-table scores.parquet --format dwc --out occurrences.csv --metadata rov_log.csv \\
          --dataset-id https://doi.org/10.xxxx/cruise42 --aphia-ids aphia.csv
      fathombatch export-table scores.parquet --format fiftyone --out review/
      fathombatch export-table scores.parquet --format coco-results --out preds.json --coco annotations.json
    """
    from fathombatch.exports import export_table

    result = export_table(ExportTableConfig(
        scores=scores, out=out, format=fmt, threshold=threshold, metadata=metadata, dive_regex=dive_regex,
        dive_column=dive_column, images_root=images_root, exif=exif, media_prefix=media_prefix,
        table_ext=cast("TableExt", f".{tables}"),
        dataset_id=dataset_id, aphia_ids=aphia_ids, geodetic_datum=geodetic_datum, coco=coco))
    click.echo(f"Wrote {result.rows} rows ({result.threshold_source} thresholds): "
               + ", ".join(str(p) for p in result.files.values()))
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
