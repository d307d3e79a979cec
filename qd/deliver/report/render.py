"""report.md from a `Measurements`: the sections with their figures, and the answers to the course's questions.

Each section draws its figures into the stage folder and records their captions and sources in `shown`,
which the LaTeX document (document.py) reuses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qd.core.data import CLASS_NAMES, FILES, N_CLASSES
from qd.deliver.report import figures
from qd.deliver.report.answers import Question, curve_caption, dense_sizes, noisy_caption, provenance
from qd.deliver.report.measure import PERTURBATIONS, SEED, Measurements
from qd.experiment.results import show

Shown = dict[str, tuple[str, str]]  # figure file -> (caption, source in Markdown)


def pct(acc: float) -> str:
    return f"{acc:.4f} ({100 * acc:.1f}%)"


def figure_md(shown: Shown, name: str, caption: str, source: str) -> list[str]:
    """A figure drawn into the stage, shown in report.md and recorded for the document."""
    shown[name] = (caption, source)
    return [f"![{caption}]({name})", "", f"*{caption}. Source: {source}.*", ""]


def image_titles(rows: np.ndarray, y: np.ndarray, pred: np.ndarray) -> tuple[list[str], list[str]]:
    """`#index true X / pred Y` per image, green when right, red when wrong."""
    titles = [f"#{i} true {CLASS_NAMES[y[i]]}\npred {CLASS_NAMES[pred[i]]}" for i in rows]
    return titles, ["darkgreen" if y[i] == pred[i] else "crimson" for i in rows]


# The sections of report.md; each draws its figures into `stage`.


def curves_section(m: Measurements, stage: Path, shown: Shown) -> list[str]:
    """Section 1: the winners' learning curves, the dense net's learning rates, each study's history."""
    lines = ["## 1. Curves", ""]
    for model in ("densenet", "convnet"):
        name, log = f"{model}-curves.png", m.winners[model]["log"]
        title, source = f"{m.trial(model)}: accuracy against step", f"{m.trial(model)}, {show(log)}"
        figures.curves(m.logs[model], m.winners[model]["best_step"], title, source, stage / name)
        lines += figure_md(shown, name, curve_caption(m, model), f"{m.trial(model)}, log `{show(log)}`")
    dense, trials, diverged = m.winners["densenet"], m.lr_trials, m.lr_diverged
    if trials and "optimizer.lr" in (dense.get("params") or {}):
        studies = ", ".join(sorted({t["study"] for t in trials + diverged}))
        counted = f"{len(trials)} complete" + (f" and {len(diverged)} diverged" if diverged else "")
        figures.learning_rates(trials, diverged, dense, f"{counted} trials of {studies}", stage / "densenet-lr.png")
        lines += figure_md(
            shown,
            "densenet-lr.png",
            "dense net: best dev accuracy against learning rate (log scale); a trial that did not train at chance",
            f"{counted} densenet trials with `optimizer.lr`; winner {m.trial('densenet')}",
        )
    else:
        lines += [
            "No complete densenet sweep trial with `optimizer.lr` among the sources: no learning-rate figure.",
            "",
        ]
    if not m.studies:
        return [*lines, "No complete sweep trial among the sources (course runs only): no optimisation history.", ""]
    figures.history(m.studies, stage / "sweep-history.png")
    lines += figure_md(
        shown,
        "sweep-history.png",
        "best-so-far dev accuracy against trial number, per study",
        f"complete trials of the studies in {', '.join(f'`{s}`' for s in m.sources)}",
    )
    lines += ["| study | model | complete trials | best dev accuracy |", "| --- | --- | --- | --- |"]
    lines += [f"| {s} | {model} | {len(t)} | {max(a for _, a in t):.4f} |" for s, model, t in m.studies]
    return [*lines, ""]


def counts_section(m: Measurements) -> list[str]:
    """Section 2: baselines from the label distributions, the dense net's parameters, the winners' settings."""
    dense, conv, best = (m.winners[model] for model in ("densenet", "convnet", "bestmodel"))
    weights, per_layer, biases, per_bias = dense_sizes(m)
    lines = [
        "## 2. Counts and baselines",
        "",
        "| quantity | value | from |",
        "| --- | --- | --- |",
        f"| random classifier, expected accuracy | 1/6 = {pct(1 / N_CLASSES)} | {N_CLASSES} classes |",
    ]
    for split in ("dev", "train"):
        name, share = m.majority[split]
        source = f"{split} labels, `{FILES[split][1]}`"
        lines.append(f"| majority vote ({name}), {split} accuracy | {pct(share)} | {source} |")
    dense_cfg, conv_cfg, conv_trial = m.configs["densenet"], m.configs["convnet"], m.trial("convnet")
    return [
        *lines,
        f"| dense net weights | {weights:,} ({per_layer}) | `densenet.pt` |",
        f"| dense net biases | {biases:,} ({per_bias}) | `densenet.pt` |",
        f"| dense net best learning rate | {dense_cfg['optimizer']['lr']:.4g} | {m.trial('densenet')}, dev accuracy "
        f"{dense['best_dev_acc']:.4f} |",
        f"| conv net best batch size | {conv_cfg['train']['batch_size']} | {conv_trial} |",
        f"| conv net best learning rate | {conv_cfg['optimizer']['lr']:.4g} | {conv_trial} |",
        f"| conv net steps (best dev accuracy at step) | {conv['steps']} ({conv['best_step']}) | {conv_trial} |",
        f"| conv net training time | {conv['train_time_s']:.1f} s | {conv_trial}, metrics.json |",
        f"| conv net dev accuracy | {conv['best_dev_acc']:.4f} | {conv_trial} |",
        f"| best model dev accuracy | {best['best_dev_acc']:.4f} | {m.trial('bestmodel')} |",
        f"| best model parameters | {best['param_count']:,} | `bestmodel.pt` |",
        f"| best model file size | {m.best_file_bytes:,} bytes | `{show(m.submission / 'bestmodel.pt')}` |",
        "",
    ]


def failures_section(m: Measurements, stage: Path, shown: Shown) -> list[str]:
    """Section 3: the best model's errors, confusion matrix, and robustness to noise and flips on the dev set."""
    checkpoint, images = show(m.submission / "bestmodel.pt"), show(m.data_dir / FILES["dev"][0])
    source = f"{m.trial('bestmodel')}, `{checkpoint}` on `{images}`"
    plain = source.replace("`", "")
    matrix = m.confusion
    figures.confusion(matrix, plain, stage / "confusion.png")
    lines = [
        "## 3. Failure modes of the best model",
        "",
        f"Dev accuracy {pct(m.clean)} on {len(m.y):,} images; the most frequent confusion: {m.worst_confusion}.",
        "",
        *figure_md(shown, "confusion.png", "confusion matrix of the best model on the dev set", source),
        "| true \\ predicted | " + " | ".join(CLASS_NAMES) + " |",
        "| --- " * (N_CLASSES + 1) + "|",
        *(f"| {CLASS_NAMES[i]} | " + " | ".join(str(c) for c in row) + " |" for i, row in enumerate(matrix)),
        "",
        f"### The first {len(m.correct)} correct and {len(m.wrong)} wrong dev images",
        "",
    ]
    for name, rows, what in (("correct.png", m.correct, "correctly"), ("wrong.png", m.wrong, "wrongly")):
        caption = f"the first {len(rows)} {what} classified dev images (dev index, true, predicted class)"
        titles = image_titles(rows, m.y, m.pred)
        figures.image_grid(m.images[rows], *titles, f"best model: {caption}", plain, stage / name)
        lines += figure_md(shown, name, caption, source)

    n = len(m.correct)
    lines += [f"### The {n} correct images perturbed", ""]
    for kind, description in PERTURBATIONS.items():
        p = m.perturbed[kind]
        caption = f"the {n} correct dev images {description}: {p.kept} stay correct"
        titles = image_titles(m.correct, m.y, p.pred)
        figures.image_grid(p.images[m.correct], *titles, f"best model: {caption}", plain, stage / f"{kind}.png")
        lines += figure_md(shown, f"{kind}.png", caption, source)
        if kind == "noise":
            i = m.correct[0]
            figures.side_by_side(
                (m.images[i], p.images[i]),
                (f"predicted {CLASS_NAMES[m.pred[i]]}", f"predicted {CLASS_NAMES[p.pred[i]]}"),
                f"best model: dev image #{i} ({CLASS_NAMES[m.y[i]]}), clean and noisy",
                plain,
                stage / "noisy-example.png",
            )
            lines += figure_md(shown, "noisy-example.png", noisy_caption(m), source)

    flips = {PERTURBATIONS[k]: m.perturbed[k].acc for k in ("vflip", "hflip")}
    figures.noise_curve(m.noise_levels, flips, f"{plain} (seed {SEED})", stage / "noise-curve.png")
    return [
        *lines,
        "### The whole dev set perturbed",
        "",
        f"| perturbation | of the {n} shown, still correct | dev accuracy |",
        "| --- | --- | --- |",
        f"| none | {n} | {m.clean:.4f} |",
        *(f"| {PERTURBATIONS[k]} | {p.kept} | {p.acc:.4f} |" for k, p in m.perturbed.items()),
        "",
        *figure_md(
            shown, "noise-curve.png", "dev accuracy against noise level, flips as lines", f"{source}, seed {SEED}"
        ),  # fmt: skip
        "| noise std (fraction of range) | dev accuracy |",
        "| --- | --- |",
        *(f"| {level} | {acc:.4f} |" for level, acc in m.noise_levels),
        "",
    ]


def answers_md(answered: list[tuple[Question, str]], shown: Shown, document: str) -> list[str]:
    """Section 4: the answers as a table keyed by question number."""
    lines = [
        "## 4. Answers",
        "",
        f"The course's *** questions, answered from the measurements above; `{document}` holds the same as a "
        "LaTeX document. Answers marked **Draft** were drafted from this run's measurements for you to check and "
        "rewrite in your own words.",
        "",
        "| question | answer |",
        "| --- | --- |",
    ]
    for q, answer in answered:
        links = ", ".join(f"[{f}]({f})" for f in q.figures if f in shown)
        lines.append(f"| {q.number} | {'**Draft:** ' * q.draft}{answer}" + (f" ({links})" if links else "") + " |")
    return lines


def render(m: Measurements, stage: Path, answered: list[tuple[Question, str]], document: str) -> tuple[str, Shown]:
    """report.md, and the figures it shows (drawn into `stage`) with their captions and sources."""
    shown: Shown = {}
    lines = [
        "# QuickDraw fruit: report",
        "",
        provenance(m),
        "",
        *curves_section(m, stage, shown),
        *counts_section(m),
        *failures_section(m, stage, shown),
    ]
    return "\n".join(lines + answers_md(answered, shown, document)) + "\n", shown
