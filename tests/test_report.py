"""The report end to end: on the shared tiny sweeps and their submission, report.md, answers.tex and figures."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from qd.report import main

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


@pytest.mark.slow
def test_report_answers_the_questions_with_measured_values_and_is_deterministic(
    submission, course_dir, monkeypatch, capsys
):
    workflow = submission.parent
    result = run_cli(["-m", "qd.report", "--out", "report"], workflow)
    assert result.returncode == 0, result.stderr
    out = workflow / "report"
    assert sorted(p.name for p in out.iterdir()) == sorted([*FIGURES, "report.md", "answers.tex"])
    report = (out / "report.md").read_text()
    for heading in ("# QuickDraw fruit: report", "## 1. Curves", "## 2. Counts and baselines",
                    "## 3. Failure modes of the best model", "## 4. Answers"):  # fmt: skip
        assert f"\n{heading}\n" in f"\n{report}"
    for name, size in FIGURES.items():
        assert png_size(out / name) == size, name
        assert (out / name).stat().st_size > 5000, name
        assert f"]({name})" in report, f"{name} is not shown in report.md"

    weights, biases = 784 * 100 + 100 * 6, 100 + 6
    dev_labels = np.load(course_dir / "fruit_dev_labels.npy")
    majority = np.bincount(dev_labels).max() / len(dev_labels)
    assert f"| dense net weights | {weights:,} (784x100 + 100x6) |" in report and weights == 79_000
    assert f"| dense net biases | {biases} (100 + 6) |" in report and biases == 106
    assert f"| majority vote ({'apple'}), dev accuracy | {majority:.4f} " in report
    assert "| random classifier, expected accuracy | 1/6 = 0.1667 (16.7%) |" in report
    answers = report.split("## 4. Answers")[1]
    for question in QUESTIONS:
        assert f"\n| {question} | " in answers, question
    assert f"| 1.5.9a | {weights:,} weights" in answers and f"| 1.5.9b | {biases} biases" in answers
    tex = (out / "answers.tex").read_text()
    assert r"\item[1.5.9a] 79,000 weights" in tex and r"\includegraphics[width=0.8\linewidth]{noisy-example.png}" in tex
    assert r"\item[1.5.8a] 17\% " in tex

    before = digest(out)
    monkeypatch.chdir(workflow)
    main(["--out", "report"])
    assert digest(out) == before, "the same inputs give identical report.md, answers.tex and PNG bytes"
    assert "wrote report/report.md" in capsys.readouterr().out


def test_a_missing_submission_says_to_promote_first(tmp_path, capsys):
    for submission, named in ((tmp_path / "nothing", tmp_path / "nothing"), (tmp_path, tmp_path / "winners.json")):
        with pytest.raises(SystemExit) as exit_info:
            main(["--submission", str(submission), "--out", str(tmp_path / "report"), str(tmp_path)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err == f"error: {named}: not found; run `python -m qd.promote --out {submission}` first\n"
    assert not (tmp_path / "report").exists()
