"""Without Linux's extras (as on macOS): no os.sched_getaffinity, no /proc, no glibc mallopt."""

import os
import pathlib
import subprocess
import sys

import pytest

from conftest import ROOT
from qd.experiment.processes import process_alive

# Imported by Python at start-up from PYTHONPATH: takes away what macOS lacks, in that process only.
NOT_LINUX = """
import builtins, ctypes, os

del os.sched_getaffinity
_open = builtins.open


def _no_proc(file, *args, **kwargs):
    if str(file).startswith("/proc"):
        raise FileNotFoundError(2, "No such file or directory", str(file))
    return _open(file, *args, **kwargs)


class _LibcWithoutMallopt:
    def __init__(self, *args, **kwargs):
        pass


builtins.open = _no_proc
ctypes.CDLL = _LibcWithoutMallopt
"""


@pytest.mark.slow
def test_a_course_train_and_predict_run_without_linux_only_calls(course_dir, tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(NOT_LINUX)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)])}
    env.pop("OMP_NUM_THREADS", None)  # let qd choose the threads, as a student's shell would
    check = "import os, ctypes; print(hasattr(os, 'sched_getaffinity'), hasattr(ctypes.CDLL(None), 'mallopt'))"
    taken = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True)
    assert taken.stdout.split() == ["False", "False"], taken.stderr
    main = str(ROOT / "main_densenet.py")
    train = ["--mode", "train", "--LR", "0.001", "--bs", "50", "--epochs", "20"]
    predict = ["--mode", "predict", "--weights", "model_files/densenet.pt", "--predictionsFile", "p.csv"]
    for args in (train, predict):
        result = subprocess.run([sys.executable, main, *args, "--dataDir", str(course_dir)], cwd=tmp_path, env=env,
                                capture_output=True, text=True)  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 600


def test_a_dead_process_is_told_from_a_live_one_without_proc(monkeypatch):
    real_exists = pathlib.Path.exists
    monkeypatch.setattr(pathlib.Path, "exists", lambda p: False if str(p).startswith("/proc") else real_exists(p))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_alive(os.getpid()) and not process_alive(child.pid)


def test_a_slurm_job_keeps_to_its_own_cpus(monkeypatch):
    """Slurm without CPU binding leaves a 1-CPU job the whole node: it must train on 1 thread all the same."""
    from qd.core.cores import auto_threads, usable_cores

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    node = usable_cores()
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert usable_cores() == 1 and auto_threads() == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", str(node + 4))
    assert usable_cores() == node, "never more than the process may run on"
