"""The Hydra layer of main_<model>.py: overrides, --cfg/--info/--help, and multirun sweeps.

Every job (a single run or a sweep trial) that starts training leaves in its Hydra output folder
`<model>.log`, `<model>.pt` when it completes, and `metrics.json`, its record, whatever its outcome.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from qd.core.errors import QDError, SweepFailed, config_terms, exit_on_user_error
from qd.experiment import slurm, workers
from qd.experiment.conf import CONF_DIR

# torch (qd.core.job) and optuna (qd.experiment.sweep) are imported where they are needed: a sweep's
# main process with a parallel launcher never trains, and a single run never opens a study.

# `${qd_run_id:}`: one id per invocation (its start and process id), so that run and sweep folders never
# collide. Resolved once, in the invoking process; the value travels in the config's resolver cache to every
# job, also in worker processes (Hydra copies the cache into each job's config), never through the environment.
OmegaConf.register_new_resolver(
    "qd_run_id", lambda: f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{os.getpid()}", use_cache=True, replace=True
)


INFO_FLAGS = ("--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help", "--shell-completion", "-sc")
MULTIRUN_FLAGS = ("-m", "--multirun")


def run_hydra(model: str, argv: list[str]) -> None:
    """Run main_<model>.py's Hydra app with `argv` (overrides and Hydra flags).

    Before Hydra starts, the overrides, the config and a sweep's study are checked, each failure one line
    (exit 2); Ctrl-C is one line too. HYDRA_FULL_ERROR=1 shows tracebacks instead.
    """
    # -m anywhere on the line: Hydra's parser takes no override after it, and qd may add one
    multirun = [a for a in argv if a in MULTIRUN_FLAGS]
    argv = [a for a in argv if a not in MULTIRUN_FLAGS]
    with contextlib.ExitStack() as on_exit:
        if not any(a.split("=")[0] in INFO_FLAGS for a in argv):
            with exit_on_user_error():
                argv += checked(model, argv, multirun, on_exit)
        sys.argv = [f"main_{model}.py", *argv, *multirun]
        try:
            hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=model)(task)()
        except SweepFailed as e:
            print(e, file=sys.stderr)
            raise SystemExit(1) from None
        except KeyboardInterrupt:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print("\ninterrupted: the trials that finished are kept; run the same command again to resume a sweep",
                  file=sys.stderr)  # fmt: skip
            raise SystemExit(130) from None


def checked(model: str, argv: list[str], multirun: list[str], on_exit: contextlib.ExitStack) -> list[str]:
    """Check the overrides, the config and a sweep's data and study before Hydra starts (QDError); the overrides
    that continue the study. A parallel sweep's workers start warming as soon as its data is ready, check the
    training settings there, and stop when `on_exit` closes."""
    refuse_paths(argv)
    cfg = compose_checked(model, argv + multirun)
    sweep = is_optuna_sweep(cfg.hydra, argv + multirun)
    job = job_config(cfg)
    check_data_option(job)
    parallel = sweep and workers.is_parallel(cfg.hydra)
    if not parallel:
        from qd.core.train import check_options

        check_options(job, model=not sweep)  # a sweep may search the architecture: each trial checks its own
    if not sweep:
        return []
    storage = storage_of(cfg.hydra.sweeper)
    prepare_data(job)
    warming = ()
    if parallel:
        warming = workers.warm(cfg.hydra.launcher, job)
        on_exit.callback(workers.stop)
    from qd.experiment.sweep import make_pruner, start_study

    make_pruner(job.get("pruning"))
    for _ in warming:  # a worker's QDError is raised here, before anything is written
        pass
    return start_study(cfg, job, argv) if storage else []


def job_config(cfg: DictConfig) -> dict:
    """What a job of `cfg` trains on: the config without its `hydra` node, resolved, as a plain dict."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)


def compose_checked(model: str, argv: list[str]) -> DictConfig:
    """The config, `hydra` node included, that `argv` composes to; a bad override is one line naming it (QDError)."""
    parser, parsed = OverridesParser.create(), []
    for override in (a for a in argv if not a.startswith("-")):
        try:
            parsed += parser.parse_overrides([override])
        except OverrideParseException:
            key, _, value = override.partition("=")
            raise QDError(
                f"bad override {override}: Hydra's override grammar cannot read it; a value that holds = ? ( ) [ ] "
                f"or spaces needs quotes: '{key}=\"{value}\"'"
            ) from None
    overrides = [o.input_line for o in parsed if not o.is_sweep_override()]  # the search space is the sweeper's
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=model, overrides=overrides, return_hydra_config=True)
    except HydraException as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        lines = lines[: next((i for i, line in enumerate(lines) if line.startswith("Config search path")), None)]
        options = next((lines[i + 1 :] for i, line in enumerate(lines) if line.startswith("Available options")), None)
        detail = f"expected one of {', '.join(options)}" if options else "; ".join(lines[1:2])
        raise QDError(f"bad override: {lines[0]}; {detail}") from None


def storage_of(sweeper: DictConfig) -> str | None:
    """The sweep's study storage URL; +launcher=slurm takes it from QD_STORAGE, which must be set."""
    try:
        return sweeper.storage
    except InterpolationResolutionError:
        raise QDError(
            "hydra.sweeper.storage: +launcher=slurm records the study in the database QD_STORAGE names, and "
            "QD_STORAGE is not set; export QD_STORAGE=postgresql://user:password@host/database"
        ) from None


def refuse_paths(argv: list[str]) -> None:
    """paths.* are the course command line's --logDir and --modelSaveDir; a Hydra job writes into its own folder."""
    for override in argv:
        if override.lstrip("+~").split("=")[0].split(".")[0] == "paths":
            raise QDError(
                f"{override}: paths.* are the course command line's --logDir and --modelSaveDir; a Hydra run writes "
                "its log, checkpoint and record into its own folder: choose it with hydra.run.dir=DIR "
                "(a sweep: hydra.sweep.dir=DIR)"
            )


def check_data_option(job: dict) -> None:
    """Refuse an unknown data.prepare before any job starts (QDError)."""
    from qd.datasets.prepare import BUILDERS

    prepare = job["data"].get("prepare", "none")
    if prepare != "none" and prepare not in BUILDERS:
        raise QDError(f"data.prepare: got {prepare!r}; expected none, synthetic or real_sample")


def prepare_data(job: dict) -> None:
    """A sweep's data, made (data.prepare) and checked once, before any trial: its trials share it."""
    from qd.core.data import require_files
    from qd.datasets.prepare import ensure_data

    ensure_data(job["data"])
    require_files(Path(job["data"]["dir"]), ("train", "dev"))


def is_optuna_sweep(hydra_cfg: DictConfig, argv: list[str]) -> bool:
    multirun = hydra_cfg.mode == RunMode.MULTIRUN or any(a in ("-m", "--multirun") for a in argv)
    return multirun and "optuna" in str(hydra_cfg.sweeper.get("_target_", "")).lower()


def task(cfg: DictConfig) -> float:
    """The Hydra task: train one job; a sweep trial reports to its Optuna study."""
    from qd.core.job import run_job
    from qd.datasets.prepare import ensure_data

    task_started = time.time()  # the record's `started` comes after the job's set-up: the sweep bench splits them
    hc = HydraConfig.get()
    job_cfg = OmegaConf.to_container(cfg, resolve=True)
    out, model = Path(hc.runtime.output_dir), job_cfg["model"]["name"]
    files = {"log": out / f"{model}.log", "checkpoint": out / f"{model}.pt", "record": out / "metrics.json"}
    info = {"job_dir": str(out.resolve()), "overrides": list(hc.overrides.task), "task_started": task_started}
    if slurm.job_id():
        info["slurm_job"] = slurm.job_id()
    n_jobs = hc.launcher.get("n_jobs")  # the joblib launcher's parallel workers share this machine's cores
    workers = (n_jobs if n_jobs > 0 else os.cpu_count() or 1) if n_jobs else 1
    if hc.mode == RunMode.MULTIRUN:
        from qd.experiment.sweep import SweepTrial

        with SweepTrial(hc, job_cfg.get("pruning")) as trial:
            ensure_data(job_cfg["data"])
            record = run_job(job_cfg, **files, info={**info, **trial.info}, on_eval=trial.on_eval, workers=workers)
            return record["best_dev_acc"]
        return math.nan  # the trial failed or was pruned: SweepTrial recorded how, for the study
    with exit_on_user_error():
        try:
            ensure_data(job_cfg["data"])
            record = run_job(job_cfg, **files, info=info, workers=workers)
        except QDError as e:
            raise QDError(config_terms(str(e))) from None
    print(f"{model}: best dev accuracy {record['best_dev_acc']:.4f} at step {record['best_step']}; wrote {out}")
    return record["best_dev_acc"]
