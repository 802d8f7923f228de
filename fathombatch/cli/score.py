"""``fathombatch score``: a folder of images to a scores table (and a submission CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from fathombatch.cli.kit import CONTEXT, MAX_THREADS, Command, output_file, quiet_option, renamed_option
from fathombatch.cli.kit import progress as _progress
from fathombatch.decode import list_decoders

if TYPE_CHECKING:  # what each click.Choice hands over, as the library's configs name it
    pass


@click.command(cls=Command, context_settings=CONTEXT)
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--engine", required=True,
              help="Engine file (.xml OpenVINO, .onnx, .pt, .plan); a bare name is also looked up in engines/.")
@click.option("--out", default="scores.parquet", show_default=True, callback=output_file, help="The scores table.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--decoder", type=click.Choice(["auto", *list_decoders()]), default="auto", show_default=True,
              help="auto = Pillow when the engine runs on the CPU; on a GPU DALI's nvJPEG where DALI is installed, "
                   "else torchvision's nvJPEG (nvjpeg needs a GPU engine).")
@click.option("--top-k", type=click.IntRange(min=1), default=20, show_default=True, help="Length of top_categories.")
@click.option("--submission", callback=output_file, help="Also write the competition CSV here.")
@click.option("--osd", "osd_method", help="Out-of-sample method (default: the engine manifest's).")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS),
              help="CPU threads for the engine and the decoder [default: engine one per core, decoder one more].")
@click.option("--decode-threads", type=click.IntRange(1, MAX_THREADS),
              help="Decoder threads, overriding --threads for decoding.")
@click.option("--overwrite", is_flag=True, help="Replace an existing table or discard an interrupted run.")
@click.option("--part-rows", type=click.IntRange(min=1), default=2048, show_default=True,
              help="Rows per part file: the most work a hard kill can cost.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: TensorRT plans and .pt engines on GPU 0 when there is one; ONNX and OpenVINO on the CPU.")
@click.option("--devices", help="Shard over these GPUs, one worker each, one output (e.g. 0,1,2,3).")
@click.option("--torch-precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True,
              help=".pt engines on a GPU: autocast precision.")
@click.option("--ray", "use_ray", is_flag=True, help="Score on Ray (needs the 'ray' extra; see docs/scaling.md).")
@click.option("--ray-address", help="Ray cluster: 'auto' or ray://HOST:PORT [default: start a local instance].")
@renamed_option("--ray-workers", "--workers", dest="workers", type=click.IntRange(min=1),
                help="Ray scoring actors [default: one per CPU or GPU].")
@click.option("--cpus-per-worker", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=0.0, show_default=True)
@quiet_option
def score(root: Path, engine: str, out: Path, batch_size: int, decoder: str, top_k: int, submission: Path | None,
          osd_method: str | None, threads: int | None, decode_threads: int | None, overwrite: bool, part_rows: int,
          device: str,
          devices: str | None, torch_precision: str, use_ray: bool, ray_address: str | None, workers: int | None,
          cpus_per_worker: float, gpus_per_worker: float, quiet: bool) -> None:
    """Score every .jpg/.jpeg/.png under ROOT into a Parquet table (resumable).

    Bad files get an error row and the run goes on; an interrupted run resumes when the same command is re-run.

    \b
    Example:
      fathombatch score ./dive_images --engine demo-efficientnet_lite0.onnx --out scores.parquet --submission sub.csv
      fathombatch score /shared/cruise --engine demo-efficientnet_lite0.onnx --out c.parquet --ray --ray-address auto
      fathombatch build-engine engines/demo-efficientnet_lite0.onnx --out engines/demo-fp16.plan
      fathombatch score ./dive_images --engine demo-fp16.plan --devices 0,1 --batch-size 256
    """
    from fathombatch.errors import UsageError
    from fathombatch.gpu import parse_devices
    from fathombatch.scoring import RayOptions, ScoreConfig, score_folder

    ray = None
    if use_ray:
        ray = RayOptions(address=ray_address, workers=workers, cpus_per_worker=cpus_per_worker,
                         gpus_per_worker=gpus_per_worker)
    elif ray_address or workers:
        raise UsageError("--ray-address and --ray-workers need --ray")
    cfg = ScoreConfig(root=root, engine=engine, out=out, batch_size=batch_size, decoder=decoder, top_k=top_k,
                      submission=submission, osd=osd_method, threads=threads, decode_threads=decode_threads,
                      overwrite=overwrite, part_rows=part_rows,
                      ray=ray, device=device, devices=parse_devices(devices) if devices else None,
                      torch_precision=torch_precision)
    s = score_folder(cfg, progress=_progress(quiet))
    resumed = f", {s.resumed} from an interrupted run" if s.resumed else ""
    click.echo(f"Scored {s.files} files: {s.ok} ok, {s.errors} errors{resumed}. {s.scored_now} scored now in "
               f"{s.seconds:.1f} s ({s.images_per_second:.1f} images/s; decoder {s.decoder}, engine {s.engine})")
    for message, count in s.top_errors:
        click.echo(f"  {count} x {message}")
    for warning in s.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"Table: {s.out}" + (f"   Submission: {s.submission}" if s.submission else ""))
