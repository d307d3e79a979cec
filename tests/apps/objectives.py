"""A small Hydra app that is not qd's, for testing qd's sweeper as any app would use it: a function of x and y
to minimize (one objective, or two; `+returned=array` returns them as a NumPy array, `+returned=infinity` returns
infinity), a job that fails where told (or turns Ctrl-C into another error), a sampler that Ctrl-C cuts, and a
callback that records Hydra's events.

    python tests/apps/objectives.py --config-name sphere -m
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base="1.3", config_path="conf", config_name="sphere")
def objective(cfg: DictConfig) -> float | tuple[float, float]:
    """(x - 1)^2 + (y + 2)^2, whose minimum 0 lies at (1, -2); with two objectives, also x^2 + y^2."""
    if cfg.fail_above is not None and cfg.x > cfg.fail_above:
        raise ValueError(f"x={cfg.x} is above {cfg.fail_above}")
    if cfg.get("wait_for_ctrl_c"):  # then raise another error over it, as a clean-up that fails can
        print("waiting", flush=True)
        try:
            time.sleep(60)
        except KeyboardInterrupt:
            raise ValueError("a clean-up that failed over Ctrl-C") from None
    first = (cfg.x - 1) ** 2 + (cfg.y + 2) ** 2 + cfg.z**2
    with open(os.path.join(HydraConfig.get().runtime.output_dir, "value.json"), "w") as f:
        json.dump({"num": HydraConfig.get().job.num, "x": cfg.x, "y": cfg.y, "value": first}, f)
    if cfg.get("returned") == "infinity":  # as a task may say that its settings are infeasible
        return math.inf
    values = (first, cfg.x**2 + cfg.y**2) if cfg.objectives == 2 else first
    return np.array(values) if cfg.get("returned") == "array" else values


def conditional_z(cfg: DictConfig, trial: Any) -> None:
    """A custom search space (hydra.sweeper.custom_search_space): z is searched only where x is positive."""
    if trial.params["x"] > 0:
        trial.suggest_float("z", -1.0, 1.0)


def any_z(cfg: DictConfig, trial: Any) -> None:
    """A custom search space that searches z in every trial."""
    trial.suggest_float("z", -1.0, 1.0)


def interrupted_sampler(seed: int | None = None) -> Any:
    """A sampler that Ctrl-C cuts as it draws (hydra.sweeper.sampler._target_=objectives.interrupted_sampler)."""
    import optuna

    class Interrupted(optuna.samplers.RandomSampler):
        def infer_relative_search_space(self, study: Any, trial: Any) -> dict:
            raise KeyboardInterrupt

    return Interrupted(seed=seed)


class Recorder(Callback):
    """Appends each of Hydra's events, with the job's number where there is one, to `events.jsonl` in the current
    folder."""

    def _record(self, event: str, config: DictConfig, **kwargs: Any) -> None:
        entry = {"event": event, "pid": os.getpid()}
        if event.startswith("on_job"):
            entry["num"] = OmegaConf.select(config, "hydra.job.num")  # a single run has none
        if "job_return" in kwargs:
            entry["status"] = kwargs["job_return"].status.name
        with open("events.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._record("on_run_start", config, **kwargs)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._record("on_run_end", config, **kwargs)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._record("on_multirun_start", config, **kwargs)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._record("on_multirun_end", config, **kwargs)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._record("on_job_start", config, **kwargs)

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._record("on_job_end", config, **kwargs)


if __name__ == "__main__":
    objective()
