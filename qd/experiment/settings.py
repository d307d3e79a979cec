"""The sweeper's settings (`hydra.sweeper`), each read as the Optuna sweeper means it and checked: one that cannot be
honoured is one line (QDError) naming it and what was expected, before anything is created. The scalar settings are
read without Optuna (read_scalars): qd's commands refuse them at once, before its workers start."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig
from omegaconf.errors import OmegaConfBaseException

from qd.core.errors import QDError

if TYPE_CHECKING:
    from qd.experiment.search import SearchSpace

SINGLE_OBJECTIVE = ("CmaEsSampler",)  # samplers that Optuna 2.10 runs on one objective only
SWEEPER_TARGET = "hydra_plugins.qd_sweeper.QDSweeper"


def is_qd_sweep(hydra_cfg: DictConfig) -> bool:
    """Whether a sweep runs on qd's sweeper."""
    return str(hydra_cfg.sweeper.get("_target_", "")) == SWEEPER_TARGET


@dataclass
class Settings:
    """The sweeper's settings, checked."""

    space: SearchSpace
    sampler: DictConfig
    directions: list[str]
    storage: str | None
    study_name: str | None
    n_trials: int
    n_jobs: int
    max_failure_rate: float


def read_settings(config: DictConfig, arguments: list[str]) -> Settings:
    """`config.hydra.sweeper` and the command line's task overrides, each checked (QDError: one line naming the
    setting and what was expected)."""
    sweeper = config.hydra.sweeper
    directions, storage, n_trials, n_jobs, rate = read_scalars(config)
    from qd.experiment.samplers import kind
    from qd.experiment.search import SearchSpace

    space = SearchSpace.read(sweeper, arguments, config)
    space.extend = custom_search_space(sweeper.get("custom_search_space"), config)
    sampler = sweeper.sampler
    if kind(sampler) == "GridSampler":
        n_trials = min(n_trials, grid_size(space))
    if kind(sampler) in SINGLE_OBJECTIVE and len(directions) > 1:
        raise QDError(f"hydra.sweeper.sampler: {kind(sampler)} optimizes one objective, and hydra.sweeper.direction "
                      f"names {len(directions)}; use nsgaii, motpe or tpe")  # fmt: skip
    return Settings(space, sampler, directions, storage, sweeper.get("study_name"), n_trials, n_jobs, rate)


def read_scalars(config: DictConfig) -> tuple[list[str], str | None, int, int, float]:
    """The sweeper's settings that need no Optuna to read, checked: its directions, storage, n_trials, n_jobs and
    max_failure_rate (the launcher's n_jobs too)."""
    sweeper = config.hydra.sweeper
    directions = read_directions(sweeper.get("direction"))
    n_trials, n_jobs, rate = sweeper.get("n_trials"), sweeper.get("n_jobs"), sweeper.get("max_failure_rate")
    check_launcher(config.hydra.launcher)  # first: the parallel preset's sweeper takes its n_jobs from it
    if not (isinstance(n_trials, int) and n_trials >= 1):
        raise QDError(f"hydra.sweeper.n_trials={n_trials}: expected the study's number of trials, 1 or more")
    if not (isinstance(n_jobs, int) and n_jobs >= 1):
        raise QDError(f"hydra.sweeper.n_jobs={n_jobs}: expected the number of trials in flight, 1 or more")
    if not (isinstance(rate, (int, float)) and 0 <= rate <= 1):
        raise QDError(f"hydra.sweeper.max_failure_rate={rate}: expected a share of failed trials from 0 to 1")
    return directions, read_storage(sweeper), n_trials, n_jobs, float(rate)


def read_directions(direction: object) -> list[str]:
    """`minimize`, `maximize`, or a list of them (several objectives), as the Optuna sweeper takes them."""
    given = list(direction) if isinstance(direction, (ListConfig, list)) else [direction]
    names = [str(getattr(d, "name", d)).lower() for d in given]
    if not names or any(n not in ("minimize", "maximize") for n in names):
        raise QDError(f"hydra.sweeper.direction={direction}: expected minimize, maximize, or a list of them (one a "
                      "value the task returns)")  # fmt: skip
    return names


def read_storage(sweeper: DictConfig) -> str | None:
    """The study's storage URL; None keeps the study in this process's memory."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = sweeper.storage
    except OmegaConfBaseException as e:
        raise QDError(f"hydra.sweeper.storage: cannot be resolved ({str(e).splitlines()[0]})") from None
    if url is None:
        return None
    try:
        make_url(str(url))
    except ArgumentError as e:
        raise QDError(f"hydra.sweeper.storage={url}: not a database URL ({e})") from None
    return str(url)


def check_launcher(launcher: DictConfig) -> None:
    """The joblib launcher's n_jobs: its worker processes, 1 or more, or -1 (a worker a core), -2 (all but one)..."""
    n_jobs = launcher.get("n_jobs")
    if "joblib" in str(launcher.get("_target_", "")) and not (isinstance(n_jobs, int) and n_jobs != 0):
        raise QDError(f"hydra.launcher.n_jobs={n_jobs}: expected the number of worker processes, 1 or more (or -1 for "
                      "one a core)")  # fmt: skip


def custom_search_space(target: str | None, config: DictConfig) -> Any:
    """hydra.sweeper.custom_search_space: a function `f(config, trial)` that suggests more of a trial's values."""
    if not target:
        return None
    from hydra.utils import instantiate

    try:
        extend = instantiate({"_target_": target, "_partial_": True})
    except Exception:
        raise QDError(
            f"hydra.sweeper.custom_search_space={target}: cannot be found; expected the dotted path of a "
            "function f(config, trial) that Python can import"
        ) from None
    return lambda trial: extend(config, trial)


def grid_size(space: SearchSpace) -> int:
    """The grid's number of points (QDError where a grid cannot cover the space)."""
    values = space.finite()
    if not values:  # a continuous key, or none searched
        searched = ", ".join(f"{k}={v}" for k, v in space.expressions.items()) or "none"
        raise QDError("hydra.sweeper.sampler=grid: the grid needs each searched key as a choice or a range; "
                      f"searched: {searched}")  # fmt: skip
    if space.conditional or space.extend:
        raise QDError("hydra.sweeper.sampler=grid: the grid is built from hydra.sweeper.params alone; conditional keys "
                      "(search.conditional, custom_search_space) need another sampler")  # fmt: skip
    size = 1
    for choices in values.values():
        size *= len(choices)
    return size
