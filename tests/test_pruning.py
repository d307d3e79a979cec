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
