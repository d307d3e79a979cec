"""Where training runs: the device, the CPU threads and memory settings, and the process's peak memory."""

from __future__ import annotations

import ctypes
import os
import resource
import sys
import time

import torch

from qd.core.cpu import cap_onednn
from qd.core.errors import QDError


def resolve_device(name: str) -> torch.device:
    """`train.device`: auto (CUDA when present), cpu or cuda."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise QDError("train.device=cuda: no CUDA device is available; use auto or cpu")
    if name not in ("cpu", "cuda"):
        raise QDError(f"train.device: got {name!r}; expected auto, cpu or cuda")
    return torch.device(name)


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


def configure_cpu(threads: int = 0, workers: int = 1) -> int:
    """Use `threads` torch threads (0: auto_threads(workers)), cap oneDNN's instruction set where qd.core.cpu says,
    and let glibc reuse freed memory; return the threads.

    Each step frees and reallocates the same activations; when glibc hands them back to the system, every
    page faults in again (about 1,900 faults a convnet step, a quarter of its time). Blocks up to 32 MiB,
    glibc's largest threshold, are kept for reuse instead.
    """
    torch.set_num_threads(threads or auto_threads(workers))
    cap_onednn()
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None) if sys.platform == "linux" else None  # glibc only
    if mallopt:
        mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    return torch.get_num_threads()


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB (getrusage counts KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024
