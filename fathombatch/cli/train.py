"""``fathombatch train``, ``export``, ``build-engine`` and ``models``: from labelled images to engines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fathombatch.cli.kit import CONTEXT, MAX_THREADS, Command, LabelPath, field_option, quiet_option
from fathombatch.cli.kit import progress as _progress
from fathombatch.engine_export.config import BuildConfig, ExportConfig
from fathombatch.models.config import TrainConfig

if TYPE_CHECKING:  # what each click.Choice hands over, as the library's configs name it
    from fathombatch.engine_export.config import Checkpoint, ExportFormat, Precision


# Every option is TrainConfig's field of the same name, with its choices and shown default; each passes None when
# not given, so that a --preset fills it before TrainConfig's default does (config_from).
_TRAIN_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--images", {"type": click.Path(exists=True, file_okay=False, path_type=Path),
                  "help": "Folder with the training images."}),
    ("--labels", {"type": LabelPath(),
                  "help": "Kaggle train.csv or COCO annotations.json (or fathomnet2023:train.csv)."}),
    ("--out", {"type": click.Path(path_type=Path), "help": "Run folder to create."}),
    ("--arch", {"help": "Architecture (see `fathombatch models`)."}),
    ("--epochs", {"type": click.IntRange(min=1)}),
    ("--img-size", {"type": click.IntRange(8, 1024), "help": "Square input size in pixels."}),
    ("--batch-size", {"type": click.IntRange(min=1)}),
    ("--lr", {"type": click.FloatRange(min=0, min_open=True), "help": "Peak learning rate."}),
    ("--optimizer", {}),
    ("--weight-decay", {"type": click.FloatRange(min=0)}),
    ("--loss", {}),
    ("--schedule", {"help": "LR schedule after warm-up."}),
    ("--warmup-epochs", {"type": click.FloatRange(min=0), "help": "Linear LR warm-up, in epochs."}),
    ("--step-epochs", {"type": click.IntRange(min=1), "help": "Step schedule period."}),
    ("--step-gamma", {"type": click.FloatRange(0, 1), "help": "Step schedule factor."}),
    ("--augment", {"help": "Augmentation recipe."}),
    ("--cutout", {"type": click.IntRange(min=0), "help": "Cutout square side in pixels (0 = off)."}),
    ("--amp", {"help": "Mixed precision."}),
    ("--early-stop", {"type": click.IntRange(min=0),
                      "help": "Stop after N epochs without a better held-out MAP@20 (0 = never)."}),
    ("--val-fraction", {"type": click.FloatRange(0, 1, min_open=True, max_open=True), "help": "Held-out share."}),
    ("--seed", {"type": int}),
    ("--pretrained/--no-pretrained", {"help": "Start from ImageNet weights."}),
    ("--weights", {"type": click.Path(exists=True, dir_okay=False, path_type=Path),
                   "help": "Start from a local weights file."}),
    ("--threads", {"type": click.IntRange(1, MAX_THREADS), "help": "CPU threads (default: all cores)."}),
    ("--device", {}),
]


def _train_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for decl, kwargs in reversed(_TRAIN_OPTIONS):
        field = decl.split("/")[0].removeprefix("--").replace("-", "_")
        f = field_option(decl, config=TrainConfig, field=field, preset=True, **kwargs)(f)
    return f


@click.command(cls=Command, context_settings=CONTEXT)
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


@click.command(cls=Command, context_settings=CONTEXT)
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
# The config has no default format (a library caller names one); the command line exports ONNX unless told.
@field_option("--format", "fmt", config=ExportConfig, field="format", default="onnx", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Engine file (.onnx, .xml for OpenVINO with .bin beside it, or .pt); manifest goes to OUT.json.")
@field_option("--checkpoint", config=ExportConfig, field="checkpoint")
@field_option("--precision", config=ExportConfig, field="precision",
              help="int8: ONNX static quantisation, or OpenVINO NNCF with accuracy control; fp16: ONNX, for GPUs.")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="OpenVINO int8: calibrate on these images [default: the run's held-out images].")
@field_option("--max-drop", config=ExportConfig, field="max_drop", type=click.FloatRange(0, 1),
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
    from fathombatch.engine_export import ExportConfig, export_run

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


@click.command("build-engine", cls=Command, context_settings=CONTEXT)
@click.argument("onnx", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The .plan to write (manifest beside it).")
@field_option("--precision", config=BuildConfig, field="precision")
@field_option("--max-batch", config=BuildConfig, field="max_batch", type=click.IntRange(1, 65536))
@click.option("--opt-batch", type=click.IntRange(min=1), help="Batch size TensorRT tunes for [default: --max-batch].")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="int8: images like the ones the plan will score.")
@field_option("--gpu", "--device", "gpu", config=BuildConfig, field="device", type=click.IntRange(min=0),
              hidden_aliases=("--device",), help="GPU to build for (its index).")
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
    from fathombatch.engine_export import BuildConfig, build_engine

    r = build_engine(BuildConfig(onnx=onnx, out=out, precision=precision, max_batch=max_batch, opt_batch=opt_batch,
                                 calibration=calibration, device=gpu, overwrite=overwrite))
    click.echo(f"Wrote {r.plan} (TensorRT {r.tensorrt}, {r.gpu}) and {r.manifest}")


@click.command(cls=Command, context_settings=CONTEXT)
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
