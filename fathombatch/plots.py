"""Report plots (matplotlib, Agg backend): PNG files a scientist can look at instead of reading tables.

Every function writes one PNG atomically and returns its path; ``draw_*`` functions draw the same on given axes.
The prior floor is drawn wherever MAP@20 is, and only there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import polars as pl

from fathombatch.fsutil import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_DPI = 110


def new_figure(width: float = 7.0, height: float = 4.0, ncols: int = 1) -> tuple[ModuleType, tuple[Figure, Any]]:
    """(pyplot, (figure, axes)) drawn off-screen; importing pyplot here keeps it out of every other command."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, plt.subplots(1, ncols, figsize=(width, height))


def save_figure(fig: Figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    plt.close(fig)
    return path


def headline(path: Path, map_k: float, floor: float, k: int, sauc: float | None, competition: float | None) -> Path:
    """Bars of MAP@k, the prior floor, sAUC and the competition score (see :func:`draw_headline`)."""
    _, (fig, ax) = new_figure(6.0, 3.6)
    draw_headline(ax, map_k, floor, k, sauc, competition)
    return save_figure(fig, path)


def draw_headline(ax: Axes, map_k: float, floor: float, k: int, sauc: float | None,
                  competition: float | None) -> None:
    """Draw the headline bars on ``ax``; the floor's dashed line spans only the MAP@k and floor bars.

    The floor is a MAP@k figure: drawn across sAUC (in [-1, 1]) or the competition score it would read as their
    floor too, which it is not.
    """
    labels, values, colours = [f"MAP@{k}", "prior floor"], [map_k, floor], ["#1f77b4", "#aaaaaa"]
    if sauc is not None:
        labels.append("sAUC")
        values.append(sauc)
        colours.append("#2ca02c")
    if competition is not None:
        labels.append("competition")
        values.append(competition)
        colours.append("#9467bd")
    bars = ax.bar(labels, values, color=colours)
    left, right = bars[0].get_x(), bars[1].get_x() + bars[1].get_width()
    ax.hlines(floor, left, right, color="#d62728", linestyle="--", linewidth=1.2, label=f"prior floor {floor:.3f}")
    for bar, value in zip(bars, values, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, value, f"{value:.3f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylim(min(0.0, *values) - 0.05, 1.05)
    ax.set_title(f"MAP@{k} against the frequency-prior floor")
    ax.legend(loc="upper right", fontsize=8)


def per_class(path: Path, table: pl.DataFrame) -> Path:
    """Per-class AP against the number of truth images (log scale), one dot per class present in the truth."""
    plt, (fig, ax) = new_figure()
    present = table.filter(pl.col("support") > 0)
    groups = present.partition_by("supercategory", as_dict=True)
    cmap = plt.get_cmap("tab20")
    for i, (key, part) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
        name = key[0] if isinstance(key, tuple) else key
        ax.scatter(part["support"], part["ap"], s=18, color=cmap(i % 20), label=str(name), alpha=0.85)
    ax.set_xscale("log")
    ax.set_xlabel("images with the class in the truth (log scale)")
    ax.set_ylabel("average precision")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Per-class AP against support")
    ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.set_size_inches(9.0, 4.5)
    return save_figure(fig, path)


def supercategories(path: Path, table: pl.DataFrame) -> Path:
    """Mean AP per supercategory (classes present in the truth), with image counts."""
    _, (fig, ax) = new_figure(7.0, 5.0)
    sup = (
        table.filter(pl.col("support") > 0)
        .group_by("supercategory")
        .agg(mean_ap=pl.col("ap").mean(), images=pl.col("support").sum(), classes=pl.len())
        .sort("mean_ap")
    )
    names = [f"{s} ({c} cl., {n} img)" for s, c, n in sup.select("supercategory", "classes", "images").iter_rows()]
    ax.barh(names, sup["mean_ap"].fill_null(0).to_list(), color="#1f77b4")
    ax.set_xlim(0, 1)
    ax.set_xlabel("mean average precision of its classes")
    ax.set_title("Per supercategory")
    ax.tick_params(axis="y", labelsize=8)
    return save_figure(fig, path)


def training_curves(path: Path, history: pl.DataFrame) -> Path:
    """Loss (train, held-out) and held-out MAP@20 per epoch, with the prior floor (see :func:`draw_training_curves`)."""
    _, (fig, axes) = new_figure(9.0, 3.6, ncols=2)
    draw_training_curves(axes, history)
    return save_figure(fig, path)


def draw_training_curves(axes: Sequence[Axes], history: pl.DataFrame) -> None:
    """Draw loss and held-out MAP@20 on the two ``axes``; epoch axes tick whole epochs only (no epoch 1.5)."""
    from matplotlib.ticker import MaxNLocator

    ax_loss, ax_map = axes
    epochs = history["epoch"].to_list()
    ax_loss.plot(epochs, history["train_loss"].to_list(), marker="o", label="training")
    ax_loss.plot(epochs, history["val_loss"].to_list(), marker="o", label="held-out")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("Loss")
    ax_loss.legend(fontsize=8)
    ax_map.plot(epochs, history["val_map20"].to_list(), marker="o", color="#1f77b4", label="held-out MAP@20")
    floor = float(history["val_prior_floor"][0])
    ax_map.axhline(floor, color="#d62728", linestyle="--", label=f"prior floor {floor:.3f}")
    ax_map.set_ylabel("MAP@20")
    ax_map.set_ylim(0, 1)
    ax_map.set_title("Held-out MAP@20")
    ax_map.legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
