"""Shared fixtures: a small course-shaped synthetic folder, a runner for the command lines, and real servers: a
PostgreSQL and a single-node Slurm."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest

from qd.datasets.real import REAL_DIR
from qd.datasets.synth import write_synthetic

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def course_dir(tmp_path_factory) -> Path:
    """A course-shaped synthetic set: 1,200 train, 600 dev, 600 test images."""
    return write_synthetic(tmp_path_factory.mktemp("course") / "datasets", seed=1, sizes=(1200, 600, 600))


@pytest.fixture
def real_dir() -> Path:
    """The real drawings vendored in the repository."""
    return REAL_DIR


def run_cli(
    args: list[str], cwd: Path, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `python <args>` from `cwd` with the repository importable, and `env` added; capture its output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_here(args: list[str], cwd: Path, env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess:
    """run_cli's `python <args>` (a script, or -m qd ...) in this process, from `cwd` with `env` added (a None value
    unsets its variable): the same exit status and output, without a process's start-up and imports (3 to 4 s). For
    commands that need no process of their own: not Ctrl-C, kill -9, timings or how a process ends (os._exit, which
    the course command line ends with, ends the command here)."""
    import contextlib
    import io
    import logging
    import runpy
    import traceback

    import torch
    from hydra.core.global_hydra import GlobalHydra

    out, err, saved_env, root = io.StringIO(), io.StringIO(), dict(os.environ), logging.getLogger()
    saved = (sys.argv, sys.path[:], os.getcwd(), torch.get_num_threads(), root.handlers[:], root.level)
    for name, value in {"PYTHONPATH": str(ROOT), **(env or {})}.items():  # as run_cli's, for the processes it starts
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    os.chdir(cwd)
    os._exit = end_command
    sys.argv = args[1:] if args[0] == "-m" else list(args)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.filters[:] = PROCESS_WARNING_FILTERS  # each warning shown once a command, on its stderr
            warnings.showwarning = show_warning
            try:
                if args[0] == "-m":
                    sys.modules.pop(f"{args[1]}.__main__", None)  # a test's import of it: runpy runs it afresh
                    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
                else:
                    sys.path.insert(0, str(Path(args[0]).parent))  # as `python script.py` does
                    runpy.run_path(args[0], run_name="__main__")
                code = 0
            except SystemExit as e:
                code = exit_status(e.code)
            except BaseException:  # as the interpreter would end: the traceback on stderr, exit status 1
                traceback.print_exc()
                code = 1
    finally:
        os._exit = EXIT
        sys.argv, sys.path[:], cwd_before, threads, root.handlers[:], level = saved
        root.setLevel(level)
        os.chdir(cwd_before)
        torch.set_num_threads(threads)
        os.environ.clear()
        os.environ.update(saved_env)
        GlobalHydra.instance().clear()
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


PROCESS_WARNING_FILTERS = list(warnings.filters)  # a process's, before pytest's own


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Python's own way of showing a warning, on the current stderr (pytest's, outside run_here, records them)."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


EXIT = os._exit


def end_command(status: int) -> None:
    """os._exit within run_here: the command ends, not the tests' process."""
    raise SystemExit(status)


def exit_status(code: object) -> int:
    """The exit status of a process that SystemExit(code) ends; a message given as the code goes to stderr."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


def start(argv: list[str], cwd: Path, group: bool = False) -> subprocess.Popen:
    """A process as a terminal starts it, the repository importable: Ctrl-C (SIGINT) as Python expects it, even
    where this test's own runner ignores it (a background job of a script); with `group`, in a process group of its
    own, as a terminal's foreground job (os.killpg then signals it and its children, as Ctrl-C does)."""
    return subprocess.Popen(argv, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, process_group=0 if group else None,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip


TINY_BEST = "model.width=8"  # a best model small enough for quick tests
LEARNING = "optimizer.lr=tag(log, interval(1e-4, 1e-2))"  # a dense net's learning rates that never diverge
# The classes that swept_data keeps whole in train and in dev: every other class loses a quarter.
TRAIN_MAJORITY, DEV_MAJORITY = 4, 3  # strawberry, pineapple


@pytest.fixture(scope="session")
def swept_data(course_dir, tmp_path_factory) -> Path:
    """course_dir made unbalanced, with a majority class other than 0 in train (strawberry) and dev (pineapple).

    Train keeps 200 strawberries and 150 of each other class (950), dev 100 pineapples and 75 of each other
    (475); the 600 test images are course_dir's.
    """
    out = tmp_path_factory.mktemp("unbalanced") / "datasets"
    out.mkdir()
    for images, labels, whole in (("fruit_images.npy", "fruit_labels.npy", TRAIN_MAJORITY),
                                  ("fruit_dev_images.npy", "fruit_dev_labels.npy", DEV_MAJORITY)):  # fmt: skip
        y = np.load(course_dir / labels)
        keep = np.concatenate([np.flatnonzero(y == c)[: None if c == whole else 3 * (y == c).sum() // 4]
                               for c in range(6)])  # fmt: skip
        keep.sort()
        np.save(out / images, np.load(course_dir / images)[keep])
        np.save(out / labels, y[keep])
    shutil.copyfile(course_dir / "fruit_test_images.npy", out / "fruit_test_images.npy")
    return out


@pytest.fixture(scope="session")
def swept(swept_data, tmp_path_factory) -> Path:
    """A workdir whose outputs/ holds tiny real sweeps of the three models (densenet in two studies) on swept_data.

    Shared by the promotion, report and fault tests: they read outputs/ and never write into this workdir.
    """
    work = tmp_path_factory.mktemp("swept")
    common = [
        "-m",
        f"data.dir={swept_data}",
        "train.steps=20",
        "train.eval_every=10",
        "hydra.sweeper.n_trials=2",
        LEARNING,
    ]
    for model, extra in [("densenet", ["+sweep=densenet_lr", "hydra.sweeper.n_trials=3"]),
                         ("convnet", ["+sweep=convnet"]),
                         ("bestmodel", ["+sweep=bestmodel", "hydra.sweeper.study_name=best", TINY_BEST,
                                        "hydra.sweeper.storage=sqlite:///outputs/sweeps/best.db"]),
                         ("densenet", ["+sweep=densenet_lr", "hydra.sweeper.study_name=dense2",
                                       "hydra.sweeper.storage=sqlite:///outputs/sweeps/dense2.db"])]:  # fmt: skip
        result = run_here([str(ROOT / f"main_{model}.py"), *common, *extra], work)
        assert result.returncode == 0, result.stderr
    return work


@pytest.fixture(scope="session")
def submission(swept, swept_data) -> Path:
    """`swept`/submission, promoted once from `swept`/outputs; read-only, like `swept`."""
    from qd.deliver.promote import promote

    promote([str(swept / "outputs")], swept / "submission", swept_data, any_settings=True)  # 20-step densenets
    return swept / "submission"


def metrics_under(folder: Path) -> list[dict]:
    """Every metrics.json under `folder`, the paths it holds (relative to its own folder) made absolute."""
    import json

    paths = ("job_dir", "checkpoint", "log")
    return [{k: str((p.parent / v).resolve()) if k in paths else v for k, v in json.loads(p.read_text()).items()}
            for p in sorted(folder.rglob("metrics.json"))]  # fmt: skip


def sweep_metrics(workdir: Path) -> list[dict]:
    """Every metrics.json under `workdir`/outputs/sweeps."""
    return metrics_under(workdir / "outputs/sweeps")


def study_trials(workdir: Path, preset: str) -> list:
    """The trials of the one study in the preset's storage (named `<preset>-<hash of its fixed configuration>`)."""
    study = the_study(f"sqlite:///{workdir}/outputs/sweeps/{preset}.db")
    assert study.study_name.startswith(f"{preset}-"), study.study_name
    return study.trials


def the_study(storage: str):
    """The one study in `storage`."""
    import optuna

    (summary,) = optuna.get_all_study_summaries(storage=storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def json_error(text: str) -> str:
    """What json.loads says of `text`, which is not whole JSON: the words qd's messages quote."""
    import json

    try:
        json.loads(text)
    except ValueError as e:
        return str(e)
    raise AssertionError("the text is whole JSON")


def sha(path: Path) -> str:
    """The SHA-256 of the file at `path`."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def digest(folder: Path) -> dict[str, str]:
    """What `folder` holds, one level deep: each file's SHA-256 by name (a sub-folder as "folder")."""
    return {p.name: sha(p) if p.is_file() else "folder" for p in sorted(folder.iterdir())}


def copy_of_the_repository(tmp_path: Path) -> Path:
    """What the course command line, Hydra runs of the best model and promotion need of the repository (qd/,
    conf/, main_bestmodel.py), copied to tmp_path/repo: a test may edit it."""
    repo = tmp_path / "repo"
    for name in ("qd", "conf"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(ROOT / "main_bestmodel.py", repo / "main_bestmodel.py")
    return repo


def tiny_config(model: str, data_dir: Path, steps: int = 20, **train) -> dict:
    """The frozen defaults of `model` on `data_dir`, with a short run."""
    import copy

    from qd.core.defaults import DEFAULTS

    cfg = copy.deepcopy(DEFAULTS[model])
    cfg["data"]["dir"] = str(data_dir)
    cfg["train"].update(steps=steps, eval_every=10, threads=1, **train)
    return cfg


def ours(text: str) -> list[str]:
    """The lines qd printed: Hydra's own log lines (`[date][HYDRA] ...`) left out."""
    return [line for line in text.splitlines() if line and not re.match(r"^\[[\d-]+ [\d:,]+\]\[HYDRA\]", line)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server on 127.0.0.1, owned by the postgres user, removed afterwards; its URL without a
    database."""
    bindir = next(Path("/usr/lib/postgresql").glob("*/bin"), None)
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    data = Path(tempfile.mkdtemp(prefix="qd-pg-"))  # under /tmp, which the postgres user can reach
    shutil.chown(data, "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*as_postgres, bindir / "initdb", "-D", data, "-A", "trust", "-U", "qd"], check=True, capture_output=True
    )
    port = free_port()
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    subprocess.run([*as_postgres, bindir / "pg_ctl", "-D", data, "-o", options, "-w", "-l", data / "log", "start"],
                   check=True, capture_output=True)  # fmt: skip
    yield f"postgresql://qd@127.0.0.1:{port}"
    subprocess.run([*as_postgres, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def postgres(postgres_server) -> str:
    """A new, empty database of the session's PostgreSQL server: its URL."""
    from sqlalchemy import create_engine, text

    name = f"qd_{uuid.uuid4().hex[:12]}"
    engine = create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return f"{postgres_server}/{name}"


SLURM_CONF = """\
ClusterName=qdtest
SlurmctldHost={host}
SlurmUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge.socket
MpiDefault=none
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
KillWait=2
NodeName={host} CPUs=2 RealMemory={memory_mb}
PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="session")
def slurm() -> dict[str, str]:
    """A real single-node Slurm without accounting, as on many small clusters: munged, slurmctld and slurmd on free
    ports, with its key, state and logs in a temporary folder; its node idle. Yields the environment that points
    Slurm's commands at it (SLURM_CONF). Afterwards cancels its jobs and stops every daemon it started, by PID."""
    commands = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
    missing = [c for c in commands if not shutil.which(c)]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} not found): apt-get install slurm-wlm munge")
    folder = Path(tempfile.mkdtemp(prefix="qd-slurm-"))
    folder.chmod(0o755)  # munged serves its socket only from a folder everyone may enter
    key = folder / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o600)
    host = socket.gethostname().split(".")[0]
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
    conf = folder / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=host, user=getpass.getuser(), folder=folder, ctld_port=free_port(),
                                      slurmd_port=free_port(), memory_mb=memory_mb))  # fmt: skip
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started = []
    try:
        for argv in (["munged", "--foreground", f"--key-file={key}", f"--socket={folder}/munge.socket",
                      f"--pid-file={folder}/munged.pid", f"--log-file={folder}/munged.log",
                      f"--seed-file={folder}/munged.seed"],
                     ["slurmctld", "-D", "-f", str(conf)], ["slurmd", "-D", "-f", str(conf)]):  # fmt: skip
            started.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.time() + 60
        while _ask(env, "sinfo", "--noheader", "--format=%T").strip() != "idle":
            logs = {p.name: p.read_text()[-2000:] for p in folder.glob("*.log")}
            assert time.time() < deadline and all(p.poll() is None for p in started), f"Slurm did not come up: {logs}"
            time.sleep(0.2)
        yield {"SLURM_CONF": str(conf)}
    finally:
        if started:
            _ask(env, "scancel", f"--user={getpass.getuser()}")
            deadline = time.time() + 60
            while time.time() < deadline and _ask(env, "squeue", "--noheader").strip():
                time.sleep(0.5)
        for daemon in reversed(started):
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _ask(env: dict, *argv: str) -> str:
    """What a Slurm command prints."""
    return subprocess.run(argv, env=env, capture_output=True, text=True).stdout


def stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the process's name (state, parent, group, ...); none once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def children(pid: int) -> set[int]:
    """The processes whose parent is `pid`."""
    return {int(p.name) for p in Path("/proc").glob("[0-9]*") if stat(int(p.name))[1:2] == [str(pid)]}


def running(pid: int) -> bool:
    """Whether `pid` runs (a zombie has ended)."""
    return stat(pid)[:1] not in ([], ["Z"])


def running_in_group(pgid: int) -> set[int]:
    """The processes of process group `pgid` that run (zombies left out)."""
    return {pid for pid in map(int, (p.name for p in Path("/proc").glob("[0-9]*"))) if stat(pid)[2:3] == [str(pgid)]
            and running(pid)}  # fmt: skip
