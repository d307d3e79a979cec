"""What qd asks Slurm: which job this process is, and how the jobs of a sweep stand.

It asks `squeue`, never `sacct`: many clusters keep no accounting, and sacct then fails at every call.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable

# The states of a job that is over (squeue --states=all lists them until Slurm forgets the job, MinJobAge later).
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
         "REVOKED", "SPECIAL_EXIT", "TIMEOUT"}  # fmt: skip


def job_id() -> str | None:
    """This process's Slurm job as squeue and scancel name it (`<array job>_<index>` in an array), or None."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def states(job_ids: Iterable[str]) -> dict[str, str] | None:
    """Slurm's state (RUNNING, CANCELLED, ...) of each of `job_ids` that squeue still lists; a job missing from the
    answer has left the queue. None when squeue itself fails."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    command = ["squeue", "--noheader", "--array", "--states=all", "--format=%i %T", f"--jobs={','.join(arrays)}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:  # squeue refuses a list of jobs it has all forgotten
        return {} if "Invalid job id" in done.stderr else None
    return dict(line.split()[:2] for line in done.stdout.splitlines() if line.strip())


def running(job: str) -> bool:
    """Whether Slurm job `job` is still queued or running (an unanswered squeue counts as yes)."""
    known = states([job])
    return known is None or (job in known and known[job] not in ENDED)
