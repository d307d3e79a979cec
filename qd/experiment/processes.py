"""The processes of a sweep: how one is named and checked, and a child's watch on the sweeping process."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

PARENT_POLL_S = 1.0  # how often a worker looks for its sweeping process
_watching = threading.Event()


def watch_parent(sweeper: int) -> None:
    """In a child of the sweeping process `sweeper` (a parallel worker), leave Ctrl-C to the sweeping process (a
    terminal sends it to the whole process group: the sweep marks the cut trials interrupted and stops its workers,
    which would otherwise each print a traceback), and end this process as soon as the sweeping process is gone,
    however it died: loky's workers would otherwise live on, idle or training, for minutes. Nothing in any other
    process (the sweeping process itself, a Slurm job). Once a process; a daemon thread polls."""
    parent = os.getppid()
    if parent != sweeper or _watching.is_set():
        return
    _watching.set()
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:  # a dead parent's children are adopted by another process
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="qd-watch-parent", daemon=True).start()


def ctrl_c_blocked_here() -> None:
    """Block SIGINT in this thread (a thread of the sweeping process that launches jobs), where signal masks exist
    (not Windows): the processes it starts, and the threads it starts with theirs (a launcher's workers), start with
    SIGINT blocked. A terminal's Ctrl-C reaches every process of its group: the sweeping process's main thread
    marks the cut trials interrupted and stops the workers, which Ctrl-C would otherwise cut each with a traceback,
    even as their interpreter starts."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def process_alive(pid: int) -> bool:
    """Whether a process `pid` runs on this host (signal 0 checks, sends nothing; Linux and macOS alike)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def this_process() -> str:
    """`host:pid`, as a trial's attributes name the processes of its sweep."""
    return f"{socket.gethostname()}:{os.getpid()}"
