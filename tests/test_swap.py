"""swap_in and recover through every half-swapped state: a cut anywhere leaves the old or the new folder whole."""

import os
import shutil

import pytest

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


# (what is cut, which call, what recover must leave): with a previous submission the swap is rename(out ->
# previous), rename(stage -> out), then removing previous.
CUTS = [(os, "rename", 1, OLD), (os, "rename", 2, OLD), (shutil, "rmtree", 1, NEW)]


@pytest.mark.parametrize("error", [Died(), OSError("disk full")], ids=["killed", "failed"])
@pytest.mark.parametrize("module, name, at, expected", CUTS, ids=["rename-1", "rename-2", "cleanup"])
def test_a_swap_cut_anywhere_is_recovered_whole(tmp_path, monkeypatch, module, name, at, expected, error):
    out, stage = tmp_path / "submission", tmp_path / ".submission.staging-1"
    make(out, OLD)
    make(stage, NEW)
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
