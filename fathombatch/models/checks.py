"""What a training run must not pass over silently: images it leaves out, and a model no better than the prior.

* Image files under the image folder that no label row uses are left out of training with a warning that counts
  them (an unlabelled file is not an error: a folder often holds test images too, but half a dive dropped without a
  word is a wrong answer). Label rows whose image is missing stop the run, with the command that writes a label
  file of the images that are present. Ids that carry an image extension (``abc.jpg``, as some tools write Kaggle
  CSVs) are matched to the file stem without it, as ``evaluate`` matches them, and counted in a warning.
* Label rows with an empty category list train as "nothing present" and, held out, score AP 0 (the competition's
  definition), pulling down MAP@20 and the floor. They are counted in a warning, not refused: an empty frame is
  legitimate background in some datasets, and only the user knows whether these lost their labels. (A file whose
  every row is empty is refused by ``train``: there is nothing to learn.)
* A run whose best held-out MAP@20 is at or below the prior floor (MAP@20 of ranking every image by the training
  part's category frequencies) learned nothing an image model adds; :func:`fathombatch.metrics.floor_warning`
  (shared with ``evaluate``) words it for the summary and :func:`record_outcome` writes the verdict into
  ``RUN/config.json`` under ``"outcome"`` for tools.
"""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path
from typing import Any

import torch

from fathombatch.errors import UsageError, param
from fathombatch.fsutil import write_json_atomic
from fathombatch.labels import Labels
from fathombatch.metrics import floor_warning
from fathombatch.models.config import AMP_MODES, DEVICES, OPTIMIZERS, SCHEDULES, TrainConfig
from fathombatch.models.data import find_images
from fathombatch.models.losses import LOSSES
from fathombatch.models.registry import get_arch

log = logging.getLogger(__name__)

__all__ = ["floor_warning", "labelled_image_files", "read_run_config", "record_outcome", "subset_command",
           "warn_empty_label_sets"]


def subset_command(labels: Path, images_dir: Path) -> str:
    """Shell commands that write a copy of ``labels`` restricted to the images present under ``images_dir``.

    ``curate subset --ids`` takes one path per line and matches it by file stem, as training does.
    """
    present = labels.with_name(f"{labels.stem}-present{labels.suffix}")
    if labels.resolve().is_relative_to(Path(__file__).resolve().parents[1]):
        present = Path(present.name)  # a shipped label file: write the copy here, never inside the package
    return (f"find {shlex.quote(str(images_dir))} -type f > present.txt && fathombatch curate subset "
            f"{shlex.quote(str(labels))} --ids present.txt --out {shlex.quote(str(present))}")


def labelled_image_files(labels: Labels, images_dir: Path) -> list[Path]:
    """The image file of every label row; warns (once, on rank 0) about image files no row uses.

    Returns:
        one path per label row, in label order.

    Raises:
        TrainingError: label rows without a file (with the command that drops them), or ids naming two files.
    """
    match = find_images(labels, images_dir)
    fix = (f"to train on the {len(labels) - len(match.missing)} that are present, write their labels to a new file "
           f"with `{subset_command(labels.source, images_dir)}` and train on that")
    paths = match.require_all(labels, images_dir, fix=fix)
    if match.unlabelled and _is_main_process():
        log.warning("%d of the %d images under %s have no label row in %s and are left out of training",
                    match.unlabelled, match.n_files, images_dir, labels.source)
    if match.by_extension and _is_main_process():
        log.warning("%d image id(s) in %s carry an image extension (e.g. %r); they were matched to the image files "
                    "whose stem is the id without it", len(match.by_extension), labels.source, match.by_extension[0])
    return paths


def warn_empty_label_sets(labels: Labels) -> None:
    """Warn (once, on rank 0) when some label rows have an empty category list; see the module docstring."""
    empty = int((labels.frame["categories"].list.len() == 0).sum())
    if empty and _is_main_process():
        log.warning("%d of %d labelled images in %s have an empty category list; they train as 'nothing present' "
                    "and score AP 0 when held out", empty, len(labels), labels.source)


def record_outcome(run: Path, *, best_epoch: int, best_val_map20: float, prior_floor: float) -> None:
    """Write the run's best epoch and its verdict against the prior floor into ``RUN/config.json`` (``"outcome"``).

    ``at_or_below_prior_floor`` is true exactly when :func:`floor_warning` has something to say.
    """
    config = read_run_config(run)
    config["outcome"] = {
        "best_epoch": best_epoch,
        "best_val_map20": best_val_map20,
        "val_prior_floor": prior_floor,
        "at_or_below_prior_floor": floor_warning(best_val_map20, prior_floor) is not None,
    }
    write_json_atomic(run / "config.json", config)


def read_run_config(run: Path) -> dict[str, Any]:
    """The ``config.json`` of a run folder."""
    path = run / "config.json"
    if not path.is_file():
        raise UsageError(f"{run} is not a training run folder ({path} is missing)")
    return json.loads(path.read_text(encoding="utf-8"))


def _is_main_process() -> bool:
    # Under torchrun every rank loads the data; one warning is enough.
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return True


def validate_config(cfg: TrainConfig) -> None:
    """Refuse a config that cannot train: missing image folder, values out of range, unknown names.

    Raises:
        UsageError: naming the parameter at fault.
    """
    if not cfg.images.is_dir():
        raise UsageError(f"image folder {cfg.images} does not exist")
    if cfg.epochs < 1 or cfg.lr <= 0:
        raise UsageError(f"{param('epochs')} must be at least 1 and {param('lr')} positive")
    if cfg.batch_size < 2:
        raise UsageError(f"{param('batch_size')} must be at least 2, got {cfg.batch_size}: batch normalisation "
                         "cannot train on one image per step")
    if not 8 <= cfg.img_size <= 1024:
        raise UsageError(f"{param('img_size')} must be between 8 and 1024 pixels, got {cfg.img_size}")
    for name, value, allowed in (
        ("optimizer", cfg.optimizer, OPTIMIZERS),
        ("loss", cfg.loss, LOSSES),
        ("schedule", cfg.schedule, SCHEDULES),
        ("amp", cfg.amp, AMP_MODES),
        ("device", cfg.device, DEVICES),
    ):
        if value not in allowed:
            raise UsageError(f"{param(name)} must be one of {', '.join(allowed)}, got {value!r}")
    if cfg.warmup_epochs < 0 or cfg.early_stop < 0 or cfg.step_epochs < 1:
        raise UsageError(f"{param('warmup_epochs')} and {param('early_stop')} must be >= 0 and "
                         f"{param('step_epochs')} >= 1")
    cfg.augmentation  # noqa: B018 - raises UsageError for an unknown recipe
    get_arch(cfg.arch)
