"""A sweep's study: named, opened and checked when a sweep starts; tidied and counted each time a sweep process
asks it for a trial; told how each trial ended; and what the sweep says of it.

A study is its fixed configuration (qd.experiment.identity). By default its name is the preset's with a hash of
that configuration, so the same configuration resumes and another starts a new study; a study named on the command
line must hold the same configuration.

`n_trials` is the study's total of usable trials, however many sweep processes share it. Holding the study's lock
(qd.experiment.storage), a process first tidies the study: a running trial whose sweeping process died on this
machine is told how its job ended when the job outlived it, or is marked interrupted; every interrupted trial
(Ctrl-C, a dead process, a Slurm job cancelled) is queued once to run again with its parameters. It then asks for a
trial only while the study holds fewer than `n_trials` usable ones (interrupted trials do not count; queued and
running ones do), and draws its values before it lets go of the lock, so that the next process sees them.
"""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig, ListConfig

from qd.core.errors import QDError, SweepFailed, one_line
from qd.experiment import slurm
from qd.experiment.identity import differences, fixed_configuration, short_hash
from qd.experiment.lean_optuna import optuna
from qd.experiment.processes import process_alive, this_process
from qd.experiment.search import SearchSpace
from qd.experiment.storage import open_for_sweep, study_lock, with_retries
from qd.experiment.trial import INTERRUPTED, JOB_DIR, OUTCOME, REASON, SLURM_JOB, SWEEPER, WORKER

TrialState = optuna.trial.TrialState
# The study's user attributes: the configuration its trials share; the interrupted trials already queued again.
FIXED, REQUEUED = "qd_fixed_configuration", "qd_requeued"
OUTLIVED = "its job outlived the sweep that launched it"


def open_study(sweeper: DictConfig, job: dict, space: SearchSpace, named: bool,
               sampler: optuna.samplers.BaseSampler) -> tuple[optuna.Study, optuna.storages.RDBStorage]:  # fmt: skip
    """Name, open (or create) and check the sweep's study (QDError: one line); the study and its database."""
    url, directions = str(sweeper.storage), list(sweeper.direction) if isinstance(sweeper.direction, ListConfig) \
        else [sweeper.direction]  # fmt: skip
    if len(directions) != 1:
        raise QDError(f"hydra.sweeper.direction: got {directions}; expected one direction (a job returns one number)")
    storage = open_for_sweep(url)
    fixed = fixed_configuration(job, space.expressions, set(space.conditional))
    name = str(sweeper.study_name) if named else f"{sweeper.study_name}-{short_hash(fixed)}"
    direction = str(getattr(directions[0], "name", directions[0]))
    study = with_retries(url, lambda: optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, direction=direction, load_if_exists=True))  # fmt: skip
    recorded = with_retries(url, lambda: _recorded_or_record(study, fixed))
    if recorded is not None and recorded != fixed:
        raise QDError(
            f"hydra.sweeper.study_name={name}: that study holds trials of another fixed configuration "
            f"({differences(recorded, fixed)}); leave study_name out for a study of this configuration"
        )
    return study, storage


def named_by_user(config: DictConfig) -> bool:
    """Whether the command line names the study (hydra.sweeper.study_name=...): then it is used as it is."""
    return any(o.lstrip("+").partition("=")[0] == "hydra.sweeper.study_name" for o in config.hydra.overrides.hydra)


def _recorded_or_record(study: optuna.Study, fixed: dict) -> dict | None:
    """The fixed configuration the study records; when it records none (new, or made by an earlier qd), record
    `fixed` and return None. Two processes may race here: the loser's insert fails, and a retry reads the winner's."""
    if FIXED in study.user_attrs:
        return study.user_attrs[FIXED]
    study.set_user_attr(FIXED, fixed)
    return None


def n_trials_text(n: int) -> str:
    return f"{n} trial{'' if n == 1 else 's'}"


def trial_line(number: int, ended: str, value: float | None, reason: str) -> str:
    """How a trial ended (`ended`: complete, pruned, failed or interrupted), in the one line the sweep prints."""
    return f"trial {number}: dev accuracy {value:.4f}" if ended == "complete" else f"trial {number} {ended}: {reason}"


def interrupted(trial: optuna.trial.FrozenTrial) -> bool:
    return trial.user_attrs.get(OUTCOME) == INTERRUPTED


def taken(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials that count toward n_trials: finished or running, not interrupted (queued ones count once asked)."""
    return [t for t in trials if t.state != TrialState.WAITING and not interrupted(t)]


class Share:
    """One sweep process's share of a study: the trials it asks for, how they ended, and its lines."""

    def __init__(self, study: optuna.Study, storage: optuna.storages.RDBStorage, space: SearchSpace,
                 n_trials: int) -> None:  # fmt: skip
        self.study, self.storage, self.space, self.n_trials = study, storage, space, n_trials  # storage: uncached
        self.study_id = self.storage.get_study_id_from_name(study.study_name)
        self.ended: list[tuple[str, str]] = []  # how this process's trials ended (complete, pruned, ...), and why
        self.stopped: str | None = None  # why this process asks for no more trials: too many of its trials failed
        self.running: set[int] = set()  # the trials this process asked for and has not told yet

    def fresh(self, *states: TrialState) -> list[optuna.trial.FrozenTrial]:
        """The study's trials (in `states`) as the database holds them now, other processes' writes included."""
        return self.storage.get_all_trials(self.study_id, deepcopy=False, states=states or None)

    def begin(self) -> Iterator[str]:
        """Tidy the study, waiting for the jobs that outlived their sweep; then the line the sweep starts with.
        Raises SystemExit(0) when the study already holds its `n_trials`."""
        waited: set[int] = set()
        while outliving := self.tidy():
            for t in outliving:
                if t.number not in waited:
                    waited.add(t.number)
                    yield f"waiting for trial {t.number}: {OUTLIVED}"
            time.sleep(1)
        trials = self.fresh()
        counted = taken(trials)
        name, remaining = self.study.study_name, self.n_trials - len(counted)
        if not trials:
            yield f"new study {name}: {n_trials_text(self.n_trials)} to run"
            return
        if remaining <= 0:
            yield f"study {name} already holds {n_trials_text(len(counted))} of {self.n_trials}; nothing to run"
            raise SystemExit(0)
        done = sum(t.state.is_finished() for t in counted)
        queued = sum(t.state == TrialState.WAITING for t in trials)
        running = f", {len(counted) - done} running elsewhere" if len(counted) > done else ""
        again = f", {queued} interrupted to run again" if queued else ""
        yield f"resuming study {name}: {done} finished trials kept{running}{again}, {remaining} to run"

    def tidy(self) -> list[optuna.trial.FrozenTrial]:
        """Holding the study's lock, tidy it (`_tidy`); the orphaned trials whose jobs still run."""
        with study_lock(self.storage, self.study.study_name):
            return self._tidy()

    def _tidy(self) -> list[optuna.trial.FrozenTrial]:
        """Tell the trials whose sweeping process died how their jobs ended (or mark them interrupted), and queue the
        interrupted trials not queued yet; the orphaned trials whose jobs still run."""
        outliving = self._adopt_orphans()
        self._requeue()
        return outliving

    def _adopt_orphans(self) -> list[optuna.trial.FrozenTrial]:
        outliving = []
        for t in self.fresh(TrialState.RUNNING):
            if not _orphaned(t):
                continue
            if _job_running(t):
                outliving.append(t)
                continue
            path = Path(t.user_attrs.get(JOB_DIR, "/nonexistent"), "metrics.json")
            record = _read_json(path)
            if outcome := t.user_attrs.get(OUTCOME):
                self.study.tell(t.number, state=_ended_early(outcome))
                line = trial_line(t.number, outcome, None, t.user_attrs.get(REASON, ""))
            elif record.get("state") == "complete":
                self.study.tell(t.number, values=[record["best_dev_acc"]])
                line = trial_line(t.number, "complete", record["best_dev_acc"], "")
            else:
                self._mark_interrupted(t.number, "interrupted (its process died)")
                continue
            print(f"{line} ({OUTLIVED})", flush=True)
        return outliving

    def _requeue(self) -> None:
        """Queue the interrupted trials not queued yet to run again with their own parameters (the next ask takes
        them first)."""
        queued = set(self.storage.get_study_user_attrs(self.study_id).get(REQUEUED, []))
        again = [t for t in self.fresh(TrialState.FAIL) if interrupted(t) and t.params and t.number not in queued]
        for trial in again:
            self.study.enqueue_trial(trial.params)
        if again:
            self.study.set_user_attr(REQUEUED, sorted(queued | {t.number for t in again}))

    def next_trial(self) -> tuple[optuna.Trial, list[str]] | None:
        """Holding the study's lock: tidy it, and ask for a trial and draw its values while the study holds fewer
        than `n_trials` usable ones; the trial and its job's overrides, or None."""
        with study_lock(self.storage, self.study.study_name):
            self._tidy()
            if len(taken(self.fresh())) >= self.n_trials:
                return None
            trial = self._ask()
            self.running.add(trial.number)
            return trial, self.space.draw(trial)

    def _ask(self) -> optuna.Trial:
        """study.ask, with the trial naming this process from its first write: a process killed at any instant
        leaves no running trial that names no process (which no other could tell from one being asked for now).
        A queued trial is named, then run; a new one is created named."""
        storage, me = self.study._storage, this_process()  # Optuna's cache of the study, which its sampler reads
        storage.read_trials_from_remote_storage(self.study_id)  # as study.ask does: other processes' trials
        for queued in self.fresh(TrialState.WAITING):
            trial_id = self._id(queued.number)
            storage.set_trial_user_attr(trial_id, SWEEPER, me)
            if storage.set_trial_state(trial_id, TrialState.RUNNING):
                return optuna.Trial(self.study, trial_id)
        named = optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs={SWEEPER: me})
        return optuna.Trial(self.study, storage.create_new_trial(self.study_id, named))

    def tell(self, trial: optuna.Trial, value: float | None, error: BaseException | None) -> str:
        """Tell the study how the trial's job ended (its own words in the trial's attributes first: pruned, failed,
        interrupted; then its error, or its value); the trial's line."""
        attrs = self.storage.get_trial_user_attrs(self._id(trial.number))
        ended, reason = attrs.get(OUTCOME, "complete"), attrs.get(REASON, "")
        if ended == "complete" and (error is not None or value is None or not math.isfinite(value)):
            ended = "failed"
            reason = one_line(error) if error is not None else f"the job returned {value} instead of an accuracy"
            trial.set_user_attr(OUTCOME, ended)
            trial.set_user_attr(REASON, reason)
        if ended == "complete":
            self.study.tell(trial, values=[value])
        else:
            self.study.tell(trial, state=_ended_early(ended))
        self.running.discard(trial.number)
        self.ended.append((ended, reason))
        return trial_line(trial.number, ended, value, reason)

    def check_failure_rate(self, most: float) -> None:
        """Stop asking for trials once more than `most` (hydra.sweeper.max_failure_rate) of this process's failed."""
        failed = sum(ended == "failed" for ended, _ in self.ended)
        if self.ended and failed / len(self.ended) > most:
            self.stopped = (f"sweep stopped: {failed} of its {n_trials_text(len(self.ended))} failed, more than "
                            f"hydra.sweeper.max_failure_rate={most:g}")  # fmt: skip

    def interrupt(self, reason: str) -> None:
        """Mark the trials this process runs interrupted: they run again when the study resumes."""
        for number in sorted(self.running):
            if self.storage.get_trial(self._id(number)).state == TrialState.RUNNING:
                self._mark_interrupted(number, reason)
        self.running.clear()

    def _mark_interrupted(self, number: int, reason: str) -> None:
        trial_id = self._id(number)
        self.storage.set_trial_user_attr(trial_id, OUTCOME, INTERRUPTED)
        self.storage.set_trial_user_attr(trial_id, REASON, reason)
        self.study.tell(number, state=TrialState.FAIL)

    def _id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def summary(self) -> str:
        """The sweep's last line: how this process's trials ended, and the study's best. SweepFailed when every one
        of them failed."""
        ended = [how for how, _ in self.ended]
        counts = {how: ended.count(how) for how in ("complete", "pruned", "failed", "interrupted")}
        if ended and counts["failed"] == len(ended):
            reasons = "; ".join(sorted({reason for _, reason in self.ended}))
            raise SweepFailed(f"sweep failed: all {n_trials_text(len(ended))} failed ({reasons})")
        complete = self.fresh(TrialState.COMPLETE)
        best = max(complete, key=lambda t: t.value) if complete else None
        tail = f"; the study's best: trial {best.number}, dev accuracy {best.value:.4f}" if best else ""
        told = ", ".join(f"{n} {how}" for how, n in counts.items() if n or how != "interrupted")
        return f"sweep done: {n_trials_text(len(ended))}, {told}{tail}"


def _ended_early(outcome: str) -> TrialState:
    """The study's state for a job that ended early: PRUNED when pruned, else FAIL (failed or interrupted)."""
    return TrialState.PRUNED if outcome == "pruned" else TrialState.FAIL


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
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
