"""`hydra.sweeper._target_: hydra_plugins.qd_sweeper.QDSweeper`: the Hydra Optuna sweeper's config, every key with its
meaning, run by qd's study and loop (qd.experiment.sweep) for any Hydra app: many sweep processes on one study,
trials kept in flight, Ctrl-C and kill -9 leaving each cut trial to run again, honest states.

(Hydra imports every module of the `hydra_plugins` namespace at each start: this one's imports stay light, and qd's
sweep code, with Optuna, is imported when a sweep starts.)
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class QDSweeper(Sweeper):
    def __init__(self, sampler: Any, direction: Any, storage: Any, study_name: str | None, n_trials: int,
                 n_jobs: int, max_failure_rate: float, search_space: Any, custom_search_space: str | None,
                 params: Any) -> None:  # fmt: skip
        """The Optuna sweeper's keys (hydra_plugins.hydra_optuna_sweeper.config.OptunaSweeperConf); they are read
        from the config when the sweep starts, each checked there."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)  # fmt: skip

    def sweep(self, arguments: list[str]) -> None:
        """Run the study's missing trials. A refused setting is one line and exit status 2; a sweep whose trials all
        failed one line and 1; Ctrl-C one line and 130, the trials that finished kept."""
        from qd.core.errors import exit_on_user_error
        from qd.core.interrupt import exit_on_ctrl_c
        from qd.experiment.compat import quiet_joblib_double_clean_up
        from qd.experiment.outcomes import INTERRUPTED_SWEEP, SweepFailed
        from qd.experiment.sweep import Sweep
        from qd.experiment.workers import is_parallel
        from qd.experiment.workers import stop as stop_workers

        if is_parallel(self.config.hydra):
            quiet_joblib_double_clean_up()
        with exit_on_ctrl_c(INTERRUPTED_SWEEP), exit_on_user_error():
            try:
                Sweep(self, arguments).run()
            except SweepFailed as e:
                print(e, file=sys.stderr)
                raise SystemExit(1) from None
            finally:  # joblib's workers, left alone, live on (running the trials Ctrl-C cut, which run again)
                if is_parallel(self.config.hydra):
                    stop_workers(None)
