"""report.md and answers.tex from a `Measurements`: the sections with their figures, and the answers.

A new question is a measured value (measure.py) plus one line in ANSWERS.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from qd.core.data import CLASS_NAMES, FILES, N_CLASSES
from qd.deliver.report import figures
from qd.deliver.report.measure import NOISE, PERTURBATIONS, SEED, Measurements


def show(path: str | Path) -> str:
    """A path relative to the current folder when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def pct(acc: float) -> str:
    return f"{acc:.4f} ({100 * acc:.1f}%)"


def figure_md(name: str, caption: str, source: str) -> list[str]:
    return [f"![{caption}]({name})", "", f"*{caption}. Source: {source}.*", ""]


def latex(text: str) -> str:
    return text.translate({ord(c): f"\\{c}" for c in "%_&#$"})


def image_titles(rows: np.ndarray, y: np.ndarray, pred: np.ndarray) -> tuple[list[str], list[str]]:
    """`#index true X / pred Y` per image, green when right, red when wrong."""
    titles = [f"#{i} true {CLASS_NAMES[y[i]]}\npred {CLASS_NAMES[pred[i]]}" for i in rows]
    return titles, ["darkgreen" if y[i] == pred[i] else "crimson" for i in rows]


# Captions and values that both a section and an answer show.


def last_row(m: Measurements, model: str) -> dict:
    return m.logs[model].iloc[-1]


def curve_caption(m: Measurements, model: str) -> str:
    last = last_row(m, model)
    return (
        f"{model}: train and dev accuracy against step; at the last step ({int(last['step'])}) "
        f"train {last['train_acc']:.4f}, dev {last['dev_acc']:.4f}"
    )


def noisy_caption(m: Measurements) -> str:
    i = m.correct[0]
    return (
        f"dev image #{i} ({CLASS_NAMES[m.y[i]]}) clean and with noise of std {NOISE} of its range: "
        f"predicted {CLASS_NAMES[m.perturbed['noise'].pred[i]]}"
    )


def dense_sizes(m: Measurements) -> tuple[int, str, int, str]:
    """The dense net's weights and biases: counts, and per layer (`784x100 + 100x6`, `100 + 6`)."""
    weights = sum(i * o for i, o in m.dense_weights)
    return (weights, " + ".join(f"{i}x{o}" for i, o in m.dense_weights), sum(m.dense_biases),
            " + ".join(str(b) for b in m.dense_biases))  # fmt: skip


def kept_under(m: Measurements, kind: str, how: str) -> str:
    p = m.perturbed[kind]
    return f"{p.kept} of {len(m.correct)} stay correct {how}; whole dev set {p.acc:.4f} (clean {m.clean:.4f})"


def dense_lr(m: Measurements) -> str:
    cfg, dense = m.configs["densenet"], m.winners["densenet"]
    optimizer = cfg["optimizer"]["_target_"].rsplit(".", 1)[-1]
    return (
        f"learning rate {cfg['optimizer']['lr']:.4g} ({optimizer}, batch size {cfg['train']['batch_size']}, "
        f"{dense['steps']} steps): dev accuracy {dense['best_dev_acc']:.4f}, {m.trial('densenet')}"
    )


def conv_settings(m: Measurements) -> str:
    cfg, conv = m.configs["convnet"], m.winners["convnet"]
    return (
        f"batch size {cfg['train']['batch_size']}, learning rate {cfg['optimizer']['lr']:.4g}, {conv['steps']} steps "
        f"(best dev accuracy at step {conv['best_step']}), training took {conv['train_time_s']:.1f} s"
    )


def parameters_and_accuracy(m: Measurements) -> str:
    weights, _, biases, _ = dense_sizes(m)
    dense, conv = m.winners["densenet"], m.winners["convnet"]
    return (
        f"evidence: dense net {weights + biases:,} parameters, dev accuracy {dense['best_dev_acc']:.4f}; "
        f"conv net {conv['param_count']:,} parameters, dev accuracy {conv['best_dev_acc']:.4f}"
    )


def flips_trained(m: Measurements) -> str:
    hflip_p = m.configs["bestmodel"]["augmentation"].get("hflip", {}).get("p", 0.0)
    tta = "; its eval-mode scores average each image and its mirror (tta)" if m.tta else ""
    return (
        f"evidence: {kept_under(m, 'hflip', 'flipped horizontally')}; the best model trained with horizontal "
        f"flips at p = {hflip_p}{tta}"
    )


# The course template's *** questions in order: number, measured answer, figure shown with it.
ANSWERS: list[tuple[str, Callable[[Measurements], str], str | None]] = [
    ("1.5.8a", lambda m: f"{100 / N_CLASSES:.0f}% (1/6 = {1 / N_CLASSES:.4f})", None),
    ("1.5.8b", lambda m: f"{100 * m.majority['dev'][1]:.0f}% (majority class {m.majority['dev'][0]}: "
                         f"{m.majority['dev'][1]:.4f} of the dev labels; train {m.majority['train'][1]:.4f})", None),
    ("1.5.9a", lambda m: "{:,} weights ({})".format(*dense_sizes(m)[:2]), None),
    ("1.5.9b", lambda m: "{:,} biases ({})".format(*dense_sizes(m)[2:]), None),
    ("1.5.10", dense_lr, None),
    ("1.5.11", lambda m: f"{curve_caption(m, 'densenet')}; {m.trial('densenet')}", "densenet-curves.png"),
    ("1.5.12", lambda m: f"evidence: at the last step the dense net scores train "
                         f"{last_row(m, 'densenet')['train_acc']:.4f}, dev {last_row(m, 'densenet')['dev_acc']:.4f} "
                         "(densenet-curves.png)", None),
    ("1.6.2", parameters_and_accuracy, None),
    ("1.6.5", lambda m: f"{curve_caption(m, 'convnet')}; {m.trial('convnet')}", "convnet-curves.png"),
    ("1.6.6", conv_settings, None),
    ("1.6.7", lambda m: f"{m.winners['convnet']['best_dev_acc']:.4f} dev accuracy (conv net, {m.trial('convnet')})",
     None),
    ("1.8.3", lambda m: f"the first {len(m.correct)} correctly classified dev images", "correct.png"),
    ("1.8.3", lambda m: f"the first {len(m.wrong)} wrongly classified dev images", "wrong.png"),
    ("1.8.4", lambda m: "evidence: correct.png, wrong.png, confusion.png; most frequent confusion "
                        f"{m.worst_confusion}", None),
    ("1.8.6", noisy_caption, "noisy-example.png"),
    ("1.8.7", lambda m: kept_under(m, "noise", "under noise"), None),
    ("1.8.10", lambda m: kept_under(m, "vflip", "flipped vertically"), None),
    ("1.8.11", flips_trained, None),
]  # fmt: skip


# The sections of report.md; each draws its figures into `stage`.


def curves_section(m: Measurements, stage: Path) -> list[str]:
    """Section 1: the winners' learning curves, the dense net's learning rates, each study's history."""
    lines = ["## 1. Curves", ""]
    for model in ("densenet", "convnet"):
        name, log = f"{model}-curves.png", m.winners[model]["log"]
        title, source = f"{m.trial(model)}: accuracy against step", f"{m.trial(model)}, {show(log)}"
        figures.curves(m.logs[model], m.winners[model]["best_step"], title, source, stage / name)
        lines += figure_md(name, curve_caption(m, model), f"{m.trial(model)}, log `{show(log)}`")
    dense, trials = m.winners["densenet"], m.lr_trials
    if trials and "optimizer.lr" in (dense.get("params") or {}):
        studies = ", ".join(sorted({t["study"] for t in trials}))
        figures.learning_rates(trials, dense, f"{len(trials)} complete trials of {studies}", stage / "densenet-lr.png")
        lines += figure_md(
            "densenet-lr.png",
            "dense net: best dev accuracy against learning rate (log scale)",
            f"{len(trials)} complete densenet trials with `optimizer.lr`; winner {m.trial('densenet')}",
        )
    else:
        lines += [
            "No complete densenet sweep trial with `optimizer.lr` among the sources: no learning-rate figure.",
            "",
        ]
    figures.history(m.studies, stage / "sweep-history.png")
    lines += figure_md(
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


def failures_section(m: Measurements, stage: Path) -> list[str]:
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
        *figure_md("confusion.png", "confusion matrix of the best model on the dev set", source),
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
        lines += figure_md(name, caption, source)

    n = len(m.correct)
    lines += [f"### The {n} correct images perturbed", ""]
    for kind, description in PERTURBATIONS.items():
        p = m.perturbed[kind]
        caption = f"the {n} correct dev images {description}: {p.kept} stay correct"
        titles = image_titles(m.correct, m.y, p.pred)
        figures.image_grid(p.images[m.correct], *titles, f"best model: {caption}", plain, stage / f"{kind}.png")
        lines += figure_md(f"{kind}.png", caption, source)
        if kind == "noise":
            i = m.correct[0]
            figures.side_by_side(
                (m.images[i], p.images[i]),
                (f"predicted {CLASS_NAMES[m.pred[i]]}", f"predicted {CLASS_NAMES[p.pred[i]]}"),
                f"best model: dev image #{i} ({CLASS_NAMES[m.y[i]]}), clean and noisy",
                plain,
                stage / "noisy-example.png",
            )
            lines += figure_md("noisy-example.png", noisy_caption(m), source)

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
        *figure_md("noise-curve.png", "dev accuracy against noise level, flips as lines", f"{source}, seed {SEED}"),
        "| noise std (fraction of range) | dev accuracy |",
        "| --- | --- |",
        *(f"| {level} | {acc:.4f} |" for level, acc in m.noise_levels),
        "",
    ]


def answers_md(answers: list[tuple[str, str, str | None]]) -> list[str]:
    """Section 4: the answers as a table keyed by question number."""
    lines = [
        "## 4. Answers",
        "",
        "The course template's *** questions, measured; `answers.tex` holds the same. "
        "Questions that ask for an opinion get the evidence only.",
        "",
        "| question | answer |",
        "| --- | --- |",
    ]
    return lines + [f"| {q} | {a}" + (f" ([{f}]({f}))" if f else "") + " |" for q, a, f in answers]


def answers_tex(answers: list[tuple[str, str, str | None]]) -> str:
    """The answers as a LaTeX itemize keyed by question number, with the figures included."""
    tex = [
        "% qd report: measured answers to the course's *** questions; the figures lie beside this file",
        r"\begin{itemize}",
    ]
    for q, a, f in answers:
        tex.append(f"  \\item[{q}] {latex(a)}")
        if f:
            tex.append(f"    \\\\ \\includegraphics[width=0.8\\linewidth]{{{f}}}")
    return "\n".join([*tex, r"\end{itemize}", ""])


def render(m: Measurements, stage: Path) -> tuple[str, str]:
    """report.md and answers.tex; the figures are drawn into `stage`."""
    lines = [
        "# QuickDraw fruit: report",
        "",
        f"Submission `{show(m.submission)}` (winners.json), data `{show(m.data_dir)}`, trials from "
        f"{', '.join(f'`{s}`' for s in m.sources)}: {len(m.records)} on this data ({m.left_out} "
        "on other data left out).",
        "",
        *curves_section(m, stage),
        *counts_section(m),
        *failures_section(m, stage),
    ]
    answers = [(question, answer(m), figure) for question, answer, figure in ANSWERS]
    return "\n".join(lines + answers_md(answers)) + "\n", answers_tex(answers)
