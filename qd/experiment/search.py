"""What a sweep searches: the sweeper's `params` with the command line's sweep expressions, as the Optuna sweeper
reads them, the deprecated `search_space` where there are no params, and the conditional keys of the app config's
`search.conditional`; how each trial's values are drawn. Every bad entry is one line (QDError), before the study
opens.

An expression means what it means to Hydra: `choice(a, b)` its values, `interval(a, b)` every value between a
and b (whole numbers where both are), with `tag(log, ...)` drawn on a log scale, `range(a, b, step)` the values of
Hydra's range, b excluded (the Optuna sweeper 1.3 also draws b, except with the grid sampler).

`search.conditional` (qd's addition, Optuna's define-by-run space as data): a key searched only where another key
took given values, in the range of that branch; the first branch whose `when` matches is searched. On the command
line: `'+search.conditional.optimizer.momentum=[{when: {key: optimizer, values: [sgd]}, choices: [0.9]}]'`.

    search:
      conditional:
        optimizer.lr:
          - {when: {key: optimizer, values: [sgd]}, low: 0.01, high: 0.5, log: true}
          - {when: {key: optimizer, values: [adam, adamw]}, low: 1.0e-4, high: 0.01, log: true}
        optimizer.momentum:
          - {when: {key: optimizer, values: [sgd]}, choices: [0.9, 0.95]}
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from textwrap import dedent

from omegaconf import DictConfig, OmegaConf

from qd.core.errors import QDError
from qd.experiment.identity import flatten
from qd.experiment.lean_optuna import optuna

D = optuna.distributions
BRANCH_KEYS = {"when", "low", "high", "log", "choices"}
SEARCH_SPACE_URL = "https://hydra.cc/docs/upgrades/1.1_to_1.2/changes_to_sweeper_config/"


@dataclass(frozen=True)
class Branch:
    """One range of a conditional key: searched where `key` took one of `values`."""

    key: str
    values: tuple
    distribution: D.BaseDistribution


@dataclass
class SearchSpace:
    searched: dict[str, D.BaseDistribution]  # drawn for every trial
    expressions: dict[str, str]  # the same, as the overrides spell them (`tag(log, interval(1e-5, 1.0))`)
    fixed: dict[str, str]  # fixed on the command line, `key: value` as the job's overrides give them
    conditional: dict[str, list[Branch]]  # searched where a branch's `when` matches
    extend: Callable[[optuna.Trial], None] | None = None  # hydra.sweeper.custom_search_space, given the config

    @classmethod
    def read(cls, sweeper: DictConfig, arguments: list[str], app: DictConfig) -> SearchSpace:
        """From the sweeper's config (params, or the deprecated search_space), the command line's task overrides
        (`arguments`) and the app config's `search.conditional` (QDError: one line)."""
        params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        searched, expressions, fixed = parse_overrides(params + list(arguments))
        deprecated = sweeper.get("search_space")
        if deprecated is not None and sweeper.get("params") is None:
            deprecated_warning()
            old = {str(k): from_config(f"hydra.sweeper.search_space.{k}", v) for k, v in deprecated.items()}
            searched = {**old, **searched}
            expressions.update({k: str(OmegaConf.to_container(deprecated[k])) for k in old if k not in expressions})
        elif deprecated is not None:
            import warnings

            warnings.warn(
                "Both hydra.sweeper.params and hydra.sweeper.search_space are configured.\nHydra will use "
                f"hydra.sweeper.params for defining search space.\n{SEARCH_SPACE_URL}",
                stacklevel=2,
            )
        for key in [k for k in searched if k.lstrip("+~") in {f.lstrip("+~") for f in fixed}]:
            del searched[key]
            expressions.pop(key.lstrip("+~"), None)
        given = {k.lstrip("+~") for k in [*searched, *fixed]}
        conditional = OmegaConf.to_container(OmegaConf.select(app, "search.conditional") or OmegaConf.create({}))
        branches = read_conditional(conditional, given)
        return cls(searched, expressions, fixed, {k: v for k, v in branches.items() if k not in given})

    def rehearse(self) -> None:
        """Draw once in a study of this process's memory: a custom search space that suggests a key the overrides fix
        is refused (QDError) before the sweep's study opens, where it does so on a first draw."""
        if self.extend:
            self.draw(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask())

    def draw(self, trial: optuna.Trial) -> list[str]:
        """Draw the trial's values (a requeued trial keeps its own); the job's overrides that set them."""
        for name, distribution in self.searched.items():
            suggest(trial, name, distribution)
        for name, branches in self.conditional.items():
            branch = next((b for b in branches if self.value(trial, b.key) in b.values), None)
            if branch:
                suggest(trial, name, branch.distribution)
        if self.extend:
            self.extend(trial)
        overlap = sorted(trial.params.keys() & {k.lstrip("+~") for k in self.fixed})
        if overlap:
            raise QDError(f"hydra.sweeper.custom_search_space: it suggested {', '.join(overlap)}, which the overrides "
                          "fix; search a key, or fix it, not both")  # fmt: skip
        return [f"{k}={v}" for k, v in {**trial.params, **self.fixed}.items()]

    def value(self, trial: optuna.Trial, key: str) -> object:
        """The trial's value of `key`: searched, or fixed on the command line."""
        if key in trial.params:
            return trial.params[key]
        return next((v for k, v in self.fixed.items() if k.lstrip("+~") == key), None)

    def finite(self) -> dict[str, list] | None:
        """Every value of each searched key, or None when one of them is continuous."""
        values = {name: finite_values(d) for name, d in self.searched.items()}
        return None if any(v is None for v in values.values()) else values


def parse_overrides(overrides: list[str]) -> tuple[dict[str, D.BaseDistribution], dict[str, str], dict[str, str]]:
    """The searched keys' distributions and expressions, and the fixed keys' values, of `key=value` overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    searched, expressions, fixed = {}, {}, {}
    for text in overrides:
        try:
            (override,) = parser.parse_overrides([text])
        except HydraException as e:
            raise QDError(f"hydra.sweeper.params: {text}: Hydra's override grammar cannot read it ({e})") from None
        key = override.get_key_element()
        if override.is_sweep_override():
            searched[key] = distribution_of(override)
            expressions[override.key_or_group] = text.partition("=")[2]
        else:
            fixed[key] = override.get_value_element_as_str()
    return searched, expressions, fixed


def distribution_of(override: object) -> D.BaseDistribution:
    """The Optuna distribution of a sweep expression, as Hydra means it."""
    from hydra.core.override_parser.types import Transformer

    if override.is_choice_sweep() or (override.is_range_sweep() and override.value().shuffle):
        return D.CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():
        values = list(override.sweep_iterator())
        if not values:
            raise QDError(f"{override.input_line}: an empty range")
        low, high, step = min(values), max(values), abs(override.value().step)
        if all(isinstance(v, int) for v in values):
            return D.IntUniformDistribution(low, high, step=step)
        return D.DiscreteUniformDistribution(low, high, step)
    interval = override.value()
    low, high, log = interval.start, interval.end, "log" in interval.tags
    check_range(override.input_line, low, high, log)
    if isinstance(low, int) and isinstance(high, int):
        return D.IntLogUniformDistribution(low, high) if log else D.IntUniformDistribution(low, high)
    return D.LogUniformDistribution(low, high) if log else D.UniformDistribution(low, high)


def check_range(where: str, low: object, high: object, log: bool) -> None:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
    if not numbers or low > high:
        raise QDError(f"{where}: expected a low and a high number, low below high")
    if log and low <= 0:
        raise QDError(f"{where}: a log scale needs a low above 0")


def deprecated_warning() -> None:
    """The Optuna sweeper's warning for `hydra.sweeper.search_space`, word for word."""
    from qd.experiment.compat import deprecation_warning

    deprecation_warning(dedent(f"""\
        `hydra.sweeper.search_space` is deprecated and will be removed in the next major release.
        Please configure with `hydra.sweeper.params`.
        {SEARCH_SPACE_URL}
        """))  # fmt: skip


def from_config(where: str, entry: object) -> D.BaseDistribution:
    """A distribution of the deprecated `search_space` ({type: int|float|categorical, low, high, log, step,
    choices})."""
    entry = OmegaConf.to_container(entry) if isinstance(entry, DictConfig) else entry
    kind = entry.get("type") if isinstance(entry, dict) else None
    kind = getattr(kind, "name", kind)
    if kind == "categorical" and entry.get("choices"):
        return D.CategoricalDistribution(entry["choices"])
    if kind not in ("int", "float"):
        raise QDError(f"{where}: expected type int, float or categorical (with choices), got {entry}")
    low, high, log, step = entry.get("low"), entry.get("high"), entry.get("log", False), entry.get("step")
    check_range(where, low, high, log)
    if kind == "int":
        low, high = int(low), int(high)
        return D.IntLogUniformDistribution(low, high) if log else D.IntUniformDistribution(low, high, step=step or 1)
    if log:
        return D.LogUniformDistribution(low, high)
    return D.DiscreteUniformDistribution(low, high, step) if step else D.UniformDistribution(low, high)


def read_conditional(conditional: object, given: set[str]) -> dict[str, list[Branch]]:
    """`search.conditional`, checked entry by entry against its format (see the module's docstring)."""
    if not isinstance(conditional, dict):
        raise QDError(f"search.conditional: expected a mapping of keys to lists of branches, got {conditional!r}")
    read = {}
    for name, branches in flatten(conditional).items():  # `optimizer: {lr: [...]}` (an override's) is `optimizer.lr`
        where = f"search.conditional.{name}"
        if not isinstance(branches, list) or not branches:
            raise QDError(f"{where}: expected a list of branches ({{when: {{key, values}}, low, high[, log]}} or "
                          "{when: ..., choices})")  # fmt: skip
        read[name] = [read_branch(f"{where}[{i}]", b, given) for i, b in enumerate(branches)]
    return read


def read_branch(where: str, branch: object, given: set[str]) -> Branch:
    if not isinstance(branch, dict):
        raise QDError(f"{where}: expected a mapping ({{when: {{key, values}}, low, high[, log]}} or choices), got "
                      f"{branch!r}")  # fmt: skip
    unknown = sorted(set(branch) - BRANCH_KEYS)
    if unknown:
        raise QDError(f"{where}: unknown key {', '.join(map(str, unknown))}; expected when, low, high, log or choices")
    when = branch.get("when")
    if not (isinstance(when, dict) and set(when) == {"key", "values"} and isinstance(when["values"], list)
            and when["values"]):  # fmt: skip
        raise QDError(f"{where}.when: expected {{key: KEY, values: [VALUE, ...]}}, got {when!r}")
    if when["key"] not in given:
        raise QDError(f"{where}.when.key: {when['key']} is neither searched nor fixed by this sweep; expected one of "
                      f"{', '.join(sorted(given)) or 'its searched keys'}")  # fmt: skip
    values = tuple(str(v) if not isinstance(v, (bool, int, float)) else v for v in when["values"])
    if "choices" in branch:
        if set(branch) & {"low", "high", "log"} or not isinstance(branch["choices"], list) or not branch["choices"]:
            raise QDError(f"{where}: expected either choices (a list) or low and high, not both")
        return Branch(when["key"], values, D.CategoricalDistribution(branch["choices"]))
    if "low" not in branch or "high" not in branch:
        raise QDError(f"{where}: expected low and high (or choices)")
    low, high, log = branch["low"], branch["high"], branch.get("log", False)
    if not isinstance(log, bool):
        raise QDError(f"{where}.log: expected true or false, got {log!r}")
    check_range(where, low, high, log)
    if isinstance(low, int) and isinstance(high, int):
        kind = D.IntLogUniformDistribution if log else D.IntUniformDistribution
    else:
        kind = D.LogUniformDistribution if log else D.UniformDistribution
    return Branch(when["key"], values, kind(low, high))


def suggest(trial: optuna.Trial, name: str, d: D.BaseDistribution) -> object:
    """The trial's value of `name`, drawn from `d` through the trial's public suggest methods."""
    if isinstance(d, D.CategoricalDistribution):
        return trial.suggest_categorical(name, d.choices)
    if isinstance(d, D.IntLogUniformDistribution):
        return trial.suggest_int(name, d.low, d.high, log=True)
    if isinstance(d, D.IntUniformDistribution):
        return trial.suggest_int(name, d.low, d.high, step=d.step)
    if isinstance(d, D.DiscreteUniformDistribution):
        return trial.suggest_float(name, d.low, d.high, step=d.q)
    return trial.suggest_float(name, d.low, d.high, log=isinstance(d, D.LogUniformDistribution))


def finite_values(d: D.BaseDistribution) -> list | None:
    """Every value of a finite distribution; None for a continuous one."""
    if isinstance(d, D.CategoricalDistribution):
        return list(d.choices)
    if isinstance(d, D.IntUniformDistribution):
        return list(range(d.low, d.high + 1, d.step))
    if isinstance(d, D.IntLogUniformDistribution):
        return list(range(d.low, d.high + 1))
    if isinstance(d, D.DiscreteUniformDistribution):
        return [d.low + i * d.q for i in range(round((d.high - d.low) / d.q) + 1)]
    return None
