"""The cluster path on a real Slurm (the `slurm` fixture: munged, slurmctld and slurmd on this machine, no
accounting) with a PostgreSQL study: trials as Slurm jobs, a cancelled job, a killed sweep, a job out of time."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import LEARNING, ROOT, ours, run_cli, sweep_metrics, the_study
from qd.experiment.outcomes import REASON

pytestmark = pytest.mark.heavy  # a Slurm cluster of its own, and jobs it waits for
N_TRIALS = 2
LONG = 10_000_000  # steps of a trial that runs until it is stopped
LONGER = 8_000  # steps of a trial that is cancelled once it trains, then runs again to its end
STUDY = r"densenet_lr-[0-9a-f]{8}"  # the preset's study: its name and a hash of its fixed configuration


def sweep_args(data_dir: Path, *overrides: str, n_trials: int = N_TRIALS) -> list[str]:
    """A dense-net sweep of `n_trials` trials on `data_dir`, all at once as Slurm jobs of one CPU each; learning rates
    that never diverge unless `overrides` fix one."""
    learning = [] if any(o.startswith("optimizer.lr=") for o in overrides) else [LEARNING]
    return [str(ROOT / "main_densenet.py"), "+sweep=densenet_lr", "+launcher=slurm", "hydra.launcher.partition=cpu",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", f"hydra.sweeper.n_jobs={n_trials}",
            f"hydra.sweeper.n_trials={n_trials}", f"data.dir={data_dir}", "train.eval_every=10", *learning,
            *overrides]  # fmt: skip


@pytest.fixture
def cluster_env(slurm, postgres) -> dict[str, str]:
    """The environment of a user of the Slurm cluster, whose study is a fresh PostgreSQL database."""
    return {**os.environ, **slurm, "PYTHONPATH": str(ROOT), "QD_STORAGE": postgres}


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert "sacct" not in result.stdout + result.stderr, "qd follows its jobs with squeue, never sacct"
    return result


def slurm_states(env: dict[str, str]) -> dict[str, str]:
    """Every job Slurm knows, as squeue names it, and its state."""
    listed = subprocess.run(["squeue", "--noheader", "--array", "--states=all", "--format=%i %T"], env=env,
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    return dict(line.split() for line in listed.splitlines())


def test_a_sweep_runs_its_trials_as_slurm_jobs_and_promotion_takes_its_winner(cluster_env, swept, swept_data, tmp_path):
    result = run(sweep_args(swept_data, "train.steps=20"), tmp_path, cluster_env)
    assert result.returncode == 0, result.stderr
    lines = ours(result.stdout)
    assert re.fullmatch(rf"new study {STUDY}: {N_TRIALS} trials to run", lines[0]), lines
    ended = [line for line in lines[1:-1] if not line.startswith("the rest: ")]  # and the time the rest should take
    assert sorted(re.fullmatch(r"trial (\d): dev accuracy 0\.\d{4} \([12] of 2\)", line)[1] for line in ended) == [
        "0",
        "1",
    ]
    assert re.fullmatch(r"sweep done: 2 trials, 2 complete, 0 pruned, 0 failed; the study's best: trial \d, dev "
                        r"accuracy 0\.\d{4}", lines[-1]), lines  # fmt: skip
    records = {r["trial"]: r for r in sweep_metrics(tmp_path)}
    study = the_study(cluster_env["QD_STORAGE"]).trials
    assert [t.state.name for t in study] == ["COMPLETE"] * N_TRIALS
    known = slurm_states(cluster_env)
    for t in study:
        job = records[t.number]["slurm_job"]
        assert known[job] == "COMPLETED", "each trial ran as a Slurm job"
        assert t.user_attrs["slurm_job"] == job and t.value == records[t.number]["best_dev_acc"]
    assert len({r["slurm_job"] for r in records.values()}) == N_TRIALS

    # Promotion: the dense net from this study; the conv net and the best model from swept's (same data).
    sources = [cluster_env["QD_STORAGE"], f"sqlite:///{swept}/outputs/sweeps/convnet.db",
               f"sqlite:///{swept}/outputs/sweeps/best.db"]  # fmt: skip
    promoted = run_cli(["-m", "qd", "promote", "--any-settings", "--data-dir", str(swept_data), *sources], tmp_path)
    assert promoted.returncode == 0, promoted.stderr
    winner = json.loads((tmp_path / "submission/winners.json").read_text())["densenet"]
    best = max(study, key=lambda t: t.value)
    assert re.fullmatch(STUDY, winner["study"])
    assert (winner["trial"], winner["slurm_job"]) == (best.number, records[best.number]["slurm_job"])


def test_a_cancelled_job_interrupts_its_trial_naming_the_job_and_the_sweep_runs_it_again(cluster_env, course_dir,
                                                                                           tmp_path):  # fmt: skip
    # Two trials draw the two lengths (no parameter set twice): the longer is cancelled as soon as it trains, and the
    # sweep runs it again, whole, with its parameters; it does not count toward n_trials.
    args = sweep_args(course_dir, "optimizer.lr=0.001", f"train.steps=choice(20, {LONGER})")
    proc = subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=cluster_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    overrides = wait_for(lambda: [p for p in tmp_path.glob("outputs/sweeps/densenet_lr/*/*/.hydra/overrides.yaml")
                                  if f"train.steps={LONGER}" in p.read_text()], proc)  # fmt: skip
    job_dir = overrides[0].parent.parent
    wait_for(lambda: (job_dir / "densenet.log").exists(), proc)  # training has begun: the trial's job is known
    (trial,) = [t for t in the_study(cluster_env["QD_STORAGE"]).trials if t.params["train.steps"] == LONGER]
    job = trial.user_attrs["slurm_job"]
    subprocess.run(["scancel", job], env=cluster_env, check=True)
    out, err = proc.communicate(timeout=300)
    assert "sacct" not in out + err
    assert proc.returncode == 0, err
    log = f"{tmp_path.resolve()}/outputs/sweeps/densenet_lr/{job_dir.parent.name}/.submitit/{job}/{job}_0_log.err"
    reason = f"Slurm job {job} was cancelled before its trial ended (its log: {log}); it runs again with its parameters"
    assert any(line.startswith(f"trial {trial.number} interrupted: {reason} (") for line in ours(out)), out
    assert re.fullmatch(r"sweep done: 3 trials, 2 complete, 0 pruned, 0 failed, 1 interrupted; the study's best: "
                        r"trial \d, dev accuracy 0\.\d{4}", ours(out)[-1]), out  # fmt: skip
    study = the_study(cluster_env["QD_STORAGE"]).trials
    assert study[trial.number].state.name == "FAIL" and study[trial.number].user_attrs[REASON] == reason
    complete = [t for t in study if t.state.name == "COMPLETE"]
    assert len(complete) == N_TRIALS, "the cancelled trial does not count toward n_trials"
    assert sorted(t.params["train.steps"] for t in complete) == [20, LONGER], "it ran again, with its parameters"

    again = run(args, tmp_path, cluster_env)
    assert again.returncode == 0, again.stderr
    assert re.fullmatch(rf"study {STUDY} already holds 2 trials of 2; nothing to run", ours(again.stdout)[-1])


def test_a_sweep_killed_while_its_jobs_run_resumes_without_losing_them(cluster_env, course_dir, tmp_path):
    args = sweep_args(course_dir, "train.steps=20000", "train.eval_every=5000")  # jobs that outlast the rerun's start
    proc = subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=cluster_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    wait_for(lambda: len(list(tmp_path.glob("outputs/sweeps/densenet_lr/*/*/densenet.log"))) == N_TRIALS, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [t.state.name for t in the_study(cluster_env["QD_STORAGE"]).trials] == ["RUNNING"] * N_TRIALS, (
        "killed before any trial was told"
    )

    again = run(args, tmp_path, cluster_env)
    assert again.returncode == 0, again.stderr
    lines = ours(again.stdout)
    outlived = "its job outlived the sweep that launched it"
    assert any(re.fullmatch(rf"waiting for trial \d: {outlived}", line) for line in lines), f"none still ran: {lines}"
    records = {r["trial"]: r for r in sweep_metrics(tmp_path)}
    for t in the_study(cluster_env["QD_STORAGE"]).trials:
        assert t.state.name == "COMPLETE" and t.value == records[t.number]["best_dev_acc"]
        assert f"trial {t.number}: dev accuracy {t.value:.4f} ({outlived})" in lines
    assert re.fullmatch(rf"study {STUDY} already holds {N_TRIALS} trials of {N_TRIALS}; nothing to run", lines[-1])


def test_a_job_past_its_time_limit_fails_with_one_line(cluster_env, course_dir, tmp_path):
    args = sweep_args(
        course_dir, f"train.steps={LONG}", "train.eval_every=1000", "hydra.launcher.timeout_min=1", n_trials=1
    )
    result = run(args, tmp_path, cluster_env)
    assert result.returncode == 1
    line = ours(result.stdout)[-1]
    said = re.fullmatch(
        r"trial 0 failed: (Slurm job (\d+) ran out of time \(hydra.launcher.timeout_min=1\)) \(1 of 1\)", line
    )
    assert said, result.stdout
    reason = said[1]
    assert result.stderr.splitlines()[-1] == f"sweep failed: all 1 trial failed ({reason})"
    assert the_study(cluster_env["QD_STORAGE"]).trials[0].state.name == "FAIL"
    # Its record, where training had started when the time ran out (a loaded machine may take the minute to start).
    for record in sweep_metrics(tmp_path):
        assert (record["slurm_job"], record["state"], record["reason"]) == (said[2], "failed", reason)


def wait_for(happened, proc: subprocess.Popen, timeout: float = 120):
    """What `happened()` returns once it is true; fails if `proc` ends first or `timeout` passes."""
    deadline = time.time() + timeout
    while not (value := happened()):
        assert proc.poll() is None, f"the sweep ended first: {proc.communicate()}"
        assert time.time() < deadline, "it did not happen in time"
        time.sleep(0.2)
    return value
