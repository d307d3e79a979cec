"""The sweep's pruner, from the preset's `pruning` section."""

import optuna
import pytest

from qd.core.errors import QDError
from qd.experiment.sweep import make_pruner


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
