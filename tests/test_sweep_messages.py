"""The sweep layer's own words, as a user sees them in a terminal: one line for each failure, refusal and outcome."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import LEARNING, ROOT, ours, run_here, study_trials
from qd.experiment.app import torch_built_for_gpu
from qd.experiment.outcomes import COMPLETE, DIVERGED, OUTCOME, PRUNED

HYDRA_NOISE = ("Error executing job", "Failed experiment", "HYDRA_FULL_ERROR", "Traceback", "Joblib.Parallel")


def main(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """main_densenet.py with `args`, in `tmp_path`, QD_STORAGE unset."""
    return run_here([str(ROOT / "main_densenet.py"), *args], tmp_path, env={"QD_STORAGE": None})


REFUSALS = [
    (["+sweep=densenet_lr", "hydra.sweeper.storage=sqlite:///x.db?timeout=60"],
     "error: bad override hydra.sweeper.storage=sqlite:///x.db?timeout=60: Hydra's override grammar cannot read it; "
     "a value that holds = ? ( ) [ ] or spaces needs quotes: 'hydra.sweeper.storage=\"sqlite:///x.db?timeout=60\"'"),
    (["optimizer.lr=(1"],
     "error: bad override optimizer.lr=(1: Hydra's override grammar cannot read it; a value that holds = ? ( ) [ ] or "
     "spaces needs quotes: 'optimizer.lr=\"(1\"'"),
    (["+sweep=densenet_lr", "+launcher=slurm"],
     "error: hydra.sweeper.storage: +launcher=slurm records the study in the database QD_STORAGE names, and "
     "QD_STORAGE is not set; export QD_STORAGE=postgresql://user:password@host/database"),
    (["+sweep=densenet_lr", "data.dir={data}", "hydra.sweeper.storage=postgresql://qd:secret@127.0.0.1:1/qd"],
     "error: postgresql://qd:***@127.0.0.1:1/qd: cannot open the study's database (connection to server at "
     "\"127.0.0.1\", port 1 failed: Connection refused); check that the server runs, that host, port and database "
     "are right and that it accepts connections from here"),
    (["+sweep=densenet_lr", "data.dir={data}", "hydra.sweeper.storage=nowhere"],
     "error: hydra.sweeper.storage=nowhere: not a database URL (Could not parse SQLAlchemy URL from string 'nowhere')"),
    (["+sweep=densenet_lr", "data.dir={data}", "pruning=asha"],
     "error: pruning=asha: no such option; expected one of halving, hyperband, median, none"),
    (["+sweep=densenet_lr", "data.dir={data}", "pruning.name=median"],  # as qd spelled it before conf/pruning/
     "error: pruning.name=median: no such setting; did you mean pruning=median?"),
    (["+sweep=densenet_lr", "data.dir={data}", "pruning._target_=optuna.pruners.AshaPruner"],  # once the data is there
     "error: pruning._target_=optuna.pruners.AshaPruner: cannot be found; expected an Optuna pruner, such as "
     "optuna.pruners.MedianPruner (conf/pruning/)"),
    (["+sweep=densenet_lr", "data.dir={data}", "scheduler.name=step"],
     "error: scheduler.name: got 'step'; expected none, cosine or onecycle"),
    (["+sweep=densenet_lr", "data.dir={data}", "+optimizer.eps=-1"],
     "error: optimizer torch.optim.Adam: bad options {'fused': True, 'lr': 0.001, 'weight_decay': 0.0, 'eps': -1}: "
     "Invalid epsilon value: -1"),
    (["+sweep=densenet_lr", "+launcher=parallel", "data.dir={data}", "+optimizer.eps=-1"],  # checked in the workers
     "error: optimizer torch.optim.Adam: bad options {'fused': True, 'lr': 0.001, 'weight_decay': 0.0, 'eps': -1}: "
     "Invalid epsilon value: -1"),
    (["data.prepare=magic"], "error: data.prepare: got 'magic'; expected none, synthetic or real_sample"),
    (["optimizer.lr=abc"], "error: optimizer.lr=abc: expected a number, such as 0.001"),
    (["train.steps=2.5"], "error: train.steps=2.5: expected a whole number, such as 2000"),
    (["+sweep=densenet_lr", "hydra.sweeper.n_trials=two"],
     "error: hydra.sweeper.n_trials=two: Value 'two' of type 'str' could not be converted to Integer"),
    (["train.stpes=50"], "error: train.stpes=50: no such setting; did you mean train.steps?"),
    (["train.device=tpu"], "error: train.device: got 'tpu'; expected auto, cpu, cuda, cuda:N (a GPU's index) or mps"),
    (["+sweep=densenet_lr", "hydra.sweeper.n_trails=3"],
     "error: hydra.sweeper.n_trails=3: no such setting; did you mean hydra.sweeper.n_trials?"),
    (["model=bestmodel"], "error: model=bestmodel: main_densenet.py trains the densenet model; for bestmodel run "
                          "main_bestmodel.py"),
    (["+sweep=densenet_lr", "+launcher=submitit_local"],
     "error: hydra.sweeper.storage: +launcher=submitit_local records the study in the database QD_STORAGE names, "
     "and QD_STORAGE is not set; export QD_STORAGE=postgresql://user:password@host/database"),
    (["+sweep=densenet_lr", "hydra.sweeper.n_trials=20"],
     "error: datasets: the course's data files are not here (fruit_images.npy, fruit_labels.npy, "
     "fruit_dev_images.npy, fruit_dev_labels.npy); to use the 2,400 real drawings qd carries instead, run: python "
     "main_densenet.py +sweep=densenet_lr hydra.sweeper.n_trials=20 -m data=real_sample (with the course's flags: "
     "--dataDir data/real_sample)"),
    (["paths.log_dir=logs"],
     "error: paths.log_dir=logs: paths.* are the course command line's --logDir and --modelSaveDir; a Hydra run "
     "writes its log, checkpoint and record into its own folder: choose it with hydra.run.dir=DIR (a sweep: "
     "hydra.sweep.dir=DIR)"),
    (["+sweep=convnet", "data.dir={data}"],
     "error: +sweep=convnet: a search preset of main_convnet.py; run main_convnet.py +sweep=convnet, or one of "
     "main_densenet.py's: +sweep=densenet_lr"),
    (["+sweep=densenet_lr", "hydra.sweeper.direction=minimize", "data.dir={data}"],
     "error: hydra.sweeper.direction=minimize: qd's jobs return their dev accuracy, which a sweep maximizes; leave "
     "hydra.sweeper.direction as maximize"),
    (["+sweep=densenet_lr", "hydra.sweeper.n_jobs=0", "data.dir={data}"],
     "error: hydra.sweeper.n_jobs=0: expected the number of trials in flight, 1 or more"),
    (["+sweep=densenet_lr", "+launcher=parallel", "hydra.launcher.n_jobs=0", "data.dir={data}"],
     "error: hydra.launcher.n_jobs=0: expected the number of worker processes, 1 or more (or -1 for one a core)"),
    (["+sweep=densenet_lr", "+launcher=parallel", "hydra.sweeper.storage=null", "data.dir={data}"],
     "error: hydra.sweeper.storage=null keeps the study in this process's memory, which the launcher's jobs cannot "
     "reach to report their learning curves; give a database, such as "
     "hydra.sweeper.storage=sqlite:///outputs/sweeps/densenet_lr.db"),
    # A search space Optuna reads: refused while the workers warm on data that is there, and before any is built
    (["+sweep=densenet_lr", "+launcher=parallel", "optimizer.lr=tag(log, interval(0, 1))", "data.dir={data}"],
     "error: optimizer.lr=tag(log, interval(0, 1)): a log scale needs a low above 0"),
    (["+sweep=densenet_lr", "+launcher=parallel", "optimizer.lr=tag(log, interval(0, 1))", "data.prepare=synthetic",
      "data.dir=built"],
     "error: optimizer.lr=tag(log, interval(0, 1)): a log scale needs a low above 0"),
    (["+sweep=densenet_lr", "data.dir={bad}"],
     "error: {bad}/fruit_labels.npy: labels span 0..7; expected integers in 0..5"),
    (["+sweep=densenet_lr", "+launcher=parallel", "data.dir={bad}"],
     "error: {bad}/fruit_labels.npy: labels span 0..7; expected integers in 0..5"),
    (["+sweep=densenet_lr", "data.dir=nowhere"],
     "error: nowhere: missing fruit_images.npy, fruit_labels.npy, fruit_dev_images.npy, fruit_dev_labels.npy; "
     "put the course's five .npy files there, or run `python -m qd data synth --out data/synthetic` (the embedded "
     "synthetic set) or `python -m qd data fetch --out DIR` (real QuickDraw drawings)"),
]  # fmt: skip


@pytest.fixture(scope="module")
def bad_labels(course_dir, tmp_path_factory) -> Path:
    """course_dir with training labels up to 7, for six classes."""
    bad = tmp_path_factory.mktemp("bad") / "data"
    shutil.copytree(course_dir, bad)
    labels = np.load(bad / "fruit_labels.npy")
    labels[:2] = [6, 7]
    np.save(bad / "fruit_labels.npy", labels)
    return bad


@pytest.mark.parametrize("args, expected", REFUSALS, ids=lambda v: str(v)[:40])
def test_a_refused_sweep_or_run_is_one_line_before_any_job_and_writes_nothing(course_dir, bad_labels, tmp_path, args,
                                                                              expected):  # fmt: skip
    result = main(tmp_path, *(a.format(data=course_dir, bad=bad_labels) for a in args), "-m")
    assert result.returncode == 2, result.stderr
    assert result.stderr == expected.replace("{bad}", str(bad_labels)) + "\n"
    assert list(tmp_path.iterdir()) == [], "no outputs, no database"


def test_a_conditional_search_space_is_checked_as_typed_data_before_the_study_opens(course_dir, tmp_path):
    typo = "+search.conditional.optimizer.momentum=[{when: {key: optimizer, values: [sgd]}, lo: 0.8, high: 0.99}]"
    result = subprocess.run([sys.executable, str(ROOT / "main_bestmodel.py"), "+sweep=bestmodel",
                             f"data.dir={course_dir}", typo], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert (result.returncode, result.stderr) == (2, "error: search.conditional.optimizer.momentum[0]: unknown key lo; "
                                                     "expected when, low, high, log or choices\n")  # fmt: skip
    assert list(tmp_path.iterdir()) == [], "no outputs, no database"


@pytest.mark.skipif(torch_built_for_gpu(), reason="a torch built for CUDA or ROCm asks its driver, after its import")
def test_cuda_on_a_cpu_only_torch_is_refused_before_torch_is_imported(tmp_path):
    result = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "main_densenet.py"), "data=real_sample",
                             "train.device=cuda"], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == "error: train.device=cuda: no CUDA device is available; use auto or cpu"
    assert re.findall(r"\|\s+torch$", result.stderr, re.M) == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_every_trial_says_how_it_ended_in_one_line_and_the_sweep_sums_up(course_dir, tmp_path):
    args = ["+sweep=densenet_lr", f"data.dir={course_dir}", "train.steps=30", "train.eval_every=10", "optimizer=sgd",
            "optimizer.lr=choice(0.05, 1e4, 0.000001)", "pruning=median", "pruning.n_startup_trials=1",
            "pruning.n_warmup_steps=0", "hydra.sweeper.sampler.seed=1", "hydra.sweeper.n_trials=4", "-m"]  # fmt: skip
    result = main(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    lines = ours(result.stdout)
    states = {t.number: t.user_attrs.get(OUTCOME, t.state.name.lower()) for t in study_trials(tmp_path, "densenet_lr")}
    assert re.fullmatch(r"new study densenet_lr-[0-9a-f]{8}: 4 trials to run", lines[0]), lines
    for number, state in states.items():
        pattern = {
            COMPLETE: rf"trial {number}: dev accuracy 0\.\d{{4}}",
            DIVERGED: rf"trial {number} diverged: training diverged at step \d+ \(loss [^)]+\); try a smaller "
            "optimizer.lr",
            PRUNED: rf"trial {number} pruned: pruned at step \d+ with dev accuracy 0\.\d{{4}}",
        }[state]
        assert any(re.fullmatch(rf"{pattern} \([1-4] of 4\)", line) for line in lines), (state, lines)
    estimates = [line for line in lines if line.startswith("the rest: ")]  # once, after the first complete trial
    assert len(estimates) == 1 and re.fullmatch(r"the rest: [123] trials?, about \d+ s at 1 in flight", estimates[0])
    counts = {s: list(states.values()).count(s) for s in (COMPLETE, PRUNED, DIVERGED)}
    assert counts[DIVERGED] and counts[COMPLETE], states
    summary = (
        rf"sweep done: 4 trials, {counts[COMPLETE]} complete, {counts[DIVERGED]} diverged, "
        rf"{counts[PRUNED]} pruned, 0 failed; the study's best: trial \d, dev accuracy 0\.\d{{4}}"
    )
    assert re.fullmatch(summary, lines[-1]), lines
    assert not [line for line in result.stdout.splitlines() + result.stderr.splitlines()
                if any(noise in line for noise in HYDRA_NOISE)]  # fmt: skip

    again = main(tmp_path, *args[:-2], "hydra.sweeper.n_trials=5", "-m")
    assert ours(again.stdout)[0] == f"resuming study {lines[0].split()[2][:-1]}: 4 finished trials kept, 1 to run"


def test_a_single_run_says_where_it_wrote_and_m_may_come_last(course_dir, tmp_path):
    single = main(tmp_path, f"data.dir={course_dir}", "train.steps=20")
    assert single.returncode == 0, single.stderr
    (folder,) = (tmp_path / "outputs/runs/densenet").iterdir()
    assert re.fullmatch(rf"densenet: best dev accuracy 0\.\d{{4}} at step 20; wrote {re.escape(str(folder))}\n",
                        single.stdout)  # fmt: skip
    study = r"study densenet_lr-[0-9a-f]{8}"
    for n_trials, started in ((1, rf"new {study}: 1 trial to run"),
                              (2, rf"resuming {study}: 1 finished trials kept, 1 to run")):  # fmt: skip
        last = main(tmp_path, "+sweep=densenet_lr", f"data.dir={course_dir}", "train.steps=20", LEARNING,
                    f"hydra.sweeper.n_trials={n_trials}", "-m")  # fmt: skip
        assert last.returncode == 0, last.stderr
        assert re.fullmatch(started, ours(last.stdout)[0]), last.stdout


def test_the_help_lists_the_sweep_presets_only(tmp_path):
    result = main(tmp_path, "--help")
    assert "sweep: bestmodel, convnet, densenet_lr\n" in result.stdout


def test_results_of_a_study_without_a_complete_trial_and_of_a_missing_database(course_dir, tmp_path):
    failed = main(tmp_path, "+sweep=densenet_lr", f"data.dir={course_dir}", "train.steps=20", "optimizer=sgd",
                  "optimizer.lr=choice(1e4)", "hydra.sweeper.n_trials=2", "-m")  # fmt: skip
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-1].startswith("sweep failed: all 2 trials failed or diverged (training "
                                                     "diverged at step ")  # fmt: skip
    for source in ("sqlite:///outputs/sweeps/densenet_lr.db", "outputs/sweeps"):
        listed = run_here(["-m", "qd", "results", source], tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.endswith("\nno complete trial: 2 failed, diverged, pruned or running\n")
        assert len(re.findall(r" DIVERGED ", listed.stdout)) == 2, listed.stdout
    missing = run_here(["-m", "qd", "results", "sqlite:///outputs/sweeps/nope.db"], tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == ("error: sqlite:///outputs/sweeps/nope.db: no such database file "
                              "(outputs/sweeps/nope.db); expected the storage of a sweep's study\n")  # fmt: skip
    assert not (tmp_path / "outputs/sweeps/nope.db").exists()
