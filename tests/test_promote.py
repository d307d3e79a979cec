"""Promotion end to end: tiny real sweeps of the three models, then the verified submission."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, digest, json_error, metrics_under, run_cli, run_here, study_trials
from qd.core.checkpoint import read_checkpoint, save_checkpoint
from qd.core.errors import QDError
from qd.core.models import build_model
from qd.deliver.bundle import DELIVERABLES, core_modules
from qd.deliver.promote import promote
from qd.experiment.results import collect

pytestmark = pytest.mark.slow


def test_promotion_picks_the_verified_winners_and_writes_every_deliverable(swept, submission, swept_data, tmp_path):
    out = submission
    winners = json.loads((out / "winners.json").read_text())
    records = metrics_under(swept / "outputs")
    for model in ("densenet", "convnet", "bestmodel"):
        complete = [r for r in records if r["model"] == model and r["state"] == "complete"]
        assert winners[model]["best_dev_acc"] == max(r["best_dev_acc"] for r in complete), model
        assert winners[model]["job_dir"] in {r["job_dir"] for r in complete}
        assert (out / f"{model}.pt").read_bytes() == Path(winners[model]["checkpoint"]).read_bytes()
    for name in ("densenet_predictions.csv", "convnet_predictions.csv", "best_model_predictions.csv"):
        lines = (out / name).read_text().splitlines()
        assert len(lines) == 600 and set(lines) <= set("012345")
    readme = (out / "README.md").read_text()
    assert "# Best model" in readme and f"{winners['bestmodel']['best_dev_acc']:.4f}" in readme
    # The layer table of the 8-wide best model (TINY_BEST), its total as training counted it.
    conv = "`Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)`"
    assert f"\n| features.0 | {conv} | 1 x 8 x 28 x 28 | {8 * 9} |\n" in readme
    assert "\n| classifier.1 | `Linear(in_features=32, out_features=6, bias=True)` | 1 x 6 | 198 |\n" in readme
    assert f"\n| total | | | {winners['bestmodel']['param_count']:,} |\n" in readme
    with zipfile.ZipFile(out / "YOURJHIDHERE_code.zip") as z:
        names = set(z.namelist())
    assert all("/" not in n for n in names)
    assert set(DELIVERABLES) | {"accuracies.py", "main_densenet.py", "main_convnet.py", "main_bestmodel.py"} <= names
    assert names - set(DELIVERABLES) == {p.name for p in core_modules()} | {
        "main_densenet.py", "main_convnet.py", "main_bestmodel.py"}  # fmt: skip
    assert not [n for n in names if n.endswith(".npy")]

    promote([str(swept / "outputs")], tmp_path / "again", swept_data, any_settings=True)
    assert digest(tmp_path / "again") == digest(out), "promoting twice from the same sweeps gives identical files"


def test_refusals_leave_the_previous_submission_untouched(swept, swept_data, tmp_path):
    out = tmp_path / "submission"
    promote([str(swept / "outputs")], out, swept_data, any_settings=True)
    before = digest(out)

    with pytest.raises(QDError, match="no complete, verifiable candidate on .* for densenet, convnet, bestmodel"):
        (tmp_path / "empty").mkdir()
        promote([str(tmp_path / "empty")], out, swept_data, any_settings=True)
    assert digest(out) == before

    # A best model whose checkpoint is over 1 MB.
    fake = tmp_path / "outputs/big/0"
    best = next(r for r in collect([str(swept / "outputs")]) if r["model"] == "bestmodel" and r["state"] == "complete")
    meta = read_checkpoint(best["checkpoint"])["meta"]
    big_cfg = {"name": "bestmodel", "width": 64, "depth": 2, "dropout": 0.0}
    save_checkpoint(fake / "bestmodel.pt", build_model(big_cfg), big_cfg, {**meta, "dev_acc": 0.999})
    record = {**best, "best_dev_acc": 0.999, "checkpoint": str(fake / "bestmodel.pt"), "job_dir": str(fake),
              "trial": 99}  # fmt: skip
    (fake / "metrics.json").write_text(json.dumps(record))
    sources = [str(swept / "outputs"), str(tmp_path / "outputs")]
    with pytest.raises(
        QDError,
        match=r"bestmodel: study best trial 99, .*: checkpoint is [\d,]+ bytes; the course allows at most 1,000,000",
    ):
        promote(sources, out, swept_data, any_settings=True)
    assert digest(out) == before

    # A checkpoint whose recorded accuracy does not reproduce.
    shutil.copyfile(best["checkpoint"], fake / "bestmodel.pt")
    ckpt_meta = read_checkpoint(fake / "bestmodel.pt")
    ckpt_meta["meta"]["dev_acc"] = 0.999
    model = build_model(ckpt_meta["model"])
    model.load_state_dict(ckpt_meta["state_dict"], strict=True)
    save_checkpoint(fake / "bestmodel.pt", model, ckpt_meta["model"], ckpt_meta["meta"], half=True)
    with pytest.raises(QDError, match=r"bestmodel.pt: reloaded, scores 0\.\d+ on dev, not the recorded 0\.999000"):
        promote(sources, out, swept_data, any_settings=True)
    assert digest(out) == before
    assert not list(tmp_path.glob(".submission.*")), "no staging folder left behind"


@pytest.mark.heavy
def test_two_promotions_into_one_folder_take_turns_and_a_damaged_winners_list_is_one_line(swept, swept_data,
                                                                                             tmp_path):  # fmt: skip
    """Two promotions started at once: the second waits for the first (its clean-up would remove the first's
    staging folder), both end whole. Then a winners.json cut short: promoting one model (which keeps the others
    from it) is one line, the submission as it was; promoting all three writes it anew."""
    argv = [sys.executable, "-m", "qd", "promote", str(swept / "outputs"), "--any-settings", "--data-dir",
            str(swept_data)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    both = [subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=600) for p in both]
    assert [p.returncode for p in both] == [0, 0], [err for _, err in outputs]
    waiting = "waiting: another process is replacing a folder beside submission (a promotion?)"
    assert sum(waiting in out.splitlines() for out, _ in outputs) == 1, outputs
    assert not list(tmp_path.glob(".submission.*")), "no staging folder left behind"
    out = tmp_path / "submission"
    winners = out / "winners.json"
    winners.write_text(winners.read_text()[:100])
    before = digest(out)
    one = run_here([*argv[1:], "--models", "densenet"], tmp_path)
    assert (one.returncode, one.stderr.splitlines()[-1:]) == (2, [
        f"error: submission/winners.json: damaged (not complete JSON ({json_error(winners.read_text())})); expected "
        "the previous submission's winners: promote every model (--models densenet,convnet,bestmodel) to write it "
        "anew"]), one.stderr  # fmt: skip
    assert digest(out) == before
    assert run_here(argv[1:], tmp_path).returncode == 0 and json.loads(winners.read_text()).keys() == {
        "densenet", "convnet", "bestmodel"}  # fmt: skip


@pytest.mark.heavy
def test_code_zip_runs_where_only_torch_and_numpy_are_installed(submission, swept_data, tmp_path):
    out = submission
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [venv / "bin/pip", "install", "-q", "--no-compile", "torch==2.13.0", "numpy==2.4.6"],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr
    unpacked = tmp_path / "grader"
    with zipfile.ZipFile(out / "YOURJHIDHERE_code.zip") as z:
        z.extractall(unpacked)
    (unpacked / "datasets").symlink_to(swept_data)
    for model, predictions in (("densenet", "densenet_predictions.csv"), ("convnet", "convnet_predictions.csv"),
                               ("bestmodel", "best_model_predictions.csv")):  # fmt: skip
        command = [venv / "bin/python", f"main_{model}.py", "--mode", "predict", "--dataDir", "datasets",
                   "--weights", f"{model}.pt", "--predictionsFile", f"again_{predictions}"]  # fmt: skip
        result = subprocess.run(command, cwd=unpacked, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert (unpacked / f"again_{predictions}").read_bytes() == (out / predictions).read_bytes()
    train = [venv / "bin/python", "main_bestmodel.py", "--mode", "train", "--LR", "0.01", "--bs", "50", "--epochs", "5"]
    result = subprocess.run(train, cwd=unpacked, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (unpacked / "model_files/bestmodel.pt").is_file()
    check = subprocess.run([venv / "bin/python", "-c", "import hydra"], capture_output=True, text=True)
    assert "No module named 'hydra'" in check.stderr


def test_a_moved_outputs_folder_still_promotes(swept, swept_data, submission, tmp_path):
    moved = tmp_path / "elsewhere" / "outputs"
    shutil.copytree(swept / "outputs", moved)
    promote([str(moved)], tmp_path / "submission", swept_data, any_settings=True)
    winners = json.loads((tmp_path / "submission" / "winners.json").read_text())
    assert all(Path(w["checkpoint"]).is_relative_to(moved) for w in winners.values()), "the records follow the move"
    assert digest(tmp_path / "submission").keys() == digest(submission).keys()
    for name in ("densenet.pt", "convnet.pt", "bestmodel.pt", "best_model_predictions.csv"):
        assert (tmp_path / "submission" / name).read_bytes() == (submission / name).read_bytes()
    mode = (tmp_path / "submission").stat().st_mode & 0o777
    assert oct(mode) == oct(0o777 & ~current_umask()), "a folder with ordinary permissions"


def test_a_moved_project_lists_each_trial_once_and_promotes_from_its_moved_data(course_dir, tmp_path):
    """A project with its data inside, swept, then moved whole: its study's job folders and its records' data folder
    follow it (no trial listed twice, once unreadable; no hint naming the old folder)."""
    project = tmp_path / "project"
    shutil.copytree(course_dir, project / "data")
    sweep = [
        str(ROOT / "main_densenet.py"),
        "-m",
        "data.dir=data",
        "train.steps=20",
        "train.eval_every=10",
        "+sweep=densenet_lr",
        "hydra.sweeper.n_trials=2",
        "optimizer.lr=tag(log, interval(1e-4, 1e-2))",
    ]
    assert run_here(sweep, project).returncode == 0
    moved = tmp_path / "moved"
    project.rename(moved)
    listed = run_here(["-m", "qd", "results", "outputs/sweeps", "sqlite:///outputs/sweeps/densenet_lr.db"], moved)
    assert (listed.returncode, listed.stderr) == (0, ""), listed.stderr
    assert listed.stdout.startswith("trained on data: 2 jobs, model densenet, study densenet_lr-"), listed.stdout
    promoted = run_here(["-m", "qd", "promote", "--models", "densenet", "--any-settings", "--data-dir", "data"], moved)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "densenet: 2 candidates, 2 eligible, 0 skipped" in promoted.stdout


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_a_trial_named_by_its_folder_and_by_its_study_counts_once(swept, swept_data, tmp_path):
    storage = f"sqlite:///{swept}/outputs/sweeps/best.db"
    promote([str(swept / "outputs"), storage], tmp_path / "submission", swept_data, any_settings=True)
    readme = (tmp_path / "submission" / "README.md").read_text()
    tried = "\n2 trials on the winner's data for its 20 steps: 2 complete, 0 did not train, 0 pruned early, 0 failed.\n"
    assert tried in readme, "the study holds 2"
    assert len(re.findall(r"^\| study best trial \d \| complete \|", readme, re.M)) == 2


@pytest.mark.heavy
def test_a_course_run_winner_is_named_by_its_files_and_short_trials_are_no_evidence_beside_it(
    swept, swept_data, tmp_path
):
    """The best model trained by the course command line (200 steps) beside the 20-step trials of a sweep (a
    demo's scale): its README names the run, and its tables and measured effects leave the short trials out."""
    course = [str(ROOT / "main_bestmodel.py"), "--mode", "train", "--dataDir", str(swept_data), "--LR", "0.01",
              "--bs", "100", "--epochs", "200"]  # fmt: skip
    trained = run_cli(course, tmp_path)
    assert trained.returncode == 0, trained.stderr
    (run,) = (tmp_path / "model_files").glob("*_bestmodel.pt")
    winners = promote([str(swept / "outputs"), str(tmp_path / "model_files")], tmp_path / "submission", swept_data,
                      models=("bestmodel",), any_settings=True)  # fmt: skip
    assert winners["bestmodel"]["run"] == run.stem, "200 steps beat 20"
    readme = (tmp_path / "submission" / "README.md").read_text()
    assert re.search(rf"^Dev accuracy \*\*0\.\d{{4}}\*\* \(run {run.stem}\), ", readme, re.M), readme
    assert "\n1 trial on the winner's data for its 200 steps: 1 complete, 0 did not train, 0 pruned early, 0 failed " \
           "(left out: 2 trained for another number of steps than their model's winner (bestmodel: 20 against " \
           "200)).\n" in readme  # fmt: skip
    assert re.findall(r"^\| (.*?) \| complete \|", readme, re.M) == [f"run {run.stem}"]
    assert "None" not in readme and "\n### " not in readme, "no effect measured from the short trials"


def test_densenet_follows_course_rule_1_5_7_models_promote_alone_and_course_runs_are_candidates(
    swept, swept_data, tmp_path
):
    def promote_cli(*args):
        return run_here(["-m", "qd", "promote", "--data-dir", str(swept_data), *args], tmp_path)

    outputs = str(swept / "outputs")
    partial = promote_cli(outputs)
    assert partial.returncode == 0, partial.stderr
    lines = partial.stdout.splitlines()
    assert re.fullmatch(
        r"densenet: 5 candidates, 0 eligible, 5 skipped: 5 differ from the course defaults in more than the learning "
        r"rate, which course question 1\.5\.7 asks for \(--any-settings lifts the rule\) \(first study \S+ trial "
        r"\d: train\.steps: 2000 -> 20\)",
        lines[0],
    ), lines[0]  # the settings once, with the first's
    assert lines[1:3] == [
        "convnet: 2 candidates, 2 eligible, 0 skipped",
        "bestmodel: 2 candidates, 2 eligible, 0 skipped",
    ], lines
    assert "densenet: no eligible candidate; not in the submission" in lines
    files = {p.name for p in (tmp_path / "submission").iterdir()}
    assert files == {"convnet.pt", "convnet_predictions.csv", "bestmodel.pt", "best_model_predictions.csv",
                     "README.md", "winners.json"}, "no densenet, and no code zip without it"  # fmt: skip
    before = digest(tmp_path / "submission")

    required = promote_cli(outputs, "--require-all")
    assert required.returncode == 2
    assert required.stderr.splitlines()[-1] == (
        f"error: no complete, verifiable candidate on {swept_data} for densenet; sweep or train those models first "
        "(the lines above say why their candidates were skipped)")  # fmt: skip
    assert digest(tmp_path / "submission") == before

    course = [str(ROOT / "main_densenet.py"), "--mode", "train", "--dataDir", str(swept_data), "--LR", "0.001",
              "--bs", "100", "--epochs", "2000"]  # fmt: skip
    assert run_cli(course, tmp_path).returncode == 0
    alone = promote_cli(outputs, "--runs", "model_files", "--models", "densenet")
    assert alone.returncode == 0, alone.stderr
    run_dir = tmp_path / "model_files"
    line = r"^densenet: run \d{12}_densenet, dev accuracy 0\.\d{4}, params \[.*'optimizer.lr=0.001'.*\], "
    assert re.search(line + re.escape(str(run_dir)) + "$", alone.stdout, re.M), alone.stdout
    assert "convnet: kept from the previous submission" in alone.stdout
    after = digest(tmp_path / "submission")
    kept = set(before) - {"winners.json"}
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}, "the other models' files are kept as they were"
    (trained,) = run_dir.glob("*_densenet.pt")  # the course's date-prefixed name
    assert (tmp_path / "submission/densenet.pt").read_bytes() == trained.read_bytes()
    assert "YOURJHIDHERE_code.zip" in after, "the three models are there: the code zip is written"
    winners = json.loads((tmp_path / "submission/winners.json").read_text())
    assert winners["densenet"]["run"] == trained.stem and winners["convnet"]["study"].startswith("convnet-")

    refused = promote_cli("--models", "densenet,resnet")
    assert refused.returncode == 2 and refused.stderr.endswith(
        "error: argument --models: got 'densenet,resnet'; expected a comma-separated list of densenet, convnet, "
        "bestmodel\n")  # fmt: skip


def test_a_completed_trial_whose_record_is_cut_short_stops_promotion_of_its_model(swept_data, tmp_path):
    """The study's best trial's metrics.json cut to 300 bytes: promotion from its folder or from its study names
    it and chooses no winner (exit 2, nothing written); --skip-unreadable promotes the best readable one."""
    sweep = [str(ROOT / "main_densenet.py"), "-m", f"data.dir={swept_data}", "train.steps=20", "train.eval_every=10",
             "+sweep=densenet_lr", "hydra.sweeper.n_trials=3",
             "optimizer.lr=tag(log, interval(1e-4, 1e-2))"]  # fmt: skip
    result = run_here(sweep, tmp_path)
    assert result.returncode == 0, result.stderr
    best, second = sorted(study_trials(tmp_path, "densenet_lr"), key=lambda t: -t.value)[:2]
    record = Path(best.user_attrs["job_dir"], "metrics.json")
    text = record.read_text()[:300]
    record.write_text(text)
    try:
        json.loads(text)
    except ValueError as e:
        why = f"not complete JSON ({e})"
    storage = f"sqlite:///{tmp_path}/outputs/sweeps/densenet_lr.db"
    study = json.loads(Path(second.user_attrs["job_dir"], "metrics.json").read_text())["study"]
    for source, named, scored in (("outputs", f"run {record.parent.name}", ""),
                                  (storage, f"study {study} trial {best.number}",
                                   f" with dev accuracy {best.value:.4f} in its study")):  # fmt: skip
        refused = run_here(["-m", "qd", "promote", source, "--any-settings", "--models", "densenet", "--data-dir",
                           str(swept_data)], tmp_path)  # fmt: skip
        assert refused.returncode == 2 and refused.stderr.splitlines() == [
            f"warning: {record}: unreadable record of {named} ({why})",
            f"error: densenet: {named} may be better than any other candidate: it completed{scored}, but its record "
            f"{record} is unreadable; no winner chosen (--skip-unreadable chooses among the others)",
        ], refused.stderr
        assert not (tmp_path / "submission").exists()
    skipping = run_here(["-m", "qd", "promote", "outputs", "--any-settings", "--models", "densenet", "--data-dir",
                        str(swept_data), "--skip-unreadable"], tmp_path)  # fmt: skip
    assert skipping.returncode == 0, skipping.stderr
    winners = json.loads((tmp_path / "submission/winners.json").read_text())
    assert winners["densenet"]["trial"] == second.number


def test_a_nan_winner_and_a_vanished_winner_stop_promotion_by_name(swept_data, tmp_path):
    """The study's best trial's record says its dev accuracy is NaN: it is unreadable (never a winner), named, and
    stops promotion of its model. Its folder moved away: the default sources (outputs/, with the study databases
    under it) still name it, from its study, instead of promoting the second best without a word."""
    sweep = [str(ROOT / "main_densenet.py"), "-m", f"data.dir={swept_data}", "train.steps=20", "train.eval_every=10",
             "+sweep=densenet_lr", "hydra.sweeper.n_trials=3",
             "optimizer.lr=tag(log, interval(1e-4, 1e-2))"]  # fmt: skip
    assert run_here(sweep, tmp_path).returncode == 0
    best = max(study_trials(tmp_path, "densenet_lr"), key=lambda t: t.value)
    folder = Path(best.user_attrs["job_dir"])
    record = json.loads((folder / "metrics.json").read_text())
    promote_densenet = ["-m", "qd", "promote", "--any-settings", "--models", "densenet", "--data-dir", str(swept_data)]
    named = f"study {record['study']} trial {best.number}"

    (folder / "metrics.json").write_text(json.dumps({**record, "best_dev_acc": float("nan")}))
    listed = run_here(["-m", "qd", "results", "outputs"], tmp_path)
    assert (
        f"warning: {folder}/metrics.json: unreadable record of run {folder.name} (holds dev accuracy nan; "
        "expected a number from 0 to 1)"
        in listed.stderr
        and "COMPLETE  nan" not in listed.stdout
    )
    refused = run_here(promote_densenet, tmp_path)
    assert refused.returncode == 2 and refused.stderr.splitlines()[-1] == (
        f"error: densenet: {named} may be better than any other candidate: it completed with dev accuracy "
        f"{best.value:.4f} in its study, but its record {folder}/metrics.json is unreadable; no winner chosen "
        "(--skip-unreadable chooses among the others)")  # fmt: skip

    shutil.move(folder, tmp_path / "moved away")
    refused = run_here(promote_densenet, tmp_path)
    assert refused.returncode == 2 and refused.stderr.splitlines() == [
        f"warning: {folder}/metrics.json: unreadable record of {named} (missing)",
        f"error: densenet: {named} may be better than any other candidate: it completed with dev accuracy "
        f"{best.value:.4f} in its study, but its record {folder}/metrics.json is unreadable; no winner chosen "
        "(--skip-unreadable chooses among the others)",
    ], refused.stderr
    assert not (tmp_path / "submission").exists()


def test_a_promotion_on_other_data_names_the_data_dir_to_use_and_the_submission_keeps_its_name(
    swept, swept_data, tmp_path
):
    """From the folder above swept_data, without --data-dir (datasets/): nothing promoted, each model's line and the
    error name the data its candidates were on. With that --data-dir and --name jsmith12, a later promotion without
    --name keeps jsmith12_code.zip; another --name replaces it."""
    here = swept_data.parent.parent
    data = str(swept_data.relative_to(here))
    out = tmp_path / "submission"

    def promote_cli(*args):
        return run_here(["-m", "qd", "promote", str(swept / "outputs"), "--any-settings", "--out", str(out), *args],
                       here)  # fmt: skip

    elsewhere = promote_cli()
    assert elsewhere.returncode == 2 and not out.exists()
    assert elsewhere.stdout.splitlines() == [
        f"{model}: {n} candidates, 0 eligible, {n} skipped: {n} trained on {data}. Every complete {model} candidate "
        f"was trained on {data}: add --data-dir {data}" for model, n in (("densenet", 5), ("convnet", 2),
                                                                           ("bestmodel", 2))]  # fmt: skip
    assert elsewhere.stderr == (
        "error: no complete, verifiable candidate on datasets for densenet, convnet, bestmodel: every complete "
        f"candidate was trained on {data}: add --data-dir {data}\n")  # fmt: skip

    named = promote_cli("--data-dir", data, "--name", "jsmith12")
    assert named.returncode == 0, named.stderr
    assert (out / "jhid.txt").read_text() == "jsmith12\n"
    again = promote_cli("--data-dir", data, "--models", "densenet")
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in out.glob("*.zip")) == ["jsmith12_code.zip"]
    assert again.stdout.splitlines()[-1] == (
        f"jsmith12_code.zip: named after {out / 'jhid.txt'}, the JHID of the last --name (--name changes it)"
    )
    renamed = promote_cli("--data-dir", data, "--models", "densenet", "--name", "jdoe_3")
    assert renamed.returncode == 0, renamed.stderr
    assert sorted(p.name for p in out.glob("*.zip")) == ["jdoe_3_code.zip"]
    assert (out / "jhid.txt").read_text() == "jdoe_3\n"
    with zipfile.ZipFile(out / "jdoe_3_code.zip") as z:
        assert "jhid.txt" not in z.namelist()
