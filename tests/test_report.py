"""The report end to end: on the shared tiny sweeps and their submission, report.md, answers.tex and figures."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from conftest import DEV_MAJORITY, TRAIN_MAJORITY, metrics_under, run_cli
from qd.core.checkpoint import load_model
from qd.core.data import CLASS_NAMES, standardise
from qd.core.predict import predict

FIGURES = {  # name: (width, height) in pixels
    "densenet-curves.png": (700, 420),
    "convnet-curves.png": (700, 420),
    "densenet-lr.png": (700, 420),
    "sweep-history.png": (700, 420),
    "confusion.png": (650, 550),
    "correct.png": (900, 530),
    "wrong.png": (900, 530),
    "noise.png": (900, 530),
    "vflip.png": (900, 530),
    "hflip.png": (900, 530),
    "noisy-example.png": (650, 380),
    "noise-curve.png": (700, 420),
}
QUESTIONS = ("1.5.8a", "1.5.8b", "1.5.9a", "1.5.9b", "1.5.10", "1.5.11", "1.5.12", "1.6.2", "1.6.5", "1.6.6",
             "1.6.7", "1.8.3", "1.8.4", "1.8.6", "1.8.7", "1.8.10", "1.8.11")  # fmt: skip


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path.name} is not a PNG"
    return struct.unpack(">II", data[16:24])


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def answers_of(report: str) -> dict[str, list[str]]:
    """Question number -> its answers in the report's answers table (1.8.3 has two)."""
    answers: dict[str, list[str]] = {}
    for question, answer in re.findall(r"^\| (1\.\d+\.\d+[ab]?) \| (.*) \|$", report.split("## 4. Answers")[1], re.M):
        answers.setdefault(question, []).append(answer)
    return answers


def last_log_row(path: str) -> dict[str, float]:
    with open(path) as f:
        return {k: float(v) for k, v in list(csv.DictReader(f))[-1].items()}


def best_complete(records: list[dict], model: str) -> list[dict]:
    """The complete trials of `model` with the highest dev accuracy (several on a tie)."""
    complete = [r for r in records if r["model"] == model and r["state"] == "complete"]
    top = max(r["best_dev_acc"] for r in complete)
    return [r for r in complete if r["best_dev_acc"] == top]


def perturbed(images: np.ndarray) -> dict[str, np.ndarray]:
    """The course's perturbations, as the report documents them: Gaussian noise of std a tenth of each image's
    value range drawn from seed 0 over the whole dev set, and the two flips."""
    x = images.astype(np.float32)
    span = x.max(axis=(1, 2), keepdims=True) - x.min(axis=(1, 2), keepdims=True)
    noise = np.random.default_rng(0).standard_normal(x.shape, dtype=np.float32) * (0.1 * span)
    return {"noise": x + noise, "vflip": x[:, ::-1, :], "hflip": x[:, :, ::-1]}


@pytest.mark.slow
def test_report_answers_match_independent_sources_and_are_deterministic(swept, submission, swept_data, tmp_path):
    args = ["-m", "qd", "report", "--submission", str(submission), str(swept / "outputs")]
    result = run_cli([*args, "--out", str(tmp_path / "report")], tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "report"
    assert sorted(p.name for p in out.iterdir()) == sorted([*FIGURES, "report.md", "answers.tex"])
    report = (out / "report.md").read_text()
    for heading in ("# QuickDraw fruit: report", "## 1. Curves", "## 2. Counts and baselines",
                    "## 3. Failure modes of the best model", "## 4. Answers"):  # fmt: skip
        assert f"\n{heading}\n" in f"\n{report}"
    for name, size in FIGURES.items():
        assert png_size(out / name) == size, name
        assert (out / name).stat().st_size > 5000, name
        assert f"]({name})" in report, f"{name} is not shown in report.md"
    answers = answers_of(report)
    assert sorted(answers) == sorted(QUESTIONS) and len(answers["1.8.3"]) == 2
    answer = {q: a[0] for q, a in answers.items()}

    # Baselines from the labels, counted here; swept_data's majorities are not class 0.
    for split, majority in (("dev", DEV_MAJORITY), ("train", TRAIN_MAJORITY)):
        counts = np.bincount(np.load(swept_data / f"fruit_{'dev_' if split == 'dev' else ''}labels.npy"))
        assert counts.argmax() == majority != 0 and (counts == counts.max()).sum() == 1
        share = counts.max() / counts.sum()
        name = CLASS_NAMES[majority]
        assert f"| majority vote ({name}), {split} accuracy | {share:.4f} ({100 * share:.1f}%) |" in report
        if split == "dev":
            assert answer["1.5.8b"].startswith(f"{100 * share:.0f}% (majority class {name}: {share:.4f} of the dev")
    assert answer["1.5.8a"] == "17% (1/6 = 0.1667)"
    weights, biases = 784 * 100 + 100 * 6, 100 + 6
    assert answer["1.5.9a"] == f"{weights:,} weights (784x100 + 100x6)"
    assert answer["1.5.9b"] == f"{biases} biases (100 + 6)"

    # The winners' settings and accuracies from their metrics.json files, the curves from their CSV logs.
    records = metrics_under(swept / "outputs")
    dense, conv = best_complete(records, "densenet"), best_complete(records, "convnet")
    assert any(answer["1.5.10"].startswith(f"learning rate {r['params']['optimizer.lr']:.4g} (Adam, batch size 100, "
                                           f"{r['steps']} steps): dev accuracy {r['best_dev_acc']:.4f}, densenet study "
                                           f"{r['study']} trial {r['trial']}") for r in dense)  # fmt: skip
    winners = json.loads((submission / "winners.json").read_text())
    for question, model in (("1.5.11", "densenet"), ("1.6.5", "convnet")):
        last = last_log_row(winners[model]["log"])
        expected = (f"{model}: train and dev accuracy against step; at the last step ({int(last['step'])}) train "
                    f"{last['train_acc']:.4f}, dev {last['dev_acc']:.4f}")  # fmt: skip
        assert answer[question].startswith(expected)
        assert answer[question].endswith(f"([{model}-curves.png]({model}-curves.png))")
    assert any(answer["1.6.6"] == f"batch size {r['params']['train.batch_size']}, learning rate "
               f"{r['params']['optimizer.lr']:.4g}, {r['steps']} steps (best dev accuracy at step {r['best_step']}), "
               f"training took {r['train_time_s']:.1f} s" for r in conv)  # fmt: skip
    assert answer["1.6.7"].startswith(f"{conv[0]['best_dev_acc']:.4f} dev accuracy (conv net, convnet study")

    # The best model's answers from its checkpoint's own predictions of the dev images, made here.
    model, _ = load_model(submission / "bestmodel.pt", expect="bestmodel")
    images = np.load(swept_data / "fruit_dev_images.npy")
    y = np.load(swept_data / "fruit_dev_labels.npy")
    right = np.flatnonzero(predict(model, standardise(images)) == y)
    shown = right[:10]
    assert answers["1.8.3"][0].startswith(f"the first {len(shown)} correctly classified dev images")
    outcome = {}
    for kind, changed in perturbed(images).items():
        pred = predict(model, standardise(changed))
        outcome[kind] = (int((pred[shown] == y[shown]).sum()), float((pred == y).mean()), pred)
    clean = len(right) / len(y)
    for question, kind, how in (("1.8.7", "noise", "under noise"), ("1.8.10", "vflip", "flipped vertically"),
                                ("1.8.11", "hflip", "flipped horizontally")):  # fmt: skip
        kept, acc, _ = outcome[kind]
        expected = f"{kept} of {len(shown)} stay correct {how}; whole dev set {acc:.4f} (clean {clean:.4f})"
        assert expected in answer[question], question
    first, noisy = shown[0], outcome["noise"][2][shown[0]]
    assert answer["1.8.6"].startswith(f"dev image #{first} ({CLASS_NAMES[y[first]]}) clean and with noise of std 0.1 "
                                      f"of its range: predicted {CLASS_NAMES[noisy]}")  # fmt: skip

    tex = (out / "answers.tex").read_text()
    assert r"\item[1.5.9a] 79,000 weights" in tex and r"\includegraphics[width=0.8\linewidth]{noisy-example.png}" in tex
    assert r"\item[1.5.8a] 17\% " in tex

    again = run_cli([*args, "--out", str(tmp_path / "again")], tmp_path)
    assert again.returncode == 0, again.stderr
    assert digest(tmp_path / "again") == digest(out), "the same inputs give identical report.md, answers.tex and PNGs"
    assert f"wrote {tmp_path / 'again' / 'report.md'} and its figures" in again.stdout


def test_a_missing_submission_says_to_promote_first(tmp_path):
    for submission, named in ((tmp_path / "nothing", tmp_path / "nothing"), (tmp_path, tmp_path / "winners.json")):
        result = run_cli(["-m", "qd", "report", "--submission", str(submission), "--out", "report", "."], tmp_path)
        assert result.returncode == 2
        assert result.stderr == f"error: {named}: not found; run `python -m qd promote --out {submission}` first\n"
    assert not (tmp_path / "report").exists()
