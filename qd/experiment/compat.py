"""The private parts of Hydra, Optuna and joblib that qd relies on, each with the reason no public one serves.

An upgrade of one of these libraries touches this file alone: tests/test_compat.py pins the signatures and fields
used here, so that a change in them fails there, in one place, not deep inside a sweep.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode, TaskFunction
from omegaconf import DictConfig

# The `_target_` of Hydra's basic launcher (in hydra._internal), as its config names it: it runs each job in this
# process, one at a time, so a sweep keeps one trial in flight and a Ctrl-C reaches the job itself.
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
# Optuna's error (a ValueError, no class of its own) where create_study(load_if_exists=True) finds the study made to
# other directions: qd says so in one line instead.
OTHER_DIRECTIONS = "Cannot overwrite study direction"


@contextlib.contextmanager
def hydra_app(config_dir: str, job_name: str) -> Iterator[Any]:
    """Hydra's application object for the configs in `config_dir` (`hydra._internal.hydra.Hydra`). The public
    `compose` composes for a single run only, and `hydra.main` offers no step between composing and running: qd
    composes with this object to refuse a bad config in one line before any folder exists, then runs Hydra's own run
    and multirun paths on it (`run`, `multirun`)."""
    with initialize_config_dir(config_dir=config_dir, job_name=job_name, version_base="1.3"):
        yield GlobalHydra.instance().hydra


def compose(app: Any, config_name: str, overrides: list[str]) -> DictConfig:
    """The config, `hydra` node included, as a multirun composes it (sweep expressions left to the sweeper)."""
    return app.compose_config(config_name=config_name, overrides=overrides, run_mode=RunMode.MULTIRUN,
                              validate_sweep_overrides=False)  # fmt: skip


def run(app: Any, config_name: str, task: TaskFunction, overrides: list[str]) -> JobReturn:
    """Hydra's single run (`Hydra.run`, what `hydra.main` calls): its callbacks, folder, .hydra/ and logging."""
    return app.run(config_name=config_name, task_function=task, overrides=overrides)


def multirun(app: Any, config_name: str, task: TaskFunction, overrides: list[str]) -> None:
    """Hydra's multirun (`Hydra.multirun`, what `hydra.main` calls): its callbacks, the configured sweeper and
    launcher."""
    app.multirun(config_name=config_name, task_function=task, overrides=overrides)


def job_error(ret: JobReturn) -> BaseException | None:
    """The error that ended a failed job, None for one that completed. `JobReturn.return_value` raises it, but first
    writes "Error executing job with overrides ..." to stderr: qd says how each trial ended in one line of its own."""
    return ret._return_value if ret.status == JobStatus.FAILED else None


def deprecation_warning(message: str) -> None:
    """Hydra's own deprecation warning (an error under HYDRA_DEPRECATION_WARNINGS_AS_ERRORS), as the Optuna sweeper
    gives it for `hydra.sweeper.search_space`."""
    from hydra._internal.deprecation_warning import deprecation_warning as warn

    warn(message=message)


def optuna_schema() -> dict[str, set[str]]:
    """The tables and columns of an Optuna 2.x study database, from Optuna's own models
    (`optuna.storages._rdb.models`): the only way to tell, without writing to it, a study database from another
    program's."""
    from optuna.storages._rdb.models import BaseModel

    return {name: {c.name for c in table.columns} for name, table in BaseModel.metadata.tables.items()}


def rdb_trials_except(storage: Any, study_id: int, excluded: set[int]) -> dict[int, Any]:
    """The trials of study `study_id` by trial id, but those whose ids are `excluded`, read whole from the RDB
    storage (`RDBStorage._get_trials`, as Optuna's own cached storage reads them; `FrozenTrial._trial_id`): the public
    `get_all_trials` leaves trials out by state only, and a frozen trial shows its id to no public reader."""
    return {trial._trial_id: trial for trial in storage._get_trials(study_id, None, excluded)}


def joblib_options(launcher: dict) -> dict:
    """The joblib options the joblib launcher derives from its config (`hydra_joblib_launcher._core`), so that the
    workers qd warms are the processes its launches then use."""
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg

    options = {k: v for k, v in launcher.items() if k != "_target_"}
    options["backend"] = "loky"  # as the launcher's launch() sets it
    process_joblib_cfg(options)
    return options


def quiet_joblib_double_clean_up() -> None:
    """At Ctrl-C, two of joblib's clean-ups delete a call's temporary folder in /dev/shm, and the second warns that it
    failed (joblib's issue 1595). qd's parallel launcher gives joblib a place where it makes no such folder; with the
    joblib launcher as another app configures it, that warning is kept quiet."""
    import warnings

    warnings.filterwarnings("ignore", message="Failed to delete temporary folder", category=UserWarning)


def stop_joblib_workers() -> None:
    """End joblib's worker processes now (loky's reusable executor, in joblib.externals): left alone, they live on
    idle for minutes, and their interpreter's teardown of torch takes seconds."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor(reuse=True).shutdown(wait=True, kill_workers=True)
