"""Ctrl-C as one line and exit status 130, at any moment, within a few seconds.

Python raises KeyboardInterrupt only between bytecodes of the main thread: a main thread that waits inside a C
call (SQLite's busy wait on a locked database, a long import) would go on for as long. A watcher thread hears the
signal at once (the interpreter writes each signal to a wakeup file descriptor) and, should the process still run
DEADLINE_S later (stuck, or still cleaning up), prints the line and ends it.

Ctrl-C waits for the end of a `held` section, such as a call into the study's database: a KeyboardInterrupt raised
inside SQLAlchemy can leave its connection in a transaction that keeps SQLite's lock (or a PostgreSQL row's), and
the clean-up that marks the cut trials interrupted would wait for that lock until the deadline ended the process,
the trials still running. The deadline counts from the signal, held or not.

A KeyboardInterrupt raised inside a finaliser (a `__del__`, a weakref's callback) never reaches the block: Python
prints it as "Exception ignored in ..." and goes on. The block's unraisable hook keeps it quiet and raises it again
in the main thread.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
import time
from typing import Iterator

DEADLINE_S = 2.5  # after Ctrl-C, the longest the process lives on (its clean-up included)
AGAIN_AFTER_S = 0.05  # a Ctrl-C a finaliser swallowed is raised again this much later, out of the hook
EXIT_STATUS = 130  # 128 + SIGINT, as shells report a process that Ctrl-C ended


class _Hold:
    """How deep the main thread is in held sections, whether a Ctrl-C waits for them to end, and whether one was
    heard in the current exit_on_ctrl_c block."""

    depth = 0
    pending = False
    heard = False


_hold = _Hold()


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Within the block, in the main thread, a Ctrl-C waits for the block's end (at most the deadline) and is raised
    there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _hold.depth += 1
    try:
        yield
    finally:
        _hold.depth -= 1
        if not _hold.depth and _hold.pending:
            _hold.pending = False
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)


def ctrl_c_heard() -> bool:
    """Whether Ctrl-C came during the current exit_on_ctrl_c block: code that a KeyboardInterrupt passed through may
    have turned it into another error (a clean-up that raised over it), which only this still tells."""
    return _hold.heard


@contextlib.contextmanager
def exit_on_ctrl_c(message: str) -> Iterator[None]:
    """Within the block, Ctrl-C prints `message` on stderr and exits 130, once, whatever the main thread is doing;
    the block's own clean-up (finally, except BaseException) runs first where the main thread is free to. A process
    that ignores SIGINT (started in the background by a script) keeps ignoring it; HYDRA_FULL_ERROR=1 shows the
    traceback instead."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler or os.environ.get("HYDRA_FULL_ERROR") == "1":
        yield
        return
    said, hit, swallowed = threading.Lock(), threading.Event(), threading.Event()

    def say() -> None:
        if said.acquire(blocking=False):
            sys.stdout.flush()
            print(f"\n{message}", file=sys.stderr, flush=True)

    def say_and_exit() -> None:
        """From the watcher: the main thread is stuck, so end the process at once."""
        say()
        os._exit(EXIT_STATUS)

    def on_sigint(signum: int, frame: object) -> None:
        if hit.is_set():  # a second Ctrl-C does not cut the clean-up of the first
            return
        _hold.heard = True
        if _hold.depth:
            _hold.pending = True
            return
        hit.set()
        raise KeyboardInterrupt

    def on_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
        if not (hit.is_set() and issubclass(unraisable.exc_type, KeyboardInterrupt)):
            previous_hook(unraisable)
            return
        hit.clear()
        swallowed.set()  # the watcher raises it again once the main thread has left this hook

    previous_hook = sys.unraisablehook
    sys.unraisablehook = on_unraisable
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def watch() -> None:
        while signal.SIGINT not in os.read(read_fd, 64):
            pass
        deadline = threading.Timer(DEADLINE_S, say_and_exit)
        deadline.daemon = True
        deadline.start()
        while swallowed.wait():
            swallowed.clear()
            time.sleep(AGAIN_AFTER_S)
            _thread.interrupt_main()

    threading.Thread(target=watch, name="qd-ctrl-c", daemon=True).start()
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except KeyboardInterrupt:
        say()
        raise SystemExit(EXIT_STATUS) from None  # the interpreter's exit cleans up; the watcher's deadline holds
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.set_wakeup_fd(previous_fd)
        sys.unraisablehook = previous_hook
        _hold.heard = False
