"""qd's sweeper at work, for any Hydra app: the sweeper's settings read and checked, then the study's trials run,
`n_jobs` in flight, each launched alone as soon as a slot frees, told as it ends.

Each setting of the Optuna sweeper keeps its meaning (direction or several, storage null, the samplers, the grid,
custom_search_space, the deprecated search_space, max_failure_rate, a study name used as given); one that cannot be
honoured is one line, before the study opens. The job learns its trial's number from Hydra's own job number
(`hydra.job.num`, also its folder's name) and its study from `hydra.sweeper.study_name`. Ctrl-C, or any error, marks
the trials in flight interrupted: the same command runs them again with their parameters.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import re
import threading
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from qd.core.errors import disk_errors
from qd.core.interrupt import ctrl_c_heard
from qd.experiment import lines
from qd.experiment.broker import Broker, ended_how
from qd.experiment.compat import BASIC_LAUNCHER
from qd.experiment.identity import job_config
from qd.experiment.outcomes import COMPLETE, FAILED, INTERRUPTED, Ended, SweepFailed
from qd.experiment.processes import ctrl_c_blocked_here
from qd.experiment.samplers import make_sampler
from qd.experiment.settings import read_settings
from qd.experiment.storage import database_errors
from qd.experiment.study import open_study

WAIT_S = 0.5  # the loop waits for a trial's end in slices this long
KEPT = "the trials that finished are kept in the study; run the same command again to resume"


class FailureRate:
    """hydra.sweeper.max_failure_rate as the Optuna sweeper means it: the share of failed trials in a batch of
    `n_jobs` (here, each `n_jobs` trials of this process in the order they end, and the last, shorter one)."""

    def __init__(self, most: float, batch: int) -> None:
        self.most, self.batch, self.window = most, batch, []

    def add(self, ended: Ended) -> str | None:
        """Count a trial that ended; why the sweep stops, where its batch is full and failed too often."""
        if ended.outcome != INTERRUPTED:
            self.window.append(ended.outcome == FAILED)
        return self.check() if len(self.window) >= self.batch else None

    def check(self) -> str | None:
        failed, n = sum(self.window), len(self.window)
        self.window = []
        if n and failed / n > self.most:
            return (f"sweep stopped: {failed} of {lines.n_trials_text(n)} failed, more than "
                    f"hydra.sweeper.max_failure_rate={self.most:g}")  # fmt: skip
        return None


class Sweep:
    """One sweep process's run of its study: `sweeper` is the QDSweeper, set up by Hydra."""

    def __init__(self, sweeper: Any, arguments: list[str]) -> None:
        self.sweeper, self.config = sweeper, sweeper.config
        self.settings = read_settings(self.config, arguments)
        self.objective = getattr(sweeper.task_function, "objective", "value")
        self.ended: list[Ended] = []
        self.stopped: str | None = None
        self.failures = FailureRate(self.settings.max_failure_rate, self.settings.n_jobs)

    def run(self) -> None:
        """Open the study, run its missing trials, print a line per trial and the summary (SweepFailed where every
        trial of this process failed, or more than max_failure_rate of a batch)."""
        s = self.settings
        url = s.storage or "memory"
        s.space.rehearse()
        with database_errors(url):
            sampler = make_sampler(s.sampler, s.space)
            study, storage = open_study(s.storage, s.study_name, s.directions, self.config, job_config(self.config),
                                        s.space, sampler)  # fmt: skip
            broker = Broker(study, storage, s.space, s.n_trials)
            self.settle(broker)
            begin, wanted = lines.begin_line(study.study_name, s.n_trials, broker.trials())
            print(begin, flush=True)
            if not wanted:
                return
            sweep_dir = Path(self.config.hydra.sweep.dir)
            with disk_errors(sweep_dir, KEPT):
                sweep_dir.mkdir(parents=True, exist_ok=True)
                OmegaConf.save(self.config, sweep_dir / "multirun.yaml")  # as Hydra's basic sweeper does
                try:
                    self.loop(broker)
                except BaseException as error:
                    with contextlib.suppress(Exception):  # the database may be what failed: the next run reaps them
                        broker.interrupt(_why(error))
                    raise
                all_failed = lines.all_failed(self.ended)
                if not all_failed:
                    print(lines.summary_line(self.ended, study, self.objective), flush=True)
                self.save_results(study, sweep_dir)
        if self.stopped or all_failed:
            raise SweepFailed(self.stopped or all_failed)

    def settle(self, broker: Broker) -> None:
        """Settle what dead processes left, waiting for the jobs that outlived their sweep."""
        waited: set[int] = set()
        while True:
            settled, outliving = broker.tidy()
            for ended in settled:
                print(f"{lines.trial_line(ended, self.objective)} ({lines.OUTLIVED})", flush=True)
            if not outliving:
                return
            for trial in outliving:
                if trial.number not in waited:
                    waited.add(trial.number)
                    print(f"waiting for trial {trial.number}: {lines.OUTLIVED}", flush=True)
            time.sleep(1)

    def loop(self, broker: Broker) -> None:
        """Keep `n_jobs` trials in flight until the study holds its trials; tell each as it ends."""
        inline = str(self.config.hydra.launcher.get("_target_")) == BASIC_LAUNCHER
        slots = 1 if inline else self.settings.n_jobs
        in_flight: dict[concurrent.futures.Future, tuple[int, float]] = {}  # -> the trial's number, when it began
        ask = True  # again after each trial's end: the study may want one more (an interrupted trial runs again)
        estimated = False  # whether the time the rest should take was said
        while True:
            while ask and len(in_flight) < slots and not self.stopped:
                asked, settled = broker.ask()
                for ended in settled:
                    print(f"{lines.trial_line(ended, self.objective)} ({lines.OUTLIVED})", flush=True)
                if asked is None:
                    ask = False
                    break
                trial, overrides = asked
                future: concurrent.futures.Future = concurrent.futures.Future()
                in_flight[future] = trial.number, time.monotonic()
                study_name = f"hydra.sweeper.study_name={quoted(broker.study.study_name)}"
                self.launch(future, [*overrides, study_name], trial.number, inline)
            if not in_flight:
                if self.failures.window and not self.stopped:
                    self.stopped = self.failures.check()
                return
            done, _ = concurrent.futures.wait(in_flight, timeout=WAIT_S, return_when="FIRST_COMPLETED")
            for future in done:
                number, began = in_flight.pop(future)
                returned = future.exception() or future.result()
                ended = ended_how(number, returned, len(self.settings.directions))
                broker.tell(ended)
                self.ended.append(ended)
                finished = broker.finished()
                print(f"{lines.trial_line(ended, self.objective)} ({finished} of {self.settings.n_trials})", flush=True)
                if ended.outcome == COMPLETE and not estimated and finished < self.settings.n_trials:
                    estimated = True  # from the first trial that ran its course (one that diverged took no time)
                    print(lines.estimate_line(self.settings.n_trials - finished, time.monotonic() - began, slots),
                          flush=True)  # fmt: skip
                self.stopped = self.stopped or self.failures.add(ended)
                ask = True

    def launch(self, future: concurrent.futures.Future, overrides: list[str], number: int, inline: bool) -> None:
        """Launch one job, as job `number` (its folder's name, its `hydra.job.num`), its return to `future`: in this
        thread when jobs run here one at a time (an interrupt then reaches the job itself), else in a thread that
        waits for the launcher, the processes it starts deaf to Ctrl-C (qd.experiment.processes)."""

        def launch() -> None:
            if not inline:
                ctrl_c_blocked_here()
            try:
                future.set_result(self.sweeper.launcher.launch([overrides], initial_job_idx=number)[0])
            except Exception as error:  # the launcher's own failure: the trial fails with it
                future.set_exception(error)
            except BaseException as error:  # an interrupt: in this thread it stops the sweep; a worker's, its trial
                if inline:
                    raise
                future.set_exception(error)

        if inline:
            launch()
            if ctrl_c_heard():  # the job's code turned Ctrl-C into another error: the trial was cut, not failed
                raise KeyboardInterrupt
        else:
            threading.Thread(target=launch, name=f"qd-trial-{number}", daemon=True).start()

    def save_results(self, study: Any, sweep_dir: Path) -> None:
        """optimization_results.yaml, as the Optuna sweeper writes it: the best trial's params and value, or the
        Pareto front's for several objectives."""
        from qd.experiment.lean_optuna import optuna

        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            return
        if len(self.settings.directions) == 1:
            best = study.best_trial
            results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
        else:
            results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values}
                                                       for t in study.best_trials]}  # fmt: skip
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")


def quoted(value: str) -> str:
    """`value` as a quoted value of a Hydra override, read back as written whatever it holds (`,`, `=`, `(`, a quote):
    a quote, and the backslashes before one or at the end, escaped, as Hydra's grammar wants."""
    return "'" + re.sub(r"(\\*)('|$)", lambda m: m[1] * 2 + ("\\" + m[2] if m[2] else ""), value) + "'"


def _why(error: BaseException) -> str:
    """The reason an interrupted trial gives."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return f"interrupted (its sweep stopped: {type(error).__name__})"
