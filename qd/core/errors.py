"""The one error type qd shows to users (a one-line message, exit status 2), how a job ends early, how a full
or forbidden disk is said, and how messages name settings."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
from collections.abc import Iterator

# The course command line's flags and the config keys they set: the one table, for its parser and for messages.
FLAG_KEYS = {"--LR": "optimizer.lr", "--bs": "train.batch_size", "--epochs": "train.steps", "--dataDir": "data.dir",
             "--logDir": "paths.log_dir", "--modelSaveDir": "paths.model_dir"}  # fmt: skip
KEY_FLAGS = {key: flag for flag, key in FLAG_KEYS.items()}


class QDError(Exception):
    """Bad input or a refused operation; the message names the file or setting and what was expected. `keys`: the
    config keys it names, in config terms (optimizer.lr), which the course command line shows with their flags."""

    def __init__(self, message: str, keys: tuple[str, ...] = ()) -> None:
        super().__init__(message, keys)  # all in args: the error crosses processes (pickled) whole
        self.keys = keys

    def __str__(self) -> str:
        return str(self.args[0])

    def in_course_terms(self) -> str:
        """The message as the course command line says it: `optimizer.lr` becomes `--LR (optimizer.lr)`."""
        message = str(self)
        for key in self.keys:
            message = message.replace(key, f"{KEY_FLAGS[key]} ({key})")
        return message


class Pruned(Exception):
    """Raised from an evaluation callback to stop a hopeless job (a sweep's pruner)."""


class DidNotTrain(QDError):
    """Training stopped because its settings do not train: its loss diverged, or its dev accuracy stayed at chance.
    `chance` is the accuracy of a model that did not train: what a sweep's sampler is told such a trial scored, so
    that it learns where training breaks."""

    def __init__(self, message: str, chance: float, keys: tuple[str, ...] = ()) -> None:
        super().__init__(message, keys)
        self.args, self.chance = (message, chance, keys), chance


DEVICE = re.compile(r"auto|cpu|mps|cuda(?::(\d+))?")  # train.device


def check_device(name: str, cuda: int | None = None, mps: bool | None = None) -> None:
    """`train.device`: auto, cpu, cuda, cuda:N or mps (QDError naming the setting); where known, given the number
    of CUDA devices and whether Apple's GPU (MPS) is available, one that this machine has."""
    match = DEVICE.fullmatch(name)
    if not match:
        raise QDError(f"train.device: got {name!r}; expected auto, cpu, cuda, cuda:N (a GPU's index) or mps")
    if name.startswith("cuda") and cuda == 0:
        raise QDError(f"train.device={name}: no CUDA device is available; use auto or cpu")
    if name.startswith("cuda") and cuda is not None and int(match[1] or 0) >= cuda:
        raise QDError(f"train.device={name}: this machine has {cuda} CUDA device{'s' * (cuda != 1)}, cuda:0 to "
                      f"cuda:{cuda - 1}")  # fmt: skip
    if name == "mps" and mps is False:
        raise QDError("train.device=mps: no Apple-silicon GPU (MPS) is available; use auto or cpu")


def pick_device(name: str, cuda: int, mps: bool) -> str:
    """The device `train.device` names, given the number of CUDA devices and whether MPS is available: auto takes
    CUDA, then MPS, then the CPU (QDError for a device this machine does not have)."""
    check_device(name, cuda, mps)
    if name == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    return name


@contextlib.contextmanager
def exit_on_user_error(course: bool = False) -> Iterator[None]:
    """Turn a QDError into `error: <message>` on stderr and exit status 2, like argparse; with `course`, the message
    in the course command line's terms."""
    try:
        yield
    except QDError as e:
        print(f"error: {e.in_course_terms() if course else e}", file=sys.stderr)
        raise SystemExit(2) from None


# A full disk (or quota), a forbidden, read-only, missing or wrong place: the user can act on each, so each is one line.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR)


def disk_error(error: BaseException, path: str | os.PathLike, kept: str) -> QDError | None:
    """`<path>: no space left on device; <kept>` for an OSError of a full or forbidden disk, naming the file the
    OS names (a copy's or rename's destination first) or else `path`, and what was kept; None for other errors."""
    if not isinstance(error, OSError) or error.errno not in DISK_ERRNOS:
        return None
    reason = os.strerror(error.errno)
    return QDError(f"{error.filename2 or error.filename or path}: {reason[:1].lower()}{reason[1:]}; {kept}")


@contextlib.contextmanager
def disk_errors(path: str | os.PathLike, kept: str) -> Iterator[None]:
    """Turn an OSError of a full or forbidden disk in the block into disk_error's QDError."""
    try:
        yield
    except OSError as e:
        error = disk_error(e, path, kept)
        if error is None:
            raise
        raise error from None


def one_line(error: BaseException) -> str:
    """The first line of an error; the exception type too, unless it is a qd error (already plain words)."""
    text = (str(error).strip().splitlines() or [""])[0]
    return text if isinstance(error, QDError) else f"{type(error).__name__}: {text}".rstrip(": ")
