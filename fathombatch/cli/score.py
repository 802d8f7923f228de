"""``fathombatch score``: a folder of images to a scores table (and a submission CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from fathombatch.cli.kit import CONTEXT, MAX_THREADS, Command, field_option, output_file, quiet_option, renamed_option
from fathombatch.cli.kit import progress as _progress
from fathombatch.decode import list_decoders
from fathombatch.scoring.config import RayOptions, ScoreConfig

if TYPE_CHECKING:  # what each click.Choice hands over, as the library's configs name it
    from fathombatch.scoring.config import Device, TorchPrecision, VideoDecoderName


@click.command(cls=Command, context_settings=CONTEXT)
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--engine", required=True,
              help="Engine file (.xml OpenVINO, .onnx, .pt, .plan); a bare name is also looked up in engines/.")
@field_option("--out", config=ScoreConfig, field="out", callback=output_file, help="The scores table.")
@field_option("--batch-size", config=ScoreConfig, field="batch_size", type=click.IntRange(min=1))
@field_option("--decoder", config=ScoreConfig, field="decoder", type=click.Choice(["auto", *list_decoders()]),
              help="auto = Pillow when the engine runs on the CPU; on a GPU DALI's nvJPEG where DALI is installed, "
                   "else torchvision's nvJPEG (nvjpeg needs a GPU engine).")
@field_option("--top-k", config=ScoreConfig, field="top_k", type=click.IntRange(min=1),
              help="Length of top_categories.")
@field_option("--frame-interval", config=ScoreConfig, field="frame_interval", type=click.FloatRange(min=0.001),
              help="Videos (.mp4 .mov .mkv .avi): seconds between sampled frames, one row each (docs/video.md).")
@field_option("--video-decoder", config=ScoreConfig, field="video_decoder",
              help="Videos: auto = DALI's NVDEC when the engine runs on a GPU and DALI imports, else PyAV; "
                   "dali = DALI (its CPU backend without a GPU: MJPEG, VP8, VP9; other files fall back to PyAV) "
                   "(docs/video.md).")
@click.option("--submission", callback=output_file, help="Also write the competition CSV here.")
@click.option("--osd", "osd_method", help="Out-of-sample method (default: the engine manifest's).")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS),
              help="CPU threads for the engine and the decoder [default: engine one per core, decoder one more].")
@click.option("--decode-threads", type=click.IntRange(1, MAX_THREADS),
              help="Decoder threads, overriding --threads for decoding.")
@click.option("--overwrite", is_flag=True, help="Replace an existing table or discard an interrupted run.")
@click.option("--update", is_flag=True,
              help="Bring an existing table up to date: score new and changed files and error rows, drop rows of "
                   "files that are gone, keep the rest.")
@field_option("--part-rows", config=ScoreConfig, field="part_rows", type=click.IntRange(min=1),
              help="Rows per part file: the most work a hard kill can cost.")
@field_option("--device", config=ScoreConfig, field="device",
              help="auto: TensorRT plans and .pt engines on GPU 0 when there is one; ONNX and OpenVINO on the CPU.")
@click.option("--devices", help="Shard over these GPUs, one worker each, one output (e.g. 0,1,2,3).")
@field_option("--torch-precision", config=ScoreConfig, field="torch_precision",
              help=".pt engines on a GPU: autocast precision.")
@click.option("--ray", "use_ray", is_flag=True, help="Score on Ray (needs the 'ray' extra; see docs/scaling.md).")
@click.option("--ray-address", help="Ray cluster: 'auto' or ray://HOST:PORT [default: start a local instance].")
@renamed_option("--ray-workers", "--workers", dest="workers", type=click.IntRange(min=1),
                help="Ray scoring actors [default: one per CPU or GPU].")
@field_option("--cpus-per-worker", config=RayOptions, field="cpus_per_worker",
              type=click.FloatRange(min=0, min_open=True))
@field_option("--gpus-per-worker", config=RayOptions, field="gpus_per_worker", type=click.FloatRange(min=0))
@quiet_option
def score(root: Path, engine: str, out: Path, batch_size: int, decoder: str, top_k: int, frame_interval: float,
          video_decoder: VideoDecoderName, submission: Path | None, osd_method: str | None, threads: int | None,
          decode_threads: int | None, overwrite: bool, update: bool, part_rows: int,
          device: Device, devices: str | None, torch_precision: TorchPrecision, use_ray: bool,
          ray_address: str | None, workers: int | None,
          cpus_per_worker: float, gpus_per_worker: float, quiet: bool) -> None:
    """Score every image (.jpg/.jpeg/.png/.tif/.tiff) and video (.mp4/.mov/.mkv/.avi) under ROOT into a Parquet
    table (resumable); a video gives one row per frame sampled every --frame-interval seconds.

    Bad files get an error row and the run goes on; an interrupted run resumes when the same command is re-run.
    With --update, an existing table is brought up to date with ROOT (only new and changed files are scored).

    \b
    Example:
      fathombatch score ./dive_images --engine demo-efficientnet_lite0.onnx --out scores.parquet --submission sub.csv
      fathombatch score ./dive_images --engine demo-efficientnet_lite0.onnx --out scores.parquet --update
      fathombatch score /shared/cruise --engine demo-efficientnet_lite0.onnx --out c.parquet --ray --ray-address auto
      fathombatch build-engine engines/demo-efficientnet_lite0.onnx --out engines/demo-fp16.plan
      fathombatch score ./dive_images --engine demo-fp16.plan --devices 0,1 --batch-size 256
    """
    from fathombatch.errors import UsageError
    from fathombatch.gpu import parse_devices
    from fathombatch.scoring import score_folder

    ray = None
    if use_ray:
        ray = RayOptions(address=ray_address, workers=workers, cpus_per_worker=cpus_per_worker,
                         gpus_per_worker=gpus_per_worker)
    elif ray_address or workers:
        raise UsageError("--ray-address and --ray-workers need --ray")
    cfg = ScoreConfig(root=root, engine=engine, out=out, batch_size=batch_size, decoder=decoder, top_k=top_k,
                      submission=submission, osd=osd_method, threads=threads, decode_threads=decode_threads,
                      overwrite=overwrite, update=update, part_rows=part_rows,
                      ray=ray, device=device, devices=parse_devices(devices) if devices else None,
                      torch_precision=torch_precision, frame_interval=frame_interval,
                      video_decoder=video_decoder)
    s = score_folder(cfg, progress=_progress(quiet))
    resumed = f", {s.resumed} from an interrupted run" if s.resumed else ""
    rows = s.ok + s.errors
    as_rows = f" as {rows} rows (a row per sampled video frame)" if rows != s.files else ""
    click.echo(f"Scored {s.files} files{as_rows}: {s.ok} ok, {s.errors} errors{resumed}. {s.scored_now} scored now in "
               f"{s.seconds:.1f} s ({s.images_per_second:.1f} images/s; decoder {s.decoder}, engine {s.engine})")
    if (u := s.update) is not None:
        fresh = f" (there was no table at {s.out} yet, so every file was scored as new)" if u.fresh else ""
        click.echo(f"Update: {u.added} added, {u.rescored} rescored, {u.removed} removed, {u.kept} kept{fresh}.")
    for message, count in s.top_errors:
        click.echo(f"  {count} x {message}")
    for warning in s.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"Table: {s.out}" + (f"   Submission: {s.submission}" if s.submission else ""))
