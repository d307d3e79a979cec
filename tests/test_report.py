"""The report end to end: on the shared tiny sweeps and their submission, report.md, the course's LaTeX document,
its PDF and the figures."""

from __future__ import annotations

import csv
import json
import re
import shutil
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import DEV_MAJORITY, TRAIN_MAJORITY, digest, metrics_under, run_here
from qd.core.checkpoint import load_model
from qd.core.data import CLASS_NAMES, standardise
from qd.core.errors import QDError
from qd.core.predict import predict
from qd.deliver.report.document import COMPILERS, compile_pdf

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
             "1.6.7", "1.8.4a", "1.8.4b", "1.8.6", "1.8.7", "1.8.10", "1.8.11")  # the seed's *** questions  # fmt: skip
DRAFTS = ("1.5.12", "1.6.2", "1.8.4a", "1.8.4b", "1.8.11")
SPECIAL = "_%&#$~^{}\\<>|"  # every character LaTeX treats specially, in folder names the document shows
ESCAPED = (r"\_\%\&\#\$\textasciitilde{}\textasciicircum{}\{\}\textbackslash{}\textless{}\textgreater{}"
           r"\textbar{}")  # fmt: skip
COMPILER = next((name for name in COMPILERS if shutil.which(name)), None)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path.name} is not a PNG"
    return struct.unpack(">II", data[16:24])


def answers_of(report: str) -> dict[str, str]:
    """Question number -> its answer in the report's answers table; each number once."""
    rows = re.findall(r"^\| (1\.\d+\.\d+[ab]?) \| (.*) \|$", report.split("## 4. Answers")[1], re.M)
    assert len(rows) == len({q for q, _ in rows}), "a question answered twice"
    return dict(rows)


def tex_answers(tex: str) -> dict[str, str]:
    """Question number -> what follows its heading in the LaTeX document, up to the next heading."""
    parts = re.split(r"\\(?:sub)?section\*\{([\d.]+[ab]?)[^}]*\}", tex.split(r"\end{document}")[0])
    return dict(zip(parts[1::2], parts[2::2], strict=True))


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
    # The submission and the trials under folder names with every LaTeX special character.
    shutil.copytree(submission, tmp_path / f"sub 50{SPECIAL}")
    (tmp_path / f"trials{SPECIAL}").symlink_to(swept / "outputs")
    args = ["-m", "qd", "report", "--submission", f"sub 50{SPECIAL}", str(tmp_path / f"trials{SPECIAL}"),
            "--name", "jdoe_12"]  # fmt: skip
    result = run_here([*args, "--out", f"report{SPECIAL}"], tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / f"report{SPECIAL}"
    document = ["jdoe_12_hw3_programming.tex", *(["jdoe_12_hw3_programming.pdf"] if COMPILER else [])]
    assert sorted(p.name for p in out.iterdir()) == sorted([*FIGURES, "report.md", *document])
    report = (out / "report.md").read_text()
    for heading in ("# QuickDraw fruit: report", "## 1. Curves", "## 2. Counts and baselines",
                    "## 3. Failure modes of the best model", "## 4. Answers"):  # fmt: skip
        assert f"\n{heading}\n" in f"\n{report}"
    for name, size in FIGURES.items():
        assert png_size(out / name) == size, name
        assert (out / name).stat().st_size > 5000, name
        assert f"]({name})" in report, f"{name} is not shown in report.md"
    answer = answers_of(report)
    assert list(answer) == list(QUESTIONS)
    assert [q for q, a in answer.items() if a.startswith("**Draft:** ")] == list(DRAFTS)

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
    last = {model: last_log_row(winners[model]["log"]) for model in ("densenet", "convnet", "bestmodel")}
    for question, model in (("1.5.11", "densenet"), ("1.6.5", "convnet")):
        expected = (f"{model}: train and dev accuracy against step; at the last step ({int(last[model]['step'])}) "
                    f"train {last[model]['train_acc']:.4f}, dev {last[model]['dev_acc']:.4f}")  # fmt: skip
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
    pred = predict(model, standardise(images))
    shown, wrong = np.flatnonzero(pred == y)[:10], np.flatnonzero(pred != y)[:10]
    outcome = {}
    for kind, changed in perturbed(images).items():
        changed_pred = predict(model, standardise(changed))
        outcome[kind] = (int((changed_pred[shown] == y[shown]).sum()), float((changed_pred == y).mean()), changed_pred)
    clean = float((pred == y).mean())
    for question, kind, how in (("1.8.7", "noise", "under noise"), ("1.8.10", "vflip", "flipped vertically")):
        kept, acc, _ = outcome[kind]
        expected = f"{kept} of {len(shown)} stay correct {how}; whole dev set {acc:.4f} (clean {clean:.4f})"
        assert expected in answer[question], question
    first, noisy = shown[0], outcome["noise"][2][shown[0]]
    assert answer["1.8.6"].startswith(f"dev image #{first} ({CLASS_NAMES[y[first]]}) clean and with noise of std 0.1 "
                                      f"of its range: predicted {CLASS_NAMES[noisy]}")  # fmt: skip

    # The drafts carry this run's numbers, measured here from the sources.
    pairs = Counter((CLASS_NAMES[y[i]], CLASS_NAMES[pred[i]]) for i in wrong)
    assert f"The {len(wrong)} wrong images shown are: " + ", ".join(
        f"{t} taken for {p} ({n})" for (t, p), n in pairs.most_common()) + "." in answer["1.8.4a"]  # fmt: skip
    assert "this run did not measure how hard these drawings are for a person" in answer["1.8.4b"].lower()
    assert ", ".join(f"#{i} {CLASS_NAMES[y[i]]} as {CLASS_NAMES[pred[i]]}" for i in wrong) in answer["1.8.4b"]
    (vkept, vacc, _), (hkept, hacc, _) = outcome["vflip"], outcome["hflip"]
    assert (f"flipped vertically, {vkept} of the {len(shown)} correct images shown stay correct and the accuracy goes "
            f"from {clean:.4f} to {vacc:.4f}; flipped horizontally, {hkept} of {len(shown)} stay correct and the "
            f"accuracy is {hacc:.4f}") in answer["1.8.11"]  # fmt: skip
    dense_last = last["densenet"]
    assert (f"the winning dense net scores {dense_last['train_acc']:.4f} on training images and "
            f"{dense_last['dev_acc']:.4f} on the dev set") in answer["1.5.12"]  # fmt: skip
    assert ("What the records' 2 complete best-model trials on the submitted model's data and number of steps "
            "measured, one setting at a time") in answer["1.5.12"], answer["1.5.12"]  # fmt: skip
    conv_winner = winners["convnet"]
    assert (f"In all the dense net has {weights + biases:,} parameters and the conv net "
            f"{conv_winner['param_count']:,}") in answer["1.6.2"]  # fmt: skip
    assert (f"`Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1))`, has {8 * 9 + 8} parameters for {8 * 26 * 26:,} "
            "outputs (8 x 26 x 26)") in answer["1.6.2"]  # fmt: skip

    # The LaTeX document: every *** question once, under its section, drafts marked, figures present, paths escaped.
    tex = (out / "jdoe_12_hw3_programming.tex").read_text()
    for question in QUESTIONS:
        assert len(re.findall(rf"(?<![\w.]){re.escape(question)}(?!\w)", tex)) == 1, question
    sections = tex_answers(tex)
    assert [k for k in sections if k in QUESTIONS] == list(QUESTIONS)
    assert [k for k in sections if k not in QUESTIONS] == ["1.5", "1.6", "1.8"]
    for question in QUESTIONS:
        marked = r"\textbf{Draft, for you to check and rewrite:}" in sections[question]
        assert marked == (question in DRAFTS), question
    included = re.findall(r"\\includegraphics\[[^]]*\]\{([^}]*)\}", tex)
    assert included and all((out / name).is_file() for name in included), included
    assert {"densenet-curves.png", "convnet-curves.png", "wrong.png", "noisy-example.png"} <= set(included)
    assert r"\author{\studentname \\ JHID: jdoe\_12}" in tex
    assert rf"\texttt{{sub 50{ESCAPED}/\allowbreak{{}}bestmodel.pt}}" in tex
    assert f"trials{ESCAPED}" in tex and SPECIAL not in tex
    if COMPILER:
        pdf = (out / "jdoe_12_hw3_programming.pdf").read_bytes()
        assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
        assert f"compiled report{SPECIAL}/jdoe_12_hw3_programming.pdf with {COMPILER}" in result.stdout.splitlines()
    assert "YOURJHIDHERE" not in result.stdout + tex

    again = run_here([*args, "--out", "again"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert digest(tmp_path / "again") == digest(out), "the same inputs give identical files, the PDF included"
    assert "wrote again/report.md, again/jdoe_12_hw3_programming.tex and the figures" in again.stdout


@pytest.mark.slow
def test_without_a_latex_compiler_the_report_says_how_to_compile(submission, swept, tmp_path):
    no_tools = tmp_path / "bin"
    no_tools.mkdir()
    args = ["-m", "qd", "report", "--submission", str(submission), "--out", "report", str(swept / "outputs")]
    result = run_here(args, tmp_path, env={"PATH": str(no_tools)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [
        "no LaTeX compiler on PATH (pdflatex, tectonic): for YOURJHIDHERE_hw3_programming.pdf, run "
        "`pdflatex YOURJHIDHERE_hw3_programming.tex` in report (Debian: apt-get install texlive-latex-base)",
        "YOURJHIDHERE is the course's placeholder: before upload, put your JHID in its place in "
        "YOURJHIDHERE_hw3_programming.tex and .pdf, or rerun with --name JHID",
    ]
    written = {p.name for p in (tmp_path / "report").iterdir()}
    assert "YOURJHIDHERE_hw3_programming.tex" in written and not [n for n in written if n.endswith(".pdf")]


@pytest.mark.skipif(COMPILER is None, reason="no LaTeX compiler on PATH (apt-get install texlive-latex-base)")
def test_a_document_that_does_not_compile_is_refused_with_the_latex_error(tmp_path):
    (tmp_path / "x.tex").write_text("\\documentclass{article}\n\\begin{document}\n\\nosuchmacro\n\\end{document}\n")
    with pytest.raises(QDError) as refused:
        compile_pdf(tmp_path, "x.tex", Path("report"))
    assert str(refused.value) == (
        f"report/x.tex: {COMPILER} could not compile it (! Undefined control sequence.); nothing written"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tex"], "no PDF, no temporary folder left"


@pytest.mark.parametrize("command", ["report", "promote"])
def test_a_name_that_is_not_a_jhid_is_refused_before_anything_is_written(command, tmp_path):
    result = run_here(["-m", "qd", command, "--name", "j.doe/12", "--out", "out", "."], tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "error: --name: got 'j.doe/12'; expected your JHID: 1 to 64 letters, digits or underscores (e.g. jsmith12)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_missing_submission_says_to_promote_first(tmp_path):
    for submission, named in ((tmp_path / "nothing", tmp_path / "nothing"), (tmp_path, tmp_path / "winners.json")):
        result = run_here(["-m", "qd", "report", "--submission", str(submission), "--out", "report", "."], tmp_path)
        assert result.returncode == 2
        assert result.stderr == f"error: {named}: not found; run `python -m qd promote --out {submission}` first\n"
    assert not (tmp_path / "report").exists()


@pytest.mark.slow
def test_a_folder_without_runs_is_refused_and_the_report_takes_the_submissions_name(
    submission, swept, swept_data, tmp_path
):
    """An empty folder: one line, nothing written. The submission's jhid.txt (promote --name) names the document."""
    shutil.copytree(submission, tmp_path / "submission")
    (tmp_path / "submission/jhid.txt").write_text("jsmith12\n")
    (tmp_path / "empty").mkdir()
    refused = run_here(["-m", "qd", "report", "empty"], tmp_path)
    assert (refused.returncode, refused.stderr) == (2, (
        f"error: empty: no sweep trial or course run on {swept_data}, the submission's data at its winners' number "
        "of steps; expected the folders or storages the submission was promoted from\n"))  # fmt: skip
    assert not (tmp_path / "report").exists()

    no_tools = tmp_path / "bin"
    no_tools.mkdir()
    named = run_here(["-m", "qd", "report", str(swept / "outputs")], tmp_path, env={"PATH": str(no_tools)})
    assert named.returncode == 0, named.stderr
    assert named.stdout.splitlines()[0] == "wrote report/report.md, report/jsmith12_hw3_programming.tex and the figures"
    assert "YOURJHIDHERE" not in named.stdout
