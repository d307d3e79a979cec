"""The CPU this process runs on, and how qd's convolutions run on it: their memory layout and oneDNN's instruction set.

The choice is a fixed rule on the CPU's description (its vendor, family and instruction sets, the level torch's
kernels run at, oneDNN), not a timing: the same machine and torch always take the same path, so a seed names one
result, and a test can check the rule. docs/performance.md gives the measurements behind it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass

import torch

ISA_FLAGS = {"AVX2": ("avx2",), "AVX-512": ("avx512f",), "AMX": ("amx_tile",), "NEON": ("asimd", "neon")}
CHANNELS_LAST_KERNELS = ("AVX2", "AVX512")  # torch's x86 kernel levels at which oneDNN's channels-last paths won
MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


@dataclass(frozen=True)
class CpuInfo:
    """What the choice depends on, and what a benchmark names the machine by."""

    model: str  # as the system names the CPU ("" when it does not say)
    vendor: str  # /proc/cpuinfo's vendor_id: GenuineIntel, AuthenticAMD ("" elsewhere)
    family: int  # /proc/cpuinfo's cpu family: 25 for AMD's Zen 3 and Zen 4 (0 elsewhere)
    isa: tuple[str, ...]  # of ISA_FLAGS' names, those the CPU has
    kernels: str  # the instruction set torch's own kernels use (AVX512, AVX2, DEFAULT, ...; "" when torch cannot say)
    onednn: bool  # torch has oneDNN (mkldnn) and it is enabled


def _cpuinfo() -> dict[str, str]:
    """The first CPU's fields in Linux's /proc/cpuinfo, or its name and flags from macOS's sysctl; {} elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            first = f.read().split("\n\n")[0].splitlines()
        return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first if ":" in line)}
    except OSError:
        pass
    if sys.platform == "darwin":
        name = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True).stdout
        return {"model name": name.strip(), "flags": "asimd" if platform.machine() == "arm64" else ""}
    return {}


def describe_cpu() -> CpuInfo:
    """This machine's CpuInfo; torch's kernel level follows ATEN_CPU_CAPABILITY where it is set."""
    fields = _cpuinfo()
    flags = set((fields.get("flags") or fields.get("Features", "")).split())  # x86's flags, ARM's features
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)  # torch 2.1 and later
    family = fields.get("cpu family", "")
    return CpuInfo(
        model=fields.get("model name") or platform.processor() or platform.machine(),
        vendor=fields.get("vendor_id", ""),
        family=int(family) if family.isdigit() else 0,
        isa=tuple(name for name, names in ISA_FLAGS.items() if flags & set(names)),
        kernels=capability() if capability else "",
        onednn=torch.backends.mkldnn.is_available() and bool(torch.backends.mkldnn.enabled),
    )


def memory_format(setting: str, device: torch.device, cpu: CpuInfo | None = None) -> torch.memory_format:
    """`train.memory_format`: channels_last, contiguous or auto, which takes channels-last on a CPU where torch runs
    AVX2 or AVX-512 kernels with oneDNN, and torch's default layout elsewhere (a GPU, no oneDNN, another CPU)."""
    if setting != "auto":
        return MEMORY_FORMATS[setting]
    cpu = cpu or describe_cpu()
    fast = device.type == "cpu" and cpu.onednn and cpu.kernels in CHANNELS_LAST_KERNELS
    return torch.channels_last if fast else torch.contiguous_format


def onednn_isa(cpu: CpuInfo) -> str | None:
    """The instruction set to cap oneDNN at on `cpu`, or None: AVX2 on AMD's Zen 4 (family 25 with AVX-512), whose
    AVX-512 runs in two 256-bit halves and where oneDNN's AVX2 convolutions trained the convnet faster."""
    zen4 = cpu.vendor == "AuthenticAMD" and cpu.family == 25 and "AVX-512" in cpu.isa
    return "AVX2" if zen4 else None


def cap_onednn(cpu: CpuInfo | None = None) -> None:
    """Cap oneDNN's instruction set as onednn_isa says, unless ONEDNN_MAX_CPU_ISA is set. oneDNN reads it when it
    builds its first kernel: called before any convolution has run in this process, or it changes nothing."""
    isa = onednn_isa(cpu or describe_cpu())
    if isa:
        os.environ.setdefault("ONEDNN_MAX_CPU_ISA", isa)
