import re

import numpy as np
import pytest
import torch

from conftest import ROOT, run_cli
from qd.bench.cuda import compare
from qd.bench.speed import (
    ROWS,
    baseline_load,
    floor_table,
    measure,
    overheads,
    run_path,
    speed_table,
    threads_table,
    write_checkpoints,
)
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


def test_every_row_is_measured_on_both_sides_and_tabled(course_dir, work):
    results = {
        row: {side: [{"seconds": measure(row, side, course_dir, work, steps=3, threads=1), "peak_mib": 100.0}]
              for side in ("baseline", "qd")}
        for row in ROWS if row != "process"
    }  # fmt: skip
    results["process"] = {side: [run_path("process", side, course_dir, work, 3, 1)] for side in ("baseline", "qd")}
    table = speed_table(results, steps=3).splitlines()
    assert len(table) == 2 + len(ROWS)
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[2]) > 0 and float(cells[3].rstrip("x")) > 0
        assert cells[5] in ("yes", "no") and float(cells[7].replace(",", "")) > 0
    predictions = {side: (work / f"{side}_predictions.txt").read_text().split() for side in ("baseline", "qd")}
    assert predictions["baseline"] == predictions["qd"] and len(predictions["qd"]) == 600


def test_the_thread_table_names_the_threads_auto_chose():
    runs = {name: {n: [{"seconds": 1.0 + n, "threads": n or 1}] for n in (0, 1, 2)} for name in ("densenet", "convnet")}
    table = threads_table(runs, steps=2000)
    assert re.search(r"\| densenet \| 1\.00 \(1\) \| 2\.00 \| 3\.00 \|", table)
    assert "2,000 steps" in table


def test_the_floor_is_measured_in_a_fresh_process_and_bounds_the_ratio(course_dir, work):
    floors = {name: [run_path(f"train {name}", "floor", course_dir, work, 200, 1)] for name in ("densenet", "convnet")}
    assert all(runs[0]["seconds"] > 0 and runs[0]["peak_mib"] > 0 for runs in floors.values())
    results = {"train convnet": {"baseline": [{"seconds": 10.0}], "qd": [{"seconds": 5.0}]}}
    table = floor_table(results, {"convnet": [{"seconds": 4.0}]}, steps=2000).splitlines()
    assert len(table) == 3  # the header, its rule and the convnet row
    assert table[2] == "| convnet | 10 | 5 | 4 | 2.5x | 5x |"


def test_a_sweeps_time_beyond_training_is_split_by_where_it_went():
    def job(pid, started, finished, train):
        return {"pid": pid, "started": started, "finished": finished, "wall_time_s": finished - started,
                "train_time_s": train}  # fmt: skip

    # Launched at 0, ended at 30: worker 1 runs jobs 2-10 and 11-20, worker 2 runs 3-12 and 14-22.
    metrics = [job(1, 2, 10, 7), job(1, 11, 20, 8), job(2, 3, 12, 8), job(2, 14, 22, 6)]
    split = overheads(metrics, launched=0.0, ended=30.0, workers=2)
    assert split == {"start_up": 2.0, "in_jobs": (1 + 1 + 1 + 2) / 2, "between": (1 + 2) / 2, "tail": 8.0}


def test_the_cuda_check_says_plainly_that_there_is_no_cuda_device():
    result = run_cli(["-m", "qd.bench", "cuda"], ROOT)
    assert result.returncode == 0, result.stderr
    expected = f"no CUDA device here (torch {torch.__version__}, a CPU-only build): nothing to compare\n"
    assert result.stdout == expected


def test_the_cuda_check_tables_each_model_on_both_devices(capsys):
    assert compare(steps=5, device="cpu") == [], "the CPU agrees with itself"
    rows = capsys.readouterr().out.splitlines()
    assert rows[2] == "| model | CPU dev acc | cpu dev acc | difference (points) | CPU s | cpu s | agrees |"
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows[4:]]
    assert [c[0] for c in cells] == ["densenet", "convnet", "bestmodel"]
    assert all(c[1] == c[2] and c[3] == "0.0" and c[6] == "yes" for c in cells), "one seed, one result"
