"""What qd keeps in a study besides Optuna's own fields: the attributes it writes, and how a trial ended.

No Optuna here: the readers of studies (results, promotion, the report) import these names without it.
"""

from __future__ import annotations

from dataclasses import dataclass

# A trial's user attributes: the sweeping process that asked for it (`host:pid`, written with the trial itself); its
# job's folder and process, and its Slurm job where it runs under Slurm; how a job that did not complete ended, and
# why; and, for a trial queued to run an interrupted one again, that trial's number.
SWEEPER, JOB_DIR, WORKER, SLURM_JOB = "sweeper", "job_dir", "worker", "slurm_job"
JOB_DIR_FROM_DATABASE = "job_dir_from_database"  # for a study in SQLite, the job's folder relative to the file
OUTCOME, REASON, RERUN_OF = "qd_outcome", "qd_reason", "qd_rerun_of"
# The study's user attributes: the configuration its trials share (qd.experiment.identity); the interrupted trials
# that an earlier qd queued again (it marked them there, not in the queued trial).
FIXED, REQUEUED = "qd_fixed_configuration", "qd_requeued"

# How a trial ended. DIVERGED: its settings do not train (its loss diverged, or its dev accuracy stayed at chance);
# the study holds it COMPLETE at chance, so that its sampler learns where training breaks, and it counts toward
# n_trials, but it is no candidate. INTERRUPTED: its job was lost (Ctrl-C, its process died, Slurm cancelled it or
# lost its node); the study runs it again with its parameters, and it does not count toward n_trials.
COMPLETE, DIVERGED, PRUNED, FAILED, INTERRUPTED = "complete", "diverged", "pruned", "failed", "interrupted"
ENDINGS = (COMPLETE, DIVERGED, PRUNED, FAILED, INTERRUPTED)


# What a sweep says when Ctrl-C stops it.
INTERRUPTED_SWEEP = "interrupted: the trials that finished are kept; run the same command again to resume a sweep"


@dataclass(frozen=True)
class Ended:
    """How trial `number` ended: its outcome, its values (complete ones), and why it did not complete."""

    number: int
    outcome: str
    values: tuple[float, ...] | None = None
    reason: str = ""


class SweepFailed(Exception):
    """A sweep that ran and did not do its job: every trial failed, or more than max_failure_rate of a batch (exit
    status 1, its message alone)."""


class TrialLost(Exception):
    """A trial's job ended without a word from it (Slurm cancelled or killed it): `reason`, and whether the trial runs
    again (interrupted) or counts as failed (out of time or memory)."""

    def __init__(self, reason: str, interrupted: bool) -> None:
        super().__init__(reason)
        self.interrupted = interrupted


def interrupted(trial: object) -> bool:
    """Whether an Optuna trial (frozen or not) was interrupted."""
    return trial.user_attrs.get(OUTCOME) == INTERRUPTED


def counted(trials: list) -> list:
    """The trials that count toward n_trials: running or finished, not interrupted (a queued one counts once asked:
    a study that already holds its total leaves it queued)."""
    return [t for t in trials if t.state.name != "WAITING" and not interrupted(t)]
