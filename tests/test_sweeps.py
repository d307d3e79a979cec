"""Real Hydra multiruns with the Optuna sweeper, as subprocesses, on a small synthetic set."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import LEARNING, ROOT, run_cli, run_here, study_trials, sweep_metrics
from qd.experiment.outcomes import DIVERGED, FAILED, OUTCOME, REASON
from qd.experiment.results import collect, table

pytestmark = pytest.mark.slow


def sweep(workdir: Path, course_dir: Path, *overrides: str, model: str = "densenet", steps: int = 20):
    """A sweep of `model` on `course_dir`; a dense net's learning rates that never diverge unless `overrides` say."""
    learning = [] if model != "densenet" or any(o.startswith("optimizer") for o in overrides) else [LEARNING]
    args = [str(ROOT / f"main_{model}.py"), "-m", f"data.dir={course_dir}", f"train.steps={steps}",
            "train.eval_every=10", *learning, *overrides]  # fmt: skip
    return run_here(args, workdir)


def test_lr_sweep_finds_a_winner_that_results_reports(course_dir, tmp_path):
    result = sweep(tmp_path, course_dir, "+sweep=densenet_lr", "hydra.sweeper.n_trials=4")
    assert result.returncode == 0, result.stderr
    trials = study_trials(tmp_path, "densenet_lr")
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    records = sweep_metrics(tmp_path)
    assert sorted(r["trial"] for r in records) == [0, 1, 2, 3]
    best = max(records, key=lambda r: r["best_dev_acc"])
    df = table(collect([str(tmp_path / "outputs/sweeps/densenet_lr")]))
    assert df.iloc[0]["trial"] == best["trial"] and df.iloc[0]["job_dir"] == best["job_dir"]
    assert best["best_dev_acc"] == max(t.value for t in trials)
    for r in records:
        trial = trials[r["trial"]]
        assert r["params"] == trial.params and r["best_dev_acc"] == trial.value
        with open(r["log"]) as f:
            logged = {int(row["step"]): float(row["dev_acc"]) for row in csv.DictReader(f)}
        assert trial.intermediate_values == pytest.approx(logged, abs=1e-6), "each evaluation reported to the study"
        assert trial.value == pytest.approx(max(logged.values()), abs=1e-6)
        assert Path(r["checkpoint"]).is_file() and r["state"] == "complete"
    printed = run_here(["-m", "qd", "results", str(tmp_path / "outputs/sweeps")], tmp_path)
    expected = f"best: densenet study {best['study']} trial {best['trial']}, dev accuracy {best['best_dev_acc']:.4f}"
    assert expected in printed.stdout
    served = dashboard_study(tmp_path / "outputs/sweeps/densenet_lr.db")
    assert served["name"] == best["study"] and best["study"].startswith("densenet_lr-")
    assert [(t["number"], t["state"], t["values"]) for t in served["trials"]] == [
        (t.number, "Complete", [t.value]) for t in trials
    ]


def dashboard_study(db: Path) -> dict:
    """The first study in `db` as optuna-dashboard serves it (its JSON API), from a real dashboard process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dashboard = Path(sys.executable).with_name("optuna-dashboard")
    argv = [str(dashboard), f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(port)]
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as server:
        try:
            for _ in range(120):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/1", timeout=5) as reply:
                        return json.load(reply)
                except OSError:
                    time.sleep(0.5)
            raise AssertionError("optuna-dashboard did not answer within 60 s")
        finally:
            server.terminate()


def test_a_killed_sweep_resumes_keeping_completed_trials(course_dir, tmp_path):
    args = [
        str(ROOT / "main_densenet.py"),
        f"data.dir={course_dir}",
        "train.steps=20",
        "train.eval_every=10",
        "+sweep=densenet_lr",
        "hydra.sweeper.n_trials=4",
        LEARNING,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    # Kill once the second job has its folder: the sweeper told the study the first one's outcome before that
    # (a job's metrics.json comes earlier, before the tell).
    deadline = time.time() + 200
    while not list(tmp_path.glob("outputs/sweeps/densenet_lr/*/1")):
        assert time.time() < deadline and proc.poll() is None, "the second job never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = sweep_metrics(tmp_path)
    completed_before = {t.number: t.value for t in study_trials(tmp_path, "densenet_lr") if t.state.name == "COMPLETE"}
    assert 0 in completed_before and len(completed_before) < 4

    interrupted_before = [t for t in study_trials(tmp_path, "densenet_lr") if t.state.name == "RUNNING"]
    assert len(interrupted_before) == 1, "the kill came while a trial ran"
    result = run_here(args, tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"resuming study densenet_lr-\w+: \d finished trials kept, 1 interrupted to run again, \d to run",
                     result.stdout), result.stdout  # fmt: skip
    trials = study_trials(tmp_path, "densenet_lr")
    interrupted = [t for t in trials if t.user_attrs.get(REASON) == "interrupted (its process died)"]
    usable = [t for t in trials if t not in interrupted]
    assert [t.number for t in interrupted] == [interrupted_before[0].number]
    assert len(usable) == 4 and all(t.state.name == "COMPLETE" for t in usable), "4 usable trials, as asked for"
    for number, acc in completed_before.items():
        assert trials[number].state.name == "COMPLETE" and trials[number].value == acc
    learning_rates = [t.params["optimizer.lr"] for t in usable]
    assert interrupted[0].params["optimizer.lr"] in learning_rates, "the interrupted trial ran again, as it was"
    assert len(set(learning_rates)) == 4, f"the resumed sampler proposed a learning rate again: {learning_rates}"
    sweep_dirs = sorted(p for p in (tmp_path / "outputs/sweeps/densenet_lr").iterdir() if p.is_dir())
    assert len(sweep_dirs) == 2, "each invocation has its own folder: nothing overwritten"
    assert all(m in sweep_metrics(tmp_path) for m in first if m["state"] == "complete")

    again = run_here(args, tmp_path)
    assert again.returncode == 0 and "already holds 4 trials of 4; nothing to run" in again.stdout


def test_a_diverging_trial_teaches_the_sampler_and_does_not_end_the_sweep(course_dir, tmp_path):
    """A trial whose settings do not train is recorded diverged, told to the study at chance (1/6) so that the
    sampler learns where training breaks, and counts toward n_trials."""
    result = sweep(
        tmp_path,
        course_dir,
        "+sweep=densenet_lr",
        "hydra.sweeper.n_trials=3",
        "optimizer=sgd",
        "optimizer.lr=choice(0.01, 10000.0)",
    )
    assert result.returncode == 0, result.stderr
    trials = study_trials(tmp_path, "densenet_lr")
    by_lr = {t.params["optimizer.lr"]: t for t in trials}
    assert by_lr[0.01].state.name == "COMPLETE" and OUTCOME not in by_lr[0.01].user_attrs
    diverged = [m for m in sweep_metrics(tmp_path) if m["state"] == "diverged"]
    assert diverged and all("training diverged at step" in m["reason"] for m in diverged)
    for t in (t for t in trials if t.params["optimizer.lr"] == 10000.0):
        assert (t.state.name, t.value, t.user_attrs[OUTCOME]) == ("COMPLETE", 1 / 6, DIVERGED)
        assert t.user_attrs[REASON].startswith("training diverged at step")
    assert re.search(r"^trial \d diverged: training diverged at step \d+ ", result.stdout, re.M), result.stdout


def test_a_sweep_where_every_trial_fails_says_so_in_one_line(course_dir, tmp_path):
    result = sweep(
        tmp_path,
        course_dir,
        "+sweep=densenet_lr",
        "hydra.sweeper.n_trials=2",
        "optimizer=sgd",
        "optimizer.lr=choice(10000.0)",
    )
    assert result.returncode == 1
    ours = [line for line in result.stderr.splitlines() if line.startswith("sweep failed:")]
    assert len(ours) == 1 and ours[0].startswith("sweep failed: all 2 trials failed or diverged (training diverged at")
    assert [t.user_attrs[OUTCOME] for t in study_trials(tmp_path, "densenet_lr")] == [DIVERGED, DIVERGED]


def test_two_joblib_workers_run_the_trials_in_two_worker_processes(course_dir, tmp_path):
    """Two trials in flight at a time, each launched alone: both workers train (no timing assumed). The sweeping
    process trains nothing: it imports neither torch nor the plotting libraries Optuna would load."""
    report = "print('imported:', *sorted({'torch', 'matplotlib', 'pandas', 'sklearn'} & set(sys.modules)))"
    args = ["-c", f"import sys; from qd.main import main; main('densenet', sys.argv[1:]); {report}", "-m",
            f"data.dir={course_dir}", "train.steps=20", "train.eval_every=10", "+sweep=densenet_lr",
            "+launcher=parallel", "hydra.sweeper.n_trials=4", LEARNING]  # fmt: skip
    result = run_cli(args, tmp_path, timeout=400)
    assert result.returncode == 0, result.stderr
    assert len({r["pid"] for r in sweep_metrics(tmp_path)}) == 2, "the trials ran in two worker processes"
    assert "Joblib.Parallel" not in result.stdout + result.stderr, "no line of joblib's per batch"
    assert [t.state.name for t in study_trials(tmp_path, "densenet_lr")] == ["COMPLETE"] * 4
    assert result.stdout.splitlines()[-1] == "imported:"


@pytest.mark.slow
def test_a_parallel_sweep_builds_its_data_before_its_workers_load_it(tmp_path):
    """The workers start early, beside the sweeping process's import of Optuna, only on data that is there: on the
    data's first use they start once it is built (building the synthetic set outlasts their imports)."""
    result = run_cli([str(ROOT / "main_densenet.py"), "-m", "+sweep=densenet_lr",
                      "+launcher=parallel", "data.prepare=synthetic", "data.dir=built", "hydra.sweeper.n_trials=2",
                      LEARNING], tmp_path, env={"QD_QUICK": "1"}, timeout=400)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == "preparing the synthetic data set in built (first use)"
    assert [t.state.name for t in study_trials(tmp_path, "densenet_lr")] == ["COMPLETE"] * 2


def test_the_warmed_workers_are_those_the_parallel_launcher_sends_trials_to(course_dir):
    """qd warms the workers with the launcher's own joblib options: the launcher's batches go to those processes,
    which then hold torch (with torch._dynamo), Optuna without its plotting libraries and the data; stop() ends them."""
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
    from joblib import Parallel, delayed

    from qd.experiment import compat, workers
    from qd.experiment.app import compose_checked
    from qd.experiment.conf import CONF_DIR
    from qd.experiment.identity import job_config
    from qd.experiment.processes import process_alive

    with compat.hydra_app(str(CONF_DIR), "main_densenet") as app:
        overrides = ["+sweep=densenet_lr", "+launcher=parallel", f"data.dir={course_dir}"]
        cfg = compose_checked(app, "densenet", overrides, multirun=True)
    job = job_config(cfg)
    warming = workers.warm(cfg.hydra.launcher, job)
    assert list(warming) == [None, None]
    options = compat.joblib_options(JoblibLauncher(**{k: v for k, v in cfg.hydra.launcher.items()
                                                      if k != "_target_"}).joblib)  # fmt: skip

    def state() -> tuple:
        import os
        import sys

        from qd.core import data

        return os.getpid(), sorted({"torch._dynamo", "optuna", "matplotlib", "pandas"} & set(sys.modules)), data._CACHE

    seen = Parallel(**options)(delayed(state)() for _ in range(4))  # one worker may take all four: no count of pids
    workers.stop(warming)
    assert all(modules == ["optuna", "torch._dynamo"] for _, modules, _ in seen), seen
    assert all(len(cache) == 2 for _, _, cache in seen), "train and dev loaded"
    assert not any(process_alive(pid) for pid, _, _ in seen), "stopped"


def test_a_worker_opens_the_study_database_once_for_all_its_jobs(tmp_path, monkeypatch):
    """Each job is handed its trial's number: a worker's jobs find their trials without a search, on one opening."""
    import optuna
    from omegaconf import OmegaConf

    from qd.experiment.outcomes import JOB_DIR
    from qd.experiment.storage import HeldStorage
    from qd.experiment.trial import JobTrial

    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=storage)
    asked = [study.ask() for _ in range(3)]
    opened, real_init = [], HeldStorage.__init__

    def counted_init(self, url, *args, **kwargs):
        opened.append(url)
        real_init(self, url, *args, **kwargs)

    monkeypatch.setattr(HeldStorage, "__init__", counted_init)
    for number in (2, 0):
        hc = OmegaConf.create({"sweeper": {"study_name": "s", "storage": storage}, "job": {"num": number},
                               "runtime": {"output_dir": str(tmp_path / str(number))}})  # fmt: skip
        assert JobTrial(hc, None).trial.number == number
    assert opened == [storage], "two jobs, one opening"
    trials = optuna.load_study(study_name="s", storage=storage).get_trials()
    assert [t.user_attrs.get(JOB_DIR) for t in trials] == [str(tmp_path / "0"), None, str(tmp_path / "2")]
    assert [t.number for t in asked] == [0, 1, 2]


def test_submitit_local_runs_each_trial_as_its_own_process(course_dir, tmp_path):
    storage = f"sqlite:///{tmp_path}/outputs/sweeps/densenet_lr.db?timeout=60"
    result = sweep(
        tmp_path,
        course_dir,
        "+sweep=densenet_lr",
        "+launcher=submitit_local",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweeper.storage='{storage}'",
    )
    assert result.returncode == 0, result.stderr
    assert [t.state.name for t in study_trials(tmp_path, "densenet_lr")] == ["COMPLETE", "COMPLETE"]
    assert len(list((tmp_path / "outputs/sweeps/densenet_lr").rglob(".submitit/*/*_result.pkl"))) == 2


def test_the_pruner_stops_hopeless_trials_and_the_study_says_pruned(course_dir, tmp_path):
    result = sweep(
        tmp_path,
        course_dir,
        "+sweep=densenet_lr",
        "hydra.sweeper.n_trials=4",
        "optimizer=sgd",
        "optimizer.lr=choice(0.05, 0.000001)",
        "pruning=median",
        "pruning.n_startup_trials=1",
        "pruning.n_warmup_steps=0",
        "hydra.sweeper.sampler.seed=1",  # a good trial first, then bad ones
        steps=60,
    )
    assert result.returncode == 0, result.stderr
    trials = study_trials(tmp_path, "densenet_lr")
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned and all(t.params["optimizer.lr"] == 0.000001 for t in pruned)
    for t in pruned:
        record = json.loads(Path(t.user_attrs["job_dir"], "metrics.json").read_text())
        assert record["state"] == "pruned" and record["reason"].startswith("pruned at step")
        assert max(t.intermediate_values) < 60


def test_a_trial_refused_before_training_fails_with_its_reason_and_leaves_no_record(course_dir, tmp_path):
    result = sweep(tmp_path, course_dir, "+sweep=bestmodel", "hydra.sweeper.n_trials=1", "model.width=choice(48)",
                   "model.depth=choice(3)", "optimizer=sgd", model="bestmodel")  # fmt: skip
    assert result.returncode == 1
    ours = [line for line in result.stderr.splitlines() if line.startswith("sweep failed:")]
    assert len(ours) == 1 and re.fullmatch(
        r"sweep failed: all 1 trial failed \(model \{.*'width': 48, 'depth': 3.*\}: its checkpoint would be "
        r"[\d,]+ bytes; bestmodel allows at most 1,000,000\)", ours[0]), ours  # fmt: skip
    trial = study_trials(tmp_path, "bestmodel")[0]
    assert trial.state.name == "FAIL" and trial.user_attrs[OUTCOME] == FAILED
    assert 0.01 <= trial.params["optimizer.lr"] <= 0.5, "SGD fixed on the command line: SGD's range is searched"
    assert {"optimizer.momentum", "optimizer.weight_decay"} <= trial.params.keys()
    assert sweep_metrics(tmp_path) == [], "a job refused before training writes no record"


def test_a_sweep_of_another_fixed_configuration_is_another_study(course_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(course_dir, data)
    args = ["+sweep=densenet_lr", f"data.dir={data}", "hydra.sweeper.n_trials=1"]
    first = sweep(tmp_path, course_dir, *args)
    longer = sweep(tmp_path, course_dir, *args, steps=30)
    (name,), (other,) = (re.findall(r"^new study (densenet_lr-[0-9a-f]{8}): 1 trial to run$", r.stdout, re.M)
                         for r in (first, longer))  # fmt: skip
    assert name != other

    refused = sweep(tmp_path, course_dir, *args, f"hydra.sweeper.study_name={name}", steps=30)
    assert refused.returncode == 2
    assert refused.stderr == (f"error: hydra.sweeper.study_name={name}: that study holds trials of another fixed "
                              "configuration (train.steps: 20 -> 30); name another study, or leave study_name out "
                              "for a study of this configuration\n")  # fmt: skip
    same = sweep(tmp_path, course_dir, *args, f"hydra.sweeper.study_name={name}")
    assert f"study {name} already holds 1 trial of 1; nothing to run" in same.stdout

    labels = np.load(data / "fruit_labels.npy")
    np.save(data / "fruit_labels.npy", labels[::-1])  # the same folder, other data
    relabelled = sweep(tmp_path, course_dir, *args)
    assert re.search(r"^new study densenet_lr-[0-9a-f]{8}: 1 trial to run$", relabelled.stdout, re.M)
    assert name not in relabelled.stdout and other not in relabelled.stdout

    storage = f"sqlite:///{tmp_path}/outputs/sweeps/densenet_lr.db"
    shown = run_here(["-m", "qd", "results", storage, "--study", other], tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "\n  train.steps: 30\n" in shown.stdout and f"\n  data.dir: {data}\n" in shown.stdout
    assert len(collect([storage])) == 3 and len({r["study"] for r in collect([storage])}) == 3
    unknown = run_here(["-m", "qd", "results", storage, "--study", "densenet_lr"], tmp_path)
    assert unknown.returncode == 2 and unknown.stderr.startswith(
        f"error: --study densenet_lr: no such study in {storage}; expected one of densenet_lr-")  # fmt: skip
