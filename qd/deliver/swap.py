"""A folder replaced whole: built beside its old self, swapped in only when complete.

Where the OS exchanges two folders in one step (Linux renameat2 RENAME_EXCHANGE, macOS renamex_np
RENAME_SWAP), the folder exists at every instant, old or new. Elsewhere (or on a filesystem that refuses the
exchange) the swap is two renames, and a crash between them leaves `.<name>.previous` without `<name>`. What
an interrupted swap leaves (`.<name>.previous`, `.<name>.staging-*`) is undone by `recover`, which each
swap runs first.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

AT_FDCWD, RENAME_EXCHANGE = -100, 2  # Linux <fcntl.h>, <linux/fs.h>
RENAME_SWAP = 2  # macOS <stdio.h>
NO_EXCHANGE = (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP)  # this OS or filesystem has none


@contextlib.contextmanager
def replaced(out: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `out`, with ordinary permissions; swap it in when the block ends
    without an error. Replacements in one folder take turns (the second waits, saying so), and each first recovers
    what an earlier interrupted one left. An OSError about a file in the staging folder names the file in `out` it
    was for."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with turn(out):
        yield from _replaced(out)


@contextlib.contextmanager
def turn(out: Path) -> Iterator[None]:
    """Hold the lock of `out`'s folder (an advisory lock on the folder itself: no file to leave behind) while `out`
    is replaced, so that no other replacement there recovers (removes) a staging folder still being built."""
    fd = os.open(out.parent, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting: another process is replacing a folder beside {out} (a promotion?)", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _replaced(out: Path) -> Iterator[Path]:
    recover(out)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(stage, 0o777 & ~umask)  # mkdtemp makes 0700
    try:
        yield stage
        swap_in(stage, out)
    except OSError as e:
        e.filename, e.filename2 = (_in_out(name, stage, out) for name in (e.filename, e.filename2))
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _in_out(name: object, stage: Path, out: Path) -> object:
    """`name`, a path in the staging folder, as the same path in `out`; any other name as it is."""
    if isinstance(name, str) and Path(name).is_relative_to(stage):
        return str(out / Path(name).relative_to(stage))
    return name


def unchanged(out: Path) -> str:
    """What a failed replacement of `out` keeps, in words (said before it begins)."""
    return f"{out} is as it was" if out.exists() else "nothing written"


def swap_in(stage: Path, out: Path) -> None:
    """Replace `out` by `stage`: one atomic exchange where the OS has it, else two renames, the old folder renamed
    back when the second fails (a crash between them leaves `.<out>.previous`, restored by `recover`)."""
    if not out.exists():
        os.rename(stage, out)
    elif exchange(stage, out):
        shutil.rmtree(stage, ignore_errors=True)  # the old folder now
    else:
        previous = out.with_name(f".{out.name}.previous")
        os.rename(out, previous)
        try:
            os.rename(stage, out)
        except BaseException:
            os.rename(previous, out)
            raise
        shutil.rmtree(previous, ignore_errors=True)


def exchange(a: Path, b: Path) -> bool:
    """Exchange two existing paths in one atomic step; False where this OS or filesystem cannot."""
    call = _exchange_call()
    if call is None:
        return False
    if call(os.fsencode(a), os.fsencode(b)) == 0:
        return True
    code = ctypes.get_errno()
    if code in NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


@functools.cache
def _exchange_call() -> Callable[[bytes, bytes], int] | None:
    """The C library's exchange of two paths, as a function of their two names; None where it has none."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):  # glibc 2.28 and later
        renameat2 = libc.renameat2
        renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
        return lambda a, b: renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
    if sys.platform == "darwin" and hasattr(libc, "renamex_np"):  # macOS 10.12 and later
        renamex_np = libc.renamex_np
        renamex_np.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint)
        return lambda a, b: renamex_np(a, b, RENAME_SWAP)
    return None


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
