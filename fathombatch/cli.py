"""The ``fathombatch`` command line: thin click wrappers over the library.

Each command parses its options, builds a frozen config, calls one library function and prints the result.
Library errors (:class:`~fathombatch.errors.FathombatchError`) become one ``Error: ...`` line on stderr and the
error's exit code (1 runtime failure, 2 usage error); see docs/errors.md.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fathombatch import __version__
from fathombatch.cli_curate import curate, download
from fathombatch.cli_exports import export_table_cmd
from fathombatch.clikit import CONTEXT, MAX_THREADS, Group, LabelPath, configure_logging, output_file, quiet_option
from fathombatch.clikit import guard_outputs as _guard_outputs
from fathombatch.clikit import progress as _progress
from fathombatch.decode import list_decoders

if TYPE_CHECKING:  # what each click.Choice hands over, as the library's configs name it
    from fathombatch.backends.export import Checkpoint, ExportFormat, Precision
    from fathombatch.synth import ImageFormat


def _parse_size(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT such as 1920x1080, got {value!r}") from None
    return w, h


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="fathombatch")
@click.option("--verbose", "-v", is_flag=True, help="Log what is happening (to stderr).")
def cli(verbose: bool) -> None:
    """Score, train and evaluate FathomNet-style multi-label classifiers on ROV dive imagery.

    \b
    Example (the whole path on synthetic data):
      fathombatch synth dive --images 300
      fathombatch train --images dive/images --labels dive/train.csv --arch resnet18 --out runs/r18
      fathombatch export runs/r18 --format onnx --out engines/r18.onnx
      fathombatch score dive/images --engine r18.onnx --out scores.parquet
      fathombatch evaluate scores.parquet --truth dive/train.csv
    """
    configure_logging(verbose)


@cli.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--images", "n_images", type=click.IntRange(min=1), default=200, show_default=True,
              help="Number of images.")
@click.option("--seed", type=int, default=0, show_default=True, help="Everything is deterministic for a seed.")
@click.option("--format", "fmt", type=click.Choice(["jpg", "png"]), default="jpg", show_default=True)
@click.option("--deep-fraction", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of out-of-sample ('deep') images, with categories never seen in shallow ones.")
@click.option("--size", callback=_parse_size, metavar="WxH",
              help="Force one image size, e.g. 1920x1080 (default: the real mix).")
@click.option("--box-scale", type=float, default=1.0, show_default=True,
              help="Scale the real box sizes (1 = real pixels).")
@click.option("--videos", "n_videos", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also write this many H.264 dive videos to OUT/videos/ (size from --size, else 640x360).")
@click.option("--video-seconds", type=click.FloatRange(0.1, 3600), default=3.0, show_default=True)
@click.option("--video-fps", type=click.IntRange(1, 240), default=10, show_default=True)
@quiet_option
def synth(out: Path, n_images: int, seed: int, fmt: ImageFormat, deep_fraction: float, size: tuple[int, int] | None,
          box_scale: float, n_videos: int, video_seconds: float, video_fps: int, quiet: bool) -> None:
    """Write a FathomNet-shaped synthetic dive to OUT.

    Writes OUT/images/, OUT/train.csv (Kaggle), OUT/annotations.json (COCO) and OUT/osd.csv; with --videos also
    OUT/videos/*.mp4 and OUT/videos.csv (one row per video: its label set, osd, length).

    \b
    Example:
      fathombatch synth dive --images 500 --seed 1 --deep-fraction 0.2
    """
    from fathombatch.synth import SynthConfig, synthesize

    cfg = SynthConfig(out=out, images=n_images, seed=seed, format=fmt, deep_fraction=deep_fraction, size=size,
                      box_scale=box_scale)
    with _progress(quiet).task("Synthesising", n_images) as task:
        summary = synthesize(cfg, progress=task.advance)
    click.echo(f"Wrote {summary.images} images ({summary.deep} out-of-sample, {summary.annotations} boxes) to {out}")
    if n_videos:
        from fathombatch.synth_video import VideoSynthConfig, synthesize_videos

        with _progress(quiet).task("Synthesising videos", n_videos) as task:
            videos = synthesize_videos(cfg, VideoSynthConfig(n_videos, video_seconds, video_fps), task.advance)
        click.echo(f"Wrote {videos.videos} videos ({videos.frames} frames) to {out / 'videos'}")


_TRAIN_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--images", {"type": click.Path(exists=True, file_okay=False, path_type=Path),
                  "help": "Folder with the training images."}),
    ("--labels", {"type": LabelPath(),
                  "help": "Kaggle train.csv or COCO annotations.json (or fathomnet2023:train.csv)."}),
    ("--out", {"type": click.Path(path_type=Path), "help": "Run folder to create."}),
    ("--arch", {"help": "Architecture (see `fathombatch models`) [default: resnet18]."}),
    ("--epochs", {"type": click.IntRange(min=1), "help": "[default: 10]"}),
    ("--img-size", {"type": click.IntRange(8, 1024), "help": "Square input size in pixels [default: 224]."}),
    ("--batch-size", {"type": click.IntRange(min=1), "help": "[default: 32]"}),
    ("--lr", {"type": click.FloatRange(min=0, min_open=True), "help": "Peak learning rate [default: 0.001]."}),
    ("--optimizer", {"type": click.Choice(["adam", "adamw"]), "help": "[default: adam]"}),
    ("--weight-decay", {"type": click.FloatRange(min=0), "help": "[default: 0]"}),
    ("--loss", {"type": click.Choice(["bce", "weighted-bce", "asl", "mse"]), "help": "[default: bce]"}),
    ("--schedule", {"type": click.Choice(["constant", "cosine", "step"]),
                    "help": "LR schedule after warm-up [default: constant]."}),
    ("--warmup-epochs", {"type": click.FloatRange(min=0), "help": "Linear LR warm-up, in epochs [default: 0]."}),
    ("--step-epochs", {"type": click.IntRange(min=1), "help": "Step schedule period [default: 10]."}),
    ("--step-gamma", {"type": click.FloatRange(0, 1), "help": "Step schedule factor [default: 0.1]."}),
    ("--augment", {"type": click.Choice(["none", "flip", "cutout", "underwater", "underwater-cutout"]),
                   "help": "Augmentation recipe [default: none]."}),
    ("--cutout", {"type": click.IntRange(min=0), "help": "Cutout square side in pixels (0 = off)."}),
    ("--amp", {"type": click.Choice(["off", "auto", "bf16", "fp16"]), "help": "Mixed precision [default: off]."}),
    ("--early-stop", {"type": click.IntRange(min=0),
                      "help": "Stop after N epochs without a better held-out MAP@20 (0 = never) [default: 0]."}),
    ("--val-fraction", {"type": click.FloatRange(0, 1, min_open=True, max_open=True),
                        "help": "Held-out share [default: 0.2]."}),
    ("--seed", {"type": int, "help": "[default: 0]"}),
    ("--pretrained/--no-pretrained", {"default": None, "help": "Start from ImageNet weights."}),
    ("--weights", {"type": click.Path(exists=True, dir_okay=False, path_type=Path),
                   "help": "Start from a local weights file."}),
    ("--threads", {"type": click.IntRange(1, MAX_THREADS), "help": "CPU threads (default: all cores)."}),
    ("--device", {"type": click.Choice(["auto", "cpu", "cuda"]), "help": "[default: auto]"}),
]


def _train_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for decl, kwargs in reversed(_TRAIN_OPTIONS):
        f = click.option(decl, **kwargs)(f)
    return f


@cli.command()
@click.option("--preset", help="Start from a named preset; any option given overrides it.")
@click.option("--list-presets", is_flag=True, help="Print the presets and exit.")
@click.option("--resume", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Continue an interrupted run folder from its last checkpoint (--epochs may extend it).")
@_train_options
@quiet_option
def train(preset: str | None, list_presets: bool, resume: Path | None, quiet: bool, **options: Any) -> None:
    """Train a classifier; prints held-out MAP@20 per epoch next to the prior floor.

    Data-parallel: launch with torchrun, e.g. `torchrun --nproc_per_node 2 -m fathombatch train ...`.

    \b
    Example:
      fathombatch train --preset seed-resnet18 --images dive/images --labels dive/train.csv --out runs/r18
      fathombatch train --images dive/images --labels dive/train.csv --arch efficientnet_lite0 --pretrained \\
          --img-size 96 --epochs 6 --out runs/lite0
      fathombatch train --resume runs/r18 --epochs 20
    """
    import os

    from fathombatch.errors import UsageError
    from fathombatch.models.checks import floor_warning
    from fathombatch.models.presets import describe_presets
    from fathombatch.models.train import config_from
    from fathombatch.models.train import resume as resume_run
    from fathombatch.models.train import train as run_training

    if list_presets:
        click.echo(describe_presets())
        return
    main_process = os.environ.get("RANK", "0") == "0"

    def show(m: Any) -> None:
        click.echo(f"epoch {m.epoch:3d}  train loss {m.train_loss:.4f}  val loss {m.val_loss:.4f}  "
                   f"val MAP@20 {m.val_map20:.4f}  (prior floor {m.val_prior_floor:.4f})  "
                   f"lr {m.lr:.2e}  {m.seconds:.1f}s")

    if resume is not None:
        fixed = [k for k, v in options.items() if v is not None and k not in ("epochs", "threads")]
        if fixed or preset:
            names = ", ".join("--" + k.replace("_", "-") for k in fixed + (["preset"] if preset else []))
            raise UsageError(f"{names} cannot change when resuming; only --epochs and --threads can")
        result = resume_run(resume, epochs=options["epochs"], threads=options["threads"], progress=_progress(quiet),
                            on_epoch=show)
    else:
        result = run_training(config_from(preset, **options), progress=_progress(quiet), on_epoch=show)
    if main_process:
        early = " (stopped early)" if result.stopped_early else ""
        click.echo(f"Best held-out MAP@20 {result.best_val_map20:.4f} at epoch {result.best_epoch}{early} "
                   f"(prior floor {result.val_prior_floor:.4f}; {result.n_train} train / {result.n_val} held-out "
                   f"images). Run saved in {result.out}")
        if (verdict := floor_warning(result.best_val_map20, result.val_prior_floor)) is not None:
            click.echo(f"warning: {verdict}", err=True)


@cli.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["onnx", "openvino", "pt"]), default="onnx", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Engine file (.onnx, .xml for OpenVINO with .bin beside it, or .pt); manifest goes to OUT.json.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True,
              help="int8: ONNX static quantisation, or OpenVINO NNCF with accuracy control; fp16: ONNX, for GPUs.")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="OpenVINO int8: calibrate on these images [default: the run's held-out images].")
@click.option("--max-drop", type=click.FloatRange(0, 1), default=0.005, show_default=True,
              help="OpenVINO int8: refuse an engine whose held-out MAP@20 drops by more than this.")
@click.option("--overwrite", is_flag=True, help="Replace an existing engine file.")
@quiet_option
def export(run: Path, fmt: ExportFormat, out: Path, checkpoint: Checkpoint, precision: Precision,
           calibration: Path | None, max_drop: float, overwrite: bool, quiet: bool) -> None:
    """Export a training run as an engine plus its manifest.

    \b
    Example:
      fathombatch export runs/r18 --format onnx --out engines/r18.onnx
      fathombatch export runs/r18 --format openvino --precision int8 --out engines/r18-int8.xml
    """
    from fathombatch.backends.export import ExportConfig, export_run

    result = export_run(ExportConfig(run=run, format=fmt, out=out, checkpoint=checkpoint, precision=precision,
                                     overwrite=overwrite, calibration=calibration, max_drop=max_drop),
                        progress=_progress(quiet))
    diff = result.max_abs_diff
    check = f" (fp32 graph vs PyTorch: max |logit difference| {diff:.1e})" if diff is not None else ""
    click.echo(f"Wrote {result.engine}{check} and {result.manifest}")
    if result.val_map20_fp32 is not None and result.precision == "fp32":
        click.echo(f"Held-out MAP@20 of the engine: {result.val_map20_engine:.4f}")
    elif result.val_map20_fp32 is not None:
        click.echo(f"Held-out MAP@20: fp32 {result.val_map20_fp32:.4f}, "
                   f"{result.precision} {result.val_map20_engine:.4f}")
    if result.bf16_check is not None:
        click.echo(f"bf16 inference check: {result.bf16_check} (OpenVINO uses bf16 only where it passed)")
    if result.warning:
        click.echo(f"warning: {result.warning}", err=True)


@cli.command()
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
@click.option("--workers", type=click.IntRange(min=1), help="Ray scoring actors [default: one per CPU or GPU].")
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
    from fathombatch.scale import RayOptions
    from fathombatch.score import ScoreConfig, score_folder

    ray = None
    if use_ray:
        ray = RayOptions(address=ray_address, workers=workers, cpus_per_worker=cpus_per_worker,
                         gpus_per_worker=gpus_per_worker)
    elif ray_address or workers:
        raise UsageError("--ray-address and --workers need --ray")
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


@cli.command()
@_guard_outputs(inputs=("scores", "truth", "osd_truth", "run"), folders=("report",), tables=("scores",))
@click.argument("scores", type=click.Path(path_type=Path))
@click.option("--truth", type=LabelPath(), required=True,
              help="Kaggle CSV or COCO json with the true labels (or a shipped one: fathomnet2023:train.csv).")
@click.option("--osd-truth", type=click.Path(path_type=Path), help="id,osd CSV (1 = out of sample) for sAUC.")
@click.option("--report", type=click.Path(file_okay=False, path_type=Path),
              help="Write metrics.json, per_class.parquet, report.md, report.html and plots here.")
@click.option("--run", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Training run folder for the training curves (default: the one named in the engine manifest).")
def evaluate(scores: Path, truth: Path, osd_truth: Path | None, report: Path | None, run: Path | None) -> None:
    """Print MAP@20 of SCORES (a scores table, or a submission CSV) next to the frequency-prior floor, and sAUC.

    Warnings (ids matched without their extension, truth the engine was trained on, a model at or below the
    floor) go to stderr; truth that is the predictions themselves is refused.

    \b
    Example:
      fathombatch evaluate scores.parquet --truth dive/train.csv --osd-truth dive/osd.csv --report report/
      fathombatch evaluate submission.csv --truth heldout.csv
    """
    from fathombatch.report import EvalConfig
    from fathombatch.report import evaluate as run_evaluation

    r = run_evaluation(EvalConfig(scores=scores, truth=truth, osd_truth=osd_truth, report=report, run=run))
    click.echo(f"MAP@{r.k}: {r.map_at_k:.4f}   prior floor: {r.prior_floor:.4f}   "
               f"margin: {r.map_at_k - r.prior_floor:+.4f}")
    if r.sauc is not None:
        click.echo(f"sAUC: {r.sauc:.4f}   competition score: {r.competition_score:.4f}")
    click.echo(f"Images: {r.n_truth} in truth, {r.n_scored} scored, {len(r.missing)} missing (counted as 0), "
               f"{r.n_extra} scored but not in truth")
    for warning in r.warnings:
        click.echo(f"warning: {warning}", err=True)
    if report is not None:
        click.echo(f"Report: {report / 'report.html'} (and report.md, metrics.json, per_class.parquet)")


@cli.command()
@_guard_outputs(inputs=("root", "engines"), files=("json_out",))
@click.argument("stage", type=click.Choice(["decode", "engine", "e2e", "all"]))
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--engine", "engines", required=True, multiple=True,
              help="Engine file (or name in engines/); repeat to measure several side by side.")
@click.option("--batch-sizes", default="8,16,32,64", show_default=True, help="Comma-separated batch sizes.")
@click.option("--decoders", default="dali,pil", show_default=True, help="Comma-separated decoders.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
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

    from fathombatch.bench import BenchConfig, run_suite
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


@cli.command("build-engine")
@click.argument("onnx", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The .plan to write (manifest beside it).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True)
@click.option("--max-batch", type=click.IntRange(1, 65536), default=256, show_default=True)
@click.option("--opt-batch", type=click.IntRange(min=1), help="Batch size TensorRT tunes for [default: --max-batch].")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="int8: images like the ones the plan will score.")
@click.option("--device", "gpu", type=click.IntRange(min=0), default=0, show_default=True, help="GPU to build for.")
@click.option("--overwrite", is_flag=True, help="Replace an existing plan.")
def build_engine_cmd(onnx: Path, out: Path, precision: Precision, max_batch: int, opt_batch: int | None,
                     calibration: Path | None, gpu: int, overwrite: bool) -> None:
    """Build a TensorRT plan from an fp32 ONNX engine (needs an NVIDIA GPU and the 'tensorrt' extra).

    TensorRT plans contain code and run only on the TensorRT version and GPU architecture they were built for:
    build them on the machine that scores, and run only plans you built or trust (docs/gpu.md).

    \b
    Example:
      fathombatch build-engine engines/demo-efficientnet_lite0.onnx --precision fp16 --out engines/demo-fp16.plan
    """
    from fathombatch.backends.trt_build import BuildConfig, build_engine

    r = build_engine(BuildConfig(onnx=onnx, out=out, precision=precision, max_batch=max_batch, opt_batch=opt_batch,
                                 calibration=calibration, device=gpu, overwrite=overwrite))
    click.echo(f"Wrote {r.plan} (TensorRT {r.tensorrt}, {r.gpu}) and {r.manifest}")


@cli.command()
def models() -> None:
    """List the registered architectures.

    \b
    Example:
      fathombatch models
    """
    from fathombatch.models import get_arch, list_models

    for name in list_models():
        spec = get_arch(name)
        pretrained = f"  [pretrained: {spec.pretrained}]" if spec.pretrained else ""
        click.echo(f"{name:20s} {spec.description}{pretrained}")


cli.add_command(curate)
cli.add_command(export_table_cmd)
cli.add_command(download)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="fathombatch")
