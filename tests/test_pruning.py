"""The sweep's pruner, from the preset's `pruning` section, and Optuna as a sweep imports it."""

import re
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
    hyperband = make_pruner({"name": "hyperband", "min_resource": 15, "max_resource": 150})
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert (hyperband._min_resource, hyperband._max_resource) == (15, 150)
    assert isinstance(make_pruner({"name": "none"}), optuna.pruners.NopPruner)
    assert isinstance(make_pruner(None), optuna.pruners.NopPruner)


def test_an_unknown_pruner_is_named():
    with pytest.raises(QDError, match=r"^pruning.name: got 'asha'; expected none, median, halving or hyperband$"):
        make_pruner({"name": "asha"})


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


@pytest.mark.heavy
def test_the_pruning_bench_runs_each_pruner_and_none_from_each_seed_and_judges_them_over_the_seeds():
    result = bench("--model", "densenet", "--data", "synthetic", "--trials", "2", "--steps", "20", "--eval-every", "10",
                   "--startup", "1", "--warmup", "10", "--retries", "0", "--seeds", "2",
                   "--pruners", "median,hyperband")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "2-trial densenet sweeps, 20 steps a trial, evaluated every 10, data=synthetic, seeds 0 to 1"
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if re.match(r"\| \d ", line)]
    assert [(r[0], r[1]) for r in rows] == [(s, p) for s in "01" for p in ("none", "median", "hyperband")]
    for seed, _, complete, pruned, failed, best, cpu, ratio, _ in rows:
        assert int(complete) + int(pruned) + int(failed) == 2 and 0 < float(best) <= 1
        none = next(r for r in rows if r[:2] == [seed, "none"])
        assert float(ratio) == pytest.approx(float(cpu) / float(none[6]), abs=0.02 + 1 / float(none[6]))
    verdicts = lines[-2:]
    for pruner, line in zip(("median", "hyperband"), verdicts, strict=True):
        judged = re.fullmatch(rf"{pruner}: best accuracy ([+-]\d+\.\d\d) points behind on average, CPU ratio "
                              r"(\d+\.\d\d): (meets|misses) the target \(within 0\.5 points in at most 60% of the "
                              r"CPU\)", line)  # fmt: skip
        assert judged, line
        runs = [r for r in rows if r[1] == pruner]
        nones = [r for r in rows if r[1] == "none"]
        gap = sum(float(n[5]) - float(r[5]) for n, r in zip(nones, runs, strict=True)) / 2
        assert float(judged[1]) == pytest.approx(100 * gap, abs=0.011)
        assert (judged[3] == "meets") == (float(judged[1]) <= 0.5 and float(judged[2]) <= 0.6)
