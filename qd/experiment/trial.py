"""A sweep job's side of its trial: the job is handed its trial's number (the `trial` key) and study
(`hydra.sweeper.study_name`) as overrides, reports its learning curve there for the pruner, and records how it
ended early (pruned, failed, interrupted, and why) in the trial's attributes, where the sweeping process reads it.
"""

from __future__ import annotations

import functools
import socket
from pathlib import Path

from omegaconf import DictConfig

from qd.core.errors import Pruned, QDError, config_terms, disk_error, one_line
from qd.experiment import slurm
from qd.experiment.lean_optuna import optuna
from qd.experiment.processes import this_process, watch_parent
from qd.experiment.storage import HeldStorage

# A trial's user attributes: the sweeping process that asked for it (`host:pid`); its job's folder and process,
# and its Slurm job where it runs under Slurm; how a job that ended early ended, and why.
SWEEPER, JOB_DIR, WORKER, SLURM_JOB = "sweeper", "job_dir", "worker", "slurm_job"
OUTCOME, REASON = "qd_outcome", "qd_reason"
# The OUTCOME of a trial whose job was lost (Ctrl-C, its process died, Slurm cancelled it or lost its node): the
# study runs it again with its parameters, and it does not count toward n_trials.
INTERRUPTED = "interrupted"


def make_pruner(cfg: dict | None) -> optuna.pruners.BasePruner:
    """From the preset's `pruning` section: none, median or halving (successive halving)."""
    cfg = dict(cfg or {"name": "none"})
    name = cfg.pop("name")
    if name == "median":
        return optuna.pruners.MedianPruner(**cfg)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(**cfg)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise QDError(f"pruning.name: got {name!r}; expected none, median or halving")


@functools.cache
def job_storage(url: str) -> optuna.storages.RDBStorage:
    """The study database as this process's jobs open it: once a process, not once a job (a worker process runs
    many jobs, and each opening builds an engine and checks the schema)."""
    return HeldStorage(url)


def running_trial(storage: optuna.storages.RDBStorage, study_name: str, number: int,
                  pruner: optuna.pruners.BasePruner | None = None) -> optuna.Trial:  # fmt: skip
    """Trial `number` of the study, which must still run (QDError otherwise: the sweep ended it meanwhile)."""
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)
    if storage.get_trial(trial_id).state != optuna.trial.TrialState.RUNNING:
        raise QDError(f"trial {number} of study {study_name} no longer runs: its sweep ended it before this job began")
    return optuna.trial.Trial(study, trial_id)


def record_lost_job(storage: str, study_name: str, number: int, reason: str, interrupted: bool) -> None:
    """Record that the job of trial `number` ended without a word (Slurm cancelled or killed it) and why: the
    sweeping process then tells the trial FAIL with that reason. An interrupted one (cancelled, its node lost) runs
    again; one that failed on its own (out of time or memory) counts."""
    trial = running_trial(job_storage(storage), study_name, number)
    trial.set_user_attr(OUTCOME, INTERRUPTED if interrupted else "failed")
    trial.set_user_attr(REASON, reason)


class SweepTrial:
    """This job's running trial: its learning curve goes to the study, and how the job ended early (failed, pruned
    or interrupted, and why) to the trial's attributes. A job that runs in a child of the sweeping process (a
    parallel worker) ends when that process dies."""

    def __init__(self, hc: DictConfig, number: int, pruning: dict | None) -> None:
        pruner = make_pruner(pruning)
        self.trial = running_trial(job_storage(str(hc.sweeper.storage)), str(hc.sweeper.study_name), number, pruner)
        self.trial.set_user_attr(JOB_DIR, str(Path(hc.runtime.output_dir).resolve()))
        self.trial.set_user_attr(WORKER, this_process())
        if slurm.job_id():
            self.trial.set_user_attr(SLURM_JOB, slurm.job_id())
        host, _, pid = self.trial.user_attrs.get(SWEEPER, ":").partition(":")
        if host == socket.gethostname() and pid.isdigit():
            watch_parent(int(pid))
        self.prunes = not isinstance(pruner, optuna.pruners.NopPruner)  # should_prune() reads the storage
        self.info = {"study": hc.sweeper.study_name, "trial": number, "params": self.trial.params}

    def on_eval(self, row: dict) -> None:
        self.trial.report(row["dev_acc"], row["step"])
        if self.prunes and self.trial.should_prune():
            raise Pruned(f"pruned at step {row['step']} with dev accuracy {row['dev_acc']:.4f}")

    def __enter__(self) -> SweepTrial:
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, traceback: object) -> bool:
        """Record how a job that ended early ended, and swallow the error (not an interrupt): the sweeping process
        prints the trial's one line, instead of Hydra's traceback for a failed job."""
        if error is not None:
            outcome, reason = ended_how(error)
            self.trial.set_user_attr(OUTCOME, outcome)
            self.trial.set_user_attr(REASON, reason)
        return isinstance(error, Exception)


def ended_how(error: BaseException) -> tuple[str, str]:
    """The OUTCOME and REASON of a job that `error` ended."""
    if isinstance(error, Pruned):
        return "pruned", str(error)
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED, "interrupted (Ctrl-C)"
    return "failed", config_terms(one_line(disk_error(error, ".", "its folder keeps what it wrote") or error))
