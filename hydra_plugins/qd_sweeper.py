"""`hydra.sweeper._target_: hydra_plugins.qd_sweeper.QDSweeper`: the Hydra Optuna sweeper (its config as it is:
params, n_trials, n_jobs, storage, study_name, sampler, direction, max_failure_rate) with qd's study, trials and loop.

(Hydra imports every module of the `hydra_plugins` namespace at each start: this one's imports stay light, and
Optuna is imported when a sweep starts.)

The stock sweeper asks for `n_jobs` trials, launches them as a batch and waits for the slowest. This one keeps
`n_jobs` trials in flight, each launched alone as soon as a slot frees (the basic launcher runs one at a time, in
this process), and tells each as it ends. Each job is handed its trial's number (`trial=N`, also its folder's name)
and its study (`hydra.sweeper.study_name`). The study's start, resume and count are qd.experiment.study's, the
values' draw qd.experiment.search's, the job's side qd.experiment.trial's. Ctrl-C, or any error, marks the trials
in flight interrupted: the same command runs them again with their parameters.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import threading
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import OmegaConf, open_dict

if TYPE_CHECKING:
    from qd.experiment.study import Share

WAIT_S = 0.5  # the loop waits for a trial's end in slices this long


class QDSweeper(OptunaSweeper):
    def sweep(self, arguments: list[str]) -> None:
        """Run the study's missing trials, `n_jobs` at a time; print a line per trial and a summary."""
        from qd.core.errors import SweepFailed
        from qd.experiment.app import job_config
        from qd.experiment.search import DistinctSampler, SearchSpace, per_trial_sampler
        from qd.experiment.study import Share, named_by_user, open_study

        impl, config = self.sweeper, self.sweeper.config
        cfg = config.hydra.sweeper
        impl._process_searchspace_config()
        space = SearchSpace.of(impl._parse_sweeper_params_config() + list(arguments), OmegaConf.select(config,
                               "search.conditional"))  # fmt: skip
        make = per_trial_sampler(cfg.sampler)
        sampler = DistinctSampler(make, cfg.sampler.get("seed"), space.searched) if make else impl.sampler
        study, storage = open_study(cfg, job_config(config), space, named_by_user(config), sampler)
        with open_dict(config):
            config.hydra.sweeper.study_name = study.study_name  # for the launcher: its jobs' study
        share = Share(study, storage, space, int(cfg.n_trials))
        for line in share.begin():
            print(line, flush=True)
        try:
            self._run(share, int(cfg.n_jobs), float(cfg.max_failure_rate))
        except BaseException as error:
            with contextlib.suppress(Exception):  # the database may be what failed: the next run reaps the trials
                share.interrupt(_why(error))
            raise
        print(share.summary(), flush=True)
        if share.ended:  # as the Optuna sweeper does, beside this process's jobs
            best = max(study.get_trials(deepcopy=False), key=lambda t: -math.inf if t.value is None else t.value)
            OmegaConf.save(OmegaConf.create({"name": "optuna", "best_params": best.params, "best_value": best.value}),
                           f"{config.hydra.sweep.dir}/optimization_results.yaml")  # fmt: skip
        if share.stopped:
            raise SweepFailed(share.stopped)

    def _run(self, share: Share, n_jobs: int, max_failure_rate: float) -> None:
        """Keep `n_jobs` trials in flight until the study holds its trials; tell each as it ends."""
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        slots = 1 if isinstance(self.sweeper.launcher, BasicLauncher) else max(1, n_jobs)
        in_flight: dict[concurrent.futures.Future, Any] = {}
        ask = True  # again after each trial's end: the study may want one more (an interrupted trial runs again)
        while True:
            while ask and len(in_flight) < slots and not share.stopped:
                asked = share.next_trial()
                if asked is None:
                    ask = False
                    break
                trial, overrides = asked
                overrides += [f"hydra.sweeper.study_name={share.study.study_name}", f"trial={trial.number}"]
                future: concurrent.futures.Future = concurrent.futures.Future()
                in_flight[future] = trial
                self._launch(future, overrides, trial.number, inline=slots == 1)
            if not in_flight:
                return
            done, _ = concurrent.futures.wait(in_flight, timeout=WAIT_S, return_when="FIRST_COMPLETED")
            for future in done:
                trial = in_flight.pop(future)
                value, error = _outcome(future)
                print(share.tell(trial, value, error), flush=True)
                share.check_failure_rate(max_failure_rate)
                ask = True

    def _launch(self, future: concurrent.futures.Future, overrides: list[str], number: int, inline: bool) -> None:
        """Launch one job, as job `number` (its folder's name), its outcome to `future`: in this thread when jobs run
        one at a time here (an interrupt then reaches the job itself), else in a thread that waits for the launcher."""

        def launch() -> None:
            try:
                future.set_result(self.sweeper.launcher.launch([overrides], initial_job_idx=number)[0])
            except Exception as error:  # the launcher's own failure: the trial fails with it
                future.set_exception(error)

        if inline:
            launch()
        else:
            threading.Thread(target=launch, name=f"qd-trial-{number}", daemon=True).start()


def _outcome(future: concurrent.futures.Future) -> tuple[float | None, BaseException | None]:
    """A launched job's value, or the error that ended it."""
    if future.exception() is not None:
        return None, future.exception()
    ret: JobReturn = future.result()
    if ret.status == JobStatus.FAILED:
        return None, ret._return_value
    try:
        return float(ret.return_value), None
    except (TypeError, ValueError):
        return None, None


def _why(error: BaseException) -> str:
    """The reason an interrupted trial gives."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return f"interrupted (its sweep stopped: {type(error).__name__})"
