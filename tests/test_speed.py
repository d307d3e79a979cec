import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import ROOT, run_cli
from qd.bench.cuda import compare
from qd.bench.load import DISTURBED, least_disturbed, load_cell
from qd.bench.paths import measure, write_checkpoints
from qd.bench.phases import COLUMNS
from qd.bench.pruning import pruning_table, verdicts
from qd.bench.speed import (
    ROWS,
    Setup,
    breakdown_table,
    course_args,
    floor_table,
    main,
    run_path,
    speed_table,
    threads_table,
)
from qd.bench.starter import baseline_load
from qd.core.cpu import describe_cpu
from qd.core.data import load_split


@pytest.fixture
def work(tmp_path):
    write_checkpoints(tmp_path)
    return tmp_path


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_the_baseline_prepares_the_same_values_as_qd(course_dir, split):
    x, y = baseline_load(course_dir, split)
    ours = load_split(course_dir, split)
    assert x.dtype == np.float64
    np.testing.assert_allclose(x, ours.x.numpy(), rtol=0, atol=2e-5)
    assert (y is None and ours.y is None) or np.array_equal(y, ours.y.numpy())


@pytest.mark.slow
def test_every_row_is_measured_on_both_sides_and_tabled_with_its_load(course_dir, work):
    in_process = [row for row in ROWS if not row.startswith("course ")]
    results = {
        row: {side: [{"seconds": measure(row, side, course_dir, work, steps=3, threads=1), "peak_mib": 100.0,
                      "load": 0.0}] for side in ("baseline", "qd")}
        for row in in_process
    }  # fmt: skip
    setup = Setup(course_dir, work, steps=3, threads=1, retries=0)
    results["course densenet"] = {side: [run_path("course densenet", side, setup)] for side in ("baseline", "qd")}
    results["course convnet"] = {"baseline": [{"seconds": 9.0, "peak_mib": 1.0, "load": 0.3}],
                                 "qd": [{"seconds": 3.0, "peak_mib": 1.0, "load": 0.1}]}  # fmt: skip
    table = speed_table(results, steps=3).splitlines()
    assert len(table) == 2 + len(ROWS) and table[0].endswith("| load |")
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[2]) > 0 and float(cells[3].rstrip("x")) > 0
        assert cells[5] in ("yes", "no") and float(cells[7].replace(",", "")) > 0
        assert re.fullmatch(r"\d+\.\d\d( disturbed)?", cells[8])
    assert table[-1].endswith("| 3.0x | 3.5x | no | 1 | 1 | 0.30 disturbed |")
    for side in ("baseline", "qd"):  # each side's two course processes ran: trained, then predicted
        assert len((work / side / "densenet_predictions.txt").read_text().split()) == 600


@pytest.mark.slow
def test_the_phases_of_a_course_process_are_timed_and_the_predictions_agree(course_dir, work):
    """The predict processes of both sides under qd.bench.phases, on the same (untrained) weights."""
    setup, results = Setup(course_dir, work, steps=3, threads=1), {}
    for side in ("baseline", "qd"):
        spec = {"side": side, "mode": "predict", "argv": course_args(side, "densenet", "predict", setup)}
        result = run_cli(["-m", "qd.bench.phases", json.dumps(spec)], ROOT)
        assert result.returncode == 0, result.stderr
        phases = json.loads(result.stdout.splitlines()[-1])
        assert set(phases) >= {"imports", "data", "checkpoint", "predict"} and all(v > 0 for v in phases.values())
        results["densenet", side, "predict"] = {"wall": 9.0, "load": 0.0, **phases}
    predictions = {side: (work / side / "densenet_predictions.txt").read_text().split() for side in ("baseline", "qd")}
    assert predictions["baseline"] == predictions["qd"] and len(predictions["qd"]) == 600
    table = breakdown_table(results).splitlines()
    assert table[0] == f"| process | wall s | {' | '.join(COLUMNS)} | other | load |"
    assert table[2].startswith("| densenet predict (starter) | 9.00 | ") and table[3].endswith("| 0.00 |")


def test_a_run_under_load_counts_as_disturbed_and_runs_again():
    """A process that keeps a core busy beside the run: the run's load says so, and it is run again."""
    calls = []
    with subprocess.Popen([sys.executable, "-c", "while True: pass"]) as burner:
        try:
            _, load = least_disturbed(lambda: calls.append(time.sleep(0.5)), retries=1)
        finally:
            burner.kill()
    assert load > DISTURBED and len(calls) == 2
    assert load_cell([0.1, 0.26]) == "0.26 disturbed" and load_cell([0.1, 0.25]) == "0.25"


def test_the_thread_table_names_the_threads_auto_chose():
    runs = {name: {n: [{"seconds": 1.0 + n, "threads": n or 1, "load": n / 10}] for n in (0, 1, 2)}
            for name in ("densenet", "convnet")}  # fmt: skip
    table = threads_table(runs, steps=2000)
    assert re.search(r"\| densenet \| 1\.00 \(1\) \| 2\.00 \| 3\.00 \| 0\.20 \|", table)
    assert "2,000 steps" in table


@pytest.mark.slow
def test_the_floor_is_measured_in_a_fresh_process_and_bounds_the_ratio(course_dir, work):
    setup = Setup(course_dir, work, steps=200, threads=1, retries=0)
    floors = {name: [run_path(f"train {name}", "floor", setup)] for name in ("densenet", "convnet")}
    assert all(runs[0]["seconds"] > 0 and runs[0]["peak_mib"] > 0 for runs in floors.values())
    results = {"train convnet": {"baseline": [{"seconds": 10.0}], "qd": [{"seconds": 5.0}]}}
    table = floor_table(results, {"convnet": [{"seconds": 4.0, "load": 0.5}]}, steps=2000).splitlines()
    assert len(table) == 3  # the header, its rule and the convnet row
    assert table[2] == "| convnet | 10 | 5 | 4 | 2.5x | 5x | 0.50 disturbed |"


def test_the_cuda_check_says_plainly_that_there_is_no_cuda_device():
    result = run_cli(["-m", "qd.bench", "cuda"], ROOT)
    assert result.returncode == 0, result.stderr
    expected = f"no CUDA or MPS device here (torch {torch.__version__}, a CPU-only build): nothing to compare\n"
    assert result.stdout == expected


@pytest.mark.slow
def test_the_cuda_check_tables_each_model_on_both_devices(capsys):
    assert compare(steps=5, device="cpu") == [], "the CPU agrees with itself"
    rows = capsys.readouterr().out.splitlines()
    assert rows[2] == "| model | CPU dev acc | cpu dev acc | difference (points) | CPU s | cpu s | agrees | load |"
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows[4:]]
    assert [c[0] for c in cells] == ["densenet", "convnet", "bestmodel"]
    assert all(c[1] == c[2] and c[3] == "0.0" and c[6] == "yes" for c in cells), "one seed, one result"
    assert all(re.fullmatch(r"\d+\.\d\d( disturbed)?", c[7]) for c in cells)


@pytest.mark.slow
def test_the_accuracy_bench_prints_each_rows_load():
    result = run_cli(["-m", "qd.bench", "accuracy", "--folds", "2", "--steps", "30", "--models", "densenet"], ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header, row = lines[2].split(), lines[3].split()
    assert header[-3:] == ["wall_s", "bytes", "load"] and row[0] == "densenet"
    assert re.fullmatch(r"\d+\.\d\d", row[-1]) or (row[-1] == "disturbed" and float(row[-2]) > DISTURBED), row
    assert lines[-1].startswith("load: the most cores other processes kept busy")


def test_the_pruning_table_compares_cpu_with_the_same_seeds_sweep_without_a_pruner_and_gives_each_sweeps_load():
    runs = {
        "none": [{"seed": 0, "complete": 17, "pruned": 0, "failed": 3, "best": 0.93561, "cpu": 1106.2, "load": 0.04},
                 {"seed": 1, "complete": 20, "pruned": 0, "failed": 0, "best": 0.94, "cpu": 1000.0, "load": 0.0}],
        "median": [{"seed": 0, "complete": 5, "pruned": 12, "failed": 3, "best": 0.9333, "cpu": 615.4, "load": 0.3},
                   {"seed": 1, "complete": 8, "pruned": 12, "failed": 0, "best": 0.9389, "cpu": 500.0, "load": 0.1}],
    }  # fmt: skip
    assert pruning_table(runs).splitlines() == [
        "| seed | pruner | complete | pruned | failed | best dev acc | CPU s | CPU vs none | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        "| 0 | none | 17 | 0 | 3 | 0.9356 | 1106 | 1.00 | 0.04 |",
        "| 0 | median | 5 | 12 | 3 | 0.9333 | 615 | 0.56 | 0.30 disturbed |",
        "| 1 | none | 20 | 0 | 0 | 0.9400 | 1000 | 1.00 | 0.00 |",
        "| 1 | median | 8 | 12 | 0 | 0.9389 | 500 | 0.50 | 0.10 |",
    ]
    assert verdicts(runs) == [
        "median: best accuracy +0.17 points behind on average, CPU ratio 0.53: meets the target (within 0.5 points in "
        "at most 60% of the CPU)"
    ]


@pytest.mark.heavy
def test_the_header_names_the_cpu_and_the_breakdown_keeps_to_the_models_of_the_rows(course_dir, capsys, monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # read by the bench's children's oneDNN, named in the header
    main(["--data", str(course_dir), "--rows", "predict densenet", "--repeat", "1", "--steps", "3", "--retries", "0",
          "--no-thread-table", "--breakdown"])  # fmt: skip
    out = capsys.readouterr().out
    cpu = describe_cpu()
    assert (
        f"\nCPU: {cpu.model} (vendor {cpu.vendor}, family {cpu.family}), {os.cpu_count()} cores; "
        f"ISA: {', '.join(cpu.isa)}; torch {torch.__version__}, its kernels {cpu.kernels}, with oneDNN; " in out
    )
    assert "; capped: ONEDNN_MAX_CPU_ISA=AVX2\n" in out
    processes = re.findall(r"^\| (\w+ \w+) \((starter|qd)\) \|", out, re.MULTILINE)
    assert processes == [("densenet train", "starter"), ("densenet predict", "starter"), ("densenet train", "qd"),
                         ("densenet predict", "qd")]  # fmt: skip
