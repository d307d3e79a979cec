"""Other processes' load around a timed run, so that a benchmark tells a disturbed figure from an idle one."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import TypeVar

from qd.core.cores import busy_between, busy_cores, cpu_ticks

DISTURBED = 0.25  # cores kept busy by other processes above which a run counts as disturbed
PROBE_S = 0.5  # how long the probe before a run samples the machine
T = TypeVar("T")
LOAD_NOTE = (
    f"\nload: the most cores other processes kept busy just before or during a row's runs (each run the least "
    f"disturbed of its tries); above {DISTURBED:g}, the row's figures are disturbed."
)


def own_cpu() -> float:
    """CPU seconds of this process and of its children that have ended."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


class Load:
    """`with Load() as load: ...`: the cores other processes kept busy just before the block (`before`, sampled
    PROBE_S) and during it (`during`: all cores' busy time less this process's and its ended children's)."""

    def __enter__(self) -> Load:
        self.before, self.during = busy_cores(PROBE_S), 0.0
        self._ticks, self._cpu, self._start = cpu_ticks(), own_cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        wall = time.perf_counter() - self._start
        ours = (own_cpu() - self._cpu) / max(wall, 1e-9)
        self.during = max(0.0, busy_between(self._ticks, cpu_ticks()) - ours)

    @property
    def cores(self) -> float:
        """The larger of the two: the run's load."""
        return max(self.before, self.during)


def least_disturbed(run: Callable[[], T], retries: int) -> tuple[T, float]:
    """run() and its load (Load.cores); while the load is above DISTURBED, run it again, up to `retries` more
    times, and keep the least disturbed run."""
    best: tuple[T, float] | None = None
    for _ in range(retries + 1):
        with Load() as load:
            result = run()
        if best is None or load.cores < best[1]:
            best = (result, load.cores)
        if load.cores <= DISTURBED:
            break
    return best


def load_cell(loads: list[float]) -> str:
    """A table cell: the largest load of a row's runs, marked when it disturbed them."""
    worst = max(loads)
    return f"{worst:.2f} disturbed" if worst > DISTURBED else f"{worst:.2f}"
