"""Atomic file writes: a reader sees the old file or the complete new one, never a part."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`. An OSError names
    `path` where it would name the temporary file or no file (a full disk's failed write), and the temporary
    file is removed: `path` is as it was."""
    path, tmp = Path(path), None
    try:
        if path.parent.exists() and not path.parent.is_dir():  # mkdir would say it exists
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path.parent))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is None or _is_temporary(e.filename, path):
            e.filename = str(path)
        if _is_temporary(e.filename2, path):
            e.filename2 = str(path)
        raise
    finally:
        if tmp:
            tmp.unlink(missing_ok=True)


def _is_temporary(name: object, path: Path) -> bool:
    """Whether `name` is one of the temporary files atomic_path makes for `path` (mkstemp failing names one)."""
    return isinstance(name, str) and Path(name).parent == path.parent and Path(name).name.startswith(f".{path.name}.")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def trim_to_whole_lines(path: str | os.PathLike) -> None:
    """Cut a text file written line by line back to its last whole line, and remove it when it holds none: a
    write a full disk refused can leave part of one. (Cutting and removing a file need no space.)"""
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - (1 << 16))  # the lines qd writes this way (log rows) are far shorter
        f.seek(start)
        size = f.truncate(start + f.read().rfind(b"\n") + 1)
    if size == 0:
        os.remove(path)
