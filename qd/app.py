"""The Hydra layer of main_<model>.py: overrides, --cfg/--info/--help, and multirun sweeps.

Every job (a single run or a sweep trial) trains into its Hydra output folder and leaves there
`<model>.pt`, `<model>.log` and `metrics.json`, whatever its outcome.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from qd.conf import CONF_DIR
from qd.errors import QDError, exit_on_user_error
from qd.fsutil import atomic_write_text

# `${qd_run_id:}`: one id per invocation (its start and process id), so that run and sweep folders never
# collide. Resolved once, in the invoking process; the value travels in the config's resolver cache to every
# job, also in worker processes (Hydra copies the cache into each job's config), never through the environment.
OmegaConf.register_new_resolver(
    "qd_run_id", lambda: f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{os.getpid()}", use_cache=True, replace=True
)


class Pruned(Exception):
    """Raised from the evaluation callback when the sweep's pruner stops a hopeless trial."""


INFO_FLAGS = ("--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help", "--shell-completion", "-sc")


def run_hydra(model: str, argv: list[str]) -> None:
    """Run main_<model>.py's Hydra app with `argv` (overrides and Hydra flags)."""
    if not any(a.split("=")[0] in INFO_FLAGS for a in argv):
        with exit_on_user_error():
            cfg = compose_checked(model, argv)
            if is_optuna_sweep(cfg.hydra, argv) and cfg.hydra.sweeper.storage:
                from qd.sweep import resume_overrides

                argv = argv + resume_overrides(cfg.hydra.sweeper, cfg.resume.unclaimed_after_s)
    sys.argv = [f"main_{model}.py", *argv]
    hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=model)(task)()


def compose_checked(model: str, argv: list[str]) -> DictConfig:
    """The config, `hydra` node included, that `argv` composes to; a bad override is one line naming it (QDError)."""
    parsed = OverridesParser.create().parse_overrides([a for a in argv if not a.startswith("-")])
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


def is_optuna_sweep(hydra_cfg: DictConfig, argv: list[str]) -> bool:
    multirun = hydra_cfg.mode == RunMode.MULTIRUN or any(a in ("-m", "--multirun") for a in argv)
    return multirun and "optuna" in str(hydra_cfg.sweeper.get("_target_", "")).lower()


def task(cfg: DictConfig) -> float:
    """The Hydra task: train one job; a sweep trial reports to its Optuna study."""
    hc = HydraConfig.get()
    workers = hc.launcher.get("n_jobs")  # the joblib launcher's parallel workers share this machine's cores
    if workers:
        os.environ["QD_WORKERS"] = str(workers if workers > 0 else os.cpu_count())
    job_cfg = OmegaConf.to_container(cfg, resolve=True)
    out = Path(hc.runtime.output_dir)
    if hc.mode == RunMode.MULTIRUN:
        from qd.sweep import run_trial

        return run_trial(job_cfg, out, hc)
    with exit_on_user_error():
        return run_job(job_cfg, out, job_info(hc))["best_dev_acc"]


def job_info(hc: DictConfig) -> dict:
    """What identifies a job: its folder and the overrides that made it."""
    return {"job_dir": str(Path(hc.runtime.output_dir).resolve()), "overrides": list(hc.overrides.task)}


def one_line(error: BaseException) -> str:
    """The first line of an error; the exception type too, unless it is a qd error (already plain words)."""
    text = (str(error).strip().splitlines() or [""])[0]
    return text if isinstance(error, QDError) else f"{type(error).__name__}: {text}".rstrip(": ")


def run_job(cfg: dict, out: Path, info: dict, on_eval=None) -> dict:
    """Train into `out` and write `metrics.json` there, also when the job fails or is pruned."""
    from qd.data import ensure_data
    from qd.train import train

    model = cfg["model"]["name"]
    record = {"model": model, "data_dir": str(Path(cfg["data"]["dir"]).resolve()), **info, "pid": os.getpid()}
    record["started"] = time.time()
    try:
        ensure_data(cfg["data"])
        record.update(train(cfg, out / f"{model}.log", out / f"{model}.pt", on_eval=on_eval), state="complete")
        return record
    except Pruned as e:
        record.update(state="pruned", reason=str(e))
        raise
    except BaseException as e:
        record.update(state="failed", reason=one_line(e))
        raise
    finally:
        record.update(finished=time.time(), peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        record["wall_time_s"] = record["finished"] - record["started"]
        atomic_write_text(out / "metrics.json", json.dumps(record, indent=2, default=str) + "\n")
