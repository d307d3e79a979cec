"""The worker processes of `+launcher=parallel` (Hydra's joblib launcher, on loky's reusable executor): started
and warmed when the sweep starts, stopped as soon as it ends, and ended with the sweeping process, even by kill -9
(qd.experiment.processes.watch_parent).

Left to the launcher, a worker starts only when the first batch of trials is sent, after the sweeping process
has imported Optuna and opened its study, and its first job then imports torch (with torch._dynamo, which torch's
optimizers import), Optuna and the data. Warming does that in the workers while the sweeping process imports Optuna
and builds its sweeper, and checks there, once, the training settings every trial would fail on, before the study
is opened: the sweeping process itself never imports torch.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Generator

from omegaconf import DictConfig, OmegaConf

from qd.experiment.processes import watch_parent


def is_parallel(hydra_cfg: DictConfig) -> bool:
    """Whether the run's launcher is the joblib one (`+launcher=parallel`)."""
    return "joblib" in str(hydra_cfg.launcher.get("_target_", ""))


def warm(launcher: DictConfig, job: dict) -> Generator[None, None, None]:
    """Start the launcher's workers and warm each: the same joblib options as the launcher's own batches, so that
    they go to these processes. Iterating the result waits for the workers; a settings error is raised there
    (QDError)."""
    import joblib

    from qd.experiment.compat import joblib_options

    quiet_resource_tracker()
    options = joblib_options(OmegaConf.to_container(launcher, resolve=True))
    n_workers = joblib.effective_n_jobs(options["n_jobs"])
    return joblib.Parallel(**options, return_as="generator_unordered")(
        joblib.delayed(warm_worker)(job, os.getpid()) for _ in range(n_workers)
    )


def quiet_resource_tracker() -> None:
    """Keep loky's resource tracker, started with the workers, from warning as it cleans up after a sweeping process
    that kill -9 ended: what it warns of (semaphores, joblib's folders of that process) is exactly what it then
    removes. Its process takes its warning filters from the environment (PYTHONWARNINGS) it inherits."""
    quiet = "ignore:resource_tracker:UserWarning"
    given = os.environ.get("PYTHONWARNINGS")
    if quiet not in (given or "").split(","):
        os.environ["PYTHONWARNINGS"] = f"{given},{quiet}" if given else quiet


def warm_worker(job: dict, sweeper: int) -> None:
    """In a worker: watch the sweeping process `sweeper`, import what a trial runs and load its data (the process
    keeps both), and check the training settings."""
    watch_parent(sweeper)
    import qd.core.job  # noqa: F401
    import qd.experiment.trial  # noqa: F401  (Optuna)
    from qd.core.data import load_split
    from qd.core.runtime import resolve_device
    from qd.core.train import check_options

    resolve_device(job["train"]["device"])
    check_options(job, model=False)  # a sweep may search the architecture: each trial checks its own
    for split in ("train", "dev"):
        load_split(job["data"]["dir"], split)


def stop(warming: Generator[None, None, None] | None) -> None:
    """Stop the workers once the sweep has ended, however it ended: killed, they skip the interpreter's teardown of
    torch. The warm-up (`warming`, None where it never began) is given up quietly where an interrupt cut it (joblib
    would warn of its tasks)."""
    from qd.experiment.compat import stop_joblib_workers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if warming is not None:
            warming.close()
    stop_joblib_workers()
