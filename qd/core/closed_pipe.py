"""Output into a pipe whose reader has gone (`python main_bestmodel.py --help | head`) ends the command quietly.

Every entry point runs inside `quiet_on_closed_pipe()`: python -m qd, python -m qd.bench, main_<model>.py in the
repository (qd.main) and in code.zip.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
from typing import Iterator

EXIT_STATUS = 1  # as Python's own documentation of SIGPIPE suggests


@contextlib.contextmanager
def quiet_on_closed_pipe() -> Iterator[None]:
    """Exit with EXIT_STATUS and no traceback when stdout's reader has gone; any other BrokenPipeError (a worker's
    pipe, a socket) goes on as it was."""
    try:
        try:
            yield
        finally:  # --help ends in SystemExit: what is still buffered fails here, not in the flush at exit
            sys.stdout.flush()
    except BrokenPipeError:
        if not stdout_closed():
            raise
        # The interpreter flushes stdout once more at exit: point it at /dev/null so that this flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(EXIT_STATUS) from None


def stdout_closed() -> bool:
    """Whether stdout is a pipe without a reader (POLLERR); True where poll() is missing (Windows), since a
    BrokenPipeError that reaches an entry point there most likely comes from stdout."""
    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(sys.stdout.fileno(), select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
