"""A trial whose settings do not train teaches the sampler where training breaks (seeded, in-process, no timing)."""

from __future__ import annotations

import math

from omegaconf import OmegaConf

from qd.experiment.broker import Broker
from qd.experiment.lean_optuna import optuna
from qd.experiment.outcomes import COMPLETE, DIVERGED, FAILED, Ended
from qd.experiment.samplers import make_sampler
from qd.experiment.search import SearchSpace
from qd.experiment.storage import new_in_memory

BREAKS_ABOVE = 0.05  # a learning rate above which this stand-in for the dense net diverges


def accuracy(lr: float) -> float:
    """Dev accuracy of a stand-in for the dense net: best near 3e-3, falling off on either side in log scale."""
    return 0.8 - 0.05 * (math.log10(lr) - math.log10(3e-3)) ** 2


def sweep(told_as: str, n_trials: int = 30) -> list[float]:
    """The learning rates TPE (the presets' settings, seed 0) proposes when a trial above BREAKS_ABOVE is told
    `told_as`: diverged (at chance) or failed."""
    sweeper = OmegaConf.create({"params": {"optimizer.lr": "tag(log, interval(1e-5, 1.0))"}})
    space = SearchSpace.read(sweeper, [], OmegaConf.create({}))
    sampler = make_sampler(OmegaConf.create({"_target_": "optuna.samplers.TPESampler", "seed": 0,
                                             "n_startup_trials": 5}), space)  # fmt: skip
    name = f"learns-{told_as}-{n_trials}"
    storage = new_in_memory(name)
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction="maximize")
    broker = Broker(study, storage, space, n_trials)
    drawn = []
    while (asked := broker.ask()[0]) is not None:
        trial, _ = asked
        lr = trial.params["optimizer.lr"]
        drawn.append(lr)
        if lr <= BREAKS_ABOVE:
            broker.tell(Ended(trial.number, COMPLETE, (accuracy(lr),)))
        elif told_as == DIVERGED:
            broker.tell(Ended(trial.number, DIVERGED, (1 / 6,), "training diverged"))
        else:
            broker.tell(Ended(trial.number, FAILED, reason="training diverged"))
    return drawn


def test_tpe_told_of_diverged_trials_proposes_fewer_of_them_than_told_of_failed_ones():
    diverged, failed = (sum(lr > BREAKS_ABOVE for lr in sweep(told)[5:]) for told in (DIVERGED, FAILED))
    assert diverged < failed / 2, (diverged, failed)
    assert len(sweep(DIVERGED, n_trials=12)) == 12, "a diverged trial counts toward n_trials"
