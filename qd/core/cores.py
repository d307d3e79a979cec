"""The machine's cores: how many this process may use, how busy other processes keep them, and so how many threads
training takes. (No torch: the benchmarks' load probe and the sweeping process use it too.)"""

from __future__ import annotations

import os
import time


def cpu_ticks() -> tuple[int, int] | None:
    """Idle and total clock ticks of all cores since boot (Linux's /proc/stat); None where there is none."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:8]]
    except OSError:
        return None
    return ticks[3] + ticks[4], sum(ticks)


def busy_between(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float:
    """How many cores were busy on average between two cpu_ticks() snapshots (0.0 without them)."""
    if before is None or after is None:
        return 0.0
    idle, total = after[0] - before[0], after[1] - before[1]
    return (os.cpu_count() or 1) * (1 - idle / max(1, total))


def busy_cores(seconds: float = 0.1) -> float:
    """How many cores other processes kept busy while this one slept `seconds` (0.0 without Linux's /proc/stat)."""
    before = cpu_ticks()
    if before is None:
        return 0.0
    time.sleep(seconds)
    return busy_between(before, cpu_ticks())


def usable_cores() -> int:
    """The cores this process may run on: its affinity where the system says, as Linux does, else all; in a Slurm
    job at most its own CPUs (SLURM_CPUS_PER_TASK), which a cluster without CPU binding leaves to the job to keep
    to (two 1-CPU jobs on a 2-core node, each on 2 threads, spin-wait each other to several times slower)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # macOS
    allotted = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(cores, int(allotted)) if allotted.isdigit() else cores


def auto_threads(workers: int = 1) -> int:
    """OMP_NUM_THREADS if set, else the idle cores divided among `workers` parallel workers; at least 1.

    A second torch thread on a core that another process keeps busy spin-waits: under load the course's
    models trained 2-8 times slower on 2 threads than on 1 (`python -m qd.bench speed` measures it).
    """
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = usable_cores()
    share = cores // max(1, workers)
    return 1 if share <= 1 else max(1, min(share, int(cores - busy_cores() + 0.25)))
