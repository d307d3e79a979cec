"""A full or forbidden disk: one line naming the path and what was kept, and nothing half-written left in place.

ENOSPC for real on a 3 MB tmpfs (mounted as root, where the machine allows it), and by a refused fsync; EACCES
for real, as an unprivileged user."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, digest, run_cli, run_here, sha
from qd.core.checkpoint import save_checkpoint
from qd.core.defaults import DEFAULTS
from qd.core.errors import QDError
from qd.core.fsutil import trim_to_whole_lines
from qd.core.models import build_model
from qd.datasets.folders import MANIFEST
from qd.datasets.synth import BUILDER, write_synthetic

FULL = "no space left on device"


@pytest.fixture
def disk(tmp_path) -> Path:
    """A 3 MB tmpfs at tmp_path/disk, unmounted afterwards; skipped where no tmpfs can be mounted."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)], capture_output=True,
                             text=True) if shutil.which("mount") else None  # fmt: skip
    if mounted is None or mounted.returncode != 0:
        why = mounted.stderr.strip() if mounted else "no mount command"
        pytest.skip(f"cannot mount a tmpfs here ({why}); the refused-fsync tests cover ENOSPC")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def leave_free(folder: Path, space: int) -> None:
    """Fill the disk of `folder` to the last byte, then give back `space` bytes (whole pages)."""
    filler = folder / "filler"
    filler.unlink(missing_ok=True)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, bytes(1 << 16)):
            pass
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - space))


def left_behind(folder: Path) -> list[str]:
    """Temporary and staging files anywhere under `folder` (their names start with a dot)."""
    return [str(p) for p in folder.rglob(".*")]


@pytest.mark.slow
def test_a_course_run_on_a_full_disk_says_what_it_kept(disk, course_dir, tmp_path):
    """Room for the log and the record but not the checkpoint, then no room at all: each run ends in one line,
    keeps only whole files, and leaves the previous model_files/densenet.pt as it was."""
    models, logs = disk / "model_files", disk / "log_files"
    models.mkdir()
    (models / "densenet.pt").write_bytes(b"the user's previous checkpoint")
    train = [str(ROOT / "main_densenet.py"), "--mode", "train", "--LR", "1e-3", "--bs", "50", "--epochs", "20",
             "--dataDir", str(course_dir), "--logDir", str(logs), "--modelSaveDir", str(models)]  # fmt: skip
    leave_free(disk, 100_000)  # the dense net's checkpoint is 320 KB
    result = run_cli(train, tmp_path)
    (log,) = logs.glob("*.log")
    stem = log.stem
    assert result.returncode == 2 and result.stderr == (
        f"error: {models / stem}.pt: {FULL}; kept {log}, {models / stem}.json; {models / 'densenet.pt'} is as it was\n"
    )
    assert log.read_text().startswith("step,") and log.read_text().endswith("\n")
    record = json.loads((models / f"{stem}.json").read_text())
    assert record["state"] == "failed" and record["reason"].startswith("OSError: [Errno 28] No space left on device")
    leave_free(disk, 0)
    result = run_cli(train, tmp_path)
    assert result.returncode == 2 and re.fullmatch(
        rf"error: {re.escape(str(logs))}/\d{{12}}_densenet(_\d+)?\.log: {FULL}; kept nothing of this run; "
        rf"{re.escape(str(models / 'densenet.pt'))} is as it was\n",
        result.stderr,
    ), result.stderr
    assert sorted(p.name for p in logs.iterdir()) == [log.name], "no log without a whole line"
    assert (models / "densenet.pt").read_bytes() == b"the user's previous checkpoint"
    assert left_behind(disk) == []


def test_predictions_on_a_full_disk_write_nothing(disk, course_dir, tmp_path):
    cfg = DEFAULTS["convnet"]["model"]
    save_checkpoint(tmp_path / "convnet.pt", build_model(cfg), cfg, {})
    leave_free(disk, 0)
    predictions = disk / "predictions.csv"
    result = run_cli([str(ROOT / "main_convnet.py"), "--mode", "predict", "--weights", str(tmp_path / "convnet.pt"),
                      "--dataDir", str(course_dir), "--predictionsFile", str(predictions)], tmp_path)  # fmt: skip
    assert result.returncode == 2 and result.stderr == f"error: {predictions}: {FULL}; nothing written\n"
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_a_data_set_built_on_a_full_disk_keeps_whole_files_and_builds_again(disk, tmp_path):
    out = disk / "data"
    build = ["-m", "qd", "data", "synth", "--out", str(out), "--sizes", "600", "600", "600"]
    leave_free(disk, 600_000)  # the train images and labels (475 KB) fit, the dev images do not
    result = run_here(build, tmp_path)
    assert result.returncode == 2 and result.stderr == (
        f"error: {out}/fruit_dev_images.npy: {FULL}; every file in {out} is whole, and building it again finishes it\n"
    )
    assert sorted(p.name for p in out.iterdir()) == ["fruit_images.npy", "fruit_labels.npy", MANIFEST]
    assert json.loads((out / MANIFEST).read_text())["complete"] is False
    (disk / "filler").unlink()
    assert run_here(build, tmp_path).returncode == 0
    assert json.loads((out / MANIFEST).read_text())["complete"] is True and left_behind(disk) == []


def refuse_fsync(monkeypatch, at: int, code: int = errno.ENOSPC) -> None:
    """Make the `at`-th os.fsync fail as a disk that could not store the file's blocks does (NFS, delayed
    allocation): after the write seemed to succeed."""
    real, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == at:
            raise OSError(code, os.strerror(code))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_data_set_whose_file_the_disk_refuses_keeps_whole_files(tmp_path, monkeypatch):
    out = tmp_path / "data"
    refuse_fsync(monkeypatch, at=2)  # the manifest, then the train images
    with pytest.raises(QDError) as refused:
        write_synthetic(out, seed=0, sizes=(60, 60, 60))
    assert str(refused.value) == (
        f"{out}/fruit_images.npy: {FULL}; every file in {out} is whole, and building it again finishes it"
    )
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST]
    monkeypatch.undo()
    write_synthetic(out, seed=0, sizes=(60, 60, 60))
    assert json.loads((out / MANIFEST).read_text())["builder"] == BUILDER and left_behind(tmp_path) == []


@pytest.fixture
def nobody() -> list[str]:
    """The command prefix that runs a command as the unprivileged user nobody; skipped where there is none or
    nobody cannot run qd from this checkout."""
    setpriv = shutil.which("setpriv")
    prefix = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if setpriv else []
    if os.geteuid() != 0 or not prefix:
        pytest.skip("needs root and setpriv to run a command as nobody")
    check = subprocess.run([*prefix, sys.executable, "-c", "import qd.core.cli"], cwd=ROOT, capture_output=True)
    if check.returncode != 0:
        pytest.skip(f"nobody cannot run qd from {ROOT}")
    return prefix


def test_predictions_into_a_folder_nobody_may_write_to_write_nothing(nobody, course_dir, tmp_path):
    shared = Path(os.environ.get("TMPDIR", "/tmp")) / f"qd-eacces-{os.getpid()}"
    shared.mkdir(mode=0o755)
    try:
        cfg = DEFAULTS["convnet"]["model"]
        save_checkpoint(shared / "convnet.pt", build_model(cfg), cfg, {})
        shutil.copytree(course_dir, shared / "data")
        (shared / "locked").mkdir(mode=0o755)  # root's: nobody may read it, not write into it
        predictions = shared / "locked" / "predictions.csv"
        command = [*nobody, sys.executable, str(ROOT / "main_convnet.py"), "--mode", "predict", "--weights",
                   str(shared / "convnet.pt"), "--dataDir", str(shared / "data"), "--predictionsFile",
                   str(predictions)]  # fmt: skip
        result = subprocess.run(command, cwd=shared, capture_output=True, text=True)
        assert result.returncode == 2
        assert result.stderr == f"error: {predictions}: permission denied; nothing written\n"
        assert list((shared / "locked").iterdir()) == []
    finally:
        shutil.rmtree(shared)


@pytest.mark.slow
def test_promotion_on_a_full_disk_keeps_the_previous_submission(disk, swept, swept_data, submission, tmp_path):
    """The disk full at the start, then with room for some files of the new submission but not all: one line
    naming the file, the previous submission as it was, nothing else left; with room, the promotion passes."""
    out = disk / "submission"
    shutil.copytree(submission, out)
    before = digest(out)
    promote = ["-m", "qd", "promote", str(swept / "outputs"), "--any-settings", "--data-dir", str(swept_data),
               "--out", str(out)]  # fmt: skip
    for space, names in ((0, ["densenet.pt"]), (400_000, list(before))):  # the first file staged; one of them
        leave_free(disk, space)
        result = run_here(promote, tmp_path)
        assert result.returncode == 2, result.stderr
        named = "|".join(re.escape(str(out / name)) for name in names)
        assert re.fullmatch(rf"error: ({named}): {FULL}; {re.escape(str(out))} is as it was\n",
                            result.stderr.splitlines(True)[-1]), result.stderr  # fmt: skip
        assert digest(out) == before and left_behind(disk) == [], f"{space} bytes free"
    (disk / "filler").unlink()
    assert run_here(promote, tmp_path).returncode == 0 and digest(out) == before


@pytest.mark.slow
def test_a_report_on_a_full_disk_writes_nothing(disk, swept, submission, tmp_path):
    out = disk / "report"
    leave_free(disk, 100_000)
    no_tools = tmp_path / "bin"
    no_tools.mkdir()
    args = ["-m", "qd", "report", "--submission", str(submission), "--out", str(out), str(swept / "outputs")]
    result = run_here(args, tmp_path, env={"PATH": str(no_tools)})  # no LaTeX: the figures and the document alone
    assert result.returncode == 2
    assert re.fullmatch(rf"error: {re.escape(str(out))}/[\w-]+\.(png|md|tex): {FULL}; nothing written\n", result.stderr)
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_a_log_cut_mid_row_keeps_its_whole_rows_and_one_with_none_goes(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("step,dev_acc\n10,0.5\n20,0.")
    trim_to_whole_lines(log)
    assert log.read_text() == "step,dev_acc\n10,0.5\n"
    log.write_text("ste")
    trim_to_whole_lines(log)
    assert not log.exists()


def test_a_hydra_run_and_a_sweep_on_a_full_disk_are_one_line(disk, course_dir, tmp_path):
    """A single run with room for its config and log but not its checkpoint; a sweep whose study database cannot
    grow. Each is one line and exit 2."""
    run = disk / "run"
    leave_free(disk, 100_000)  # the dense net's checkpoint is 320 KB
    result = run_here([str(ROOT / "main_densenet.py"), f"data.dir={course_dir}", "train.steps=20",
                      f"hydra.run.dir={run}"], tmp_path)  # fmt: skip
    assert (result.returncode, result.stderr) == (2, f"error: {run}/densenet.pt: {FULL}; {run} keeps what the run had "
                                                     "written\n")  # fmt: skip
    assert [p for p in left_behind(run) if "/.hydra" not in p] == [], "no temporary file left"

    leave_free(disk, 0)
    result = run_here(
        [
            str(ROOT / "main_densenet.py"),
            "+sweep=densenet_lr",
            f"data.dir={course_dir}",
            f"hydra.sweeper.storage=sqlite:///{disk}/study.db",
            "hydra.sweeper.n_trials=1",
        ],
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (2, f"error: {disk}/study.db: cannot use the study's database file "
                                                     "(database or disk is full); its disk is full: free some space; "
                                                     "the trials recorded so far are kept\n")  # fmt: skip


@pytest.mark.heavy
def test_a_study_in_a_folder_nobody_may_write_to_is_one_line_and_stays_as_it_was(nobody, course_dir, tmp_path):
    """A study database that its user may read and write, in a folder they may not write to (as `chattr +i` leaves
    it): SQLite cannot make its journal there, nor qd its lock file. One line naming the file, the study as it was."""
    shared = Path(os.environ.get("TMPDIR", "/tmp")) / f"qd-readonly-{os.getpid()}"
    shared.mkdir(mode=0o755)
    try:
        shutil.copytree(course_dir, shared / "data")
        (shared / "sweep").mkdir(mode=0o777)
        argv = [sys.executable, str(ROOT / "main_densenet.py"), "+sweep=densenet_lr", f"data.dir={shared / 'data'}",
                "train.steps=20", "train.eval_every=10", "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={shared}/sweep",
                f"hydra.sweeper.storage=sqlite:///{shared}/studies/study.db"]  # fmt: skip
        (shared / "studies").mkdir(mode=0o777)
        made = subprocess.run(argv, cwd=shared, capture_output=True, text=True, env={**os.environ,
                              "PYTHONPATH": str(ROOT)})  # fmt: skip
        assert made.returncode == 0, made.stderr
        (shared / "studies/study.db-qdlock").unlink()
        (shared / "studies/study.db").chmod(0o666)
        (shared / "studies").chmod(0o755)  # root's: nobody may not add a file to it
        before = sha(shared / "studies/study.db")
        more = [*nobody, *argv[:-2], "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={shared}/sweep/more", argv[-1]]
        result = subprocess.run(more, cwd=shared / "sweep", capture_output=True, text=True)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        assert re.fullmatch(rf"error: {shared}/studies/study\.db(-qdlock)?: .*(permission denied|cannot be written|"
                            r"cannot be opened).*\n", result.stderr), result.stderr  # fmt: skip
        assert sha(shared / "studies/study.db") == before

        (shared / "studies").chmod(0o777)  # now the file itself is read-only
        (shared / "studies/study.db").chmod(0o444)
        result = subprocess.run(more, cwd=shared / "sweep", capture_output=True, text=True)
        assert (result.returncode, result.stderr) == (2, f"error: {shared}/studies/study.db: cannot use the study's "
                                                         "database file (attempt to write a readonly database); it "
                                                         "cannot be written here: check the file's and its folder's "
                                                         "permissions\n")  # fmt: skip
        assert sha(shared / "studies/study.db") == before
    finally:
        shutil.rmtree(shared)
