"""The sweep's pruner, from the preset's `pruning` section, and Optuna as a sweep imports it."""

import subprocess
import sys

import optuna
import pytest

from conftest import ROOT
from qd.core.errors import QDError
from qd.experiment.trial import make_pruner


def test_each_named_pruner_is_built_with_its_options():
    median = make_pruner({"name": "median", "n_startup_trials": 3, "n_warmup_steps": 40})
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert (median._n_startup_trials, median._n_warmup_steps) == (3, 40)
    assert isinstance(make_pruner({"name": "halving"}), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(make_pruner({"name": "none"}), optuna.pruners.NopPruner)
    assert isinstance(make_pruner(None), optuna.pruners.NopPruner)


def test_an_unknown_pruner_is_named():
    with pytest.raises(QDError, match=r"^pruning.name: got 'hyperband'; expected none, median or halving$"):
        make_pruner({"name": "hyperband"})


def test_optuna_is_imported_without_its_plotting_libraries_which_import_as_usual_afterwards():
    """qd.experiment.lean_optuna: in a fresh process, as a sweep's processes import it."""
    code = ("import sys; import qd.experiment.trial; "
            "held = sorted({'matplotlib', 'pandas', 'sklearn'} & set(sys.modules)); "
            "import pandas, matplotlib.pyplot; print(held, pandas.DataFrame({'a': [1]}).size)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout == "[] 1\n", result.stderr


def bench(*args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "qd.bench", "pruning", *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_a_sweep_that_fails_in_the_pruning_bench_is_one_line():
    result = bench("--model", "densenet", "--data", "nope", "--trials", "1", "--retries", "0")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: the densenet sweep with pruner none failed (exit 2): ") and "data/nope" in line


@pytest.mark.slow
def test_the_pruning_bench_runs_the_dense_nets_preset():
    result = bench("--model", "densenet", "--data", "synthetic", "--trials", "2", "--steps", "20", "--eval-every", "10",
                   "--startup", "1", "--warmup", "10", "--retries", "0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "2-trial densenet sweep, 20 steps a trial, data=synthetic, seed 0"
    assert [line.split(" | ")[0] for line in lines if line.startswith("| ")][2:] == ["| none", "| median"]
