"""Study databases: the commands that only read open them read-only and refuse what is not a study; a sweep never
writes into another program's database; each failure is one line with hints that fit a file or a server."""

from __future__ import annotations

import random
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli, run_here, sha, start

NOT_A_STUDY = "not an Optuna study database (it holds other tables); expected the storage of a sweep's study"


def foreign_database(path: Path) -> Path:
    """Another program's SQLite file, with a `trials` table of its own."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE trials (id INTEGER PRIMARY KEY, runner TEXT)")
        db.execute("INSERT INTO trials (runner) VALUES ('someone else')")
    return path


@pytest.mark.parametrize("command", [["results"], ["promote", "--out", "submission"]])
def test_results_and_promote_leave_a_foreign_or_empty_database_byte_for_byte_as_it_was(tmp_path, command):
    other, empty = foreign_database(tmp_path / "other.db"), tmp_path / "empty.db"
    empty.touch()
    for db in (other, empty):
        before = sha(db)
        result = run_here(["-m", "qd", *command, f"sqlite:///{db}"], tmp_path)
        assert (result.returncode, result.stderr) == (2, f"error: {db}: {NOT_A_STUDY}\n")
        assert sha(db) == before, f"{db.name} changed"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db", "other.db"], "nothing created"


def test_a_sweep_refuses_to_record_into_another_programs_database(course_dir, tmp_path):
    other = foreign_database(tmp_path / "other.db")
    before = sha(other)
    result = run_here([str(ROOT / "main_densenet.py"), "+sweep=densenet_lr", f"data.dir={course_dir}",
                      f"hydra.sweeper.storage=sqlite:///{other}"], tmp_path)  # fmt: skip
    assert (result.returncode, result.stderr) == (2, f"error: {other}: {NOT_A_STUDY}\n")
    assert sha(other) == before


def test_a_damaged_database_file_gets_a_files_hint_and_a_server_a_servers(tmp_path):
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"this is not SQLite" * 100)
    result = run_here(["-m", "qd", "results", f"sqlite:///{damaged}"], tmp_path)
    assert (result.returncode, result.stderr) == (2, f"error: {damaged}: cannot use the study's database file (file "
                                                     "is not a database); it is not an SQLite database: give the sweep "
                                                     "another storage file\n")  # fmt: skip
    server = run_here(["-m", "qd", "results", "postgresql://qd:secret@127.0.0.1:1/qd"], tmp_path)
    assert server.returncode == 2
    assert server.stderr.startswith("error: postgresql://qd:***@127.0.0.1:1/qd: cannot open the study's database (")
    assert server.stderr.endswith("); check that the server runs, that host, port and database are right and that it "
                                  "accepts connections from here\n")  # fmt: skip


def newer_optunas_database(path: Path, version: str) -> Path:
    """A study database as a newer Optuna leaves it: its tables' schema past the newest this Optuna knows."""
    import optuna

    optuna.create_study(study_name="s", storage=f"sqlite:///{path}").add_trial(optuna.trial.create_trial(value=0.5))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = 'v4.9.0.a'")
        db.execute("UPDATE version_info SET library_version = ?", (version,))
    return path


def test_a_newer_optunas_database_is_one_line_naming_its_version_and_stays_as_it_was(course_dir, tmp_path):
    newer = newer_optunas_database(tmp_path / "newer.db", "4.9.0")
    before = sha(newer)
    expected = (f"error: {newer}: a study database written by Optuna 4.9.0, which the Optuna 2.10.1 qd runs cannot "
                "read (the Hydra Optuna sweeper needs Optuna 2); open it with that Optuna, or give the sweep another "
                "storage\n")  # fmt: skip
    for argv in (["-m", "qd", "results", f"sqlite:///{newer}"], ["-m", "qd", "promote", f"sqlite:///{newer}"],
                 [str(ROOT / "main_densenet.py"), "+sweep=densenet_lr", f"data.dir={course_dir}",
                  f"hydra.sweeper.storage=sqlite:///{newer}"]):  # fmt: skip
        result = run_here(argv, tmp_path)
        assert (result.returncode, result.stderr) == (2, expected), argv
    assert sha(newer) == before and sorted(p.name for p in tmp_path.iterdir()) == ["newer.db"]


@pytest.mark.parametrize("n_trials", ["0", "-1"])
def test_a_sweep_of_fewer_than_one_trial_is_refused_before_anything_is_created(course_dir, tmp_path, n_trials):
    result = run_here([str(ROOT / "main_densenet.py"), "+sweep=densenet_lr", f"data.dir={course_dir}",
                      f"hydra.sweeper.n_trials={n_trials}"], tmp_path)  # fmt: skip
    assert (result.returncode, result.stderr) == (2, f"error: hydra.sweeper.n_trials={n_trials}: expected the "
                                                     "study's number of trials, 1 or more\n")  # fmt: skip
    assert list(tmp_path.iterdir()) == []


# A job's trial reporting as fast as it can (every write a transaction of its own) until Ctrl-C; then what the
# sweeping process does once the job is cut: mark the trial through its own connection, which must find the
# database free (a second's busy wait, not the 60 s a lock left behind would need).
CUT_WHILE_WRITING = """
import sys
from qd.core.interrupt import exit_on_ctrl_c
from qd.experiment.lean_optuna import optuna
from qd.experiment.storage import open_for_sweep, reachable
from qd.experiment.trial import running_trial

url = sys.argv[1]
sweeper = open_for_sweep(url)
number = optuna.create_study(study_name="cut", storage=sweeper).ask().number
with exit_on_ctrl_c("interrupted"):
    trial, trial_id = running_trial(reachable(url, "cut"), "cut", number)
    step = 0
    try:
        print("writing", flush=True)
        while True:
            trial.storage.set_trial_intermediate_value(trial_id, step, 0.5)  # as a job reports (JobTrial.on_eval)
            step += 1
    except KeyboardInterrupt:
        sweeper.set_trial_user_attr(trial_id, "cut_at", step)
        print("marked", flush=True)
        raise
"""


@pytest.mark.heavy
def test_a_ctrl_c_while_the_study_is_written_leaves_its_database_free_for_the_clean_up(tmp_path):
    rng = random.Random(0)
    for attempt in range(10):
        url = f"sqlite:///{tmp_path}/cut{attempt}.db?timeout=1"
        job = start([sys.executable, "-c", CUT_WHILE_WRITING, url], tmp_path)
        assert job.stdout.readline() == "writing\n", job.communicate()
        time.sleep(rng.uniform(0.05, 0.5))
        job.send_signal(signal.SIGINT)
        out, err = job.communicate(timeout=30)
        assert (job.returncode, out, err) == (130, "marked\n", "\ninterrupted\n"), attempt


# Ctrl-C that lands inside a finaliser (a `__del__`, a weakref's callback): Python prints what such code raises as
# "Exception ignored in ..." and goes on, so the KeyboardInterrupt must be raised again where it counts.
CUT_IN_A_FINALISER = """
import time
from qd.core.interrupt import exit_on_ctrl_c

class Slow:
    def __del__(self):
        print("finalising", flush=True)
        time.sleep(5)

with exit_on_ctrl_c("interrupted"):
    Slow()
    print("after", flush=True)
    while True:
        time.sleep(0.01)
"""


def test_a_ctrl_c_inside_a_finaliser_is_still_one_line_and_a_quick_exit(tmp_path):
    job = start([sys.executable, "-c", CUT_IN_A_FINALISER], tmp_path)
    assert job.stdout.readline() == "finalising\n", job.communicate()
    sent = time.monotonic()
    job.send_signal(signal.SIGINT)
    out, err = job.communicate(timeout=30)
    assert (job.returncode, out, err) == (130, "after\n", "\ninterrupted\n")
    assert time.monotonic() - sent < 2, "ended by the watcher's deadline, not by the KeyboardInterrupt"


# Another process's writes to study "s": a running trial's learning curve (argv[2] = curve), or its end and a
# new trial (argv[2] = end).
ANOTHER_PROCESS = """
import sys
from qd.experiment.lean_optuna import optuna
from qd.experiment.storage import HeldStorage
study = optuna.load_study(study_name="s", storage=HeldStorage(sys.argv[1]))
if sys.argv[2] == "curve":
    optuna.Trial(study, study.trials[1]._trial_id).report(0.5, 10)
else:
    study.tell(1, values=[0.75])
    study.ask()
"""


def test_a_sweeps_storage_reads_finished_trials_once_and_sees_every_other_processs_write_at_once(tmp_path):
    from qd.experiment.lean_optuna import optuna
    from qd.experiment.storage import HeldStorage

    url = f"sqlite:///{tmp_path}/study.db"
    storage = HeldStorage(url)  # as the sweep's janitor reads it (its Study object caches its own running trials)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.tell(study.ask(), values=[0.25])
    study.ask()  # running, until the other process tells it
    study_id = storage.get_study_id_from_name("s")
    shown = lambda states=None: [(t.number, t.state.name, t.values, t.intermediate_values)  # noqa: E731
                                 for t in storage.get_all_trials(study_id, states=states)]  # fmt: skip
    assert shown() == [(0, "COMPLETE", [0.25], {}), (1, "RUNNING", None, {})]
    for step, expected in [
        ("curve", [(0, "COMPLETE", [0.25], {}), (1, "RUNNING", None, {10: 0.5})]),
        ("end", [(0, "COMPLETE", [0.25], {}), (1, "COMPLETE", [0.75], {10: 0.5}), (2, "RUNNING", None, {})]),
    ]:
        other = run_cli(["-c", ANOTHER_PROCESS, url, step], tmp_path)
        assert other.returncode == 0, other.stderr
        assert shown() == expected, step
    assert shown((optuna.trial.TrialState.RUNNING,)) == [(2, "RUNNING", None, {})]
    with sqlite3.connect(tmp_path / "study.db") as db:  # behind Optuna's back, which refuses to write a finished trial
        db.execute("UPDATE trial_values SET value = 0.5")
    assert shown()[0] == (0, "COMPLETE", [0.25], {}), "a finished trial is read once"
    assert HeldStorage(url).get_all_trials(study_id)[0].values == [0.5]
