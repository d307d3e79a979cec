"""What a sweep costs beyond its trials' training: the dense net's learning-rate sweep on joblib workers.

`python -m qd.bench sweep` runs `main_densenet.py -m +sweep=densenet_lr +launcher=parallel` (16 trials, 2 workers,
2,000 steps a trial at learning rates that train, on the synthetic set) as a user does, and prints the CPU, its
wall time against the ideal, its trials' training time shared by its workers, where the rest went, the run's load
(qd.bench.load), and its processes' CPU time with the least ratio that allows on this machine's cores; then how
long the sweeping process takes to ask for a trial in studies of 10 and 100 finished trials (`--study-sizes`), the
part of the time between jobs that grows with the study.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

from qd import ROOT
from qd.bench.load import LOAD_NOTE, least_disturbed, load_cell
from qd.core.cores import usable_cores
from qd.datasets.prepare import SYNTHETIC_DIR, ensure_data

TARGET = 1.3  # the most a sweep's wall time may exceed its trials' training time shared by its workers
# Learning rates at which the dense net trains its 2,000 steps: the preset's whole range diverges at once for a
# third of them or more, and how many depends on the sampler's draws, not on the sweep's costs.
LEARNING_RATES = "optimizer.lr=tag(log, interval(1e-4, 1e-2))"


def run_sweep(data_dir: Path, work: Path, trials: int, workers: int, steps: int) -> dict:
    """Run the sweep once in a fresh study; its wall time, the CPU time of its processes (the sweeping process and
    the workers it waited for), this machine's cores, its trials' training (a trial's train_time_s; a failed trial's
    wall_time_s) and overheads()."""
    from qd.bench.speed import run_child  # here, as torch: --help answers at once

    out = Path(tempfile.mkdtemp(prefix="sweep-", dir=work))
    argv = [sys.executable, str(ROOT / "main_densenet.py"), "-m", "+sweep=densenet_lr", "+launcher=parallel"]
    argv += [f"hydra.launcher.n_jobs={workers}", f"hydra.sweeper.n_trials={trials}", f"train.steps={steps}"]
    argv += [f"data.dir={data_dir}", f'hydra.sweeper.storage="sqlite:///{out}/study.db?timeout=60"']
    argv += [f"hydra.sweep.dir={out}/jobs", LEARNING_RATES]
    launched = time.time()
    child = run_child(argv, 0)
    ended = time.time()
    metrics = [json.loads(p.read_text()) for p in (out / "jobs").glob("*/metrics.json")]
    training = sum(m.get("train_time_s", m["wall_time_s"]) for m in metrics)
    failed = sum(m["state"] != "complete" for m in metrics)
    return {
        "wall": child.wall, "cpu": child.cpu, "cores": usable_cores(), "training": training, "trials": len(metrics),
        "failed": failed, "workers": workers, **overheads(metrics, launched, ended, workers),
    }  # fmt: skip


def overheads(metrics: list[dict], launched: float, ended: float, workers: int) -> dict:
    """Where a sweep's wall time went besides its trials' training, in seconds of wall time.

    start_up: launch to the first job's start (Python, Hydra, Optuna, the storage, worker processes);
    in_jobs: the jobs' own time outside training (imports, data, model, optimizer, checkpoint, record), per worker;
    between: gaps between consecutive jobs of one worker process, per worker, split into hydra (a job's end to the
    next job's task: Optuna's tell, the study's lock, ask and draw, the launch and Hydra's job set-up) and trial (the
    task's start to its training job's: the job's config and its trial in the study); tail: the last job's end to the
    sweep's exit.
    """
    by_worker: dict[int, list[dict]] = {}
    for m in sorted(metrics, key=lambda m: m["started"]):
        by_worker.setdefault(m["pid"], []).append(m)
    pairs = [(a, b) for jobs in by_worker.values() for a, b in pairwise(jobs)]
    outside = sum(m["wall_time_s"] - m.get("train_time_s", m["wall_time_s"]) for m in metrics)
    return {
        "start_up": min(m["started"] for m in metrics) - launched,
        "in_jobs": outside / workers,
        "between": sum(b["started"] - a["finished"] for a, b in pairs) / workers,
        "hydra": sum(b["task_started"] - a["finished"] for a, b in pairs) / workers,
        "trial": sum(b["started"] - b["task_started"] for _, b in pairs) / workers,
        "tail": ended - max(m["finished"] for m in metrics),
    }


def sweep_table(r: dict, steps: int) -> str:
    """Markdown: the sweep's wall time against the ideal, its trials' training time shared by its workers; where
    the rest went; its load; its CPU time and the least ratio that allows."""
    ideal = r["training"] / r["workers"]
    met = "yes" if r["wall"] <= TARGET * ideal else "no"
    return "\n".join([
        "| sweep | trials (failed) | workers | sum of training s | wall s | wall / (sum / workers) | target | met "
        "| load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
        f"| densenet_lr, {steps:,} steps a trial | {r['trials']} ({r['failed']}) | {r['workers']} "
        f"| {r['training']:.1f} | {r['wall']:.1f} | {r['wall'] / ideal:.2f} | {TARGET:g} | {met} "
        f"| {load_cell([r['load']])} |",
        "",
        "| wall s beyond training | start-up | in the jobs, per worker | between jobs, per worker (hydra + trial) "
        "| tail |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| {r['wall'] - ideal:.1f} | {r['start_up']:.1f} | {r['in_jobs']:.1f} "
        f"| {r['between']:.1f} ({r['hydra']:.1f} + {r['trial']:.1f}) | {r['tail']:.1f} |",
        "",
        f"| CPU s of the sweep's processes | beyond training | least wall / (sum / workers) on {r['cores']} cores |",
        "| ---: | ---: | ---: |",
        f"| {r['cpu']:.1f} | {r['cpu'] - r['training']:.1f} | {least_ratio(r):.2f} |",
    ])  # fmt: skip


def least_ratio(r: dict) -> float:
    """The least wall / (sum / workers) the sweep's CPU time allows on this machine, however well its work were
    spread: its cores run at most as many CPU seconds a second, so its wall time is at least its CPU time / cores."""
    return r["cpu"] / r["cores"] / (r["training"] / r["workers"])


def ask_ms(n_finished: int, work: Path, asks: int = 10) -> float:
    """The median milliseconds of the sweeping process's ask for a trial (under the study's lock: the janitor's
    read, the count, TPE's draw, the trial's creation) in a SQLite study of the dense net's preset that holds
    `n_finished` finished trials of 20 evaluations each: what each trial's start costs as a study grows."""
    import math
    import random
    import statistics

    from qd.experiment import compat
    from qd.experiment.broker import Broker
    from qd.experiment.conf import CONF_DIR
    from qd.experiment.identity import job_config
    from qd.experiment.lean_optuna import optuna
    from qd.experiment.outcomes import COMPLETE, Ended
    from qd.experiment.samplers import make_sampler
    from qd.experiment.settings import read_settings
    from qd.experiment.study import open_study

    overrides = ["+sweep=densenet_lr", f'hydra.sweeper.storage="sqlite:///{work}/asks-{n_finished}.db"',
                 f"hydra.sweeper.n_trials={n_finished + asks}", "hydra.mode=MULTIRUN"]  # fmt: skip
    with compat.hydra_app(str(CONF_DIR), "main_densenet") as app:
        cfg = compat.compose(app, "densenet", overrides)
    s = read_settings(cfg, overrides[:1])
    study, storage = open_study(s.storage, None, s.directions, cfg, job_config(cfg), s.space,
                                make_sampler(s.sampler, s.space))  # fmt: skip
    rng, (name, distribution) = random.Random(0), next(iter(s.space.searched.items()))
    low, high = math.log(distribution.low), math.log(distribution.high)  # the preset's log-uniform learning rate
    curve = lambda: {100 * (i + 1): rng.random() for i in range(20)}  # noqa: E731  (20 evaluations)
    study.add_trials([
        optuna.trial.create_trial(params={name: math.exp(rng.uniform(low, high))}, distributions={name: distribution},
                                  value=rng.random(), intermediate_values=curve())
        for _ in range(n_finished)
    ])  # fmt: skip
    broker, seconds = Broker(study, storage, s.space, s.n_trials), []
    for _ in range(asks):
        start = time.perf_counter()
        (trial, _), _ = broker.ask()
        seconds.append(time.perf_counter() - start)
        broker.tell(Ended(trial.number, COMPLETE, (rng.random(),)))
    return 1000 * statistics.median(seconds)


def ask_table(sizes: list[int], work: Path) -> str:
    """Markdown: the sweeping process's ask, in milliseconds, in studies of `sizes` finished trials."""
    rows = [f"| {n} | {ask_ms(n, work):.0f} |" for n in sizes]
    return "\n".join(["| finished trials in the study | ask ms (median of 10) |", "| ---: | ---: |", *rows])


def study_sizes(text: str) -> list[int]:
    """`--study-sizes`: numbers of finished trials, 0 or more, separated by commas."""
    try:
        sizes = [int(n) for n in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers of trials, 0 or more, separated by commas")
    return sizes


def main(argv: list[str] | None = None) -> None:
    """`python -m qd.bench sweep`: print the sweep's table in markdown."""
    parser = argparse.ArgumentParser(prog="python -m qd.bench sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=16, help="trials (default 16)")
    parser.add_argument("--workers", type=int, default=2, help="joblib workers (default 2)")
    parser.add_argument("--steps", type=int, default=2000, help="training steps a trial (default 2000)")
    parser.add_argument("--retries", type=int, default=1, help="reruns of a sweep taken under load (default 1)")
    parser.add_argument("--study-sizes", type=study_sizes, default="10,100",
                        help="finished trials of the studies an ask is timed in (default 10,100)")  # fmt: skip
    args = parser.parse_args(argv)
    from qd.bench.speed import cpu_header
    from qd.core.cpu import describe_cpu

    ensure_data({"dir": str(SYNTHETIC_DIR), "prepare": "synthetic"})
    with tempfile.TemporaryDirectory(prefix="qd-sweep-") as tmp:
        run = lambda: run_sweep(SYNTHETIC_DIR.resolve(), Path(tmp), args.trials, args.workers, args.steps)  # noqa: E731
        result, load = least_disturbed(run, args.retries)
    print(f"\n{cpu_header(describe_cpu())}")
    print(f"\nA {args.trials}-trial sweep on {args.workers} joblib workers, its trials' training against the whole:\n")
    print(sweep_table({**result, "load": load}, args.steps))
    print(LOAD_NOTE)
    with tempfile.TemporaryDirectory(prefix="qd-asks-") as tmp:
        asks = ask_table(args.study_sizes, Path(tmp))
    print(f"\nThe sweeping process's ask for a trial as its study grows (SQLite):\n\n{asks}")
