"""The report's figures: each drawn from measured values, titled, its source at the bottom, PNG without
version metadata (the same values give the same bytes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from qd.core.data import CLASS_NAMES, N_CLASSES
from qd.core.fsutil import atomic_path

DPI = 100


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path, title: str, source: str) -> None:
    """Title on top, where the figure came from at the bottom."""
    fig.suptitle(title, fontsize=11)
    fig.supxlabel(f"source: {source}", fontsize=7, color="0.35")
    with atomic_path(path) as tmp:  # a failed write names the figure
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})


def curves(log: pd.DataFrame, best_step: int, title: str, source: str, path: Path) -> None:
    """Train and dev accuracy against optimisation step, from a run's CSV log."""
    fig = _figure(7, 4.2)
    ax = fig.subplots()
    ax.plot(log["step"], log["train_acc"], marker="o", ms=3, label="train (sample of 4,000 images)")
    ax.plot(log["step"], log["dev_acc"], marker="o", ms=3, label="dev (all images)")
    ax.axvline(best_step, color="0.6", ls=":", label=f"kept checkpoint (step {best_step})")
    ax.set(xlabel="optimisation step", ylabel="accuracy", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path, title, source)


def learning_rates(trials: list[dict], diverged: list[dict], winner: dict, source: str, path: Path) -> None:
    """The dense net's best dev accuracy against learning rate, one point per complete trial; a trial that did not
    train (diverged, or not learning) as a cross at chance."""
    fig = _figure(7, 4.2)
    ax = fig.subplots()
    for study in sorted({t["study"] for t in trials}):
        points = sorted((t["params"]["optimizer.lr"], t["best_dev_acc"]) for t in trials if t["study"] == study)
        ax.plot(*zip(*points, strict=True), marker="o", ls="", label=f"study {study}")
    if diverged:
        ax.plot([t["params"]["optimizer.lr"] for t in diverged], [1 / N_CLASSES] * len(diverged), marker="x",
                ls="", color="0.4", label="did not train (at chance)")  # fmt: skip
    ax.plot(winner["params"]["optimizer.lr"], winner["best_dev_acc"], marker="*", ms=16, ls="", mfc="none",
            color="crimson", label=f"winner: trial {winner.get('trial')}")  # fmt: skip
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="learning rate (optimizer.lr)", ylabel="best dev accuracy", ylim=(0, 1))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _save(fig, path, "dense net: dev accuracy against learning rate", source)


def history(studies: list[tuple[str, str, list[tuple[int, float]]]], path: Path) -> None:
    """Best-so-far dev accuracy against trial number, a line per study, its trials as dots."""
    fig = _figure(7, 4.2)
    ax = fig.subplots()
    for study, model, trials in studies:
        numbers, accs = [n for n, _ in trials], [a for _, a in trials]
        (line,) = ax.step(numbers, np.maximum.accumulate(accs), where="post", label=f"{study} ({model})")
        ax.plot(numbers, accs, marker="o", ms=3, ls="", color=line.get_color(), alpha=0.4)
    ax.set(xlabel="trial number", ylabel="dev accuracy (line: best so far)", ylim=(0, 1))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path, "optimisation history of each study", f"complete trials of {len(studies)} studies")


def image_grid(images: np.ndarray, titles: list[str], colours: list[str], title: str, source: str, path: Path) -> None:
    """Up to ten images in rows of five, each with its own caption."""
    rows = max(1, -(-len(images) // 5))
    fig = _figure(9, 2.2 * rows + 0.9)
    for i, ax in enumerate(np.ravel(fig.subplots(rows, 5))):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i], cmap="gray", interpolation="nearest")
            ax.set_title(titles[i], fontsize=8, color=colours[i])
    _save(fig, path, title, source)


def confusion(matrix: np.ndarray, source: str, path: Path) -> None:
    """The confusion matrix as a heat map with its counts."""
    fig = _figure(6.5, 5.5)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(N_CLASSES), CLASS_NAMES, rotation=30)
    ax.set_yticks(range(N_CLASSES), CLASS_NAMES)
    ax.set(xlabel="predicted class", ylabel="true class")
    _save(fig, path, "best model: confusion matrix on the dev set", source)


def side_by_side(images: tuple[np.ndarray, np.ndarray], titles: tuple[str, str], title: str, source: str,
                 path: Path) -> None:  # fmt: skip
    """Two images side by side, each with its title (one dev image, clean and noisy)."""
    fig = _figure(6.5, 3.8)
    for ax, image, image_title in zip(fig.subplots(1, 2), images, titles, strict=True):
        ax.imshow(image, cmap="gray", interpolation="nearest")
        ax.set_title(image_title, fontsize=9)
        ax.axis("off")
    _save(fig, path, title, source)


def noise_curve(levels: list[tuple[float, float]], lines: dict[str, float], source: str, path: Path) -> None:
    """Dev accuracy against noise level; `lines` (label -> accuracy) as horizontal lines."""
    fig = _figure(7, 4.2)
    ax = fig.subplots()
    ax.plot(*zip(*levels, strict=True), marker="o", label="Gaussian noise")
    for (label, acc), ls in zip(lines.items(), ("--", "-."), strict=True):
        ax.axhline(acc, color="0.4", ls=ls, label=label)
    ax.axhline(1 / N_CLASSES, color="0.7", ls=":", label="random classifier")
    ax.set(xlabel="noise std (fraction of each image's value range)", ylabel="dev accuracy", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path, "best model: dev accuracy under perturbation", source)
