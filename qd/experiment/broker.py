"""One sweep process's dealings with its study: asking for trials under the study's lock, telling how each ended.

`n_trials` is the study's total of trials that count (qd.experiment.outcomes.counted), however many sweep processes
share it. Holding the study's lock, a process has the janitor settle what dead processes left, then asks for a trial
only while the study holds fewer than `n_trials`, and draws its values before it lets go of the lock, so that the
next process sees them.
"""

from __future__ import annotations

import math

from hydra.core.utils import JobReturn

from qd.core.errors import DidNotTrain, Pruned, one_line
from qd.core.interrupt import held
from qd.experiment.compat import job_error
from qd.experiment.janitor import Janitor
from qd.experiment.lean_optuna import optuna
from qd.experiment.outcomes import (
    COMPLETE,
    DIVERGED,
    FAILED,
    INTERRUPTED,
    PRUNED,
    SWEEPER,
    Ended,
    TrialLost,
    counted,
)
from qd.experiment.processes import this_process
from qd.experiment.search import SearchSpace
from qd.experiment.storage import study_lock

TrialState = optuna.trial.TrialState
GRID_STOP = "`Study.stop` is supposed to be invoked inside an objective function or a callback."


class Broker:
    """Asks study `study` for trials and tells it how they ended; `storage` is the study's, which reads what
    other processes wrote at once (qd.experiment.storage.HeldStorage)."""

    def __init__(self, study: optuna.Study, storage: optuna.storages.BaseStorage, space: SearchSpace,
                 n_trials: int) -> None:  # fmt: skip
        self.study, self.storage, self.space, self.n_trials = study, storage, space, n_trials
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.janitor = Janitor(study, storage, self.study_id)
        self.running: set[int] = set()  # the trials this process asked for and has not told yet

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        """The study's trials as the database holds them now, other processes' writes included."""
        return self.janitor.trials()

    def finished(self) -> int:
        """How many of the study's trials that count have ended, whichever process ran them."""
        return sum(t.state.is_finished() for t in counted(self.trials()))

    def tidy(self) -> tuple[list[Ended], list[optuna.trial.FrozenTrial]]:
        """Holding the study's lock, have the janitor settle what dead processes left: how the orphans whose jobs had
        ended ended, and the orphans whose jobs still run."""
        with study_lock(self.storage, self.study.study_name):
            return self.janitor.tidy()[:2]

    def ask(self) -> tuple[tuple[optuna.Trial, list[str]] | None, list[Ended]]:
        """Holding the study's lock: tidy it, and, while it holds fewer than `n_trials` trials that count, ask for a
        trial and draw its values. The trial and its job's overrides (or None), and the orphans settled."""
        with study_lock(self.storage, self.study.study_name):
            settled, _, trials = self.janitor.tidy()
            if len(counted(trials)) >= self.n_trials:
                return None, settled
            trial = optuna.Trial(self.study, self._claim([t for t in trials if t.state == TrialState.WAITING]))
            return (trial, self.space.draw(trial)), settled

    def _claim(self, waiting: list[optuna.trial.FrozenTrial]) -> int:
        """The id of a trial this process runs, counted in `running` as soon as it runs (Ctrl-C while the sampler
        draws marks it interrupted too), and naming this process from its first write: a process killed at any
        instant leaves no running trial that names no process (which no other could tell from one being asked for
        now). A queued trial (of `waiting`, the study's) is named, then run; a new one is created named."""
        me = this_process()
        self.study.get_trials(deepcopy=False)  # Optuna's cache of the study, which its sampler reads, made current
        for queued in waiting:
            trial_id = self._id(queued.number)
            self.storage.set_trial_user_attr(trial_id, SWEEPER, me)
            with held():
                if self.storage.set_trial_state(trial_id, TrialState.RUNNING):
                    self.running.add(queued.number)
                    return trial_id
        named = optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs={SWEEPER: me})
        with held():  # a Ctrl-C as the trial is made waits until it is counted
            trial_id = self.storage.create_new_trial(self.study_id, named)
            self.running.add(self.storage.get_trial_number_from_id(trial_id))
        return trial_id

    def tell(self, ended: Ended) -> None:
        """Tell the study how a trial of this process ended (why, in its attributes, when it did not complete)."""
        if ended.outcome == COMPLETE:
            try:
                self.study.tell(ended.number, values=list(ended.values))
            except RuntimeError as e:  # the grid sampler stops the study at its last point, as it may only in optimize
                if GRID_STOP not in str(e):
                    raise
        else:
            self.janitor.mark(ended.number, ended.outcome, ended.reason, ended.values)
        self.running.discard(ended.number)

    def interrupt(self, reason: str) -> None:
        """Mark the trials this process runs interrupted: they run again when the study resumes."""
        for number in sorted(self.running):
            if self.storage.get_trial(self._id(number)).state == TrialState.RUNNING:
                self.janitor.mark(number, INTERRUPTED, reason)
        self.running.clear()

    def _id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)


def ended_how(number: int, returned: JobReturn | BaseException, objectives: int) -> Ended:
    """How trial `number` ended, from its job's return (or the launcher's error): its values, or why it did not
    complete."""
    error = returned if isinstance(returned, BaseException) else job_error(returned)
    if isinstance(error, (Pruned, optuna.TrialPruned)):
        return Ended(number, PRUNED, reason=one_line(error) if not isinstance(error, Pruned) else str(error))
    if isinstance(error, DidNotTrain):
        return Ended(number, DIVERGED, (error.chance,) * objectives, str(error))
    if isinstance(error, TrialLost):
        return Ended(number, INTERRUPTED if error.interrupted else FAILED, reason=str(error))
    if isinstance(error, KeyboardInterrupt):  # in a worker that did not leave Ctrl-C to the sweep
        return Ended(number, INTERRUPTED, reason="interrupted (Ctrl-C)")
    if error is not None:
        return Ended(number, FAILED, reason=one_line(error))
    values = _values(returned.return_value, objectives)
    if values is None:
        wanted = "a number" if objectives == 1 else f"{objectives} numbers"
        return Ended(number, FAILED, reason=f"the job returned {returned.return_value!r}, not {wanted}")
    return Ended(number, COMPLETE, values)


def _values(returned: object, objectives: int) -> tuple[float, ...] | None:
    """A job's return as the study's values: `objectives` numbers, none of them NaN (an infinity counts, as Optuna
    counts it), several in any iterable (a tuple, a list, a NumPy array); None otherwise."""
    try:
        many = [returned] if isinstance(returned, (str, bytes)) else list(returned)
    except TypeError:  # one number, a 0-d array's too
        many = [returned]
    try:
        values = tuple(float(v) for v in many)
    except (TypeError, ValueError):
        return None
    return values if len(values) == objectives and not any(math.isnan(v) for v in values) else None
