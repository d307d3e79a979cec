"""The one error type qd shows to users (a one-line message, exit status 2), how a job ends early, and how
messages name settings."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

# Config keys as the course command line spells them, for error messages.
SETTING_FLAGS = {"optimizer.lr": "--LR", "train.batch_size": "--bs", "train.steps": "--epochs"}


class QDError(Exception):
    """Bad input or a refused operation; the message names the file or flag and what was expected."""


class Pruned(Exception):
    """Raised from an evaluation callback to stop a hopeless job (a sweep's pruner)."""


class SweepFailed(BaseException):
    """Every trial of a sweep failed. A BaseException, so that it stops the sweep past the sweeper's own
    handling of a failed trial; main_<model>.py prints its message alone."""


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn a QDError into `error: <message>` on stderr and exit status 2, like argparse."""
    try:
        yield
    except QDError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def one_line(error: BaseException) -> str:
    """The first line of an error; the exception type too, unless it is a qd error (already plain words)."""
    text = (str(error).strip().splitlines() or [""])[0]
    return text if isinstance(error, QDError) else f"{type(error).__name__}: {text}".rstrip(": ")


def flag(key: str) -> str:
    """A config key with its course flag, e.g. `--LR (optimizer.lr)`."""
    return f"{SETTING_FLAGS[key]} ({key})" if key in SETTING_FLAGS else key


def config_terms(message: str) -> str:
    """`message` as Hydra overrides spell settings: `--LR (optimizer.lr)` becomes `optimizer.lr`."""
    for key in SETTING_FLAGS:
        message = message.replace(flag(key), key)
    return message
