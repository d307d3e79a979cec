"""The lines a sweep prints: how it starts, how each trial ended, and how it ends. Values are named as the app's
task names them (`task.objective`, "value" by default; qd's is "dev accuracy")."""

from __future__ import annotations

import math
from collections.abc import Sequence

from qd.experiment.lean_optuna import optuna
from qd.experiment.outcomes import COMPLETE, DIVERGED, ENDINGS, FAILED, INTERRUPTED, OUTCOME, Ended, counted

OUTLIVED = "its job outlived the sweep that launched it"


def n_trials_text(n: int) -> str:
    return f"{n} trial{'' if n == 1 else 's'}"


def number(value: float) -> str:
    """A value as lines show it: four decimals, or four significant digits where those would hide it."""
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e5 else f"{value:.4g}"


def values_text(objective: str, values: Sequence[float]) -> str:
    """`dev accuracy 0.8123`, or `values 1.2000, 0.5000` for several objectives."""
    if len(values) == 1:
        return f"{objective} {number(values[0])}"
    return f"{objective}s {', '.join(number(v) for v in values)}"


def trial_line(ended: Ended, objective: str) -> str:
    """How a trial ended, in the one line the sweep prints."""
    if ended.outcome == COMPLETE:
        return f"trial {ended.number}: {values_text(objective, ended.values)}"
    return f"trial {ended.number} {ended.outcome}: {ended.reason}"


def estimate_line(remaining: int, trial_s: float, in_flight: int) -> str:
    """How long the rest of the sweep should take on this machine, from the time of its first trial that ran its
    course: `the rest: 19 trials, about 6 min at 2 in flight` (more than it takes where other processes share the
    study, or trials diverge)."""
    return (f"the rest: {n_trials_text(remaining)}, about {duration(math.ceil(remaining / in_flight) * trial_s)} at "
            f"{in_flight} in flight")  # fmt: skip


def duration(seconds: float) -> str:
    """`40 s`, `6 min`, `1 h 20 min`, rounded as an estimate is."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def begin_line(name: str, n_trials: int, trials: list[optuna.trial.FrozenTrial]) -> tuple[str, bool]:
    """The line a sweep starts with, and whether the study still wants trials."""
    held, remaining = counted(trials), n_trials - len(counted(trials))
    if not trials:
        return f"new study {name}: {n_trials_text(n_trials)} to run", True
    if remaining <= 0:
        return f"study {name} already holds {n_trials_text(len(held))} of {n_trials}; nothing to run", False
    done = sum(t.state.is_finished() for t in held)
    queued = sum(t.state.name == "WAITING" for t in trials)
    running = f", {len(held) - done} running elsewhere" if len(held) > done else ""
    again = f", {queued} interrupted to run again" if queued else ""
    return f"resuming study {name}: {done} finished trials kept{running}{again}, {remaining} to run", True


def summary_line(ended: list[Ended], study: optuna.Study, objective: str) -> str:
    """The sweep's last line: how this process's trials ended, and the study's best (Optuna's, by its direction)."""
    counts = {how: sum(e.outcome == how for e in ended) for how in ENDINGS}
    told = ", ".join(f"{n} {how}" for how, n in counts.items() if n or how not in (DIVERGED, INTERRUPTED))
    return f"sweep done: {n_trials_text(len(ended))}, {told}{best_text(study, objective)}"


def best_text(study: optuna.Study, objective: str) -> str:
    """`; the study's best: trial 7, dev accuracy 0.8123`, or its Pareto front for several objectives; nothing while
    no trial completed."""
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return ""
    if len(study.directions) == 1:
        best = study.best_trial
        if best.user_attrs.get(OUTCOME) == DIVERGED:
            return "; none of the study's trials trained yet"
        return f"; the study's best: trial {best.number}, {values_text(objective, best.values)}"
    front = sorted(t.number for t in study.best_trials)
    return f"; the study's Pareto front: {n_trials_text(len(front))} ({', '.join(map(str, front))})"


def all_failed(ended: list[Ended]) -> str | None:
    """The reason a sweep none of whose trials failed for no reason, or trained, gives; None where one did."""
    if not ended or any(e.outcome not in (FAILED, DIVERGED) for e in ended):
        return None
    reasons = "; ".join(sorted({e.reason for e in ended}))
    what = "failed" if all(e.outcome == FAILED for e in ended) else "failed or diverged"
    return f"sweep failed: all {n_trials_text(len(ended))} {what} ({reasons})"
