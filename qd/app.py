"""The Hydra layer of main_<model>.py: overrides, --cfg/--info/--help, and multirun sweeps.

Every job (a single run or a sweep trial) trains into its Hydra output folder and leaves there
`<model>.pt`, `<model>.log` and `metrics.json`, whatever its outcome.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from qd.conf import CONF_DIR
from qd.errors import QDError, exit_on_user_error
from qd.fsutil import atomic_write_text

# One id per sweep invocation, shared with its worker processes through the environment, so that
# sweep folders never collide and every worker resolves the same folder.
RUN_ID = "QD_RUN_ID"
os.environ.setdefault(RUN_ID, f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{os.getpid()}")
OmegaConf.register_new_resolver("qd_run_id", lambda: os.environ[RUN_ID], replace=True)


class Pruned(Exception):
    """Raised from the evaluation callback when the sweep's pruner stops a hopeless trial."""


def run_hydra(model: str, argv: list[str]) -> None:
    """Run main_<model>.py's Hydra app with `argv` (overrides and Hydra flags)."""
    from qd.sweep import resume_overrides

    with exit_on_user_error():
        argv = argv + resume_overrides(model, argv)
    sys.argv = [f"main_{model}.py", *argv]
    hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=model)(task)()


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
    record = {"model": model, "data_dir": str(Path(cfg["data"]["dir"]).resolve()), **info, "started": time.time()}
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
        record.update(finished=time.time())
        record["wall_time_s"] = record["finished"] - record["started"]
        atomic_write_text(out / "metrics.json", json.dumps(record, indent=2, default=str) + "\n")
