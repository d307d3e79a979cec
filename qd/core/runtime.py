"""Where training runs: the device, the CPU threads and memory settings, and the process's peak memory."""

from __future__ import annotations

import ctypes
import resource
import sys

import torch

from qd.core.cores import auto_threads
from qd.core.cpu import cap_onednn
from qd.core.errors import pick_device


def resolve_device(name: str) -> torch.device:
    """`train.device` on this machine: auto (CUDA, then Apple's MPS, then the CPU), cpu, cuda, cuda:N or mps."""
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = getattr(torch.backends, "mps", None)
    return torch.device(pick_device(name, cuda, bool(mps and mps.is_available())))


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
