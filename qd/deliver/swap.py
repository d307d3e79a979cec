"""A folder replaced whole: built beside its old self, swapped in only when complete.

A reader, a crash or kill -9 at any moment sees the old folder or the new one, never a mix: what an
interrupted swap leaves (`.<name>.previous`, `.<name>.staging-*`) is undone by `recover`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replaced(out: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `out`, with ordinary permissions; swap it in when the block ends
    without an error. Recovers what an earlier interrupted swap left first."""
    recover(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(stage, 0o777 & ~umask)  # mkdtemp makes 0700
    try:
        yield stage
        swap_in(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def swap_in(stage: Path, out: Path) -> None:
    """Replace `out` by `stage`; a crash in between leaves `.<out>.previous`, restored by `recover`."""
    previous = out.with_name(f".{out.name}.previous")
    if out.exists():
        os.rename(out, previous)
    os.rename(stage, out)
    shutil.rmtree(previous, ignore_errors=True)


def recover(out: Path) -> None:
    """Undo what an interrupted swap left: staging folders, and a previous folder mid-swap."""
    previous = out.with_name(f".{out.name}.previous")
    if previous.exists():
        if out.exists():
            shutil.rmtree(previous)
        else:
            os.rename(previous, out)
    for stale in out.parent.glob(f".{out.name}.staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
