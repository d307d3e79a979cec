"""Where a course process's time goes: imports, data, set-up, loop, evaluations, checkpoint, prediction.

`python -m qd.bench.phases SPEC` runs one course process (qd's `main_<model>.py --mode ...`, or the starter's
`qd.bench.starter` function) in this interpreter with wall-clock timers around the functions of each phase and
around every import, and prints the seconds of each phase as JSON on its last line as the process ends. A
phase's seconds are its own: an import inside the loop counts as imports, an evaluation inside it as evaluations.
"""

from __future__ import annotations

import builtins
import importlib
import json
import runpy
import sys
import time
from collections import defaultdict
from collections.abc import Callable

from qd import ROOT

# (side, mode) -> phase -> the functions timed, "module:attribute" where the process looks them up.
PHASES = {
    ("qd", "train"): {
        "data": ["qd.core.train:load_split"],
        "set-up": ["qd.core.train:configure_cpu", "qd.core.train:new_model", "qd.core.train:build_optimizer"],
        "loop": ["qd.core.train:fit"],
        "evaluations": ["qd.core.train:approx_train_acc_and_loss", "qd.core.train:dev_acc_and_loss"],
        "checkpoint": ["qd.core.train:save_checkpoint"],
    },
    ("qd", "predict"): {
        "data": ["qd.core.predict:load_split"],
        "set-up": ["qd.core.predict:configure_cpu"],
        "checkpoint": ["qd.core.predict:load_model"],
        "predict": ["qd.core.predict:predict"],
    },
    ("baseline", "train"): {
        "data": ["qd.bench.starter:baseline_load"],
        "loop": ["qd.bench.starter:baseline_train"],
        "evaluations": ["qd.bench.starter:_baseline_acc_and_loss"],
        "checkpoint": ["torch:save"],
    },
    ("baseline", "predict"): {
        "data": ["qd.bench.starter:baseline_load"],
        "checkpoint": ["torch:load"],
        "predict": ["qd.bench.starter:baseline_predict"],
    },
}
COLUMNS = ("imports", "data", "set-up", "loop", "evaluations", "checkpoint", "predict")


class Timers:
    """Exclusive wall-clock seconds per phase: time spent in a timed call nested in another counts only once,
    for the inner one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._inner: list[float] = []  # per open call: seconds of the timed calls inside it

    def wrap(self, phase: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            self._inner.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed, inner = time.perf_counter() - start, self._inner.pop()
                self.seconds[phase] += elapsed - inner
                if self._inner:
                    self._inner[-1] += elapsed

        return timed


def run(side: str, mode: str, argv: list[str]) -> None:
    """Run the course process `argv` (qd: main_<model>.py and its flags but --mode; baseline: the starter's
    arguments) with its phases timed; print the seconds of each phase as JSON before it ends, as it ends."""
    timers = Timers()
    builtins.__import__ = timers.wrap("imports", builtins.__import__)
    importlib.import_module = timers.wrap("imports", importlib.import_module)
    for phase, targets in PHASES[side, mode].items():
        for target in targets:
            module_name, _, attr = target.partition(":")
            module = importlib.import_module(module_name)
            setattr(module, attr, timers.wrap(phase, getattr(module, attr)))

    def report() -> None:
        print(json.dumps(timers.seconds))

    if side == "baseline":
        getattr(importlib.import_module("qd.bench.starter"), f"{mode}_process")(*argv)
        report()
        return
    cli = importlib.import_module("qd.core.cli")
    exit_now = cli.exit_now

    def report_and_exit() -> None:
        report()
        exit_now()

    cli.exit_now = report_and_exit
    sys.argv = [str(ROOT / argv[0]), "--mode", mode, *argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    run(spec["side"], spec["mode"], spec["argv"])
