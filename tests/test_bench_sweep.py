"""The sweep bench: where a sweep's time beyond its trials' training goes, and its table, parsed (never timed)."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT, run_cli
from qd.bench.sweep import ask_table, overheads, sweep_table


def test_a_sweeps_time_beyond_training_is_split_by_where_it_went():
    def job(pid, task_started, started, finished, train):
        return {"pid": pid, "task_started": task_started, "started": started, "finished": finished,
                "wall_time_s": finished - started, "train_time_s": train}  # fmt: skip

    # Launched at 0, ended at 30; worker 1 runs 2-10 then 12-20 (its second task started at 11), worker 2 runs
    # 3-12 then 13.5-22 (its task at 13).
    metrics = [job(1, 1.5, 2, 10, 7), job(2, 2.5, 3, 12, 8), job(1, 11, 12, 20, 5), job(2, 13, 13.5, 22, 6)]
    split = overheads(metrics, launched=0.0, ended=30.0, workers=2)
    assert split == {"start_up": 2.0, "in_jobs": (1 + 1 + 3 + 2.5) / 2, "between": (2 + 1.5) / 2,
                     "hydra": (1 + 1) / 2, "trial": (1 + 0.5) / 2, "tail": 8.0}  # fmt: skip
    table = sweep_table({"wall": 20.0, "training": 26.0, "workers": 2, "trials": 4, "failed": 0, "load": 0.1,
                         "cpu": 36.4, "cores": 2, **split}, steps=100).splitlines()  # fmt: skip
    assert table[2] == "| densenet_lr, 100 steps a trial | 4 (0) | 2 | 26.0 | 20.0 | 1.54 | 1.3 | no | 0.10 |"
    assert table[6] == "| 7.0 | 2.0 | 3.8 | 1.8 (1.0 + 0.8) | 8.0 |"
    # 36.4 CPU seconds on 2 cores take at least 18.2 s: 1.4 times the 13 s of training a worker
    assert table[8] == "| CPU s of the sweep's processes | beyond training | least wall / (sum / workers) on 2 cores |"
    assert table[10] == "| 36.4 | 10.4 | 1.40 |"


def test_the_ask_table_times_an_ask_in_a_real_study_of_each_size(tmp_path):
    table = ask_table([0, 3], tmp_path).splitlines()
    assert table[:2] == ["| finished trials in the study | ask ms (median of 10) |", "| ---: | ---: |"]
    assert [re.fullmatch(r"\| (\d+) \| (\d+) \|", row)[1] for row in table[2:]] == ["0", "3"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == ["asks-0.db", "asks-3.db"]


@pytest.mark.heavy
def test_the_sweep_bench_names_the_cpu_and_its_ratio_is_its_own_figures(tmp_path):
    argv = ["-m", "qd.bench", "sweep", "--trials", "4", "--steps", "100", "--retries", "0", "--study-sizes", "2"]
    result = run_cli(argv, ROOT)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^CPU: .+, \d+ cores; ISA: .+$", result.stdout, re.M), result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("| densenet_lr, 100 steps a trial"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    trials, workers, training, wall, ratio = cells[1], int(cells[2]), float(cells[3]), float(cells[4]), cells[5]
    assert trials.startswith("4 (") and workers == 2
    # The ratio is the table's own figures, each rounded to 0.1 s
    low, high = (wall - 0.05) / ((training + 0.05) / workers), (wall + 0.05) / ((training - 0.05) / workers)
    assert low - 0.005 <= float(ratio) <= high + 0.005, (ratio, wall, training)
    # The sweep's processes, its workers with it, ran their CPU time on this machine's cores within its wall time
    cpu_row = re.search(r"^\| ([\d.]+) \| ([\d.-]+) \| ([\d.]+) \|$", result.stdout, re.M)
    cpu, least = float(cpu_row[1]), float(cpu_row[3])
    assert least <= float(ratio) + 0.01, result.stdout
    assert cpu > wall / 2, result.stdout  # the workers' CPU counted: the sweeping process alone waits through most
    assert re.search(r"^\| 2 \| \d+ \|$", result.stdout, re.M), result.stdout


def test_the_study_sizes_are_numbers_of_trials_or_one_line_naming_the_flag():
    result = run_cli(["-m", "qd.bench", "sweep", "--study-sizes", "10,x"], ROOT)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == ("python -m qd.bench sweep: error: argument --study-sizes: '10,x': "
                                              "expected numbers of trials, 0 or more, separated by commas")  # fmt: skip
