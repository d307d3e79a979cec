"""A qd job's side of its trial of qd's sweeper: the trial's number is Hydra's job number (`hydra.job.num`), its
study `hydra.sweeper.study_name`. Where the job can reach the study, it names its folder and process there (for a
sweep that dies before the job: qd.experiment.janitor) and reports its learning curve for the pruner. How it ends
goes back to the sweep in its return: its dev accuracy, or its error (pruned, or failed, in one line).
"""

from __future__ import annotations

import os
import pydoc
import socket
from pathlib import Path

from omegaconf import DictConfig

from qd.core.errors import Pruned, QDError, disk_error, one_line
from qd.experiment import slurm
from qd.experiment.conf import group_options
from qd.experiment.lean_optuna import optuna
from qd.experiment.outcomes import JOB_DIR, JOB_DIR_FROM_DATABASE, SLURM_JOB, SWEEPER, WORKER
from qd.experiment.processes import this_process, watch_parent
from qd.experiment.storage import reachable, sqlite_path


def make_pruner(cfg: dict | None) -> optuna.pruners.BasePruner:
    """The Optuna pruner that the sweep's `pruning` (conf/pruning/) names by its `_target_`, with its options; none
    where the config has no `pruning`. A pruner that cannot be built is one line (QDError)."""
    if not cfg:
        return optuna.pruners.NopPruner()
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    target, expected = cfg.get("_target_"), "an Optuna pruner, such as optuna.pruners.MedianPruner (conf/pruning/)"
    if not target:
        raise QDError(f"pruning: {cfg} names no _target_; expected {expected}, or pruning=<one of "
                      f"{', '.join(group_options('pruning'))}>")  # fmt: skip
    try:
        kind = pydoc.locate(target)
    except pydoc.ErrorDuringImport as e:
        raise QDError(f"pruning._target_={target}: cannot be imported ({one_line(e.value)})") from None
    if kind is None:
        raise QDError(f"pruning._target_={target}: cannot be found; expected {expected}")
    if not (isinstance(kind, type) and issubclass(kind, optuna.pruners.BasePruner)):
        raise QDError(f"pruning._target_={target}: not a pruner; expected {expected}")
    try:
        return instantiate(cfg)
    except InstantiationException as e:
        raise QDError(f"pruning: {target} refused its options ({one_line(e.__cause__ or e)})") from None


def running_trial(storage: optuna.storages.BaseStorage, study_name: str, number: int,
                  pruner: optuna.pruners.BasePruner | None = None) -> tuple[optuna.Trial, int]:  # fmt: skip
    """Trial `number` of the study, which must still run (QDError otherwise: the sweep ended it meanwhile), and its
    trial id."""
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)
    if storage.get_trial(trial_id).state != optuna.trial.TrialState.RUNNING:
        raise QDError(f"trial {number} of study {study_name} no longer runs: its sweep ended it before this job began")
    return optuna.trial.Trial(study, trial_id), trial_id


class JobTrial:
    """This job's trial: its learning curve goes to the study where the job can reach it, and an error that ends it
    leaves as one line (pruned stays pruned). A job that runs in a child of the sweeping process (a parallel worker)
    ends when that process dies."""

    def __init__(self, hc: DictConfig, pruning: dict | None) -> None:
        number, name = int(hc.job.num), str(hc.sweeper.study_name)
        pruner = make_pruner(pruning)
        storage = reachable(hc.sweeper.storage, name)
        self.trial, self.trial_id = running_trial(storage, name, number, pruner) if storage is not None else (None, 0)
        self.prunes = self.trial is not None and not isinstance(pruner, optuna.pruners.NopPruner)
        self.info = {"study": name, "trial": number, "params": self.trial.params if self.trial else {}}
        if self.trial is None:
            return
        out = Path(hc.runtime.output_dir).resolve()
        self.trial.set_user_attr(JOB_DIR, str(out))
        if database := sqlite_path(str(hc.sweeper.storage)):  # the project may move, its study and outputs with it
            self.trial.set_user_attr(JOB_DIR_FROM_DATABASE, os.path.relpath(out, database.resolve().parent))
        self.trial.set_user_attr(WORKER, this_process())
        if slurm.job_id():
            self.trial.set_user_attr(SLURM_JOB, slurm.job_id())
        host, _, pid = self.trial.user_attrs.get(SWEEPER, ":").partition(":")
        if host == socket.gethostname() and pid.isdigit():
            watch_parent(int(pid))

    def on_eval(self, row: dict) -> None:
        if self.trial is None:
            return
        # Trial.report, without its read of the whole trial to ignore a step reported twice: a job reports each once
        self.trial.storage.set_trial_intermediate_value(self.trial_id, row["step"], float(row["dev_acc"]))
        if self.prunes and self.trial.should_prune():
            raise Pruned(f"pruned at step {row['step']} with dev accuracy {row['dev_acc']:.4f}")

    def __enter__(self) -> JobTrial:
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, traceback: object) -> None:
        """An error that ends the job, as one line (QDError, which every launcher carries back); Pruned and a
        QDError as they are; an interrupt untouched."""
        if isinstance(error, Exception) and not isinstance(error, (Pruned, QDError)):
            error = disk_error(error, ".", "its folder keeps what it wrote") or error
            raise QDError(one_line(error)) from None
