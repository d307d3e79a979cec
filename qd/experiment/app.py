"""The Hydra layer of main_<model>.py: overrides, --cfg/--info/--help, single runs and sweeps.

The config is composed and checked first (every refusal one line, before any folder exists); then Hydra runs it on
its own run or multirun path, so that Hydra's callbacks, folders and logging are Hydra's. Every job (a single run or
a sweep trial) that starts training leaves in its Hydra output folder `<model>.log`, `<model>.pt` when it completes,
and `metrics.json`, its record, whatever its outcome.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import runpy
import shlex
import sys
import time
from collections.abc import Generator
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.errors import HydraException, OverrideParseException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from qd.core.course import submitted_as
from qd.core.errors import QDError, check_device, disk_errors
from qd.core.interrupt import held
from qd.core.job import QUICK_EVAL_EVERY, QUICK_STEPS, quick
from qd.experiment import compat, slurm, workers
from qd.experiment.conf import CONF_DIR, check_known_settings, group_options, override_of
from qd.experiment.identity import flatten, job_config
from qd.experiment.settings import is_qd_sweep, read_scalars, read_settings

# torch (qd.core.train) and optuna (qd.experiment.search, .trial) are imported where they are needed: a sweep's
# main process with a parallel launcher never trains, and a single run never opens a study.

# `${qd_run_id:}`: one id per invocation (its start and process id), so that run and sweep folders never
# collide. Resolved once, in the invoking process; the value travels in the config's resolver cache to every
# job, also in worker processes (Hydra copies the cache into each job's config), never through the environment.
OmegaConf.register_new_resolver(
    "qd_run_id", lambda: f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{os.getpid()}", use_cache=True, replace=True
)

# `${qd_presets:densenet}`: a model's search presets, as --help lists them (densenet_lr), read from conf/sweep/.
OmegaConf.register_new_resolver(
    "qd_presets", lambda model: "|".join(p for p in presets() if preset_model(p) == model), replace=True
)

INFO_FLAGS = ("--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help", "--shell-completion", "-sc")
MULTIRUN_FLAGS = ("-m", "--multirun")
QUICK_TRIALS = 2  # QD_QUICK=1: a sweep's trials at most (qd.core.job caps each training's steps)


def run_hydra(model: str, argv: list[str]) -> None:
    """Run main_<model>.py's Hydra app with `argv` (overrides, -m anywhere, or one of Hydra's info flags).

    The config is composed and checked before anything is written: a bad override, a setting every run would fail
    on, missing data or an unusable sweep setting is one line (QDError, exit 2). Then Hydra runs it, on its own run
    or multirun path: its callbacks, folders, .hydra/ and logging, and the configured sweeper (qd's for the presets).
    """
    if any(a.split("=")[0] in INFO_FLAGS for a in argv):
        sys.argv = [f"main_{model}.py", *with_quick_info_overrides(model, argv)]
        hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=model)(task)()
        return
    multirun = any(a in MULTIRUN_FLAGS for a in argv)
    overrides = [a for a in argv if a not in MULTIRUN_FLAGS]
    unknown = [a for a in overrides if a.startswith("-")]
    if unknown:
        raise QDError(f"{unknown[0]}: not an option of main_{model}.py; expected Hydra overrides (key=value), -m, "
                      "--cfg job, --info, --help, or the course flags (--mode ...)")  # fmt: skip
    refuse_paths(overrides)
    with compat.hydra_app(str(CONF_DIR), f"main_{model}") as app:
        cfg = compose_checked(app, model, overrides, multirun)
        job = job_config(cfg)
        check_config(model, cfg, job, argv)
        overrides = [*overrides, *quick_overrides(cfg), f"hydra.mode={cfg.hydra.mode.name}"]
        if cfg.hydra.mode == RunMode.RUN:
            run_one(app, model, cfg, job, overrides)
        else:
            run_sweep(app, model, cfg, job, overrides)


def check_config(model: str, cfg: DictConfig, job: dict, argv: list[str]) -> None:
    """Refuse what the config alone shows cannot run, before any heavy import (QDError): a model of another command,
    a value of the wrong type, a sweep's settings that need no Optuna to read (the rest: run_sweep), missing course
    data (naming `argv` on the real drawings instead)."""
    if submitted_as(name := job["model"]["name"]) != model:
        raise QDError(f"model={name}: main_{model}.py trains the {model} model; for {name} run main_"
                      f"{submitted_as(name)}.py")  # fmt: skip
    check_types(model, job, [a for a in argv if a not in MULTIRUN_FLAGS])
    check_known_settings(job, argv)
    check_device(job["train"]["device"], cuda=None if torch_built_for_gpu() else 0)
    check_data_option(job)
    if cfg.hydra.mode == RunMode.MULTIRUN and is_qd_sweep(cfg.hydra):
        check_sweep(model, cfg)
    if job["data"].get("prepare", "none") == "none":
        from qd.datasets.prepare import check_course_data

        instead = shlex.join(["python", f"main_{model}.py", *argv, "data=real_sample"])
        check_course_data(Path(job["data"]["dir"]), ("train", "dev"),
                          f"{instead} (with the course's flags: --dataDir data/real_sample)")  # fmt: skip


def check_sweep(model: str, cfg: DictConfig) -> None:
    """A sweep of qd's app on qd's sweeper: its settings that need no Optuna to read, as the sweeper reads them,
    and what qd's jobs need besides (QDError)."""
    hydra_cfg = cfg.hydra
    preset = hydra_cfg.runtime.choices.get("sweep")
    if preset and preset_model(preset) != model:
        own = ", ".join(f"+sweep={p}" for p in presets() if preset_model(p) == model)
        raise QDError(f"+sweep={preset}: a search preset of main_{preset_model(preset)}.py; run main_"
                      f"{preset_model(preset)}.py +sweep={preset}, or one of main_{model}.py's: {own}")  # fmt: skip
    try:
        hydra_cfg.sweeper.storage  # noqa: B018  (the interpolation of an unset environment variable fails here)
    except InterpolationResolutionError:
        launcher = hydra_cfg.runtime.choices.get("launcher", "slurm")
        raise QDError(
            f"hydra.sweeper.storage: +launcher={launcher} records the study in the database QD_STORAGE names, and "
            "QD_STORAGE is not set; export QD_STORAGE=postgresql://user:password@host/database"
        ) from None
    directions, storage, *_ = read_scalars(cfg)
    if directions != ["maximize"]:
        raise QDError(f"hydra.sweeper.direction={', '.join(directions)}: qd's jobs return their dev "
                      "accuracy, which a sweep maximizes; leave hydra.sweeper.direction as maximize")  # fmt: skip
    if storage is None and str(hydra_cfg.launcher.get("_target_")) != compat.BASIC_LAUNCHER:
        raise QDError("hydra.sweeper.storage=null keeps the study in this process's memory, which the launcher's "
                      "jobs cannot reach to report their learning curves; give a database, such as "
                      f"hydra.sweeper.storage=sqlite:///outputs/sweeps/{preset or model}.db")  # fmt: skip


def presets() -> list[str]:
    """The search presets (conf/sweep/<name>.yaml)."""
    return group_options("sweep")


def preset_model(preset: str) -> str:
    """The model a search preset searches: the one its name starts with (densenet_lr: densenet)."""
    return preset.partition("_")[0]


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


def run_one(app: object, model: str, cfg: DictConfig, job: dict, overrides: list[str]) -> None:
    """A single run: its device and options checked, its data prepared, then Hydra's run (its callbacks, folder,
    .hydra/, logging) of the task."""
    check_training(job, model=True)
    prepare_data(job, load=True)
    out = cfg.hydra.run.dir
    with disk_errors(out, f"{out} keeps what the run had written"):
        compat.run(app, model, task, overrides)


def run_sweep(app: object, model: str, cfg: DictConfig, job: dict, overrides: list[str]) -> None:
    """A sweep: its settings, device and options checked, its data prepared; then Hydra's multirun, with the
    configured sweeper. The parallel launcher's workers import torch, check the device and options and load the
    data; where the data is there already, they start first, while this process imports Optuna to read the rest of
    the sweep's settings. They stop when the sweep ends, however it ends."""
    from qd.datasets.prepare import to_build

    qd_sweep = is_qd_sweep(cfg.hydra)
    parallel = workers.is_parallel(cfg.hydra)
    workers_first = parallel and not (qd_sweep and to_build(job["data"]))  # a bad setting is refused before a build
    warming = None
    try:
        if workers_first:
            warming = start_workers(cfg.hydra.launcher, job)
        if qd_sweep:
            read_settings(cfg, list(cfg.hydra.overrides.task))  # its warnings once: the sweep's are the same
        if not parallel:
            check_training(job, model=not qd_sweep)  # a sweep may search the architecture: each trial checks its own
        if qd_sweep:
            prepare_data(job, load=not parallel)
        if parallel and not workers_first:
            warming = start_workers(cfg.hydra.launcher, job)
        if qd_sweep:
            import qd.experiment.sweep  # noqa: F401
            from qd.experiment.trial import make_pruner

            make_pruner(job.get("pruning"))
        for _ in warming or ():  # a worker's QDError is raised here, before anything is written
            pass
        compat.multirun(app, model, task, overrides)
    finally:
        if parallel:
            workers.stop(warming)


def start_workers(launcher: DictConfig, job: dict) -> Generator[None, None, None]:
    """The parallel launcher's workers, started and warming (workers.warm)."""
    with held():  # the executor's processes and semaphores made whole, or nothing stops them
        return workers.warm(launcher, job)


def compose_checked(app: object, model: str, overrides: list[str], multirun: bool) -> DictConfig:
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
        cfg = compat.compose(app, model, overrides)
    except HydraException as e:
        raise QDError(composition_error(app, model, overrides, e)) from None
    mode = RunMode.MULTIRUN if multirun or cfg.hydra.mode == RunMode.MULTIRUN else RunMode.RUN
    sweeping = [o.input_line for o in parsed if o.is_sweep_override()]
    if mode == RunMode.RUN and sweeping:
        raise QDError(f"{sweeping[0]}: a sweep expression in a single run; add -m, or a search preset (+sweep=...)")
    cfg.hydra.mode = mode
    return cfg


def with_quick_info_overrides(model: str, argv: list[str]) -> list[str]:
    """`argv`, Hydra's info flags among its overrides, with QD_QUICK=1's quick_overrides after the last override (where
    Hydra's parser reads them), so that --cfg job shows what would run."""
    if not quick():
        return argv
    at = [i for i, a in enumerate(argv) if "=" in a and not a.startswith("-")]  # not --cfg job, -p train, --info
    with compat.hydra_app(str(CONF_DIR), f"main_{model}") as app:
        quick_ones = quick_overrides(compose_checked(app, model, [argv[i] for i in at], multirun=False))
    end = at[-1] + 1 if at else len(argv)
    return [*argv[:end], *quick_ones, *argv[end:]]


def quick_overrides(cfg: DictConfig) -> list[str]:
    """Under QD_QUICK=1, the overrides that run `cfg` at a toy's scale: fewer steps where the sweep does not search
    them (each trial caps its own), and a sweep's fewer trials."""
    if not quick():
        return []
    searched = set(cfg.hydra.sweeper.get("params") or {}) if cfg.hydra.mode == RunMode.MULTIRUN else set()
    searched |= {o.partition("=")[0].lstrip("+~") for o in cfg.hydra.overrides.task}
    caps = {"train.steps": QUICK_STEPS, "train.eval_every": QUICK_EVAL_EVERY}
    quick_ones = [f"{k}={min(OmegaConf.select(cfg, k), cap)}" for k, cap in caps.items() if k not in searched]
    if cfg.hydra.mode == RunMode.MULTIRUN and "n_trials" in cfg.hydra.sweeper:
        quick_ones.append(f"hydra.sweeper.n_trials={min(cfg.hydra.sweeper.n_trials, QUICK_TRIALS)}")
    return quick_ones


def composition_error(app: object, model: str, overrides: list[str], error: HydraException) -> str:
    """Hydra's refusal to compose, in one line that names the override: a key that does not exist with the closest
    one that does, a value of the wrong type with OmegaConf's reason, a config group's option with the options."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if unknown := re.match(r"Could not override '(.+)'\.", lines[0]):
        key = unknown[1]
        override = override_of(key, overrides) or key
        if group_options(key) and not override.startswith("+"):
            return f"{override}: {key} is a config group that the config does not load; add it with +{override}"
        group, value = key.partition(".")[0], override.partition("=")[2]
        if value in group_options(group):
            return f"{override}: no such setting; did you mean {group}={value}?"
        others = [o for o in overrides if o != override]
        try:
            known = flatten(OmegaConf.to_container(compat.compose(app, model, others)))
        except HydraException:
            known = {}
        return f"{override}: no such setting; {closest_setting(key, list(known))}"
    if (merging := re.match(r"Error merging override (.+)", lines[0])) and error.__cause__:
        return f"{merging[1]}: {str(error.__cause__).splitlines()[0]}"
    lines = lines[: next((i for i, line in enumerate(lines) if line.startswith("Config search path")), None)]
    options = next((lines[i + 1 :] for i, line in enumerate(lines) if line.startswith("Available options")), None)
    if (missing := re.match(r"In '.+': Could not find '(.+)/([^/]+)'", lines[0])) and options:
        override = override_of(missing[1], overrides) or f"{missing[1]}={missing[2]}"
        return f"{override}: no such option; expected one of {', '.join(options)}"
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


def prepare_data(job: dict, load: bool) -> None:
    """The data, made (data.prepare) and checked once, before the run or a sweep's first trial (its trials share it);
    where `load`, read and checked whole too, and kept for the jobs that run in this process (a parallel sweep's
    workers check it as they warm)."""
    from qd.core.data import load_split, require_files
    from qd.datasets.prepare import ensure_data

    ensure_data(job["data"])
    require_files(Path(job["data"]["dir"]), ("train", "dev"))
    for split in ("train", "dev") if load else ():
        load_split(job["data"]["dir"], split)


def task(cfg: DictConfig) -> float:
    """The Hydra task: train one job; in a sweep of qd's sweeper, as the trial `hydra.job.num` of its study."""
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
    if hc.mode == RunMode.MULTIRUN and is_qd_sweep(hc):
        from qd.experiment.trial import JobTrial

        with JobTrial(hc, job_cfg.get("pruning")) as trial:
            ensure_data(job_cfg["data"])
            record = run_qd_job(job_cfg, **files, info={**info, **trial.info}, on_eval=trial.on_eval, workers=workers)
        return record["best_dev_acc"]
    with disk_errors(out, f"{out} keeps what the run had written"):
        ensure_data(job_cfg["data"])
        record = run_qd_job(job_cfg, **files, info=info, workers=workers)
    print(f"{model}: best dev accuracy {record['best_dev_acc']:.4f} at step {record['best_step']}; wrote {out}")
    return record["best_dev_acc"]


task.objective = "dev accuracy"  # what the task returns, in the sweep's lines


class OneLineErrors(Callback):
    """Hydra callback (conf/base.yaml): a single run that failed on a QDError ends here, once every other callback has
    heard of it (Hydra calls end events last-first), with the error's one line and exit status 2, instead of Hydra's
    "Error executing job" and traceback."""

    def on_run_end(self, config: DictConfig, job_return: JobReturn, **kwargs: object) -> None:
        error = compat.job_error(job_return)
        if isinstance(error, QDError):
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2)
