"""The Hydra layer of main_<model>.py: overrides, --cfg/--info/--help, single runs and sweeps.

Every job (a single run or a sweep trial) that starts training leaves in its Hydra output folder
`<model>.log`, `<model>.pt` when it completes, and `metrics.json`, its record, whatever its outcome.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import math
import os
import re
import runpy
import shlex
import sys
import time
from pathlib import Path

import hydra
from hydra import initialize_config_dir
from hydra._internal.callbacks import Callbacks
from hydra._internal.hydra import Hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus, run_job
from hydra.errors import HydraException, OverrideParseException
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from qd.core.errors import QDError, check_device, config_terms, disk_errors, exit_on_user_error
from qd.core.interrupt import held
from qd.core.job import QUICK_TRIALS, quick, quick_train
from qd.experiment import slurm, workers
from qd.experiment.conf import CONF_DIR
from qd.experiment.identity import flatten

# torch (qd.core.train) and optuna (qd.experiment.study, .trial) are imported where they are needed: a sweep's
# main process with a parallel launcher never trains, and a single run never opens a study.

# `${qd_run_id:}`: one id per invocation (its start and process id), so that run and sweep folders never
# collide. Resolved once, in the invoking process; the value travels in the config's resolver cache to every
# job, also in worker processes (Hydra copies the cache into each job's config), never through the environment.
OmegaConf.register_new_resolver(
    "qd_run_id", lambda: f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{os.getpid()}", use_cache=True, replace=True
)


KEPT = "the trials that finished are kept in the study; run the same command again to resume"
INFO_FLAGS = ("--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help", "--shell-completion", "-sc")
MULTIRUN_FLAGS = ("-m", "--multirun")


def run_hydra(model: str, argv: list[str]) -> None:
    """Run main_<model>.py's Hydra app with `argv` (overrides, -m anywhere, or one of Hydra's info flags).

    The config is composed once, by Hydra's own loader, and checked before anything is written: a bad override, a
    setting every run would fail on, missing data or an unusable study storage is one line (QDError, exit 2). Then
    the run goes to Hydra's job runner, or the sweep to the configured sweeper (qd's for the presets).
    """
    if any(a.split("=")[0] in INFO_FLAGS for a in argv):
        sys.argv = [f"main_{model}.py", *argv]
        hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=model)(task)()
        return
    multirun = any(a in MULTIRUN_FLAGS for a in argv)
    overrides = [a for a in argv if a not in MULTIRUN_FLAGS]
    unknown = [a for a in overrides if a.startswith("-")]
    if unknown:
        raise QDError(f"{unknown[0]}: not an option of main_{model}.py; expected Hydra overrides (key=value), -m, "
                      "--cfg job, --info, --help, or the course flags (--mode ...)")  # fmt: skip
    refuse_paths(overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), job_name=f"main_{model}", version_base="1.3"):
        app = GlobalHydra.instance().hydra
        cfg = compose_checked(app, model, overrides, multirun)
        job = job_config(cfg)
        check_config(model, cfg, job, argv)
        context = HydraContext(config_loader=app.config_loader, callbacks=Callbacks(cfg))
        if cfg.hydra.mode == RunMode.RUN:
            run_one(cfg, job, context)
        else:
            run_sweep(cfg, job, context)


def check_config(model: str, cfg: DictConfig, job: dict, argv: list[str]) -> None:
    """Refuse what the config alone shows cannot run, before any heavy import (QDError): a model of another command,
    a value of the wrong type, a sweep's settings, missing course data (naming `argv` on the real drawings instead)."""
    if job["model"]["name"] != model:
        raise QDError(f"model={job['model']['name']}: main_{model}.py trains the {model} model; for "
                      f"{job['model']['name']} run main_{job['model']['name']}.py")  # fmt: skip
    check_types(model, job, [a for a in argv if a not in MULTIRUN_FLAGS])
    check_device(job["train"]["device"], cuda=torch_built_for_gpu())
    check_data_option(job)
    if cfg.hydra.mode == RunMode.MULTIRUN and is_qd_sweep(cfg.hydra):
        check_sweeper(cfg.hydra)
    if job["data"].get("prepare", "none") == "none":
        from qd.datasets.prepare import check_course_data

        instead = shlex.join(["python", f"main_{model}.py", *argv, "data=real_sample"])
        check_course_data(Path(job["data"]["dir"]), ("train", "dev"),
                          f"{instead} (with the course's flags: --dataDir data/real_sample)")  # fmt: skip


def torch_built_for_gpu() -> bool:
    """Whether the installed torch was built for CUDA or ROCm, read from its version.py without importing it (about
    1.2 s): a CPU-only build never has a CUDA device; a GPU build asks the driver, later (check_training)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return True  # no torch to read: its import, later, says so
    built = runpy.run_path(os.path.join(spec.submodule_search_locations[0], "version.py"))
    return bool(built.get("cuda") or built.get("hip"))


def check_types(model: str, job: dict, overrides: list[str]) -> None:
    """Each setting the overrides give holds a value of its default's type: a number where the default is one, a
    whole number where it is whole, true or false where it is either."""
    from qd.core.defaults import DEFAULTS

    defaults, given = flatten(DEFAULTS[model]), flatten(job)
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if override.is_sweep_override() or key not in defaults or key not in given or defaults[key] is None:
            continue
        default, value = defaults[key], given[key]
        if isinstance(default, bool):
            expected = None if isinstance(value, bool) else "true or false"
        elif isinstance(default, int):
            expected = None if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
        elif isinstance(default, float):
            expected = None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
        else:
            expected = None
        if expected:
            raise QDError(f"{override.input_line}: expected {expected}, such as {default}")


def check_training(job: dict, model: bool) -> None:
    """Check the job's device and training options (and its model's, where `model`): QDError. Torch is imported with
    Ctrl-C held: a KeyboardInterrupt raised where its import's C++ calls back into Python aborts the process
    (`terminate called after throwing an instance of 'pybind11::error_already_set'`)."""
    with held():
        from qd.core.runtime import resolve_device
        from qd.core.train import check_options
    resolve_device(job["train"]["device"])
    check_options(job, model=model)


def run_one(cfg: DictConfig, job: dict, context: HydraContext) -> None:
    """A single run: its device and options checked, its data prepared, then Hydra's job runner (its folder,
    .hydra/, logging) and the task."""
    check_training(job, model=True)
    prepare_data(job)
    out = cfg.hydra.run.dir
    with disk_errors(out, f"{out} keeps what the run had written"):
        ret = run_job(hydra_context=context, task_function=task, config=cfg, job_dir_key="hydra.run.dir",
                      job_subdir_key=None)  # fmt: skip
        if ret.status == JobStatus.FAILED:
            raise ret._return_value  # the task's error, without Hydra's "Error executing job" line


def run_sweep(cfg: DictConfig, job: dict, context: HydraContext) -> None:
    """A sweep: its device and options checked (by the parallel launcher's workers, warmed while the sweeper imports
    Optuna), its data prepared; then the sweeper's loop. The workers stop when the sweep ends, however it ends."""
    qd_sweep = is_qd_sweep(cfg.hydra)
    parallel = workers.is_parallel(cfg.hydra)
    if not parallel:
        check_training(job, model=not qd_sweep)  # a sweep may search the architecture: each trial checks its own
    if qd_sweep:
        prepare_data(job)
    warming = None
    try:
        if parallel:
            with held():  # the executor's processes and semaphores made whole, or nothing stops them
                warming = workers.warm(cfg.hydra.launcher, job)
        if qd_sweep:  # Optuna without its plotting libraries, before the sweeper's config (its sampler) imports it
            from qd.experiment.trial import make_pruner

            make_pruner(job.get("pruning"))
        sweeper = Plugins.instance().instantiate_sweeper(config=cfg, hydra_context=context, task_function=task)
        for _ in warming or ():  # a worker's QDError is raised here, before anything is written
            pass
        database = contextlib.nullcontext()
        if qd_sweep:
            from qd.experiment.storage import database_errors

            database = database_errors(str(cfg.hydra.sweeper.storage))
        with disk_errors(cfg.hydra.sweep.dir, KEPT), database:
            sweeper.sweep(arguments=list(cfg.hydra.overrides.task))
    finally:
        if parallel:
            workers.stop(warming)


def check_sweeper(hydra_cfg: DictConfig) -> None:
    """Refuse sweeper settings no sweep can run with (QDError): its number of trials, and a storage URL that does not
    parse or that a launcher takes from QD_STORAGE where that is not set."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    n_trials = hydra_cfg.sweeper.n_trials
    if not (isinstance(n_trials, int) and n_trials >= 1):
        raise QDError(f"hydra.sweeper.n_trials={n_trials}: expected the study's number of trials, 1 or more")
    try:
        url = hydra_cfg.sweeper.storage
    except InterpolationResolutionError:
        launcher = hydra_cfg.runtime.choices.get("launcher", "slurm")
        raise QDError(
            f"hydra.sweeper.storage: +launcher={launcher} records the study in the database QD_STORAGE names, and "
            "QD_STORAGE is not set; export QD_STORAGE=postgresql://user:password@host/database"
        ) from None
    try:
        make_url(str(url))
    except ArgumentError as e:
        raise QDError(f"hydra.sweeper.storage={url}: not a database URL ({e})") from None


def job_config(cfg: DictConfig) -> dict:
    """What a job of `cfg` trains on: the config without its `hydra` node, resolved, as a plain dict."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)


def compose_checked(app: Hydra, model: str, overrides: list[str], multirun: bool) -> DictConfig:
    """The config, `hydra` node included, that `overrides` compose to, its mode set (a preset's, or -m's); a bad
    override is one line naming it (QDError)."""
    parser = OverridesParser.create()
    parsed = []
    for override in overrides:
        try:
            parsed += parser.parse_overrides([override])
        except OverrideParseException:
            key, _, value = override.partition("=")
            raise QDError(
                f"bad override {override}: Hydra's override grammar cannot read it; a value that holds = ? ( ) [ ] "
                f"or spaces needs quotes: '{key}=\"{value}\"'"
            ) from None
    try:
        cfg = app.compose_config(config_name=model, overrides=overrides, run_mode=RunMode.MULTIRUN,
                                 with_log_configuration=True, validate_sweep_overrides=False)  # fmt: skip
    except HydraException as e:
        raise QDError(composition_error(app, model, overrides, e)) from None
    if quick():  # the study's identity, and its number of trials, at the scale its trials train at
        quick_train(cfg.train)
        if "n_trials" in cfg.hydra.sweeper:
            cfg.hydra.sweeper.n_trials = min(cfg.hydra.sweeper.n_trials, QUICK_TRIALS)
    mode = RunMode.MULTIRUN if multirun or cfg.hydra.mode == RunMode.MULTIRUN else RunMode.RUN
    sweeping = [o.input_line for o in parsed if o.is_sweep_override()]
    if mode == RunMode.RUN and sweeping:
        raise QDError(f"{sweeping[0]}: a sweep expression in a single run; add -m, or a search preset (+sweep=...)")
    cfg.hydra.mode = mode
    return cfg


def composition_error(app: Hydra, model: str, overrides: list[str], error: HydraException) -> str:
    """Hydra's refusal to compose, in one line that names the override: a key that does not exist with the closest
    one that does, a value of the wrong type with OmegaConf's reason, a config group's option with the options."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if unknown := re.match(r"Could not override '(.+)'\.", lines[0]):
        key = unknown[1]
        override = next(o for o in overrides if o.lstrip("+~").partition("=")[0] == key)
        others = [o for o in overrides if o != override]
        try:
            known = flatten(OmegaConf.to_container(app.compose_config(model, others, run_mode=RunMode.MULTIRUN,
                                                                      validate_sweep_overrides=False)))  # fmt: skip
        except HydraException:
            known = {}
        return f"{override}: no such setting; {closest_setting(key, list(known))}"
    if (merging := re.match(r"Error merging override (.+)", lines[0])) and error.__cause__:
        return f"{merging[1]}: {str(error.__cause__).splitlines()[0]}"
    lines = lines[: next((i for i, line in enumerate(lines) if line.startswith("Config search path")), None)]
    options = next((lines[i + 1 :] for i, line in enumerate(lines) if line.startswith("Available options")), None)
    detail = f"expected one of {', '.join(options)}" if options else "; ".join(lines[1:2])
    return f"bad override: {lines[0]}; {detail}"


def closest_setting(key: str, known: list[str]) -> str:
    """The setting `key` most likely meant, among its siblings (`train.stpes` -> `train.steps`), or among all
    settings where its section does not exist (`trian.steps`); else what its section has."""
    section, _, name = key.rpartition(".")
    names = {".".join(k.split(".")[:i]) for k in known for i in range(1, k.count(".") + 2)}
    siblings = {n.rpartition(".")[2]: n for n in names if n.rpartition(".")[0] == section}
    close = [siblings[c] for c in difflib.get_close_matches(name, siblings, n=1)] if siblings else (
        difflib.get_close_matches(key, known, n=1))  # fmt: skip
    if close:
        return f"did you mean {close[0]}?"
    return f"{section or 'the config'} has {', '.join(sorted(siblings))}" if siblings else "no setting is close to it"


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
    """The data, made (data.prepare) and checked once, before the run or a sweep's first trial (its trials share
    it)."""
    from qd.core.data import require_files
    from qd.datasets.prepare import ensure_data

    ensure_data(job["data"])
    require_files(Path(job["data"]["dir"]), ("train", "dev"))


def is_qd_sweep(hydra_cfg: DictConfig) -> bool:
    """Whether the sweep runs on qd's sweeper (the presets' Optuna sweeper)."""
    return str(hydra_cfg.sweeper.get("_target_", "")).endswith("qd_sweeper.QDSweeper")


def task(cfg: DictConfig) -> float:
    """The Hydra task: train one job; a trial of qd's sweeper (the `trial` key) reports to its study."""
    from qd.core.job import run_job as run_qd_job
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
    if job_cfg.get("trial") is not None:
        from qd.experiment.trial import SweepTrial

        with SweepTrial(hc, job_cfg["trial"], job_cfg.get("pruning")) as trial:
            ensure_data(job_cfg["data"])
            record = run_qd_job(job_cfg, **files, info={**info, **trial.info}, on_eval=trial.on_eval, workers=workers)
            return record["best_dev_acc"]
        return math.nan  # the trial failed or was pruned: SweepTrial recorded how, for the study
    with exit_on_user_error():
        try:
            ensure_data(job_cfg["data"])
            record = run_qd_job(job_cfg, **files, info=info, workers=workers)
        except QDError as e:
            raise QDError(config_terms(str(e))) from None
    print(f"{model}: best dev accuracy {record['best_dev_acc']:.4f} at step {record['best_step']}; wrote {out}")
    return record["best_dev_acc"]
