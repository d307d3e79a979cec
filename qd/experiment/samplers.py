"""How a sweep's trials are drawn: the configured sampler (`hydra.sweeper.sampler`), made so that many sweep
processes can share one study.

Every sampler that takes a seed (TPE, random, CMA-ES, NSGA-II, MOTPE) is made anew for each trial, seeded from the
study's seed and the trial's number, which the database hands out once: sweep processes on one study draw from
different streams, a resumed study goes on where it was, and one seed repeats a study. CMA-ES and NSGA-II keep their
state in the study's trials, so a new instance goes on where the last one stopped.

TPE and the random sampler also count the trials that run elsewhere as bad ones (TPE's `constant_liar`), so that
processes spread out; and a parameter set the study already holds is drawn again, then replaced by an unexplored one
while unexplored ones remain. A conditional key is modelled on the trials that drew it from the same range only.

The grid sampler is Optuna's, built from the search space: each point once, across processes (the study's lock
shows each process the points that run elsewhere); a trial queued to run again keeps its point.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable

from hydra.utils import instantiate
from omegaconf import DictConfig

from qd.experiment.lean_optuna import optuna
from qd.experiment.outcomes import interrupted
from qd.experiment.search import SearchSpace, finite_values

D = optuna.distributions
ATTEMPTS = 20  # draws of a parameter set before an unexplored one replaces a repeat
MOST_ENUMERATED = 100_000  # the largest finite space whose unexplored sets are listed


def kind(sampler: DictConfig) -> str:
    """The sampler's class name (`TPESampler`, `GridSampler`, ...)."""
    return str(sampler.get("_target_", "")).rpartition(".")[2]


def make_sampler(sampler: DictConfig, space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The study's sampler for `hydra.sweeper.sampler` over `space` (the grid's points checked by the caller)."""
    name = kind(sampler)
    if name == "GridSampler":
        return QueueAwareGrid(space.finite())
    if "seed" not in sampler:  # a sampler of the user's without a seed: as configured
        return instantiate(sampler)
    extra = {"constant_liar": True} if name == "TPESampler" else {}
    make = lambda seed: instantiate(sampler, seed=seed, **extra)  # noqa: E731
    if name in ("TPESampler", "RandomSampler"):
        return DistinctSampler(make, sampler.get("seed"), space.searched, joint=bool(sampler.get("multivariate")))
    return PerTrialSampler(make, sampler.get("seed"))


class QueueAwareGrid(optuna.samplers.GridSampler):
    """Optuna's grid, leaving the point of a trial queued to run an interrupted one again (its fixed parameters)
    as it is: Optuna 2.10's grid would give it a new point too, which would then count as visited."""

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict) -> dict:
        if "fixed_params" in trial.system_attrs:
            return {}
        return super().sample_relative(study, trial, search_space)


class PerTrialSampler(optuna.samplers.BaseSampler):
    """The configured sampler, made anew for each trial with a seed drawn from the study's and the trial's number."""

    def __init__(self, make: Callable[[int | None], optuna.samplers.BaseSampler], seed: int | None) -> None:
        self._make, self._seed = make, seed
        self._current: tuple[int, optuna.samplers.BaseSampler, random.Random] | None = None

    def _for(self, trial: optuna.trial.FrozenTrial) -> tuple[optuna.samplers.BaseSampler, random.Random]:
        if self._current is None or self._current[0] != trial.number:
            seed = None if self._seed is None else random.Random(f"{self._seed}:{trial.number}").getrandbits(31)
            self._current = trial.number, self._make(seed), random.Random(seed)
        return self._current[1:]

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict:
        return self._for(trial)[0].infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict) -> dict:
        return self._for(trial)[0].sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, name: str,
                           distribution: D.BaseDistribution) -> object:  # fmt: skip
        return self._for(trial)[0].sample_independent(study, trial, name, distribution)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: object, values: object) -> None:
        self._for(trial)[0].after_trial(study, trial, state, values)


class DistinctSampler(PerTrialSampler):
    """TPE or the random sampler, seeded per trial, drawing the searched keys together so that a set the study holds
    is not drawn again while unexplored ones remain; with `joint` (TPE's `multivariate`), by TPE's joint model over
    the keys every finished trial drew, the others one by one."""

    def __init__(self, make: Callable[[int | None], optuna.samplers.BaseSampler], seed: int | None,
                 searched: dict[str, D.BaseDistribution], joint: bool = False) -> None:  # fmt: skip
        super().__init__(make, seed)
        self._searched, self._joint = searched, joint

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict:
        return dict(self._searched)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict) -> dict:
        if not search_space or "fixed_params" in trial.system_attrs:  # a requeued trial keeps its own values
            return {}
        names = sorted(search_space)
        held = {tuple(p[n] for n in names) for t in study.get_trials(deepcopy=False)
                if t.number != trial.number and not interrupted(t)
                and set(names) <= (p := params_of(t)).keys()}  # fmt: skip
        joint = self._joint_space(study, trial, search_space)
        for _ in range(ATTEMPTS):
            drawn = self._draw(study, trial, search_space, joint)
            if tuple(drawn[n] for n in names) not in held:
                return drawn
        unexplored = sorted(set(all_sets(search_space, names)) - held, key=repr)
        return dict(zip(names, self._for(trial)[1].choice(unexplored), strict=True)) if unexplored else drawn

    def _joint_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, space: dict) -> dict:
        """The searched keys TPE's multivariate model draws together (with `joint`): those it infers from the study."""
        if not self._joint:
            return {}
        inferred = self._for(trial)[0].infer_relative_search_space(study, trial)
        return {n: d for n, d in inferred.items() if space.get(n) == d}

    def _draw(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, space: dict, joint: dict) -> dict:
        """One draw of every key of `space`: those of `joint` by TPE's multivariate model, the others one by one."""
        drawn = self._for(trial)[0].sample_relative(study, trial, joint) if joint else {}
        return {n: drawn[n] if n in drawn else self.sample_independent(study, trial, n, d) for n, d in space.items()}

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, name: str,
                           distribution: D.BaseDistribution) -> object:  # fmt: skip
        return super().sample_independent(SameRange(study, name, distribution), trial, name, distribution)


def params_of(trial: optuna.trial.FrozenTrial) -> dict:
    """A trial's values; a queued trial's, those it will run with."""
    return trial.params or trial.system_attrs.get("fixed_params", {})


def all_sets(space: dict[str, D.BaseDistribution], names: list[str]) -> list[tuple]:
    """Every parameter set of a finite space, in `names` order; none when a key is continuous or the space is huge."""
    values = [finite_values(space[n]) for n in names]
    if any(v is None for v in values) or math.prod(len(v) for v in values) > MOST_ENUMERATED:
        return []
    return list(itertools.product(*values))


class SameRange:
    """The study as the sampler sees it for one key: only the trials that drew the key from `distribution` (a
    conditional key's other branches draw it from other ranges)."""

    def __init__(self, study: optuna.Study, name: str, distribution: D.BaseDistribution) -> None:
        self._study, self._name, self._distribution = study, name, distribution

    def get_trials(self, deepcopy: bool = True, states: tuple | None = None) -> list[optuna.trial.FrozenTrial]:
        trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in trials if t.distributions.get(self._name, self._distribution) == self._distribution]

    def __getattr__(self, name: str) -> object:
        return getattr(self._study, name)
