"""Many sweep processes on one study, Ctrl-C and kill -9: real processes at once, on a real SQLite file and a real
PostgreSQL server, seeded and repeated."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from conftest import ROOT, children, running, start, sweep_metrics
from qd.experiment.outcomes import INTERRUPTED, OUTCOME, REASON, RERUN_OF, interrupted

pytestmark = pytest.mark.slow
# A finite space (6 x 2 sets) where two processes seeded alike would repeat each other at once.
SPACE = ["optimizer.lr=choice(1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3)", "train.batch_size=choice(32, 64)"]
INTERRUPTED_LINE = "\ninterrupted: the trials that finished are kept; run the same command again to resume a sweep\n"


def sweep_argv(data: Path, storage: str, n_trials: int, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "main_densenet.py"), "+sweep=densenet_lr", f"data.dir={data}",
            f"hydra.sweeper.storage='{storage}'", "hydra.sweeper.study_name=shared",
            f"hydra.sweeper.n_trials={n_trials}", "train.eval_every=10", *SPACE, *extra]  # fmt: skip


def run_at_once(argvs: list[list[str]], cwd: Path) -> list[tuple[int, str, str]]:
    processes = [start(argv, cwd) for argv in argvs]
    outputs = [p.communicate(timeout=600) for p in processes]
    return [(p.returncode, *output) for p, output in zip(processes, outputs, strict=True)]


def study(storage: str) -> list[optuna.trial.FrozenTrial]:
    """The trials of the shared study; none before a sweep has made it."""
    try:
        return optuna.load_study(study_name="shared", storage=storage).get_trials()
    except KeyError:  # no such study yet
        return []


def check_study(trials: list[optuna.trial.FrozenTrial], n_trials: int) -> None:
    """The study holds exactly `n_trials` usable trials, each a parameter set of its own, none still running; each
    interrupted trial ran again exactly once, with its parameters."""
    usable = [t for t in trials if not interrupted(t)]
    assert len(usable) == n_trials, [(t.number, t.state.name) for t in trials]
    unfinished = [(t.number, t.state.name, t.user_attrs) for t in usable if t.state.name != "COMPLETE"]
    assert not unfinished, unfinished
    sets = [tuple(sorted(t.params.items())) for t in usable]
    assert len(set(sets)) == len(sets), f"repeated parameter sets: {sorted(sets)}"
    for t in filter(interrupted, trials):  # (one cut before its values were drawn has none to run again with)
        again = [u for u in usable if t.params.items() <= u.params.items()] if t.params else [None]
        assert len(again) == 1, f"trial {t.number} did not run again exactly once"


def check_records(trials: list[optuna.trial.FrozenTrial], workdir: Path) -> None:
    """Each completed trial has one record, in the folder its trial names, with the trial's value."""
    records = sweep_metrics(workdir)
    assert sorted(r["trial"] for r in records) == [t.number for t in trials if t.state.name == "COMPLETE"]
    for r in records:
        assert (trials[r["trial"]].user_attrs["job_dir"], trials[r["trial"]].value) == (r["job_dir"], r["best_dev_acc"])


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/shared.db?timeout=60"
    return request.getfixturevalue("postgres")


@pytest.mark.heavy
def test_four_sweeps_on_one_study_share_it_from_new_and_after_a_kill(course_dir, storage, tmp_path):
    results = run_at_once([sweep_argv(course_dir, storage, 6, "train.steps=20")] * 4, tmp_path)
    for code, _, err in results:
        assert code == 0 and "Traceback" not in err, err
    check_study(study(storage), 6)
    check_records(study(storage), tmp_path)
    assert sum(len(re.findall(r"^trial \d+: dev accuracy", out, re.M)) for _, out, _ in results) == 6

    # A sweep killed while its trial's job runs, then four resume at once.
    killed = start(sweep_argv(course_dir, storage, 8, "train.steps=20"), tmp_path)
    deadline = time.time() + 120
    while not [t for t in study(storage) if t.state.name == "RUNNING" and "job_dir" in t.user_attrs]:
        assert time.time() < deadline and killed.poll() is None, killed.communicate()
        time.sleep(0.05)
    killed.kill()
    killed.communicate()
    (cut,) = [t for t in study(storage) if t.state.name == "RUNNING"]
    results = run_at_once([sweep_argv(course_dir, storage, 10, "train.steps=20")] * 4, tmp_path)
    for code, _, err in results:
        assert code == 0 and "Traceback" not in err, err
    trials = study(storage)
    check_study(trials, 10)
    check_records(trials, tmp_path)
    assert [t.number for t in trials if interrupted(t)] == [cut.number]
    assert trials[cut.number].user_attrs[REASON] == "interrupted (its process died)"


# `python KILLER K SCRIPT ARGS...`: SCRIPT, killed with SIGKILL right after the Kth commit (0: the first) since the
# commit that inserted its first trial.
KILLER = """
import os, runpy, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

kill_at, commits = int(sys.argv[1]), None

@event.listens_for(Engine, "after_cursor_execute")
def inserted(connection, cursor, statement, *_):
    global commits
    if commits is None and statement.lstrip().upper().startswith("INSERT INTO TRIALS "):
        commits = -1

@event.listens_for(Session, "after_commit")
def committed(session):
    global commits
    if commits is not None:
        commits += 1
        if commits == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.heavy
def test_a_sweep_killed_at_any_commit_of_asking_for_its_trial_leaves_it_to_the_next_run(course_dir, tmp_path):
    """Four sweeps, each on a study of its own, killed right after the 0th to 3rd commit since it created its trial:
    a running trial names its sweeping process from the start, so the next run marks it interrupted and completes
    the study, instead of counting it as running forever."""
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    storages = [f"sqlite:///{tmp_path}/{k}.db?timeout=60" for k in range(4)]
    argvs = [sweep_argv(course_dir, storage, 1, "train.steps=20") for storage in storages]
    killed = [start([a[0], str(killer), str(k), *a[1:]], tmp_path) for k, a in enumerate(argvs)]
    for k, (process, storage) in enumerate(zip(killed, storages, strict=True)):
        process.communicate(timeout=120)
        assert process.returncode == -signal.SIGKILL, k
        names = {t.user_attrs.get("sweeper") for t in study(storage) if t.state.name == "RUNNING"}
        assert names <= {f"{socket.gethostname()}:{process.pid}"}, (k, names)
    for code, _, err in run_at_once(argvs, tmp_path):
        assert code == 0 and "Traceback" not in err, err
    for storage in storages:
        check_study(study(storage), 1)


@pytest.mark.heavy
def test_two_slurm_jobs_each_running_a_sweep_share_one_study(slurm, postgres, course_dir, tmp_path):
    env = {**os.environ, **slurm, "PYTHONPATH": str(ROOT)}
    command = " ".join(f'"{a}"' for a in sweep_argv(course_dir, postgres, 8, "train.steps=20"))
    ids = []
    for n in range(2):
        submitted = subprocess.run(["sbatch", "--parsable", f"--output={tmp_path}/job{n}.out", "--cpus-per-task=1",
                                    "--mem=1000", f"--chdir={tmp_path}", f"--wrap={command}"],
                                   env=env, capture_output=True, text=True, check=True)  # fmt: skip
        ids.append(submitted.stdout.strip())
    deadline = time.time() + 300
    while subprocess.run(["squeue", "--noheader", f"--jobs={','.join(ids)}"], env=env, capture_output=True,
                         text=True).stdout.strip():  # fmt: skip
        assert time.time() < deadline, "the Slurm jobs did not end"
        time.sleep(1)
    outputs = [(tmp_path / f"job{n}.out").read_text() for n in range(2)]
    for out in outputs:
        assert "Traceback" not in out and re.search(r"^sweep done: \d+ trials?, ", out, re.M), out
    check_study(study(postgres), 8)
    assert sum(len(re.findall(r"^trial \d+: dev accuracy", out, re.M)) for out in outputs) == 8


@pytest.mark.heavy
def test_ctrl_c_at_any_moment_is_one_line_within_3_s_and_the_cut_trials_run_again(course_dir, tmp_path):
    """Ten tries on one study, each Ctrl-C at a seeded moment of start-up or training, with and without the parallel
    launcher. Its trials never end on their own, so each try's trials are the ones the tries before it cut, queued
    again once each and run with their parameters: the study never draws a third parameter set for its two trials."""
    rng = random.Random(0)
    storage = f"sqlite:///{tmp_path}/shared.db?timeout=60"
    argv = sweep_argv(course_dir, storage, 2, "train.steps=1000000")
    for attempt in range(10):
        logs = set(tmp_path.rglob("densenet.log"))
        sweep = start(argv + (["+launcher=parallel"] if attempt % 2 else []), tmp_path)
        if rng.random() < 0.5:  # in start-up: imports, the config, the workers, the study
            time.sleep(rng.uniform(0.3, 2.5))
        else:  # in training, however long start-up took
            deadline = time.time() + 120
            while not set(tmp_path.rglob("densenet.log")) - logs:
                assert time.time() < deadline and sweep.poll() is None, sweep.communicate()
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
        assert sweep.poll() is None, sweep.communicate()
        sweep.send_signal(signal.SIGINT)
        sent = time.time()
        out, err = sweep.communicate(timeout=30)
        assert (sweep.returncode, err) == (130, INTERRUPTED_LINE), (attempt, out)
        assert time.time() - sent <= 3.0, attempt
        trials = study(storage)
        assert not [t.number for t in trials if t.state.name == "RUNNING"], f"try {attempt} left a trial running"
        assert all(t.user_attrs[REASON] == "interrupted (Ctrl-C)" for t in trials if interrupted(t))
    trials = study(storage)
    cut = [t for t in trials if interrupted(t)]
    assert len(cut) >= 4, "the tries in training cut their trials"
    assert len({tuple(sorted(t.params.items())) for t in trials if t.params}) <= 2, "each cut trial ran as it was"
    reruns = [t.user_attrs[RERUN_OF] for t in trials if RERUN_OF in t.user_attrs]
    assert len(reruns) == len(set(reruns)) and set(reruns) <= {t.number for t in cut}, "each queued again once"
    assert len(reruns) >= len(cut) - 2, "each queued by the next try (the last try's two by none)"
    assert len([t for t in trials if t.state.name == "WAITING"]) <= 2


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists processes through Linux's /proc")
def test_the_workers_of_a_parallel_sweep_killed_with_kill_9_exit_within_10_s(course_dir, tmp_path):
    storage = f"sqlite:///{tmp_path}/shared.db?timeout=60"
    argv = sweep_argv(course_dir, storage, 4, "train.steps=100000", "+launcher=parallel")
    sweep = subprocess.Popen(argv, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    workers: set[int] = set()
    try:
        deadline = time.time() + 120
        while len(workers := {int(t.user_attrs.get("worker", ":0").split(":")[1]) for t in study(storage)
                              if t.state.name == "RUNNING"} - {0, sweep.pid}) < 2:  # fmt: skip
            assert time.time() < deadline and sweep.poll() is None, "two workers never trained"
            time.sleep(0.2)
        assert workers <= children(sweep.pid), "the workers are children of the sweep"
        sweep.kill()
        sweep.wait()
        killed = time.time()
        while (alive := {pid for pid in workers if running(pid)}) and time.time() - killed < 10:
            time.sleep(0.1)
        assert not alive, "a worker outlived its sweep by 10 s"
        said = sweep.stderr.read()  # to its end: until the workers and loky's resource tracker have let go of it
        assert "resource_tracker" not in said, said
    finally:
        for pid in {sweep.pid} | workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        sweep.wait()


@pytest.mark.heavy
def test_a_terminals_ctrl_c_to_a_parallel_sweeps_process_group_is_one_line(course_dir, tmp_path):
    """A terminal sends Ctrl-C to every process of the foreground group, workers included: the sweep's one line,
    exit 130 within 3 s, and not a word from a worker, at seeded moments of training."""
    rng = random.Random(1)
    storage = f"sqlite:///{tmp_path}/shared.db?timeout=60"
    argv = sweep_argv(course_dir, storage, 2, "train.steps=1000000", "+launcher=parallel")
    for attempt in range(4):
        logs = set(tmp_path.rglob("densenet.log"))
        sweep = start(argv, tmp_path, group=True)
        deadline = time.time() + 120
        while len(set(tmp_path.rglob("densenet.log")) - logs) < 2:  # both workers train
            assert time.time() < deadline and sweep.poll() is None, sweep.communicate()
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        os.killpg(sweep.pid, signal.SIGINT)
        sent = time.time()
        out, err = sweep.communicate(timeout=30)
        assert (sweep.returncode, err) == (130, INTERRUPTED_LINE), (attempt, out)
        assert time.time() - sent <= 3.0, attempt


@pytest.mark.heavy
def test_a_resume_killed_at_any_commit_of_queueing_its_interrupted_trials_queues_each_once(course_dir, tmp_path):
    """A study of two complete and two interrupted trials, resumed to four by processes killed right after the 0th
    to 3rd commit since the first trial the resume created (the queued copy of an interrupted one): the next run
    queues each interrupted trial that is not queued yet, so each runs again exactly once."""
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    template = f"sqlite:///{tmp_path}/template.db?timeout=60"
    code, _, err = run_at_once([sweep_argv(course_dir, template, 2, "train.steps=20")], tmp_path)[0]
    assert code == 0, err
    held = optuna.load_study(study_name="shared", storage=template)
    space = held.trials[0].distributions
    taken = [t.params for t in held.trials]
    free = [p for p in ({"optimizer.lr": lr, "train.batch_size": bs} for lr in space["optimizer.lr"].choices
                        for bs in space["train.batch_size"].choices) if p not in taken]  # fmt: skip
    for params in free[:2]:  # two trials a Ctrl-C cut, as qd marks them
        held.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL, params=params, distributions=space,
            user_attrs={OUTCOME: INTERRUPTED, REASON: "interrupted (Ctrl-C)"}))  # fmt: skip
    cut = {t.number: t.params for t in held.get_trials() if interrupted(t)}
    for k in range(4):
        storage = f"sqlite:///{tmp_path}/{k}.db?timeout=60"
        shutil.copyfile(tmp_path / "template.db", tmp_path / f"{k}.db")
        argv = sweep_argv(course_dir, storage, 4, "train.steps=20")
        killed = start([argv[0], str(killer), str(k), *argv[1:]], tmp_path)
        killed.communicate(timeout=120)
        assert killed.returncode == -signal.SIGKILL, k
        code, out, err = run_at_once([argv], tmp_path)[0]
        assert code == 0 and "Traceback" not in err, err
        trials = study(storage)
        check_study(trials, 4)
        reruns = [t.user_attrs[RERUN_OF] for t in trials if RERUN_OF in t.user_attrs]
        assert sorted(reruns) == sorted(cut), (k, reruns)
        for number, params in cut.items():
            assert sum(t.params == params for t in trials if not interrupted(t)) == 1, (k, number, out)
