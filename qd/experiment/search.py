"""What a sweep searches, and how each trial's values are drawn.

The search space is the preset's `hydra.sweeper.params` with the command line's sweep expressions added and its
fixed values taken out, as the Optuna sweeper decides it, and the conditional keys of the config's
`search.conditional`: each searched only when another key took given values, in the range of that branch.

The sampler is the configured one (TPE), made anew for each trial with a seed drawn from the study's seed and the
trial's number, which the database hands out once: sweep processes on one study draw from different streams, a
resumed study goes on where it was, and the same seed repeats a study. TPE counts the trials that run elsewhere as
bad ones (`constant_liar`), so that processes spread out; and a parameter set that a trial of the study already
holds is drawn again, then replaced by an unexplored one, while unexplored ones remain. A conditional key is
modelled on the trials that drew it from the same range only: TPE's density for one branch never holds values
from another's range (which made it divide by zero).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qd.experiment.lean_optuna import optuna
from qd.experiment.trial import INTERRUPTED, OUTCOME

D = optuna.distributions
ATTEMPTS = 20  # draws of a parameter set before an unexplored one replaces a repeat
MOST_ENUMERATED = 100_000  # the largest finite space whose unexplored sets are listed


@dataclass
class SearchSpace:
    searched: dict[str, D.BaseDistribution]  # drawn for every trial
    expressions: dict[str, str]  # the same, as the overrides spell them (`tag(log, interval(1e-5, 1.0))`)
    fixed: dict[str, str]  # fixed on the command line, `key: value` as the job's overrides give them
    conditional: dict[str, list[dict]]  # key -> its branches: {when: {key, values}, low, high[, log] | choices}

    @classmethod
    def of(cls, params: list[str], conditional: DictConfig | None) -> SearchSpace:
        """From the sweeper's params and the command line's task overrides (`key=expression` each)."""
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides  # after lean_optuna

        searched, fixed = create_params_from_overrides(params)
        keys = {k.lstrip("+~") for k in fixed}
        expressions = {o.key_or_group: o.input_line.partition("=")[2]
                       for o in OverridesParser.create().parse_overrides(params) if o.is_sweep_override()}  # fmt: skip
        branches = OmegaConf.to_container(conditional) if conditional else {}
        return cls({k: v for k, v in searched.items() if k not in keys},
                   {k: v for k, v in expressions.items() if k not in keys}, fixed,
                   {k: v for k, v in branches.items() if k not in keys})  # fmt: skip

    def draw(self, trial: optuna.Trial) -> list[str]:
        """Draw the trial's values (a requeued trial keeps its own); the job's overrides that set them."""
        for name, distribution in self.searched.items():
            trial._suggest(name, distribution)  # as the Optuna sweeper does: the distribution, not its kind
        for name, branches in self.conditional.items():
            branch = next((b for b in branches if self.value(trial, b["when"]["key"]) in b["when"]["values"]), None)
            if branch:
                trial._suggest(name, branch_distribution(branch))
        return [f"{k}={v}" for k, v in {**trial.params, **self.fixed}.items()]

    def value(self, trial: optuna.Trial, key: str) -> object:
        """The trial's value of `key`: searched, or fixed on the command line."""
        return trial.params.get(key, self.fixed.get(key.lstrip("+")))


def branch_distribution(branch: dict) -> D.BaseDistribution:
    if "choices" in branch:
        return D.CategoricalDistribution(branch["choices"])
    log = branch.get("log", False)
    if isinstance(branch["low"], int) and isinstance(branch["high"], int):
        return (D.IntLogUniformDistribution if log else D.IntUniformDistribution)(branch["low"], branch["high"])
    return (D.LogUniformDistribution if log else D.UniformDistribution)(branch["low"], branch["high"])


def per_trial_sampler(sampler: DictConfig) -> Callable[[int | None], optuna.samplers.BaseSampler] | None:
    """How to make the configured sampler with a given seed; None for samplers drawn otherwise than TPE's and the
    random sampler's way (grid, CMA-ES, NSGA-II): those are used as configured."""
    target = str(sampler.get("_target_", ""))
    if target.endswith(".TPESampler"):
        return lambda seed: instantiate(sampler, seed=seed, constant_liar=True)
    if target.endswith(".RandomSampler"):
        return lambda seed: instantiate(sampler, seed=seed)
    return None


class DistinctSampler(optuna.samplers.BaseSampler):
    """The configured sampler, seeded per trial, drawing the searched keys together so that a set the study holds is
    not drawn again while unexplored ones remain."""

    def __init__(self, make: Callable[[int | None], optuna.samplers.BaseSampler], seed: int | None,
                 searched: dict[str, D.BaseDistribution]) -> None:  # fmt: skip
        self._make, self._seed, self._searched = make, seed, searched
        self._current: tuple[int, optuna.samplers.BaseSampler, random.Random] | None = None

    def _for(self, trial: optuna.trial.FrozenTrial) -> tuple[optuna.samplers.BaseSampler, random.Random]:
        if self._current is None or self._current[0] != trial.number:
            seed = None if self._seed is None else random.Random(f"{self._seed}:{trial.number}").getrandbits(31)
            self._current = trial.number, self._make(seed), random.Random(seed)
        return self._current[1:]

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict:
        return dict(self._searched)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict) -> dict:
        if not search_space or "fixed_params" in trial.system_attrs:  # a requeued trial keeps its own values
            return {}
        names = sorted(search_space)
        held = {tuple(p[n] for n in names) for t in study.get_trials(deepcopy=False)
                if t.number != trial.number and t.user_attrs.get(OUTCOME) != INTERRUPTED
                and set(names) <= (p := params_of(t)).keys()}  # fmt: skip
        for _ in range(ATTEMPTS):
            drawn = {n: self.sample_independent(study, trial, n, search_space[n]) for n in names}
            if tuple(drawn[n] for n in names) not in held:
                return drawn
        unexplored = sorted(set(all_sets(search_space, names)) - held, key=repr)
        return dict(zip(names, self._for(trial)[1].choice(unexplored), strict=True)) if unexplored else drawn

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, name: str,
                           distribution: D.BaseDistribution) -> object:  # fmt: skip
        return self._for(trial)[0].sample_independent(SameRange(study, name, distribution), trial, name, distribution)


def params_of(trial: optuna.trial.FrozenTrial) -> dict:
    """A trial's values; a queued trial's, those it will run with."""
    return trial.params or trial.system_attrs.get("fixed_params", {})


def all_sets(space: dict[str, D.BaseDistribution], names: list[str]) -> list[tuple]:
    """Every parameter set of a finite space, in `names` order; none when a key is continuous or the space is huge."""
    values = [finite_values(space[n]) for n in names]
    if any(v is None for v in values) or math.prod(len(v) for v in values) > MOST_ENUMERATED:
        return []
    return list(itertools.product(*values))


def finite_values(d: D.BaseDistribution) -> list | None:
    if isinstance(d, D.CategoricalDistribution):
        return list(d.choices)
    if isinstance(d, D.IntUniformDistribution):
        return list(range(d.low, d.high + 1, d.step))
    if isinstance(d, D.IntLogUniformDistribution):
        return list(range(d.low, d.high + 1))
    if isinstance(d, D.DiscreteUniformDistribution):
        return [d.low + i * d.q for i in range(round((d.high - d.low) / d.q) + 1)]
    return None


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
