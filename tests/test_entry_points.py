"""Every command's first contact: --help parses before the heavy imports, and output into a closed pipe (`... | head`)
ends quietly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, start, the_study
from qd.bench.helptime import help_commands, seconds
from qd.deliver.bundle import MAIN, core_modules, flatten
from qd.deliver.demo import INTERRUPTED_DEMO
from qd.experiment.outcomes import INTERRUPTED_SWEEP

HEAVY = ("torch", "pandas", "matplotlib", "optuna")


@pytest.mark.parametrize("argv", help_commands(), ids=lambda a: " ".join(x.rpartition("/")[2] for x in a))
def test_help_answers_before_the_heavy_imports(argv):
    """qd.bench helptime times these; here, what makes them fast: none of torch, pandas, matplotlib, optuna."""
    result = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: " if argv[0] == "-m" else f"{argv[0].rpartition('/')[2]}: train a ")
    assert re.findall(rf"\|\s+({'|'.join(HEAVY)})$", result.stderr, re.M) == []


def test_helptime_runs_a_command_from_an_empty_folder_and_names_a_wrong_exit():
    assert seconds(["-m", "qd", "data", "--help"], 1, 0) > 0
    with pytest.raises(SystemExit, match=r"^error: python -m qd data --help exited 0, not 2: no message$"):
        seconds(["-m", "qd", "data", "--help"], 1, 2)


def closed_pipe(argv: list[str], cwd) -> subprocess.CompletedProcess:
    """`python <argv>` with its stdout a pipe whose reader has gone, as `| head -1` leaves it once it has its line."""
    read, write = os.pipe()
    os.close(read)
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | {"PYTHONPATH": str(ROOT)}  # as users
        return subprocess.run([sys.executable, *argv], cwd=cwd, stdout=write, stderr=subprocess.PIPE, text=True,
                              env=env, timeout=120)  # fmt: skip
    finally:
        os.close(write)


@pytest.mark.parametrize(
    "argv",
    [
        ["main_bestmodel.py", "--help"],
        ["main_densenet.py", "--mode", "train", "--help"],
        ["-m", "qd", "--help"],
        ["-m", "qd", "promote", "--help"],
        ["-m", "qd.bench", "--help"],
        ["-m", "qd.bench", "pruning", "--help"],
        ["-m", "qd", "results", "outputs"],
    ],  # fmt: skip
    ids=" ".join,
)
def test_output_into_a_closed_pipe_ends_quietly(argv, tmp_path):
    job = tmp_path / "outputs/0"
    job.mkdir(parents=True)
    (job / "metrics.json").write_text(json.dumps({"format": "qd-job", "model": "densenet", "state": "failed"}))
    result = closed_pipe([str(ROOT / argv[0]) if argv[0].endswith(".py") else argv[0], *argv[1:]], tmp_path)
    assert (result.returncode, result.stderr) == (1, "")


def test_code_zips_command_line_ends_quietly_in_a_closed_pipe(tmp_path):
    """main_<model>.py as code.zip holds it: the flattened core, no qd package."""
    for path in core_modules():
        (tmp_path / path.name).write_text(flatten(path.read_text()))
    (tmp_path / "main_convnet.py").write_text(MAIN.format(model="convnet"))
    result = closed_pipe(["-E", "main_convnet.py", "--mode", "train", "--help"], tmp_path)
    assert (result.returncode, result.stderr) == (1, "")


@pytest.mark.slow
@pytest.mark.parametrize("whole_group", [True, False], ids=["terminal", "demo alone"])
def test_ctrl_c_in_make_demo_is_one_line(tmp_path, whole_group):
    """A terminal's Ctrl-C during the demo's first sweep (its whole process group): the sweep's one line, no
    traceback from the demo around it; a SIGINT to the demo's process alone is passed on to the sweep after 5 s (the
    demo's own line where the sweep had ended in them)."""
    demo = start([sys.executable, "-m", "qd", "demo"], tmp_path, group=True)
    for line in demo.stdout:
        if line.startswith("[2/6] sweep densenet"):
            break
    deadline = time.time() + 120
    while not list(tmp_path.glob("outputs/demo/densenet/*/0")):  # the first trial started
        assert time.time() < deadline and demo.poll() is None, demo.communicate()
        time.sleep(0.1)
    (os.killpg if whole_group else os.kill)(demo.pid, signal.SIGINT)
    out, err = demo.communicate(timeout=60)
    assert demo.returncode == 130, out + err
    said = [line for line in err.splitlines() if line.strip() and not line.startswith("preparing the real_sample")]
    trials = the_study(f"sqlite:///{tmp_path}/outputs/demo/densenet.db").trials
    finished = not whole_group and [t.state.name for t in trials] == ["COMPLETE"] * 3  # in the demo's 5 s of grace
    assert said == [INTERRUPTED_DEMO if finished else INTERRUPTED_SWEEP], err
