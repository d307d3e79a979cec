"""swap_in and recover through every half-swapped state: a cut anywhere leaves the old or the new folder whole."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from qd.deliver import swap
from qd.deliver.swap import recover, swap_in

OLD = {"a.txt": "old a", "b.txt": "old b"}
NEW = {"a.txt": "new a", "c.txt": "new c"}


class Died(BaseException):
    """The process dying at this point (not an Exception: nothing may catch it)."""


def make(folder, files: dict[str, str]) -> None:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)


def contents(folder) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()}


def cut(monkeypatch, module, name: str, at: int, error: BaseException) -> None:
    """Make the `at`-th call of module.name raise `error`; the other calls do the real thing."""
    real, calls = getattr(module, name), []

    def patched(*args, **kwargs):
        calls.append(args)
        if len(calls) == at:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, patched)


# (what is cut, which call, what recover must leave): without an atomic exchange, the swap with a previous
# submission is rename(out -> previous), rename(stage -> out), then removing previous.
CUTS = [(os, "rename", 1, OLD), (os, "rename", 2, OLD), (shutil, "rmtree", 1, NEW)]


@pytest.mark.parametrize("error", [Died(), OSError("disk full")], ids=["killed", "failed"])
@pytest.mark.parametrize("module, name, at, expected", CUTS, ids=["rename-1", "rename-2", "cleanup"])
def test_a_two_rename_swap_cut_anywhere_is_recovered_whole(tmp_path, monkeypatch, module, name, at, expected, error):
    """As on an OS without an atomic exchange (the strace test below runs the same on the real system calls)."""
    out, stage = tmp_path / "submission", tmp_path / ".submission.staging-1"
    make(out, OLD)
    make(stage, NEW)
    monkeypatch.setattr(swap, "exchange", lambda a, b: False)
    cut(monkeypatch, module, name, at, error)
    with pytest.raises(type(error)):
        swap_in(stage, out)
    monkeypatch.undo()
    recover(out)
    assert contents(out) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission"], "nothing half-swapped is left"


def test_a_first_swap_cut_at_its_rename_leaves_no_submission(tmp_path, monkeypatch):
    out, stage = tmp_path / "submission", tmp_path / ".submission.staging-1"
    make(stage, NEW)
    cut(monkeypatch, os, "rename", 1, Died())
    with pytest.raises(Died):
        swap_in(stage, out)
    monkeypatch.undo()
    recover(out)
    assert list(tmp_path.iterdir()) == []


def test_an_uncut_swap_replaces_the_folder(tmp_path):
    out, stage = tmp_path / "submission", tmp_path / ".submission.staging-1"
    make(out, OLD)
    make(stage, NEW)
    swap_in(stage, out)
    recover(out)
    assert contents(out) == NEW and sorted(p.name for p in tmp_path.iterdir()) == ["submission"]


# The system calls that change the folders' names and contents; any other call between two of them changes
# nothing, so a fault before each of these is a fault between every two system calls of the swap.
MUTATING = ("rename", "renameat", "renameat2", "unlink", "unlinkat", "rmdir", "mkdir", "mkdirat")
SWAP = "import sys; from pathlib import Path; from qd.deliver.swap import swap_in; swap_in(*map(Path, sys.argv[1:]))"
NO_EXCHANGE = ("renameat2:error=EINVAL:when=1",)  # the exchange refused, as by a filesystem without it


def strace_swap(tmp_path, *inject: str) -> list[str]:
    """Swap a fresh staging folder (NEW) in for submission/ (OLD) in a Python process under strace, with the
    given injections; the mutating system calls it made, in order."""
    for folder in tmp_path.iterdir():
        shutil.rmtree(folder)
    out, stage = tmp_path / "submission", tmp_path / ".submission.staging-1"
    make(out, OLD)
    make(stage, NEW)
    trace = tmp_path.parent / f"{tmp_path.name}.strace"
    command = ["strace", "-f", "-qq", "-o", str(trace), "-e", f"trace={','.join(MUTATING)}",
               *(f"--inject={spec}" for spec in inject), sys.executable, "-c", SWAP, str(stage), str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run(command, env=env, capture_output=True, timeout=60)
    return [re.sub(r"^\d+\s+", "", line).partition("(")[0] for line in trace.read_text().splitlines()]


@pytest.fixture(scope="module")
def strace() -> None:
    """Skip where strace cannot run: not installed, or tracing refused (ptrace)."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    if subprocess.run(["strace", "-qq", "-o", os.devnull, "true"], capture_output=True).returncode != 0:
        pytest.skip("strace cannot trace here (ptrace refused)")


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
@pytest.mark.parametrize("fault", ["signal=KILL", "error=EIO"], ids=["killed", "failed"])
def test_a_fault_before_any_system_call_of_the_swap_leaves_the_old_or_the_new_submission(
    strace, tmp_path, exchange, fault
):
    """strace's fault injection before each system call the swap makes that changes a folder, one run each:
    killed there, submission/ is whole at once where the OS exchanges folders atomically, and after the next
    promotion's recovery otherwise; failed there, it is whole at once either way. Nothing else is left."""
    base = () if exchange else NO_EXCHANGE
    calls = strace_swap(tmp_path, *base)
    assert contents(tmp_path / "submission") == NEW
    counted: dict[str, int] = {}
    for call in calls:
        if call in MUTATING and (exchange or counted or call != "renameat2"):  # not the refused exchange itself
            counted[call] = counted.get(call, 0) + 1
            strace_swap(tmp_path, *base, f"{call}:{fault}:when={counted[call]}")
            out = tmp_path / "submission"
            if exchange or fault != "signal=KILL":
                assert out.is_dir() and contents(out) in (OLD, NEW), f"{fault} at {call} #{counted[call]}"
            recover(out)
            assert contents(out) in (OLD, NEW), f"{fault} at {call} #{counted[call]}, recovered"
            assert sorted(p.name for p in tmp_path.iterdir()) == ["submission"], f"{fault} at {call} #{counted[call]}"
    assert sum(counted.values()) >= 3 and ("renameat2" in counted) == exchange, counted
