"""``fathombatch synth`` and ``bench``: synthetic dives and the throughput suite."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fathombatch.bench import BenchConfig
from fathombatch.cli.kit import CONTEXT, MAX_THREADS, Command, field_option, quiet_option, renamed_option
from fathombatch.cli.kit import guard_outputs as _guard_outputs
from fathombatch.cli.kit import progress as _progress
from fathombatch.cli.options import library_default
from fathombatch.synth import SynthConfig
from fathombatch.synth_video import VideoSynthConfig

if TYPE_CHECKING:  # what each click.Choice hands over, as the library's configs name it
    from fathombatch.synth import ImageFormat


def _parse_size(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT such as 1920x1080, got {value!r}") from None
    return w, h


@click.command(cls=Command, context_settings=CONTEXT)
@click.argument("out", type=click.Path(path_type=Path))
@renamed_option("--count", "--images", dest="n_images", type=click.IntRange(min=1), default=200, show_default=True,
                help="Number of images.")
@field_option("--seed", config=SynthConfig, field="seed", type=int, help="Everything is deterministic for a seed.")
@field_option("--format", "fmt", config=SynthConfig, field="format")
@field_option("--deep-fraction", config=SynthConfig, field="deep_fraction", type=click.FloatRange(0, 1),
              help="Share of out-of-sample ('deep') images, with categories never seen in shallow ones.")
@click.option("--size", callback=_parse_size, metavar="WxH",
              help="Force one image size, e.g. 1920x1080 (default: the real mix).")
@field_option("--box-scale", config=SynthConfig, field="box_scale", type=float,
              help="Scale the real box sizes (1 = real pixels).")
@click.option("--videos", "n_videos", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also write this many H.264 dive videos to OUT/videos/ (size from --size, else 640x360).")
@field_option("--video-seconds", config=VideoSynthConfig, field="seconds", type=click.FloatRange(0.1, 3600))
@field_option("--video-fps", config=VideoSynthConfig, field="fps", type=click.IntRange(1, 240))
@quiet_option
def synth(out: Path, n_images: int, seed: int, fmt: ImageFormat, deep_fraction: float, size: tuple[int, int] | None,
          box_scale: float, n_videos: int, video_seconds: float, video_fps: int, quiet: bool) -> None:
    """Write a FathomNet-shaped synthetic dive to OUT.

    Writes OUT/images/, OUT/train.csv (Kaggle), OUT/annotations.json (COCO) and OUT/osd.csv; with --videos also
    OUT/videos/*.mp4 and OUT/videos.csv (one row per video: its label set, osd, length).

    \b
    Example:
      fathombatch synth dive --count 500 --seed 1 --deep-fraction 0.2
    """
    from fathombatch.synth import synthesize

    cfg = SynthConfig(out=out, images=n_images, seed=seed, format=fmt, deep_fraction=deep_fraction, size=size,
                      box_scale=box_scale)
    with _progress(quiet).task("Synthesising", n_images) as task:
        summary = synthesize(cfg, progress=task.advance)
    click.echo(f"Wrote {summary.images} images ({summary.deep} out-of-sample, {summary.annotations} boxes) to {out}")
    if n_videos:
        from fathombatch.synth_video import synthesize_videos

        with _progress(quiet).task("Synthesising videos", n_videos) as task:
            videos = synthesize_videos(cfg, VideoSynthConfig(n_videos, video_seconds, video_fps), task.advance)
        click.echo(f"Wrote {videos.videos} videos ({videos.frames} frames) to {out / 'videos'}")


def _joined(field: str) -> str:
    """BenchConfig's default for a tuple field, as the comma-separated list the command line takes."""
    return ",".join(str(v) for v in library_default(BenchConfig, field))


@click.command(cls=Command, context_settings=CONTEXT)
@_guard_outputs(inputs=("root", "engines"), files=("json_out",))
@click.argument("stage", type=click.Choice(["decode", "engine", "e2e", "all"]))
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--engine", "engines", required=True, multiple=True,
              help="Engine file (or name in engines/); repeat to measure several side by side.")
# BenchConfig holds tuples; the command line takes comma-separated lists, parsed below so that a bad list is one
# "Error: --batch-sizes ..." line, and shows the library's defaults joined.
@click.option("--batch-sizes", default=_joined("batch_sizes"), show_default=True, help="Comma-separated batch sizes.")
@click.option("--decoders", default=_joined("decoders"), show_default=True, help="Comma-separated decoders.")
@field_option("--repeats", config=BenchConfig, field="repeats", type=click.IntRange(min=1),
              help="Timed runs; the median is reported.")
@click.option("--max-images", type=click.IntRange(min=1), help="Use at most this many images of ROOT.")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), help="CPU threads (default: all cores).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Also write the records as json.")
def bench(stage: str, root: Path, engines: tuple[str, ...], batch_sizes: str, decoders: str, repeats: int,
          max_images: int | None, threads: int | None, json_out: Path | None) -> None:
    """Measure images/s and peak memory of decoding, the engine alone, or the whole score path.

    Each figure is the median of --repeats timed runs after a warm-up.

    \b
    Example:
      fathombatch bench all dive/images --engine demo-efficientnet_lite0.onnx --batch-sizes 16,32 --json bench.json
      fathombatch export demo/run --format openvino --precision int8 --out engines/demo-int8.xml
      fathombatch bench engine dive/images --engine demo-efficientnet_lite0.onnx --engine demo-int8.xml
    """

    from fathombatch.bench import run_suite
    from fathombatch.errors import UsageError

    try:
        sizes = tuple(int(b) for b in batch_sizes.split(","))
    except ValueError:
        raise UsageError(f"--batch-sizes must be comma-separated integers, got {batch_sizes!r}") from None
    cfg = BenchConfig(root=root, engine=engines[0], batch_sizes=sizes, decoders=tuple(decoders.split(",")),
                      repeats=repeats, max_images=max_images, threads=threads)
    stages = ["decode", "engine", "e2e"] if stage == "all" else [stage]

    def show(r: dict[str, Any]) -> None:
        what = r.get("decoder") or f"{r['runtime']} {r['inference_precision']}"
        engine = f"  {Path(r['engine']).name}" if len(engines) > 1 and r["stage"] != "decode" else ""
        mem = f"{r['peak_rss_mb']:.0f} MiB" if r.get("peak_rss_mb") is not None else "n/a"
        click.echo(f"{r['stage']:7s} {what:18s} batch {r['batch_size']:3d}  {r['images_per_s']:8.1f} images/s  "
                   f"peak RSS {mem}{engine}")

    records = run_suite(cfg, stages, progress=show, engines=engines[1:])
    if json_out is not None:
        from fathombatch.fsutil import write_json_atomic

        write_json_atomic(json_out, records)
        click.echo(f"Records: {json_out}")
