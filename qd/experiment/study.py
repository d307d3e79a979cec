"""A sweep's study: named, opened (or created) and checked when a sweep starts.

A study is its fixed configuration (qd.experiment.identity) and its directions. With `hydra.sweeper.study_name` null
(qd's presets), the study is named after the preset (or the app) with a hash of that configuration, so that the same
configuration resumes its study and another starts a new one. A name given in the config or on the command line is
used as given, and its study must hold the same configuration and directions.

`hydra.sweeper.storage` null keeps the study in this process's memory, as Optuna does: it ends with the sweep.
"""

from __future__ import annotations

from omegaconf import DictConfig

from qd.core.errors import QDError
from qd.experiment.compat import OTHER_DIRECTIONS
from qd.experiment.identity import differences, fixed_configuration, short_hash
from qd.experiment.lean_optuna import optuna
from qd.experiment.outcomes import FIXED
from qd.experiment.search import SearchSpace
from qd.experiment.storage import new_in_memory, open_for_sweep, with_retries


def open_study(storage_url: str | None, study_name: str | None, directions: list[str], config: DictConfig,
               job: dict, space: SearchSpace, sampler: optuna.samplers.BaseSampler,
               ) -> tuple[optuna.Study, optuna.storages.BaseStorage]:  # fmt: skip
    """Name, open (or create) and check the sweep's study (QDError: one line); the study and its storage (which reads
    what other processes wrote at once: qd.experiment.storage.HeldStorage)."""
    fixed = fixed_configuration(job, space.expressions, set(space.conditional))
    name = study_name or f"{default_prefix(config)}-{short_hash(fixed)}"
    url = storage_url or "memory"
    storage = open_for_sweep(storage_url) if storage_url else new_in_memory(name)
    try:
        study = with_retries(url, lambda: optuna.create_study(
            study_name=name, storage=storage, sampler=sampler, directions=directions, load_if_exists=True))  # fmt: skip
    except ValueError as e:  # the study exists, to other directions: said below, in one line
        if OTHER_DIRECTIONS not in str(e):
            raise
        study = with_retries(url, lambda: optuna.load_study(study_name=name, storage=storage, sampler=sampler))
    held = [d.name.lower() for d in study.directions]
    if held != directions:
        raise QDError(f"hydra.sweeper.direction={directions if len(directions) > 1 else directions[0]}: study {name} "
                      f"was created to {' and '.join(held)}; keep its direction, or name another study "
                      "(hydra.sweeper.study_name=...)")  # fmt: skip
    recorded = with_retries(url, lambda: _recorded_or_record(study, fixed))
    if recorded is not None and recorded != fixed:
        raise QDError(
            f"hydra.sweeper.study_name={name}: that study holds trials of another fixed configuration "
            f"({differences(recorded, fixed)}); name another study, or leave study_name out for a study of this "
            "configuration"
        )
    return study, storage


def default_prefix(config: DictConfig) -> str:
    """What a study that the config does not name is named after: qd's search preset (`+sweep=...`), else the app."""
    choices = config.hydra.runtime.choices
    return str(choices.get("sweep") or config.hydra.job.name)


def _recorded_or_record(study: optuna.Study, fixed: dict) -> dict | None:
    """The fixed configuration the study records; when it records none (new, or made by an earlier qd), record
    `fixed` and return None. Two processes may race here: the loser's insert fails, and a retry reads the winner's."""
    if FIXED in study.user_attrs:
        return study.user_attrs[FIXED]
    study.set_user_attr(FIXED, fixed)
    return None
