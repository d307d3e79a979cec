"""`+launcher=slurm`: hydra-submitit-launcher's Slurm launcher, with what a sweep on a cluster needs besides.

(Hydra takes launchers only from the `hydra_plugins` namespace, and imports every module there at each start: keep
this one's imports light.)

- It follows its jobs with squeue (qd.experiment.slurm), not submitit's sacct, which fails at every call, with a
  warning each time, on a cluster that keeps no accounting.
- A job that Slurm ends without a result (scancel, the time limit, a lost node) fails its trial with one line naming
  the Slurm job, and the sweep goes on; submitit's own launcher ends the whole sweep there.
- In the job, Slurm's warning that the time limit nears ends the trial with one line: qd's trials do not checkpoint,
  so submitit's requeue-on-timeout has nothing to resume.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

from qd.core.errors import QDError
from qd.experiment import slurm

log = logging.getLogger(__name__)
SQUEUE_EVERY_S = 5  # how often the sweeping process asks squeue how its jobs stand
# How a job can end without a result that is not its trial's doing: the trial runs again when the sweep is rerun.
INTERRUPTIONS = {"CANCELLED", "GONE", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL"}
RESULT_GRACE_S = 5  # how long a result file may take to show on a shared filesystem after Slurm says the job ended


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """Run one trial, in its Slurm job."""
        from submitit.slurm.slurm import SlurmJobEnvironment

        limit = self.params["timeout_min"]

        def out_of_time(signum: int, frame: object) -> None:
            raise QDError(f"Slurm job {slurm.job_id()} ran out of time (hydra.launcher.timeout_min={limit})")

        signal.signal(getattr(signal, f"SIG{SlurmJobEnvironment.USR_SIG}"), out_of_time)
        return super().__call__(*args, **kwargs)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit a batch of trials as a Slurm job array (as hydra-submitit-launcher 1.2 does); their returns."""
        import submitit

        folder, max_timeouts = self.params["submitit_folder"], self.params["max_num_timeout"]
        executor = submitit.AutoExecutor(cluster="slurm", folder=folder, slurm_max_num_timeout=max_timeouts)
        queue_keys = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in queue_keys else f"slurm_{k}": v for k, v in self.params.items()
                                      if k not in ("submitit_folder", "max_num_timeout")})  # fmt: skip
        numbers = list(range(initial_job_idx, initial_job_idx + len(job_overrides)))
        for number, overrides in zip(numbers, job_overrides, strict=True):
            log.info(f"\t#{number} : {' '.join(filter_overrides(overrides))}")
        n = len(numbers)
        jobs = executor.map_array(self, [list(o) for o in job_overrides], ["hydra.sweep.dir"] * n, numbers,
                                  [f"job_id_for_{i}" for i in numbers], [Singleton.get_state()] * n)  # fmt: skip
        return self._returns(jobs)

    def _returns(self, jobs: list) -> list[JobReturn]:
        """Each job's return once its result file is there; a job that Slurm says ended and that left none (after
        RESULT_GRACE_S) gets a failed trial instead."""
        returns: dict[int, JobReturn] = {}
        ended: dict[int, tuple[str, float]] = {}  # job -> (its state, when squeue first said it ended)
        asked, squeue_failed = 0.0, False
        while len(returns) < len(jobs):
            if time.time() - asked >= SQUEUE_EVERY_S:
                asked, known = time.time(), slurm.states(j.job_id for i, j in enumerate(jobs) if i not in returns)
                if known is None and not squeue_failed:
                    print("squeue does not answer: waiting for the trials' result files alone", file=sys.stderr)
                squeue_failed = known is None
                for i, job in enumerate(jobs):
                    state = None if known is None else known.get(job.job_id, "GONE")
                    if i not in ended and (state == "GONE" or state in slurm.ENDED):
                        ended[i] = state, time.time()
            for i, job in enumerate(jobs):
                if i in returns:
                    continue
                if _has_result(job):
                    returns[i] = _result(job) or self._lost(job, "FAILED")
                elif i in ended and time.time() - ended[i][1] >= RESULT_GRACE_S:
                    returns[i] = self._lost(job, ended[i][0])
            time.sleep(1)
        return [returns[i] for i in range(len(jobs))]

    def _lost(self, job: Any, state: str) -> JobReturn:
        """The return of a trial whose job Slurm ended without a result: failed (out of time or memory) or
        interrupted (cancelled, its node lost: it runs again), naming the Slurm job and why."""
        from qd.experiment.outcomes import TrialLost

        why = {"CANCELLED": "was cancelled", "GONE": "left Slurm's queue",
               "TIMEOUT": f"ran out of time (hydra.launcher.timeout_min={self.params['timeout_min']})",
               "OUT_OF_MEMORY": f"ran out of memory (hydra.launcher.mem_gb={self.params['mem_gb']})",
               "NODE_FAIL": "lost its node"}.get(state, f"ended {state}")  # fmt: skip
        reason = f"Slurm job {job.job_id} {why} before its trial ended (its log: {job.paths.stderr})"
        interrupted = state in INTERRUPTIONS
        if interrupted:
            reason += "; it runs again with its parameters"
        lost = JobReturn(status=JobStatus.FAILED)
        lost.return_value = TrialLost(reason, interrupted)
        return lost


def _result(job: Any) -> JobReturn | None:
    """The job's return; None when it failed outside its trial (submitit then holds a traceback instead)."""
    try:
        return job.results()[0]
    except Exception:
        return None


def _has_result(job: Any) -> bool:
    """Whether the job's result file is there; touching its folder first makes a shared filesystem look again."""
    folder = job.paths.result_pickle.parent
    try:
        folder.chmod(folder.stat().st_mode)
    except OSError:
        pass
    return job.paths.result_pickle.exists()
