"""The write-up's evidence: figures and measured answers to the course's *** questions.

    python -m qd.report --out report                                   # submission/ and the trials under outputs/
    python -m qd.report --out report --submission submission outputs/sweeps sqlite:///outputs/sweeps/convnet.db

Reads the promoted submission (winners.json and the three checkpoints), the winners' training logs
and the sweeps' trials on the winners' data; writes report.md, answers.tex (a LaTeX fragment) and
PNG figures into --out. The same inputs give the same bytes: no timestamps, seeded noise, fixed
figure sizes. The folder is built beside --out and swapped in when complete.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from qd import CLASS_NAMES, IMAGE_SIDE, N_CLASSES
from qd.bundle import MODELS
from qd.checkpoint import load_model
from qd.data import FILES, require_files, standardise
from qd.errors import QDError, exit_on_user_error
from qd.fsutil import atomic_write_text
from qd.predict import predict
from qd.promote import recover, swap_in
from qd.results import collect
from qd.train import configure_cpu

SEED = 0
DPI = 100
N_SHOWN = 10
NOISE = 0.1  # the course's noise: std one tenth of each image's value range
NOISE_LEVELS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
FLIPS = {"vflip": "flipped vertically", "hflip": "flipped horizontally"}
Answer = tuple[str, str, str | None]  # question number, measured answer, figure file or None
Section = tuple[list[str], list[Answer]]  # report.md lines, answers


def load_winners(submission: Path) -> dict[str, dict]:
    """The winners.json of a promoted submission, with a record for each of the three models."""
    path = submission / "winners.json"
    if not path.is_file():
        missing = submission if not submission.is_dir() else path
        raise QDError(f"{missing}: not found; run `python -m qd.promote --out {submission}` first")
    try:
        winners = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise QDError(f"{path}: not valid JSON ({e}); run `python -m qd.promote --out {submission}` again") from None
    missing_models = [m for m in MODELS if m not in winners]
    if missing_models:
        raise QDError(f"{path}: no winner for {', '.join(missing_models)}; run `python -m qd.promote` first")
    return winners


def _show(path: str | Path) -> str:
    """A path relative to the current folder when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _trial(record: dict) -> str:
    return f"{record['model']} study {record.get('study')} trial {record.get('trial')}"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path, title: str, source: str) -> None:
    """Title on top, where the figure came from at the bottom; PNG without version metadata."""
    fig.suptitle(title, fontsize=11)
    fig.supxlabel(f"source: {source}", fontsize=7, color="0.35")
    fig.savefig(path, dpi=DPI, metadata={"Software": None})


def _figure_md(name: str, caption: str, source: str) -> list[str]:
    return [f"![{caption}]({name})", "", f"*{caption}. Source: {source}.*", ""]


def curves_figure(record: dict, path: Path) -> pd.DataFrame:
    """Train and dev accuracy against optimisation step from a trial's CSV log; returns the log."""
    log_path = Path(record.get("log", ""))
    if not log_path.is_file():
        raise QDError(f"{log_path}: the training log of {_trial(record)} is missing (winners.json names it)")
    log = pd.read_csv(log_path)
    fig = _figure(7, 4.2)
    ax = fig.subplots()
    ax.plot(log["step"], log["train_acc"], marker="o", ms=3, label="train (sample of 4,000 images)")
    ax.plot(log["step"], log["dev_acc"], marker="o", ms=3, label="dev (all images)")
    ax.axvline(record["best_step"], color="0.6", ls=":", label=f"kept checkpoint (step {record['best_step']})")
    ax.set(xlabel="optimisation step", ylabel="accuracy", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path, f"{_trial(record)}: accuracy against step", f"{_trial(record)}, {_show(log_path)}")
    return log


def lr_figure(trials: list[dict], winner: dict, path: Path) -> None:
    """The dense net's best dev accuracy against learning rate, one point per complete trial."""
    fig = _figure(7, 4.2)
    ax = fig.subplots()
    for study in sorted({t["study"] for t in trials}):
        points = sorted((t["params"]["optimizer.lr"], t["best_dev_acc"]) for t in trials if t["study"] == study)
        ax.plot(*zip(*points, strict=True), marker="o", ls="", label=f"study {study}")
    ax.plot(
        winner["params"]["optimizer.lr"],
        winner["best_dev_acc"],
        marker="*",
        ms=16,
        ls="",
        mfc="none",
        color="crimson",
        label=f"winner: trial {winner.get('trial')}",
    )
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="learning rate (optimizer.lr)", ylabel="best dev accuracy", ylim=(0, 1))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    studies = ", ".join(sorted({t["study"] for t in trials}))
    _save(fig, path, "dense net: dev accuracy against learning rate", f"{len(trials)} complete trials of {studies}")


def history_figure(records: list[dict], path: Path) -> list[tuple[str, str, int, float]]:
    """Best-so-far dev accuracy per trial number of complete trials, a line per study.

    Returns (study, model, trials, best dev accuracy) per study."""
    fig = _figure(7, 4.2)
    ax = fig.subplots()
    summary = []
    for study in sorted({r["study"] for r in records if r.get("study")}):
        trials = sorted((r["trial"], r["best_dev_acc"], r["model"]) for r in records if r.get("study") == study)
        numbers, accs = [t[0] for t in trials], [t[1] for t in trials]
        (line,) = ax.step(numbers, np.maximum.accumulate(accs), where="post", label=f"{study} ({trials[0][2]})")
        ax.plot(numbers, accs, marker="o", ms=3, ls="", color=line.get_color(), alpha=0.4)
        summary.append((study, trials[0][2], len(trials), max(accs)))
    ax.set(xlabel="trial number", ylabel="dev accuracy (line: best so far)", ylim=(0, 1))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path, "optimisation history of each study", f"complete trials of {len(summary)} studies")
    return summary


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


def confusion(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Counts (true class, predicted class)."""
    return np.bincount(y * N_CLASSES + pred, minlength=N_CLASSES * N_CLASSES).reshape(N_CLASSES, N_CLASSES)


def confusion_figure(matrix: np.ndarray, source: str, path: Path) -> None:
    """The confusion matrix as a heat map with its counts."""
    fig = _figure(6.5, 5.5)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            str(count),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if count > matrix.max() / 2 else "black",
        )
    ax.set_xticks(range(N_CLASSES), CLASS_NAMES, rotation=30)
    ax.set_yticks(range(N_CLASSES), CLASS_NAMES)
    ax.set(xlabel="predicted class", ylabel="true class")
    _save(fig, path, "best model: confusion matrix on the dev set", source)


def perturb(images: np.ndarray, kind: str, level: float = NOISE, seed: int = SEED) -> np.ndarray:
    """A float32 copy of raw (N, 28, 28) images: flipped ("vflip", "hflip"), or with Gaussian noise
    ("noise") of standard deviation `level` times each image's value range, drawn from `seed`."""
    x = images.astype(np.float32)
    if kind == "vflip":
        return x[:, ::-1, :]
    if kind == "hflip":
        return x[:, :, ::-1]
    span = x.max(axis=(1, 2), keepdims=True) - x.min(axis=(1, 2), keepdims=True)
    return x + np.random.default_rng(seed).standard_normal(x.shape, dtype=np.float32) * (level * span)


def _latex(text: str) -> str:
    return text.translate({ord(c): f"\\{c}" for c in "%_&#$"})


def _pct(acc: float) -> str:
    return f"{acc:.4f} ({100 * acc:.1f}%)"


def curves_section(winners: dict[str, dict], records: list[dict], sources: list[str], stage: Path) -> Section:
    """Section 1: the winners' learning curves, the dense net's learning rates, each study's history."""
    dense, conv = winners["densenet"], winners["convnet"]
    lines, answers = ["## 1. Curves", ""], []
    for record, question in ((dense, "1.5.11"), (conv, "1.6.5")):
        name = f"{record['model']}-curves.png"
        last = curves_figure(record, stage / name).iloc[-1]
        caption = (
            f"{record['model']}: train and dev accuracy against step; at the last step ({int(last['step'])}) "
            f"train {last['train_acc']:.4f}, dev {last['dev_acc']:.4f}"
        )
        lines += _figure_md(name, caption, f"{_trial(record)}, log `{_show(record['log'])}`")
        answers.append((question, f"{caption}; {_trial(record)}", name))
        if record is dense:
            gap = f"evidence: at the last step the dense net scores train {last['train_acc']:.4f}, dev "
            answers.append(("1.5.12", gap + f"{last['dev_acc']:.4f} ({name})", None))
    complete = [r for r in records if r.get("state") == "complete"]
    lr_trials = [r for r in complete if r["model"] == "densenet" and "optimizer.lr" in (r.get("params") or {})]
    if lr_trials and "optimizer.lr" in (dense.get("params") or {}):
        lr_figure(lr_trials, dense, stage / "densenet-lr.png")
        lines += _figure_md(
            "densenet-lr.png",
            "dense net: best dev accuracy against learning rate (log scale)",
            f"{len(lr_trials)} complete densenet trials with `optimizer.lr`; winner {_trial(dense)}",
        )
    else:
        lines += [
            "No complete densenet sweep trial with `optimizer.lr` among the sources: no learning-rate figure.",
            "",
        ]
    histories = history_figure(complete, stage / "sweep-history.png")
    lines += _figure_md(
        "sweep-history.png",
        "best-so-far dev accuracy against trial number, per study",
        f"complete trials of the studies in {', '.join(f'`{s}`' for s in sources)}",
    )
    lines += ["| study | model | complete trials | best dev accuracy |", "| --- | --- | --- | --- |"]
    lines += [f"| {s} | {m} | {n} | {a:.4f} |" for s, m, n, a in histories] + [""]
    return lines, answers


def counts_section(submission: Path, winners: dict[str, dict], data_dir: Path) -> Section:
    """Section 2: baselines from the label distributions, the dense net's parameters, the winners' settings."""
    dense, conv, best = (winners[m] for m in MODELS)
    lines = [
        "## 2. Counts and baselines",
        "",
        "| quantity | value | from |",
        "| --- | --- | --- |",
        f"| random classifier, expected accuracy | 1/6 = {_pct(1 / N_CLASSES)} | {N_CLASSES} classes |",
    ]
    majority = {}
    for split in ("dev", "train"):
        counts = np.bincount(np.load(data_dir / FILES[split][1]), minlength=N_CLASSES)
        majority[split] = (CLASS_NAMES[counts.argmax()], counts.max() / counts.sum())
        lines.append(
            f"| majority vote ({majority[split][0]}), {split} accuracy | {_pct(majority[split][1])} | "
            f"{split} labels, `{FILES[split][1]}` |"
        )
    dense_model, dense_ckpt = load_model(submission / "densenet.pt", expect="densenet")
    named = list(dense_model.named_parameters())
    weights = " + ".join(f"{p.shape[1]}x{p.shape[0]}" for n, p in named if n.endswith("weight"))
    biases = " + ".join(str(p.numel()) for n, p in named if n.endswith("bias"))
    n_weights = sum(p.numel() for n, p in named if n.endswith("weight"))
    n_biases = sum(p.numel() for n, p in named if n.endswith("bias"))
    dense_cfg = dense_ckpt["meta"]["config"]
    conv_cfg = load_model(submission / "convnet.pt", expect="convnet")[1]["meta"]["config"]
    lr, bs, conv_lr = dense_cfg["optimizer"]["lr"], conv_cfg["train"]["batch_size"], conv_cfg["optimizer"]["lr"]
    best_file = submission / "bestmodel.pt"
    lines += [
        f"| dense net weights | {n_weights:,} ({weights}) | `densenet.pt` |",
        f"| dense net biases | {n_biases:,} ({biases}) | `densenet.pt` |",
        f"| dense net best learning rate | {lr:.4g} | {_trial(dense)}, dev accuracy {dense['best_dev_acc']:.4f} |",
        f"| conv net best batch size | {bs} | {_trial(conv)} |",
        f"| conv net best learning rate | {conv_lr:.4g} | {_trial(conv)} |",
        f"| conv net steps (best dev accuracy at step) | {conv['steps']} ({conv['best_step']}) | {_trial(conv)} |",
        f"| conv net training time | {conv['train_time_s']:.1f} s | {_trial(conv)}, metrics.json |",
        f"| conv net dev accuracy | {conv['best_dev_acc']:.4f} | {_trial(conv)} |",
        f"| best model dev accuracy | {best['best_dev_acc']:.4f} | {_trial(best)} |",
        f"| best model parameters | {best['param_count']:,} | `bestmodel.pt` |",
        f"| best model file size | {best_file.stat().st_size:,} bytes | `{_show(best_file)}` |",
        "",
    ]
    optimizer = dense_cfg["optimizer"]["_target_"].rsplit(".", 1)[-1]
    answers = [
        ("1.5.8a", f"{100 / N_CLASSES:.0f}% (1/6 = {1 / N_CLASSES:.4f})", None),
        (
            "1.5.8b",
            f"{100 * majority['dev'][1]:.0f}% (majority class {majority['dev'][0]}: {majority['dev'][1]:.4f} "
            f"of the dev labels; train {majority['train'][1]:.4f})",
            None,
        ),
        ("1.5.9a", f"{n_weights:,} weights ({weights})", None),
        ("1.5.9b", f"{n_biases:,} biases ({biases})", None),
        (
            "1.5.10",
            f"learning rate {lr:.4g} ({optimizer}, batch size {dense_cfg['train']['batch_size']}, "
            f"{dense['steps']} steps): dev accuracy {dense['best_dev_acc']:.4f}, {_trial(dense)}",
            None,
        ),
        (
            "1.6.2",
            f"evidence: dense net {sum(p.numel() for _, p in named):,} parameters, dev accuracy "
            f"{dense['best_dev_acc']:.4f}; conv net {conv['param_count']:,} parameters, dev accuracy "
            f"{conv['best_dev_acc']:.4f}",
            None,
        ),
        (
            "1.6.6",
            f"batch size {bs}, learning rate {conv_lr:.4g}, {conv['steps']} steps (best dev accuracy at step "
            f"{conv['best_step']}), training took {conv['train_time_s']:.1f} s",
            None,
        ),
        ("1.6.7", f"{conv['best_dev_acc']:.4f} dev accuracy (conv net, {_trial(conv)})", None),
    ]
    return lines, answers


def _captions(rows: np.ndarray, y: np.ndarray, pred: np.ndarray) -> tuple[list[str], list[str]]:
    """`#index true X / pred Y` per image, green when right, red when wrong."""
    titles = [f"#{i} true {CLASS_NAMES[y[i]]}\npred {CLASS_NAMES[pred[i]]}" for i in rows]
    return titles, ["darkgreen" if y[i] == pred[i] else "crimson" for i in rows]


def failures_section(submission: Path, best: dict, data_dir: Path, stage: Path) -> Section:
    """Section 3: the best model's errors, confusion matrix, and robustness to noise and flips on the dev set."""
    model, ckpt = load_model(submission / "bestmodel.pt", expect="bestmodel")
    images = np.load(data_dir / FILES["dev"][0]).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    y = np.load(data_dir / FILES["dev"][1]).astype(np.int64)
    pred = predict(model, standardise(images))
    right = pred == y
    clean = float(right.mean())
    correct, wrong = np.flatnonzero(right)[:N_SHOWN], np.flatnonzero(~right)[:N_SHOWN]
    source = f"{_trial(best)}, `{_show(submission / 'bestmodel.pt')}` on `{_show(data_dir / FILES['dev'][0])}`"
    plain = source.replace("`", "")
    matrix = confusion(y, pred)
    confusion_figure(matrix, plain, stage / "confusion.png")
    off = matrix * (1 - np.eye(N_CLASSES, dtype=matrix.dtype))
    true, taken = np.unravel_index(off.argmax(), off.shape)
    worst = f"{CLASS_NAMES[true]} taken for {CLASS_NAMES[taken]} ({off.max()} of {(~right).sum()} errors)"
    lines = [
        "## 3. Failure modes of the best model",
        "",
        f"Dev accuracy {_pct(clean)} on {len(y):,} images; the most frequent confusion: {worst}.",
        "",
        *_figure_md("confusion.png", "confusion matrix of the best model on the dev set", source),
        "| true \\ predicted | " + " | ".join(CLASS_NAMES) + " |",
        "| --- " * (N_CLASSES + 1) + "|",
        *(f"| {CLASS_NAMES[i]} | " + " | ".join(str(c) for c in row) + " |" for i, row in enumerate(matrix)),
        "",
        f"### The first {N_SHOWN} correct and {N_SHOWN} wrong dev images",
        "",
    ]
    for name, rows, what in (("correct.png", correct, "correctly"), ("wrong.png", wrong, "wrongly")):
        caption = f"the first {len(rows)} {what} classified dev images (dev index, true, predicted class)"
        image_grid(images[rows], *_captions(rows, y, pred), f"best model: {caption}", plain, stage / name)
        lines += _figure_md(name, caption, source)

    lines += [f"### The {len(correct)} correct images perturbed", ""]
    kinds = {"noise": f"with Gaussian noise of std {NOISE} of each image's range (seed {SEED})", **FLIPS}
    outcome = {}
    for kind, description in kinds.items():
        changed = perturb(images, kind)
        p = predict(model, standardise(changed))
        outcome[kind] = (int((p[correct] == y[correct]).sum()), float((p == y).mean()))
        caption = f"the {len(correct)} correct dev images {description}: {outcome[kind][0]} stay correct"
        image_grid(changed[correct], *_captions(correct, y, p), f"best model: {caption}", plain, stage / f"{kind}.png")
        lines += _figure_md(f"{kind}.png", caption, source)
        if kind == "noise":
            noisy_caption = noisy_example(images, changed, correct[0], y, pred, p, plain, stage / "noisy-example.png")
            lines += _figure_md("noisy-example.png", noisy_caption, source)

    measured = {0.0: clean, NOISE: outcome["noise"][1]}  # the same images and seed: not predicted again
    for lv in NOISE_LEVELS:
        if lv not in measured:
            measured[lv] = float((predict(model, standardise(perturb(images, "noise", lv))) == y).mean())
    levels = [(lv, measured[lv]) for lv in NOISE_LEVELS]
    noise_curve_figure(levels, {k: outcome[k][1] for k in FLIPS}, f"{plain} (seed {SEED})", stage / "noise-curve.png")
    lines += [
        "### The whole dev set perturbed",
        "",
        f"| perturbation | of the {len(correct)} shown, still correct | dev accuracy |",
        "| --- | --- | --- |",
        f"| none | {len(correct)} | {clean:.4f} |",
        *(f"| {kinds[k]} | {n} | {acc:.4f} |" for k, (n, acc) in outcome.items()),
        "",
        *_figure_md("noise-curve.png", "dev accuracy against noise level, flips as lines", f"{source}, seed {SEED}"),
        "| noise std (fraction of range) | dev accuracy |",
        "| --- | --- |",
        *(f"| {lv} | {acc:.4f} |" for lv, acc in levels),
        "",
    ]
    hflip_p = ckpt["meta"]["config"]["augmentation"].get("hflip", {}).get("p", 0.0)
    tta = "; its eval-mode scores average each image and its mirror (tta)" if ckpt["model"].get("tta") else ""
    n = len(correct)
    answers = [
        ("1.8.3", f"the first {n} correctly classified dev images", "correct.png"),
        ("1.8.3", f"the first {len(wrong)} wrongly classified dev images", "wrong.png"),
        ("1.8.4", f"evidence: correct.png, wrong.png, confusion.png; most frequent confusion {worst}", None),
        ("1.8.6", noisy_caption, "noisy-example.png"),
        (
            "1.8.7",
            f"{outcome['noise'][0]} of {n} stay correct under noise; whole dev set "
            f"{outcome['noise'][1]:.4f} (clean {clean:.4f})",
            None,
        ),
        (
            "1.8.10",
            f"{outcome['vflip'][0]} of {n} stay correct flipped vertically; whole dev set "
            f"{outcome['vflip'][1]:.4f} (clean {clean:.4f})",
            None,
        ),
        (
            "1.8.11",
            f"evidence: {outcome['hflip'][0]} of {n} stay correct flipped horizontally; whole dev set "
            f"{outcome['hflip'][1]:.4f} (clean {clean:.4f}); the best model trained with horizontal flips "
            f"at p = {hflip_p}{tta}",
            None,
        ),
    ]
    return lines, answers


def noisy_example(
    images: np.ndarray,
    noisy: np.ndarray,
    i: int,
    y: np.ndarray,
    pred: np.ndarray,
    noisy_pred: np.ndarray,
    source: str,
    path: Path,
) -> str:
    """One dev image clean and noisy side by side, each with its prediction; returns the caption."""
    fig = _figure(6.5, 3.8)
    for ax, img, label in zip(fig.subplots(1, 2), (images[i], noisy[i]), (pred[i], noisy_pred[i]), strict=True):
        ax.imshow(img, cmap="gray", interpolation="nearest")
        ax.set_title(f"predicted {CLASS_NAMES[label]}", fontsize=9)
        ax.axis("off")
    caption = (
        f"dev image #{i} ({CLASS_NAMES[y[i]]}) clean and with noise of std {NOISE} of its range: "
        f"predicted {CLASS_NAMES[noisy_pred[i]]}"
    )
    _save(fig, path, f"best model: dev image #{i} ({CLASS_NAMES[y[i]]}), clean and noisy", source)
    return caption


def noise_curve_figure(levels: list[tuple[float, float]], flips: dict[str, float], source: str, path: Path) -> None:
    """Dev accuracy against noise level, the flips' accuracies as horizontal lines."""
    fig = _figure(7, 4.2)
    ax = fig.subplots()
    ax.plot(*zip(*levels, strict=True), marker="o", label="Gaussian noise")
    for (kind, acc), ls in zip(flips.items(), ("--", "-."), strict=True):
        ax.axhline(acc, color="0.4", ls=ls, label=FLIPS[kind])
    ax.axhline(1 / N_CLASSES, color="0.7", ls=":", label="random classifier")
    ax.set(xlabel="noise std (fraction of each image's value range)", ylabel="dev accuracy", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path, "best model: dev accuracy under perturbation", source)


def _question(answer: Answer) -> tuple:
    """Sort key of a question number like 1.5.8a or 1.8.10."""
    *numbers, last = answer[0].split(".")
    return (*map(int, numbers), int(last.rstrip("ab")), last[-1] if last[-1].isalpha() else "")


def answers_md(answers: list[Answer]) -> list[str]:
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


def answers_tex(answers: list[Answer]) -> str:
    """The answers as a LaTeX itemize keyed by question number, with the figures included."""
    tex = [
        "% qd.report: measured answers to the course's *** questions; the figures lie beside this file",
        r"\begin{itemize}",
    ]
    for q, a, f in answers:
        tex.append(f"  \\item[{q}] {_latex(a)}")
        if f:
            tex.append(f"    \\\\ \\includegraphics[width=0.8\\linewidth]{{{f}}}")
    return "\n".join([*tex, r"\end{itemize}", ""])


def write_report(submission: Path, sources: list[str], out: Path) -> Path:
    """Build report.md, answers.tex and the figures in a folder beside `out`, then swap it in."""
    winners = load_winners(submission)
    data_dir = Path(winners["bestmodel"]["data_dir"]).resolve()
    require_files(data_dir, ("train", "dev"))
    found = {(r.get("study"), r.get("trial"), r.get("job_dir")): r for r in collect(sources)}
    records = [r for r in found.values() if str(Path(r.get("data_dir", "/nonexistent")).resolve()) == str(data_dir)]
    recover(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        lines = [
            "# QuickDraw fruit: report",
            "",
            f"Submission `{_show(submission)}` (winners.json), data `{_show(data_dir)}`, trials from "
            f"{', '.join(f'`{s}`' for s in sources)}: {len(records)} on this data ({len(found) - len(records)} "
            "on other data left out).",
            "",
        ]
        answers = []
        for section_lines, section_answers in (
            curves_section(winners, records, sources, stage),
            counts_section(submission, winners, data_dir),
            failures_section(submission, winners["bestmodel"], data_dir, stage),
        ):
            lines += section_lines
            answers += section_answers
        answers.sort(key=_question)
        atomic_write_text(stage / "report.md", "\n".join(lines + answers_md(answers)) + "\n")
        atomic_write_text(stage / "answers.tex", answers_tex(answers))
        swap_in(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out / "report.md"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qd.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="*", default=["outputs"], help="sweep folders or storage URLs (outputs/)")
    parser.add_argument("--out", type=Path, default=Path("report"), help="the report folder (report/)")
    parser.add_argument("--submission", type=Path, default=Path("submission"), help="the promoted submission")
    args = parser.parse_args(argv)
    configure_cpu()
    with exit_on_user_error():
        path = write_report(args.submission, args.sources, args.out)
    print(f"wrote {path} and its figures")


if __name__ == "__main__":
    main()
