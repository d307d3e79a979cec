"""The study's janitor: before each ask, holding the study's lock, it settles what dead sweep processes left.

A running trial whose sweeping process died on this machine is told how its job ended, from the job's record,
when the job outlived it (complete, pruned or failed), or is marked interrupted. Every interrupted trial (Ctrl-C, a
dead process, a Slurm job cancelled) is queued once to run again with its parameters: the queued trial names the
trial it reruns, in the one write that creates it, so a process killed at any instant leaves each interrupted trial
queued once or not at all, and the next janitor queues exactly those left.
"""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

from qd.core.data import N_CLASSES
from qd.experiment import slurm
from qd.experiment.lean_optuna import optuna
from qd.experiment.outcomes import (
    COMPLETE,
    DIVERGED,
    FAILED,
    INTERRUPTED,
    JOB_DIR,
    OUTCOME,
    PRUNED,
    REASON,
    REQUEUED,
    RERUN_OF,
    SLURM_JOB,
    SWEEPER,
    WORKER,
    Ended,
    interrupted,
)
from qd.experiment.processes import process_alive

TrialState = optuna.trial.TrialState
CHANCE = 1 / N_CLASSES  # what a diverged trial of qd's app scored, for the sampler (qd.core.errors.DidNotTrain)


class Janitor:
    """Settles study `study`'s trials that dead sweep processes left; `storage` reads what other processes wrote
    at once (qd.experiment.storage.HeldStorage)."""

    def __init__(self, study: optuna.Study, storage: optuna.storages.BaseStorage, study_id: int) -> None:
        self.study, self.storage, self.study_id = study, storage, study_id

    def tidy(self) -> tuple[list[Ended], list[optuna.trial.FrozenTrial], list[optuna.trial.FrozenTrial]]:
        """Settle the orphaned trials and queue the interrupted ones (the caller holds the study's lock); how the
        orphans whose jobs had ended ended, the orphans whose jobs still run, and the study's trials once tidied."""
        ended, outliving, trials, wrote = [], [], self.trials(), False
        for trial in trials:
            if trial.state != TrialState.RUNNING or not _orphaned(trial):
                continue
            if _job_running(trial):
                outliving.append(trial)
            else:
                wrote = True
                if (settled := self.settle(trial)) is not None:
                    ended.append(settled)
        if wrote:
            trials = self.trials()
        if self.requeue(trials):
            trials = self.trials()
        return ended, outliving, trials

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.storage.get_all_trials(self.study_id, deepcopy=False)

    def settle(self, trial: optuna.trial.FrozenTrial) -> Ended | None:
        """Tell an orphan whose job ended how it ended, from the job's record; mark it interrupted where there is
        none (None)."""
        record = _read_json(Path(trial.user_attrs.get(JOB_DIR, "/nonexistent"), "metrics.json"))
        outcome, value = record.get("state"), record.get("best_dev_acc")
        if outcome == COMPLETE and isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1:
            self.study.tell(trial.number, values=[value])
            return Ended(trial.number, COMPLETE, (value,))
        if outcome == COMPLETE:
            outcome, record["reason"] = FAILED, f"its record holds dev accuracy {value!r}, not a number from 0 to 1"
        if outcome == DIVERGED:
            self.mark(trial.number, DIVERGED, str(record.get("reason", "")), (CHANCE,))
            return Ended(trial.number, DIVERGED, (CHANCE,), str(record.get("reason", "")))
        if outcome in (PRUNED, FAILED):
            self.mark(trial.number, outcome, str(record.get("reason", "")))
            return Ended(trial.number, outcome, reason=str(record.get("reason", "")))
        self.mark(trial.number, INTERRUPTED, "interrupted (its process died)")
        return None

    def mark(self, number: int, outcome: str, reason: str, values: tuple[float, ...] | None = None) -> None:
        """End trial `number` as `outcome` (diverged with `values`, pruned, failed or interrupted), with why, in its
        attributes."""
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        self.storage.set_trial_user_attr(trial_id, OUTCOME, outcome)
        self.storage.set_trial_user_attr(trial_id, REASON, reason)
        if values is not None:
            self.study.tell(number, values=list(values))
        else:
            self.study.tell(number, state=TrialState.PRUNED if outcome == PRUNED else TrialState.FAIL)

    def requeue(self, trials: list[optuna.trial.FrozenTrial]) -> bool:
        """Queue each interrupted trial of `trials` (the study's) that no trial reruns yet, with its parameters (the
        next ask takes it first); whether any was queued."""
        rerun = {t.user_attrs.get(RERUN_OF) for t in trials}
        rerun |= set(self.storage.get_study_user_attrs(self.study_id).get(REQUEUED, []))
        queue = [t for t in trials if interrupted(t) and t.params and t.number not in rerun]
        for trial in queue:
            queued = optuna.trial.create_trial(
                state=TrialState.WAITING,
                system_attrs={"fixed_params": trial.params},
                user_attrs={RERUN_OF: trial.number},
            )
            self.storage.create_new_trial(self.study_id, template_trial=queued)
        return bool(queue)


def _orphaned(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the sweeping process that asked for a running trial is gone (known only on its own machine)."""
    host, _, pid = trial.user_attrs.get(SWEEPER, ":").partition(":")
    return host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))


def _job_running(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial's job still runs: its process, on this host; its Slurm job, elsewhere."""
    host, _, pid = trial.user_attrs.get(WORKER, ":").partition(":")
    if host == socket.gethostname():
        return pid.isdigit() and process_alive(int(pid))
    return bool(trial.user_attrs.get(SLURM_JOB)) and slurm.running(trial.user_attrs[SLURM_JOB])


def _read_json(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
